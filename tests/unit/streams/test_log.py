"""Specification of the in-memory event log (``streams/log.py``): sequencing, cursors,
waiting readers, closing, retention with gap notices, and statistics."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from streams.errors import LogClosedError
from streams.events import TERMINAL_TYPES, Event, EventType
from streams.log import Batch, Gap, LogStatistics, MemoryEventLog, Retention

T = TypeVar("T")


def complete_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end, failing if it ever suspends (i.e. waits)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended instead of completing at once")


async def until_waiting(log: MemoryEventLog, readers: int) -> None:
    """Yield to the loop until ``readers`` readers are blocked in ``log.read``."""
    for _ in range(100):
        if log.statistics().waiting_readers == readers:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {readers} waiting readers, got {log.statistics()}")


def append_deltas(log: MemoryEventLog, count: int, text: str = "x") -> list[Event]:
    return [
        log.append_nowait(EventType.MESSAGE_DELTA, "model.1", {"delta": text}) for _ in range(count)
    ]


def seqs(batch: Batch) -> list[int]:
    return [event.seq for event in batch.events]


# -- sequencing ---------------------------------------------------------------------------


async def test_seq_starts_at_one_and_increases_by_one() -> None:
    log = MemoryEventLog("run_1")

    events = [await log.append(EventType.MESSAGE_DELTA, None, {"delta": "a"}) for _ in range(5)]

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert log.last_seq == 5


def test_empty_log_has_last_seq_zero() -> None:
    assert MemoryEventLog("run_1").last_seq == 0


async def test_append_returns_the_event_it_stored() -> None:
    log = MemoryEventLog("run_1")

    event = await log.append(EventType.TOOL_DELTA, "call_1", {"call_id": "call_1", "delta": "d"})

    assert (event.run_id, event.type, event.producer) == ("run_1", EventType.TOOL_DELTA, "call_1")
    assert event.data == {"call_id": "call_1", "delta": "d"}
    assert complete_now(log.read(0, timeout=0)).events == [event]


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected"),
    [(0, [1, 2, 3, 4, 5]), (1, [2, 3, 4, 5]), (3, [4, 5]), (4, [5]), (5, [])],
)
def test_read_returns_exactly_the_events_after_the_cursor(after: int, expected: list[int]) -> None:
    log = MemoryEventLog("run_1")
    appended = append_deltas(log, 5)

    batch = complete_now(log.read(after, timeout=0))

    assert seqs(batch) == expected
    assert batch.events == appended[after:]
    assert batch.gap is None
    assert batch.closed is False


@pytest.mark.parametrize(
    ("after", "limit", "expected"),
    [(0, 1, [1]), (0, 3, [1, 2, 3]), (2, 2, [3, 4]), (4, 10, [5]), (0, 5, [1, 2, 3, 4, 5])],
)
def test_read_returns_at_most_limit_events(after: int, limit: int, expected: list[int]) -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 5)

    assert seqs(complete_now(log.read(after, limit=limit, timeout=0))) == expected


def test_read_with_a_negative_cursor_is_rejected() -> None:
    log = MemoryEventLog("run_1")

    with pytest.raises(ValueError, match="cursor must be >= 0"):
        complete_now(log.read(-1, timeout=0))


def test_batch_last_seq_is_the_seq_of_its_last_event() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 3)

    assert complete_now(log.read(0, timeout=0)).last_seq == 3
    assert complete_now(log.read(3, timeout=0)).last_seq is None


@pytest.mark.parametrize("appended", [0, 3])
def test_read_with_timeout_zero_never_waits(appended: int) -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, appended)

    batch = complete_now(log.read(appended, timeout=0))

    assert batch == Batch([], None, False)


async def test_read_with_timeout_returns_an_empty_batch_when_nothing_comes() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)

    batch = await log.read(2, timeout=0.01)

    assert batch == Batch([], None, False)
    assert log.statistics().waiting_readers == 0


async def test_waiting_reader_is_woken_by_an_append() -> None:
    log = MemoryEventLog("run_1")
    reader = asyncio.create_task(log.read(0))
    await until_waiting(log, 1)

    event = await log.append(EventType.MESSAGE_DELTA, None, {"delta": "a"})

    assert (await reader).events == [event]
    assert log.statistics().waiting_readers == 0


async def test_one_append_wakes_every_waiting_reader() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)
    readers = [asyncio.create_task(log.read(2)) for _ in range(3)]
    await until_waiting(log, 3)

    event = await log.append(EventType.MESSAGE_DELTA, None, {"delta": "c"})

    batches = await asyncio.gather(*readers)
    assert [batch.events for batch in batches] == [[event]] * 3


async def test_waiting_reader_with_timeout_is_woken_before_it() -> None:
    log = MemoryEventLog("run_1")
    reader = asyncio.create_task(log.read(0, timeout=60))
    await until_waiting(log, 1)

    log.append_nowait(EventType.MESSAGE_DELTA, None, {"delta": "a"})

    assert seqs(await asyncio.wait_for(reader, timeout=5)) == [1]


async def test_reader_woken_late_gets_everything_appended_meanwhile() -> None:
    log = MemoryEventLog("run_1")
    reader = asyncio.create_task(log.read(0))
    await until_waiting(log, 1)

    append_deltas(log, 3)

    assert seqs(await reader) == [1, 2, 3]


async def test_a_reader_that_stops_waiting_is_no_longer_counted() -> None:
    log = MemoryEventLog("run_1")
    reader = asyncio.create_task(log.read(0))
    await until_waiting(log, 1)

    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    assert log.statistics().waiting_readers == 0


# -- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", sorted(TERMINAL_TYPES))
async def test_terminal_event_closes_the_log(terminal: EventType) -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 1)

    await log.append(terminal)

    assert log.closed is True
    assert log.statistics().closed is True


async def test_non_terminal_events_leave_the_log_open() -> None:
    log = MemoryEventLog("run_1")

    for type_ in EventType:
        if type_ not in TERMINAL_TYPES:
            await log.append(type_)

    assert log.closed is False


async def test_append_after_a_terminal_event_raises_log_closed() -> None:
    log = MemoryEventLog("run_1")
    await log.append(EventType.RUN_COMPLETED, None, {"output": "done"})

    with pytest.raises(LogClosedError, match="the event log of run run_1 is closed"):
        await log.append(EventType.MESSAGE_DELTA)
    with pytest.raises(LogClosedError):
        log.append_nowait(EventType.RUN_FAILED)
    assert log.last_seq == 1


async def test_waiting_reader_is_woken_by_the_terminal_event_with_closed() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)
    reader = asyncio.create_task(log.read(2))
    await until_waiting(log, 1)

    terminal = await log.append(EventType.RUN_COMPLETED, None, {"output": "done"})

    batch = await reader
    assert batch.events == [terminal]
    assert batch.closed is True


def test_read_at_the_end_of_a_closed_log_returns_closed_without_waiting() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)
    log.append_nowait(EventType.RUN_CANCELLED, None, {"reason": "r"})

    batch = complete_now(log.read(3))  # no timeout: it still must not wait

    assert batch == Batch([], None, True)


@pytest.mark.parametrize(
    ("after", "limit", "closed"),
    [(0, 2, False), (0, 3, True), (1, 1, False), (2, 1, True), (0, 10, True)],
)
def test_batch_is_closed_only_when_it_reaches_the_end_of_a_closed_log(
    after: int, limit: int, closed: bool
) -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)
    log.append_nowait(EventType.RUN_COMPLETED)

    assert complete_now(log.read(after, limit=limit, timeout=0)).closed is closed


# -- retention ----------------------------------------------------------------------------


def test_retention_by_count_keeps_the_newest_events() -> None:
    log = MemoryEventLog("run_1", Retention(max_events=3))
    appended = append_deltas(log, 5)

    stats = log.statistics()

    assert (stats.first_seq, stats.last_seq, stats.retained_events) == (3, 5, 3)
    assert stats.retained_bytes == sum(event.size for event in appended[2:])


@pytest.mark.parametrize(
    ("after", "gap", "expected"),
    [
        (0, Gap(after=0, next_seq=3), [3, 4, 5]),
        (1, Gap(after=1, next_seq=3), [3, 4, 5]),
        (2, None, [3, 4, 5]),
        (3, None, [4, 5]),
        (5, None, []),
    ],
)
def test_cursor_older_than_retention_gets_a_gap_then_contiguous_events(
    after: int, gap: Gap | None, expected: list[int]
) -> None:
    log = MemoryEventLog("run_1", Retention(max_events=3))
    append_deltas(log, 5)

    batch = complete_now(log.read(after, timeout=0))

    assert batch.gap == gap
    assert seqs(batch) == expected


def test_gap_with_a_limit_still_starts_at_next_seq() -> None:
    log = MemoryEventLog("run_1", Retention(max_events=4))
    append_deltas(log, 10)

    batch = complete_now(log.read(0, limit=2, timeout=0))

    assert batch.gap == Gap(after=0, next_seq=7)
    assert seqs(batch) == [7, 8]
    assert seqs(complete_now(log.read(8, timeout=0))) == [9, 10]


def test_retention_by_bytes_drops_the_oldest_events() -> None:
    # Each event is a bit over 1000 bytes: 3500 bytes hold exactly three of them.
    log = MemoryEventLog("run_1", Retention(max_bytes=3500))
    appended = append_deltas(log, 6, text="x" * 1000)

    stats = log.statistics()
    batch = complete_now(log.read(0, timeout=0))

    assert (stats.first_seq, stats.retained_events) == (4, 3)
    assert stats.retained_bytes == sum(event.size for event in appended[3:]) <= 3500
    assert batch.gap == Gap(after=0, next_seq=4)
    assert batch.events == appended[3:]


def test_newest_event_is_kept_even_if_it_alone_exceeds_max_bytes() -> None:
    log = MemoryEventLog("run_1", Retention(max_bytes=10))
    append_deltas(log, 3)

    stats = log.statistics()
    batch = complete_now(log.read(0, timeout=0))

    assert (stats.first_seq, stats.last_seq, stats.retained_events) == (3, 3, 1)
    assert stats.retained_bytes > 10
    assert batch.gap == Gap(after=0, next_seq=3)
    assert seqs(batch) == [3]


def test_oversized_terminal_event_is_still_readable_with_closed() -> None:
    log = MemoryEventLog("run_1", Retention(max_bytes=10))
    append_deltas(log, 3)
    terminal = log.append_nowait(EventType.RUN_COMPLETED, None, {"output": "y" * 100})

    batch = complete_now(log.read(3))

    assert batch.events == [terminal]
    assert batch.closed is True


@pytest.mark.parametrize("appended", [1124, 1125, 1126, 2300, 5000])
def test_compaction_keeps_seq_indexing_right(appended: int) -> None:
    log = MemoryEventLog("run_1", Retention(max_events=100))
    events = append_deltas(log, appended)
    first = appended - 99

    assert log.statistics().first_seq == first
    for after in (0, first - 2, first - 1, first, first + 50, appended - 1, appended):
        batch = complete_now(log.read(after, limit=1000, timeout=0))
        start = max(after, first - 1)
        assert batch.events == events[start:], after
        assert batch.gap == (Gap(after, first) if after < first - 1 else None)


def test_compaction_keeps_working_while_appending() -> None:
    log = MemoryEventLog("run_1", Retention(max_events=100))
    cursor = 0
    for _ in range(50):
        append_deltas(log, 97)
        batch = complete_now(log.read(cursor, limit=1000, timeout=0))
        assert batch.gap is None
        assert seqs(batch) == list(range(cursor + 1, log.last_seq + 1))
        cursor = log.last_seq


# -- statistics ---------------------------------------------------------------------------


def test_statistics_of_an_empty_log() -> None:
    assert MemoryEventLog("run_1").statistics() == LogStatistics(
        first_seq=1,
        last_seq=0,
        retained_events=0,
        retained_bytes=0,
        waiting_readers=0,
        closed=False,
    )


async def test_statistics_count_events_bytes_and_waiting_readers() -> None:
    log = MemoryEventLog("run_1")
    events = append_deltas(log, 4)
    readers = [asyncio.create_task(log.read(4)) for _ in range(2)]
    await until_waiting(log, 2)

    assert log.statistics() == LogStatistics(
        first_seq=1,
        last_seq=4,
        retained_events=4,
        retained_bytes=sum(event.size for event in events),
        waiting_readers=2,
        closed=False,
    )

    log.append_nowait(EventType.RUN_COMPLETED)
    await asyncio.gather(*readers)
    stats = log.statistics()
    assert (stats.last_seq, stats.waiting_readers, stats.closed) == (5, 0, True)


# -- packing an ended log -----------------------------------------------------------------


def ended_log(retention: Retention | None = None) -> tuple[MemoryEventLog, list[Event]]:
    log = MemoryEventLog("run_1", retention)
    events = [
        log.append_nowait(EventType.RUN_STARTED, None, {"spec": {"n": [1, 2.5, None]}}),
        *append_deltas(log, 3, "héllo \u2028 ✓"),
        log.append_nowait(EventType.TOOL_DELTA, "call_1", {"delta": {"a": True}}),
        log.append_nowait(EventType.RUN_COMPLETED, None, {"usage": {"input_tokens": 2}}),
    ]
    return log, events


def test_a_packed_log_reads_the_same_events_with_the_same_bytes() -> None:
    log, events = ended_log()
    log.pack()
    batch = complete_now(log.read(0, timeout=0))
    assert batch.events == events
    assert [event.sse_frame() for event in batch.events] == [e.sse_frame() for e in events]
    assert [event.text() for event in batch.events] == [event.text() for event in events]
    assert batch.closed


@pytest.mark.parametrize(("after", "limit"), [(0, 2), (2, 3), (5, 10), (6, 1)])
def test_a_packed_log_reads_from_any_cursor_with_any_limit(after: int, limit: int) -> None:
    log, events = ended_log()
    log.pack()
    batch = complete_now(log.read(after, limit=limit, timeout=0))
    assert batch.events == events[after : after + limit]
    assert batch.closed == (after + limit >= len(events))


def test_a_packed_log_keeps_its_retention_gap() -> None:
    log, events = ended_log(Retention(max_events=3))
    log.pack()
    batch = complete_now(log.read(1, timeout=0))
    assert batch.gap == Gap(after=1, next_seq=4)
    assert batch.events == events[3:]


def test_packing_keeps_the_statistics_but_packed() -> None:
    log, _ = ended_log()
    before = log.statistics()
    log.pack()
    assert log.statistics() == dataclasses.replace(before, packed=True)


def test_an_open_log_is_not_packed_and_goes_on_taking_appends() -> None:
    log = MemoryEventLog("run_1")
    append_deltas(log, 2)
    log.pack()
    append_deltas(log, 1)
    assert not log.statistics().packed
    assert seqs(complete_now(log.read(0, timeout=0))) == [1, 2, 3]


def test_packing_lets_the_event_objects_go() -> None:
    """What packing is for: an ended log's events are no longer objects the GC walks."""

    def events_alive() -> int:
        gc.collect()
        return sum(isinstance(o, Event) for o in gc.get_objects())

    log = MemoryEventLog("run_1")
    append_deltas(log, 500)
    log.append_nowait(EventType.RUN_COMPLETED)
    before = events_alive()
    log.pack()
    assert before - events_alive() == 501


