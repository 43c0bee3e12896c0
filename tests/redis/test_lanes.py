"""Lanes (``streams/cluster/lanes.py``) on a real single Redis and a real three-master Redis
Cluster: pipelined replies in order, errors as replies, routing by slot, a redirection
followed, a dropped connection, a peer that stops reading, a caller that gives up."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from streams.cluster.client import StoreClient, ready_client, store_client
from streams.cluster.lanes import StoreLanes, command_key
from tests.redis_server import RedisServer
from tests.sockets import eventually


@pytest.fixture
async def own_client(own_redis: RedisServer) -> AsyncIterator[StoreClient]:
    made = store_client(own_redis.url, max_connections=10, timeout=1.0)
    yield made
    await made.aclose()


@pytest.fixture
def own_lanes(own_client: StoreClient) -> Iterator[StoreLanes]:
    """Lanes to the test's own Redis, which the test may stop, pause or cut off."""
    made = StoreLanes(own_client)
    yield made
    made.close()


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    """A client of the shared three-master cluster (emptied first)."""
    made = store_client(redis_cluster_url, max_connections=10, timeout=2.0)
    assert isinstance(made, RedisCluster)
    await ready_client(made)
    yield made
    await made.aclose()


@pytest.fixture
def cluster_lanes(cluster: RedisCluster) -> Iterator[StoreLanes]:
    made = StoreLanes(cluster)
    yield made
    made.close()


def blocked_clients(server: RedisServer) -> int:
    with redis.Redis(port=server.port, socket_timeout=5) as admin:
        return int(admin.info("clients")["blocked_clients"])


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("SET", "k", "v"), "k"),
        (("EVALSHA", "abc", 2, "k1", "k2", "arg"), "k1"),
        ((b"evalsha", "abc", "1", "k1"), "k1"),
        (("EVAL", "return 1", 1, "k"), "k"),
    ],
)
def test_a_command_is_routed_by_its_first_key(command: tuple[object, ...], key: str) -> None:
    assert command_key(command) == key


def test_a_script_without_keys_cannot_be_routed() -> None:
    with pytest.raises(ValueError, match="names a key"):
        command_key(("EVALSHA", "abc", 0))


async def test_concurrent_callers_get_their_own_replies(lanes: StoreLanes) -> None:
    async def one(n: int) -> None:
        assert await lanes.execute("SET", f"key:{n}", n) == b"OK"
        assert await lanes.execute("GET", f"key:{n}") == str(n).encode()

    await asyncio.gather(*(one(n) for n in range(200)))


async def test_commands_of_one_call_come_back_in_order(lanes: StoreLanes) -> None:
    # Keys of every slot range: on a cluster, each goes to its own master.
    commands = [("INCRBY", f"counter:{n}", n) for n in range(50)]
    assert await lanes.execute_many(commands) == list(range(50))


async def test_a_command_error_is_its_reply_and_the_rest_go_on(lanes: StoreLanes) -> None:
    replies = await lanes.execute_many(
        [("SET", "a", "1"), ("EVALSHA", "0" * 40, 1, "a"), ("INCR", "a")]
    )
    assert replies[0] == b"OK"
    assert isinstance(replies[1], NoScriptError)  # redis-py's own class for NOSCRIPT
    assert replies[2] == 2


async def test_execute_raises_a_command_error(lanes: StoreLanes) -> None:
    await lanes.execute("SET", "text", "x")
    with pytest.raises(ResponseError, match="not an integer"):
        await lanes.execute("INCR", "text")
    assert await lanes.execute("GET", "text") == b"x"  # the lane goes on


def connected_clients(client: StoreClient) -> int:
    """Connections open to the store's masters, counted by the servers."""
    if isinstance(client, RedisCluster):
        nodes = [(node.host, node.port) for node in client.get_primaries()]
    else:
        kwargs = client.connection_pool.connection_kwargs
        nodes = [(kwargs["host"], kwargs["port"])]
    total = 0
    for host, port in nodes:
        with redis.Redis(host=host, port=port, socket_timeout=5) as admin:
            total += int(admin.info("clients")["connected_clients"]) - 1  # less this one
    return total


async def test_lanes_are_one_connection_per_master_however_many_callers(
    lanes: StoreLanes, client: StoreClient
) -> None:
    before = connected_clients(client)
    await asyncio.gather(*(lanes.execute("SET", f"many:{n}", n) for n in range(100)))
    masters = 3 if isinstance(client, RedisCluster) else 1
    assert connected_clients(client) == before + masters


async def test_each_command_goes_to_its_slots_master(
    cluster: RedisCluster, cluster_lanes: StoreLanes
) -> None:
    await cluster_lanes.execute_many([("SET", f"routed:{n}", n) for n in range(60)])
    moved = 0
    for node in cluster.get_primaries():
        with redis.Redis(host=node.host, port=node.port, socket_timeout=5) as admin:
            moved += int(admin.info("errorstats").get("errorstat_MOVED", {}).get("count", 0))
    assert moved == 0
    for n in range(60):
        assert await cluster.get(f"routed:{n}") == str(n).encode()


