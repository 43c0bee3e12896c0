"""The store clients (``streams/cluster/client.py``) on a real single Redis and a real
three-master Redis Cluster: sharded pub/sub (the control channel), a killed subscriber, a
one-key transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.cluster.client import StoreClient, next_shard_message, ready_client, store_client
from streams.cluster.keys import Keys
from tests.redis_server import RedisClusterServers, RedisServer

KEYS = Keys("gw:")


@dataclass
class Store:
    url: str
    ports: list[int]


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    """The shared single Redis or the shared cluster (emptied first), with its nodes' ports."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        server: RedisServer = request.getfixturevalue("redis_server")
        return Store(url, [server.port])
    url = request.getfixturevalue("redis_cluster_url")
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return Store(url, cluster.ports)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[StoreClient]:
    made = store_client(store.url, max_connections=10, timeout=2.0)
    await ready_client(made)
    yield made
    await made.aclose()


async def next_data(pubsub: object) -> dict[str, object]:
    """The next message that is not a subscription's acknowledgement."""
    async with asyncio.timeout(5):
        while True:
            message = await next_shard_message(pubsub, timeout=1.0)  # type: ignore[arg-type]
            if message is not None:
                return message


def kill_pubsub_clients(ports: list[int]) -> int:
    killed = 0
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as admin:
            killed += int(admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
    return killed


@pytest.mark.parametrize("instance", ["a", "host-4242-0a1b2c"])
async def test_a_sharded_publish_reaches_the_instance_s_subscriber(
    client: StoreClient, instance: str
) -> None:
    channel = KEYS.control(instance)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.ssubscribe(channel)
        receivers = await client.spublish(channel, b'{"op":"cancel"}')
        message = await next_data(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert receivers == 1
    assert message["type"] == "smessage"
    assert message["channel"] == channel.encode()
    assert message["data"] == b'{"op":"cancel"}'


async def test_a_sharded_subscriber_killed_by_client_kill_type_pubsub_hears_again(
    client: StoreClient, store: Store
) -> None:
    """``CLIENT KILL TYPE pubsub`` kills a sharded subscriber too. What the control
    channel's listener then sees: on a single Redis redis-py reconnects and subscribes again
    by itself; on a cluster the read raises ConnectionError and the listener subscribes
    again. Either way, a later publish is heard (one sent meanwhile may be lost)."""
    channel = KEYS.control("a")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    errors = 0
    try:
        await pubsub.ssubscribe(channel)
        assert await next_shard_message(pubsub, timeout=0.1) is None  # the acknowledgement
        assert kill_pubsub_clients(store.ports) == 1
        async with asyncio.timeout(5):
            while True:
                await client.spublish(channel, b"again")
                try:
                    message = await next_shard_message(pubsub, timeout=0.2)
                except RedisConnectionError:
                    errors += 1  # as the listener does: a new subscription
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.ssubscribe(channel)
                    continue
                if message is not None:
                    break
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert message["data"] == b"again"
    assert errors == (1 if "cluster" in store.url else 0)


async def test_a_one_key_transaction_runs_on_both(client: StoreClient) -> None:
    """The approval reply: LPUSH and EXPIRE of one key in MULTI (one slot on a cluster)."""
    key = KEYS.reply("0123abcd")
    pipe = client.pipeline(transaction=True)
    pipe.lpush(key, b"ok")
    pipe.expire(key, 5)
    assert await pipe.execute() == [1, True]
    assert 0 < await client.ttl(key) <= 5
    assert await client.lrange(key, 0, -1) == [b"ok"]
