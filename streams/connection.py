"""Per-connection concurrency limits.

A :class:`Connection` stands for one client connection (a WebSocket session, or the TCP
connection an HTTP request came on). It bounds the producers running at once for the runs
it started (a semaphore) and the number of those runs still active.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .errors import LimitExceededError


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    active_runs: int
    producers_running: int
    producers_waiting: int
    producers_peak: int
    max_producers: int


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
        self._semaphore = asyncio.Semaphore(max_producers)
        self._active_runs: set[str] = set()
        self._running = 0
        self._waiting = 0
        self._peak = 0
        self.waits = 0  # times a producer had to wait for a slot
        self._on_wait = on_wait

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
    def idle(self) -> bool:
        return not self._active_runs

    @contextlib.asynccontextmanager
    async def producer_slot(self) -> AsyncIterator[None]:
        """Hold one of the connection's producer slots while the body runs."""
        if self._semaphore.locked():
            self.waits += 1
            if self._on_wait is not None:
                self._on_wait()
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        self._peak = max(self._peak, self._running)
        try:
            yield
        finally:
            self._running -= 1
            self._semaphore.release()

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            active_runs=len(self._active_runs),
            producers_running=self._running,
            producers_waiting=self._waiting,
            producers_peak=self._peak,
            max_producers=self.max_producers,
        )
