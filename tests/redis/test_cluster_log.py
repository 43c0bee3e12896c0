"""Event logs in Redis Streams (streams/cluster/log.py), against a real redis-server: the
owner's log (visible once written, group commit, TTL at the end, fencing) and the log other
instances read (cursor, blocking read, gap, end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from streams.cluster.client import StoreClient
from streams.cluster.keys import Keys
from streams.cluster.lanes import StoreLanes
from streams.cluster.log import LogWriter, RemoteEventLog, StoredEventLog
from streams.errors import StoreUnavailableError
from streams.events import EventType
from streams.log import Retention
from tests.redis_server import RedisServer
from tests.sockets import eventually

KEYS = Keys("test:")


class Owner:
    """One instance's writer, with what it was told."""

    def __init__(
        self, client: StoreClient, lanes: StoreLanes, retention: Retention, **options: int
    ) -> None:
        self.taken_over: list[str] = []
        self.errors: list[BaseException] = []
        self.writer = LogWriter(
            client,
            KEYS,
            retention,
            instance="a",
            lanes=lanes,
            on_taken_over=self.taken_over.append,
            on_store_error=self.errors.append,
            **options,  # type: ignore[arg-type]
        )

    def log(self, run_id: str = "run_1") -> StoredEventLog:
        return StoredEventLog(run_id, self.writer._retention, self.writer)


@pytest.fixture
async def owner(client: StoreClient, lanes: StoreLanes) -> AsyncIterator[Owner]:
    owner = Owner(client, lanes, Retention(max_events=10_000, ttl=60))
    async with asyncio.TaskGroup() as tasks:
        writer = tasks.create_task(owner.writer.run())
        yield owner
        writer.cancel()


def remote(client: StoreClient, run_id: str = "run_1") -> RemoteEventLog:
    return RemoteEventLog(client, KEYS, run_id, last_seq=0, closed=False, block=0.2)


async def test_an_event_is_visible_once_redis_has_it_with_its_seq_as_the_entry_id(
    owner: Owner, client: StoreClient
) -> None:
    log = owner.log()
    event = await log.append(EventType.RUN_STARTED, None, {"kind": "agent"})
    assert log.last_seq == 0  # appended, not yet written
    await log.settled()
    assert log.last_seq == 1
    [(entry_id, fields)] = await client.xrange(KEYS.events("run_1"))
    assert entry_id == b"1-0"
    assert fields[b"e"] == event.json


async def test_a_burst_of_appends_is_written_in_a_few_round_trips(owner: Owner) -> None:
    log = owner.log()
    for n in range(500):
        log.append_nowait(EventType.MESSAGE_DELTA, "model.1", {"delta": str(n)})
    await log.settled()
    assert owner.writer.written == 500
    assert owner.writer.batches < 10


async def test_events_of_many_runs_share_round_trips(owner: Owner) -> None:
    logs = [owner.log(f"run_{n}") for n in range(50)]
    for log in logs:
        log.append_nowait(EventType.RUN_STARTED, None, {})
    for log in logs:
        await log.settled()
    assert owner.writer.batches < 10


async def test_a_remote_reader_gets_the_same_bytes_from_its_cursor(
    owner: Owner, client: StoreClient
) -> None:
    log = owner.log()
    written = [
        await log.append(EventType.MESSAGE_DELTA, "model.1", {"delta": f"word {n} é"})
        for n in range(10)
    ]
    await log.settled()
    batch = await remote(client).read(4, limit=100, timeout=0)
    assert [e.seq for e in batch.events] == list(range(5, 11))
    assert [e.json for e in batch.events] == [e.json for e in written[4:]]
    assert [e.sse_frame() for e in batch.events] == [e.sse_frame() for e in written[4:]]
    assert batch.gap is None and not batch.closed