async def test_a_redirected_command_is_sent_again_through_the_cluster_client(
    cluster: RedisCluster, cluster_lanes: StoreLanes
) -> None:
    slot = cluster.keyslot("stale")
    right = cluster.nodes_manager.slots_cache[slot][0]
    wrong = next(node for node in cluster.get_primaries() if node.name != right.name)
    cluster.nodes_manager.slots_cache[slot] = [wrong]  # a slot map gone stale
    assert await cluster_lanes.execute("INCRBY", "stale", 5) == 5
    assert await cluster.get("stale") == b"5"
    assert cluster.nodes_manager.slots_cache[slot][0].name == right.name  # mended


async def test_a_caller_that_gives_up_does_not_shift_the_others_replies(
    own_redis: RedisServer, own_client: StoreClient, own_lanes: StoreLanes
) -> None:
    waiting = asyncio.create_task(own_lanes.execute("BLPOP", "queue", 5))
    await eventually(lambda: blocked_clients(own_redis) == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    after = asyncio.create_task(own_lanes.execute("GET", "mine"))
    await own_client.set("mine", "my reply")
    await own_client.lpush("queue", "the given-up caller's reply")
    assert await asyncio.wait_for(after, 5) == b"my reply"
    assert own_lanes.in_flight == 0


async def test_a_dropped_connection_fails_what_is_in_flight_and_the_next_call_reconnects(
    own_redis: RedisServer, own_lanes: StoreLanes
) -> None:
    waiting = asyncio.create_task(own_lanes.execute("BLPOP", "queue", 5))
    await eventually(lambda: blocked_clients(own_redis) == 1)
    with redis.Redis(port=own_redis.port, socket_timeout=5) as admin:
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 5)
    assert await asyncio.wait_for(own_lanes.execute("PING"), 5) == b"PONG"


async def test_a_store_that_is_gone_is_a_connection_error(
    own_redis: RedisServer, own_lanes: StoreLanes
) -> None:
    assert await own_lanes.execute("PING") == b"PONG"
    own_redis.stop()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(own_lanes.execute("PING"), 5)
    with pytest.raises(RedisConnectionError):  # and a new connection is refused
        await asyncio.wait_for(own_lanes.execute("PING"), 5)


async def test_a_store_that_stops_reading_drops_the_lane_past_its_bound(
    own_redis: RedisServer, own_client: StoreClient
) -> None:
    lanes = StoreLanes(own_client, max_buffered=256 * 1024)
    value = "x" * 64 * 1024
    sent: list[asyncio.Future[object]] = []
    try:
        assert await lanes.execute("PING") == b"PONG"
        own_redis.pause()

        async def send_until_dropped() -> None:
            for _ in range(10_000):  # far more than the kernel's buffers hold
                futures = lanes.send_nowait([("SET", "big", value)])
                assert futures is not None
                sent.extend(futures)
                await asyncio.sleep(0)  # let the transport try to write

        with pytest.raises(RedisConnectionError, match="has not read"):
            await send_until_dropped()
        own_redis.resume()
        replies = await asyncio.gather(*sent, return_exceptions=True)
        assert all(isinstance(reply, RedisConnectionError) for reply in replies)
    finally:
        own_redis.resume()
        lanes.close()


async def test_closed_lanes_fail_what_is_in_flight_and_refuse_more(
    own_redis: RedisServer, own_client: StoreClient
) -> None:
    lanes = StoreLanes(own_client)
    waiting = asyncio.create_task(lanes.execute("BLPOP", "queue", 5))
    await eventually(lambda: blocked_clients(own_redis) == 1)
    lanes.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(RedisConnectionError, match="closed"):
        await lanes.execute("PING")
    assert lanes.send_nowait([("PING",)]) is None


async def test_no_commands_is_no_replies(lanes: StoreLanes) -> None:
    assert await lanes.execute_many([]) == []


async def test_a_call_whose_lane_drops_leaves_no_error_unretrieved(
    own_redis: RedisServer, own_lanes: StoreLanes, caplog: pytest.LogCaptureFixture
) -> None:
    async def call() -> str:
        try:
            await own_lanes.execute_many([("BLPOP", "queue", 5), ("PING",), ("PING",)])
        except RedisConnectionError as exc:
            return type(exc).__name__  # not the error itself: its traceback holds the futures
        return "no error"

    waiting = asyncio.create_task(call())
    await eventually(lambda: blocked_clients(own_redis) == 1)
    with redis.Redis(port=own_redis.port, socket_timeout=5) as admin:
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await asyncio.wait_for(waiting, 5) == "ConnectionError"
    del waiting
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_store_that_stops_answering_drops_the_lane_past_its_bound(
    own_redis: RedisServer, own_client: StoreClient
) -> None:
    lanes = StoreLanes(own_client, max_in_flight=3)
    try:
        waiting = [asyncio.create_task(lanes.execute("BLPOP", "queue", 5)) for _ in range(3)]
        await eventually(lambda: lanes.in_flight == 3)
        with pytest.raises(RedisConnectionError, match="has not answered 3 commands"):
            await lanes.execute("PING")
        for call in waiting:  # dropped with the lane
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(call, 5)
        assert await asyncio.wait_for(lanes.execute("PING"), 5) == b"PONG"  # a new lane
    finally:
        lanes.close()