# -- property: no event is ever lost or duplicated ----------------------------------------


class ReaderState:
    def __init__(self, start: int) -> None:
        self.start = start
        self.cursor = start
        self.covered: list[int] = []  # seqs seen as events or announced as gone by a gap


class EventLogMachine(RuleBasedStateMachine):
    """Random appends, reads from random cursors and random retention: every reader sees
    each seq after its starting cursor exactly once, as an event or inside a gap notice."""

    @initialize(max_events=st.integers(1, 8), max_bytes=st.integers(1, 1500))
    def make_log(self, max_events: int, max_bytes: int) -> None:
        self.retention = Retention(max_events=max_events, max_bytes=max_bytes)
        self.log = MemoryEventLog("run_p", self.retention)
        self.appended: list[Event] = []
        self.readers: list[ReaderState] = []

    @precondition(lambda self: not self.log.closed)
    @rule(size=st.integers(0, 400))
    def append(self, size: int) -> None:
        self.appended.append(
            self.log.append_nowait(EventType.TOOL_DELTA, "call_1", {"delta": "x" * size})
        )

    @precondition(lambda self: not self.log.closed)
    @rule()
    def close(self) -> None:
        self.appended.append(self.log.append_nowait(EventType.RUN_COMPLETED))

    @rule()
    def pack(self) -> None:
        self.log.pack()  # a no-op until the log has ended

    @rule(data=st.data())
    def add_reader(self, data: st.DataObject) -> None:
        start = data.draw(st.integers(0, self.log.last_seq), label="cursor")
        self.readers.append(ReaderState(start))

    def _read(self, reader: ReaderState, limit: int) -> Batch:
        first_retained = self.log.statistics().first_seq
        batch = complete_now(self.log.read(reader.cursor, limit=limit, timeout=0))
        expected_start = reader.cursor + 1
        if batch.gap is not None:
            assert batch.gap.after == reader.cursor
            assert batch.gap.next_seq == first_retained > expected_start
            reader.covered.extend(range(expected_start, batch.gap.next_seq))
            expected_start = batch.gap.next_seq
            reader.cursor = batch.gap.next_seq - 1
        else:
            assert expected_start >= first_retained
        available = self.log.last_seq - expected_start + 1
        assert len(batch.events) == min(limit, available)
        assert batch.events == self.appended[expected_start - 1 : expected_start - 1 + limit]
        reader.covered.extend(seqs(batch))
        if batch.events:
            reader.cursor = batch.events[-1].seq
        assert batch.closed == (self.log.closed and reader.cursor == self.log.last_seq)
        return batch

    @precondition(lambda self: self.readers)
    @rule(index=st.integers(0, 100), limit=st.integers(1, 5))
    def read(self, index: int, limit: int) -> None:
        self._read(self.readers[index % len(self.readers)], limit)

    @precondition(lambda self: self.readers)
    @rule(limit=st.integers(1, 5))
    def drain_every_reader(self, limit: int) -> None:
        for reader in self.readers:
            while reader.cursor < self.log.last_seq:
                self._read(reader, limit)
            assert reader.covered == list(range(reader.start + 1, self.log.last_seq + 1))

    @invariant()
    def every_reader_has_seen_each_seq_once(self) -> None:
        for reader in self.readers:
            assert reader.covered == list(range(reader.start + 1, reader.cursor + 1))

    @invariant()
    def retention_holds(self) -> None:
        stats = self.log.statistics()
        retained = self.appended[stats.first_seq - 1 :]
        assert stats.last_seq == len(self.appended)
        assert stats.retained_events == len(retained)
        assert stats.retained_bytes == sum(event.size for event in retained)
        if len(retained) > 1:
            assert stats.retained_events <= self.retention.max_events
            assert stats.retained_bytes <= self.retention.max_bytes
        if self.appended:
            assert len(retained) >= 1
            dropped = self.appended[stats.first_seq - 2] if stats.first_seq > 1 else None
            if dropped is not None:  # retention drops only what it must
                assert (
                    len(retained) + 1 > self.retention.max_events
                    or stats.retained_bytes + dropped.size > self.retention.max_bytes
                )


EventLogMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestEventLogMachine = EventLogMachine.TestCase