async def test_a_remote_reader_waits_for_the_next_event(owner: Owner, client: StoreClient) -> None:
    log = owner.log()
    await log.append(EventType.RUN_STARTED, None, {})
    await log.settled()
    reader = remote(client)
    waiting = asyncio.create_task(reader.read(1, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await log.append(EventType.MESSAGE_DELTA, "model.1", {"delta": "hi"})
    batch = await waiting
    assert [e.seq for e in batch.events] == [2]


async def test_a_remote_read_with_nothing_new_returns_empty_after_its_timeout(
    owner: Owner, client: StoreClient
) -> None:
    log = owner.log()
    await log.append(EventType.RUN_STARTED, None, {})
    await log.settled()
    batch = await remote(client).read(1, timeout=0.1)
    assert batch.events == [] and not batch.closed


async def test_the_terminal_event_closes_the_remote_log_and_sets_the_ttl(
    owner: Owner, client: StoreClient
) -> None:
    log = owner.log()
    await log.append(EventType.RUN_STARTED, None, {})
    await log.append(EventType.RUN_COMPLETED, None, {"output": "done"})
    await log.settled()
    reader = remote(client)
    batch = await reader.read(0, timeout=1)
    assert batch.closed and reader.closed and reader.last_seq == 2
    assert 0 < await client.ttl(KEYS.events("run_1")) <= 60
    assert 0 < await client.ttl(KEYS.run("run_1")) <= 60


async def test_a_cursor_older_than_the_retained_entries_gets_a_gap(
    client: StoreClient, lanes: StoreLanes
) -> None:
    owner = Owner(client, lanes, Retention(max_events=100, ttl=60))
    async with asyncio.TaskGroup() as tasks:
        writer = tasks.create_task(owner.writer.run())
        log = owner.log()
        for n in range(2000):
            log.append_nowait(EventType.MESSAGE_DELTA, "model.1", {"delta": str(n)})
        await log.settled()
        writer.cancel()
    batch = await remote(client).read(3, limit=10_000, timeout=0)
    assert batch.gap is not None
    assert batch.gap.after == 3
    assert batch.gap.next_seq == batch.events[0].seq > 4
    assert batch.events[-1].seq == 2000


async def test_a_log_ended_by_another_instance_stops_taking_writes(
    owner: Owner, client: StoreClient
) -> None:
    log = owner.log()
    await log.append(EventType.RUN_STARTED, None, {})
    await log.settled()
    # Another instance declared this one lost and wrote the run's end as seq 2.
    await client.xadd(KEYS.events("run_1"), {"e": b"{}"}, id="2-0")
    await log.append(EventType.MESSAGE_DELTA, "model.1", {"delta": "late"})
    await log.settled()  # shown here (from memory), never written
    assert owner.taken_over == ["run_1"]
    assert await client.xlen(KEYS.events("run_1")) == 2


async def test_appends_wait_while_the_writer_is_behind(own_redis: RedisServer) -> None:
    client = aioredis.from_url(own_redis.url, socket_timeout=5)
    lanes = StoreLanes(client)
    owner = Owner(client, lanes, Retention(), max_pending=10)
    try:
        async with asyncio.TaskGroup() as tasks:
            log = owner.log()
            for n in range(10):
                log.append_nowait(EventType.MESSAGE_DELTA, "model.1", {"delta": str(n)})
            blocked = tasks.create_task(log.append(EventType.MESSAGE_DELTA, "model.1", {}))
            await asyncio.sleep(0.05)
            assert not blocked.done()  # no writer yet: nothing is written, the bound holds
            writer = tasks.create_task(owner.writer.run())
            await blocked
            await log.settled()
            assert log.last_seq == 11
            writer.cancel()
    finally:
        lanes.close()
        await client.aclose()


async def test_going_offline_shows_every_held_event(client: StoreClient, lanes: StoreLanes) -> None:
    owner = Owner(client, lanes, Retention())
    log = owner.log()  # no writer task: events stay pending
    log.append_nowait(EventType.RUN_STARTED, None, {})
    log.append_nowait(EventType.RUN_FAILED, None, {"error": {"code": "store_unavailable"}})
    assert log.last_seq == 0 and not log.closed
    owner.writer.go_offline()
    assert log.last_seq == 2 and log.closed
    # and later appends are shown at once
    other = owner.log("run_2")
    other.append_nowait(EventType.RUN_STARTED, None, {})
    assert other.last_seq == 1


async def test_a_remote_read_without_redis_is_store_unavailable(own_redis: RedisServer) -> None:
    client = aioredis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    try:
        reader = RemoteEventLog(client, KEYS, "run_1", last_seq=0, closed=False, timeout=1)
        own_redis.stop()
        with pytest.raises(StoreUnavailableError):
            await reader.read(0, timeout=0.1)
    finally:
        await client.aclose()


async def test_scripts_flushed_from_redis_are_loaded_again_and_nothing_is_lost(
    owner: Owner, client: aioredis.Redis
) -> None:
    log = owner.log()
    await log.append(EventType.RUN_STARTED, None, {"kind": "agent"})
    await log.settled()
    await client.script_flush()  # as after a restart of Redis
    await log.append(EventType.MESSAGE_DELTA, "model.1", {"delta": "x"})
    await log.settled()
    assert [entry_id for entry_id, _ in await client.xrange(KEYS.events("run_1"))] == [
        b"1-0",
        b"2-0",
    ]
    assert owner.taken_over == [] and owner.errors == []


async def test_a_registration_goes_with_the_run_s_first_events(
    owner: Owner, client: aioredis.Redis
) -> None:
    log = owner.log()
    registered = owner.writer.register(log, [b"owner", b"alice", b"instance", b"a"])
    await log.append(EventType.RUN_STARTED, None, {"kind": "agent"})
    await registered
    await log.settled()
    assert owner.writer.batches == 1  # one round trip for both
    assert await client.hgetall(KEYS.run("run_1")) == {
        b"owner": b"alice",
        b"instance": b"a",
        b"last_seq": b"1",
    }
    assert await client.smembers(KEYS.instance_runs("a")) == {b"run_1"}


async def test_a_registration_alone_is_written_too(owner: Owner, client: aioredis.Redis) -> None:
    log = owner.log()
    await owner.writer.register(log, [b"owner", b""])
    assert await client.hgetall(KEYS.run("run_1")) == {b"owner": b"", b"last_seq": b"0"}
    assert await client.smembers(KEYS.instance_runs("a")) == {b"run_1"}


async def test_a_registration_fails_when_the_store_is_gone(owner: Owner) -> None:
    log = owner.log()
    registered = owner.writer.register(log, [b"owner", b""])
    owner.writer.go_offline()
    with pytest.raises(StoreUnavailableError):
        await registered
    with pytest.raises(StoreUnavailableError):
        await owner.writer.register(owner.log("run_2"), [b"owner", b""])


async def started(owner: Owner) -> StoredEventLog:
    """A run's log whose start is written, its writer idle again."""
    log = owner.log()
    log.append_nowait(EventType.RUN_STARTED, None, {})
    await log.settled()
    await eventually(lambda: owner.writer.idle)
    return log


async def test_an_output_event_is_sent_in_the_step_that_appends_it(
    owner: Owner, lanes: StoreLanes
) -> None:
    log = await started(owner)
    log.append_nowait(EventType.MESSAGE_DELTA, "model.1", {"delta": "hi"})
    assert lanes.in_flight == 1  # on its way, before the writer task's next turn
    await log.settled()
    assert log.last_seq == 2


async def test_other_events_wait_a_few_steps_to_go_together(
    owner: Owner, lanes: StoreLanes
) -> None:
    log = await started(owner)
    log.append_nowait(EventType.MESSAGE_COMPLETED, "model.1", {})
    assert lanes.in_flight == 0
    log.append_nowait(EventType.RUN_COMPLETED, None, {})
    batches = owner.writer.batches
    await log.settled()
    assert log.last_seq == 3
    assert owner.writer.batches == batches + 1  # both in one round trip
