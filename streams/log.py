"""Per-run, append-only event logs.

Producers append; readers follow from their own cursor (the last ``seq`` they have) and wait
for new events without polling. Nobody waits on a reader: a log never blocks an append.

Retention is bounded per run by event count and by bytes; the oldest events go first. A reader
whose cursor is older than the oldest retained event is told so (:attr:`Batch.gap`) instead of
silently skipping the hole. The TTL after a run ends is enforced by the run manager, which
drops the whole log.

:class:`EventLog` is the interface; :class:`MemoryEventLog` the embedded implementation.
"""

from __future__ import annotations

import abc
import array
import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.errors import LogClosedError
from streams.events import Event, EventType

__all__ = [
    "Batch",
    "EventLog",
    "Gap",
    "LogStatistics",
    "MemoryEventLog",
    "PackedEvents",
    "Retention",
]


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a run's log is kept: the newest ``max_events`` / ``max_bytes``."""

    max_events: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    ttl: float = 600.0  # seconds a finished run stays readable


@dataclass(frozen=True, slots=True)
class Gap:
    """The reader's cursor is older than what is retained: events up to ``next_seq - 1``
    after ``after`` are gone."""

    after: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one :meth:`EventLog.read` returns.

    ``events`` are in seq order, contiguous from the cursor (or from ``gap.next_seq``).
    ``closed`` is true when the log has ended and nothing is left after these events.
    """

    events: list[Event]
    gap: Gap | None = None
    closed: bool = False

    @property
    def last_seq(self) -> int | None:
        return self.events[-1].seq if self.events else None


@dataclass(frozen=True, slots=True)
class LogStatistics:
    first_seq: int
    last_seq: int
    retained_events: int
    retained_bytes: int
    waiting_readers: int
    closed: bool
    packed: bool = False  # kept as one block of JSON (see PackedEvents)


class EventLog(abc.ABC):
    """Append-only log of one run's events. ``seq`` starts at 1 and increases by 1."""

    run_id: str

    @abc.abstractmethod
    async def append(
        self,
        type: EventType,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Assign the next seq, store the event and wake every waiting reader.

        Appending a terminal event closes the log; appending after that raises
        :class:`~streams.errors.LogClosedError`.
        """

    @abc.abstractmethod
    async def read(self, after: int, *, limit: int = 1024, timeout: float | None = None) -> Batch:
        """Events with ``seq > after``, at most ``limit``.

        If there are none yet, wait until there are, the log closes, or ``timeout``
        seconds pass (then the batch is empty). ``timeout=0`` never waits.
        """

    @property
    @abc.abstractmethod
    def last_seq(self) -> int: ...

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    @property
    def ended(self) -> bool:
        """The terminal event has been appended (readers may not see it yet)."""
        return self.closed

    async def settled(self) -> None:
        """Wait until every event appended so far is visible to readers."""
        return

    def pack(self) -> None:
        """A hint that the log has ended and nobody reads it now: keep what it retains in
        whatever form costs least until a reader comes back. Reads return the same events."""
        return

    @abc.abstractmethod
    def statistics(self) -> LogStatistics: ...


class PackedEvents:
    """Events kept as one block of their JSON and the offsets where each one ends.

    A finished run stays readable for its TTL (to resume from, to fetch), mostly unread.
    As :class:`Event` objects its events are one object each for the cyclic GC to walk on
    every full collection (a pause that grows with what is retained), and about three times
    their JSON in memory; packed they are two objects, neither of them tracked, and their
    JSON. A read decodes what it returns (``Event.from_json`` keeps the JSON as it is, so
    every wire form is byte-identical)."""

    __slots__ = ("_blob", "_ends")

    def __init__(self, events: list[Event]) -> None:
        self._blob = b"".join([event.json for event in events])
        self._ends = array.array("Q", itertools.accumulate(len(event.json) for event in events))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: slice) -> list[Event]:
        ends, blob = self._ends, self._blob
        events = []
        for i in range(*index.indices(len(ends))):
            start = ends[i - 1] if i else 0
            events.append(Event.from_json(blob[start : ends[i]]))
        return events


class MemoryEventLog(EventLog):
    """In-process event log.

    Events live in a list with a moving head (trimming is O(1), indexing by seq is O(1));
    the list is compacted once the dead head outgrows the live part. An ended log that
    nobody reads is packed (:class:`PackedEvents`) until its run expires.
    """

    def __init__(self, run_id: str, retention: Retention | None = None) -> None:
        self.run_id = run_id
        self._retention = retention or Retention()
        self._events: list[Event] = []
        self._head = 0  # index in _events of the oldest retained event
        self._packed: PackedEvents | None = None  # instead of _events, once packed
        self._first_seq = 1  # seq of the oldest retained event
        self._next_seq = 1
        self._visible_seq = 0  # readers see events up to here (see publish)
        self._bytes = 0
        self._ended = False  # the terminal event was appended: no more appends
        self._closed = False  # the terminal event is visible to readers
        self._wakeup: asyncio.Event | None = None  # made only while someone waits
        self._waiting = 0

    @property
    def last_seq(self) -> int:
        """The newest event readers can see."""
        return self._visible_seq

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ended(self) -> bool:
        """The terminal event has been appended (it may not be visible yet)."""
        return self._ended

    async def append(
        self,
        type: EventType,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        return self.append_nowait(type, producer, data)

    def append_nowait(
        self,
        type: EventType,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        if self._ended:
            raise LogClosedError(f"the event log of run {self.run_id} is closed")
        event = Event.create(self._next_seq, self.run_id, type, time.time(), producer, data)
        self._next_seq += 1
        self._events.append(event)
        self._bytes += event.size
        if event.is_terminal:
            self._ended = True
        self._trim()
        self.on_appended(event)
        return event

    @property
    def appended_seq(self) -> int:
        """The newest event appended, visible or not."""
        return self._next_seq - 1

    def on_appended(self, event: Event) -> None:
        """An event is in the log. Here it is visible at once; a log backed by a shared
        store overrides this to show it once the store has it (so no reader ever sees an
        event that a reader elsewhere could not), with :meth:`publish`."""
        self.publish(event.seq)

    async def settled(self) -> None:
        while self._visible_seq < self._next_seq - 1:
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            await self._wakeup.wait()

    def publish(self, seq: int) -> None:
        """Make the events up to ``seq`` visible and wake the readers waiting for them."""
        if seq <= self._visible_seq:
            return
        self._visible_seq = seq
        if self._ended and seq == self._next_seq - 1:
            self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def pack(self) -> None:
        if self._closed and self._packed is None:
            self._packed = PackedEvents(self._events[self._head :])
            self._events, self._head = [], 0

    def _trim(self) -> None:
        retention = self._retention
        live = len(self._events) - self._head
        # Always keep the newest event: a reader must be able to see the terminal one.
        while live > 1 and (live > retention.max_events or self._bytes > retention.max_bytes):
            self._bytes -= self._events[self._head].size
            self._head += 1
            self._first_seq += 1
            live -= 1
        if self._head > 1024 and self._head * 2 > len(self._events):
            del self._events[: self._head]
            self._head = 0

    def _slice(self, after: int, limit: int) -> Batch:
        gap = None
        if after + 1 < self._first_seq:
            gap = Gap(after=after, next_seq=self._first_seq)
            after = self._first_seq - 1
        # Offsets from the oldest retained event.
        start = after + 1 - self._first_seq
        stop = min(start + limit, self._visible_seq + 1 - self._first_seq)
        if self._packed is not None:
            events, retained = self._packed[start:stop], len(self._packed)
        else:
            head = self._head
            events, retained = self._events[head + start : head + stop], len(self._events) - head
        closed = self._closed and start + len(events) >= retained
        return Batch(events, gap, closed)

    async def read(self, after: int, *, limit: int = 1024, timeout: float | None = None) -> Batch:
        if after < 0:
            raise ValueError("cursor must be >= 0")
        if after >= self.last_seq and not self._closed and timeout != 0:
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            wakeup = self._wakeup
            self._waiting += 1
            try:
                async with asyncio.timeout(timeout):
                    await wakeup.wait()
            except TimeoutError:
                pass
            finally:
                self._waiting -= 1
        return self._slice(min(after, self.last_seq), limit)

    def statistics(self) -> LogStatistics:
        return LogStatistics(
            first_seq=self._first_seq,
            last_seq=self.last_seq,
            retained_events=len(self._packed)
            if self._packed is not None
            else len(self._events) - self._head,
            retained_bytes=self._bytes,
            waiting_readers=self._waiting,
            closed=self._closed,
            packed=self._packed is not None,
        )
