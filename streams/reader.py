"""Readers: one per open stream, each with its own cursor.

A :class:`RunReader` follows a run's log from a cursor. It never holds events back from
other readers and nothing waits for it: a reader that falls behind only falls behind. If its
cursor drops out of retention it gets a ``stream.gap`` event with the run's snapshot.

While open, a reader counts towards the run's readers, so the last one leaving can cancel a
run whose ``on_disconnect`` is ``cancel``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from streams.errors import InvalidRequestError
from streams.events import Event, EventType
from streams.view import ReaderCount, RunView

__all__ = ["ReaderBatch", "RunReader", "gap_event"]


@dataclass(frozen=True, slots=True)
class ReaderBatch:
    events: list[Event]
    done: bool  # the terminal event is in ``events`` (or was read before): nothing more comes


class RunReader:
    """Follow ``run`` from ``after`` (the last seq the client has; 0 for everything),
    counted by ``readers`` (the run's directory) while open."""

    def __init__(
        self, readers: ReaderCount, run: RunView, after: int = 0, *, batch: int = 512
    ) -> None:
        if after < 0:
            raise InvalidRequestError("the cursor (after / Last-Event-ID) must be >= 0")
        if after > run.log.last_seq:
            raise InvalidRequestError(
                f"the cursor {after} is ahead of run {run.id}'s last event ({run.log.last_seq})"
            )
        self.readers = readers
        self.run = run
        self.cursor = after
        self.done = False
        self._batch = batch
        self._attached = False

    def __enter__(self) -> RunReader:
        self.readers.attach_reader(self.run)
        self._attached = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._attached:
            self._attached = False
            self.readers.detach_reader(self.run)

    async def next_batch(self, timeout: float | None) -> ReaderBatch:
        """The next events after the cursor; empty if none came within ``timeout``."""
        if self.done:
            return ReaderBatch([], True)
        batch = await self.run.log.read(self.cursor, limit=self._batch, timeout=timeout)
        events = batch.events
        if batch.gap is not None:
            events = [gap_event(self.run, batch.gap.after, batch.gap.next_seq), *events]
        if events:
            self.cursor = events[-1].seq
        self.done = batch.closed
        return ReaderBatch(events, batch.closed)


def gap_event(run: RunView, after: int, next_seq: int) -> Event:
    """The ``stream.gap`` event a reader gets instead of events no longer retained.

    Its ``seq`` is ``next_seq - 1`` so a client that resumes from it continues correctly.
    """
    return Event.create(
        next_seq - 1,
        run.id,
        EventType.STREAM_GAP,
        time.time(),
        None,
        {"after": after, "next_seq": next_seq, "snapshot": run.snapshot()},
    )
