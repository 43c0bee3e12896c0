"""The store clients (``streams/cluster/client.py``) on a real single Redis and a real
three-master Redis Cluster: sharded pub/sub (the control channel), a killed subscriber, a
one-key transaction."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.cluster.client import (
    BoundedRedisCluster,
    StoreClient,
    next_shard_message,
    ready_client,
    store_client,
)
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


async def test_a_burst_past_a_cluster_pool_s_size_waits_for_connections(
    redis_cluster_url: str,
) -> None:
    """redis-py's cluster pool fails a call past its size at once (MaxConnectionsError);
    ours waits for a turn, as a single Redis's blocking pool does."""
    small = store_client(redis_cluster_url, max_connections=3, timeout=2.0)
    try:
        await ready_client(small)
        keys = [KEYS.run(f"run_{n}") for n in range(60)]
        await asyncio.gather(*(small.set(key, b"1") for key in keys))
        pipe = small.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        counts = await asyncio.gather(pipe.execute(), *(small.exists(key) for key in keys))
    finally:
        await small.aclose()
    assert counts[0] == [b"1"] * len(keys)
    assert counts[1:] == [1] * len(keys)


async def test_a_call_that_finds_no_free_turn_in_time_is_a_connection_error(
    redis_cluster_url: str,
) -> None:
    small = store_client(redis_cluster_url, max_connections=3, timeout=0.2)
    assert isinstance(small, BoundedRedisCluster)
    try:
        await ready_client(small)
        async with small.turn():  # the only one (3 less 2 kept for subscriptions)
            # Another caller: not in this task's context, which holds the turn.
            waiting = asyncio.create_task(
                small.get(KEYS.run("run_1")), context=contextvars.Context()
            )
            with pytest.raises(RedisConnectionError, match="no connection to the cluster"):
                await waiting
        assert await small.get(KEYS.run("run_1")) is None  # free again
    finally:
        await small.aclose()
