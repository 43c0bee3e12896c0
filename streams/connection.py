"""Per-connection concurrency limits.

A :class:`Connection` stands for one client connection (a WebSocket session, or the TCP
connection an HTTP request came on). It bounds the producers running at once for the runs
it started (a :class:`~streams.limiter.CountedLimiter`) and the number of those runs still active.

A run with many producers to start (a parallel run's items, one model step's tool calls)
takes a slot with :meth:`Connection.reserve` *before* it creates a producer's task and hands
the slot to it: the producers waiting for a slot are items of a list, not tasks parked on the
limiter (a few KiB each, tens of thousands for one large spec).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from streams.errors import LimitExceededError
from streams.limiter import CountedLimiter

__all__ = ["Connection", "ConnectionStatistics", "ProducerSlot"]


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    active_runs: int
    producers_running: int
    producers_waiting: int
    producers_peak: int
    max_producers: int


class ProducerSlot:
    """One slot of a connection's producer limiter, held until :meth:`release` (which may
    be called more than once: only the first call gives the slot back)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection

    @property
    def held(self) -> bool:
        return self._connection is not None

    def release(self, _: object = None) -> None:
        """Give the slot back (the argument lets it be a task's done callback)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection._release()


class Connection:
    """Limits shared by the runs one client connection started."""

    def __init__(
        self,
        key: str,
        *,
        max_producers: int = 8,
        max_runs: int = 32,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        if max_producers < 1 or max_runs < 1:
            raise ValueError("limits must be at least 1")
        self.key = key
        self.max_producers = max_producers
        self.max_runs = max_runs
        self._producers = CountedLimiter(max_producers, on_wait=on_wait)
        self._active_runs: set[str] = set()

    def add_run(self, run_id: str) -> None:
        if len(self._active_runs) >= self.max_runs:
            raise LimitExceededError(
                f"this connection already has {self.max_runs} active runs (the limit); "
                "wait for one to finish or cancel one"
            )
        self._active_runs.add(run_id)

    def remove_run(self, run_id: str) -> None:
        self._active_runs.discard(run_id)

    @property
    def waits(self) -> int:
        """Times a producer had to wait for a slot."""
        return self._producers.statistics().waits

    @property
    def idle(self) -> bool:
        return not self._active_runs

    async def reserve(self) -> ProducerSlot:
        """Wait for a free producer slot and take it, for a producer that will use it (see
        :meth:`producer_slot`); whoever holds it must :meth:`~ProducerSlot.release` it."""
        await self._producers.acquire()
        return ProducerSlot(self)

    def _release(self) -> None:
        self._producers.release()

    @contextlib.asynccontextmanager
    async def producer_slot(self, reserved: ProducerSlot | None = None) -> AsyncIterator[None]:
        """Hold one of the connection's producer slots while the body runs: ``reserved`` if
        given (taken by :meth:`reserve`), else one waited for now. Released on every exit."""
        slot = reserved if reserved is not None else await self.reserve()
        try:
            yield
        finally:
            slot.release()

    def statistics(self) -> ConnectionStatistics:
        producers = self._producers.statistics()
        return ConnectionStatistics(
            active_runs=len(self._active_runs),
            producers_running=producers.borrowed_tokens,
            producers_waiting=producers.tasks_waiting,
            producers_peak=producers.peak_borrowed,
            max_producers=self.max_producers,
        )
