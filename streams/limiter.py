"""A counted limiter: a semaphore that also counts, for metrics, who had to wait for it.

Two bounds of the gateway are this: a connection's producers running at once
(:class:`streams.connection.Connection`) and an upstream route's requests in flight
(:class:`streams.upstream.client.UpstreamModel`). Both report how many are held, how many
wait now and how many acquisitions ever had to wait, the way anyio's
``CapacityLimiter.statistics()`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["CountedLimiter", "LimiterStatistics"]


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """What a :class:`CountedLimiter` holds and has held."""

    total_tokens: int  # acquisitions that may be held at once
    borrowed_tokens: int  # held now
    tasks_waiting: int  # waiting to acquire now
    waits: int  # acquisitions that had to wait, since the limiter was made
    peak_borrowed: int  # most held at once, since the limiter was made


class CountedLimiter:
    """At most ``total_tokens`` holders at once; waiters are served in order (an
    :class:`asyncio.Semaphore` underneath).

    ``on_wait`` is called, before it waits, by every acquisition that has to wait (the
    gateway counts waits across all connections with it).
    """

    __slots__ = ("_borrowed", "_on_wait", "_peak", "_semaphore", "_waiting", "_waits", "total")

    def __init__(self, total_tokens: int, *, on_wait: Callable[[], None] | None = None) -> None:
        if total_tokens < 1:
            raise ValueError("a limiter needs at least one token")
        self.total = total_tokens
        self._semaphore = asyncio.Semaphore(total_tokens)
        self._on_wait = on_wait
        self._borrowed = 0
        self._waiting = 0
        self._waits = 0
        self._peak = 0

    def locked(self) -> bool:
        """Whether an acquisition now would have to wait."""
        return self._semaphore.locked()

    async def acquire(self) -> None:
        """Take a token, waiting for one if none is free; whoever took it must
        :meth:`release` it."""
        if self._semaphore.locked():
            self._waits += 1
            if self._on_wait is not None:
                self._on_wait()
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        self._borrowed += 1
        self._peak = max(self._peak, self._borrowed)

    def release(self) -> None:
        """Give a token back."""
        self._borrowed -= 1
        self._semaphore.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def statistics(self) -> LimiterStatistics:
        """What the limiter holds now and has held."""
        return LimiterStatistics(
            total_tokens=self.total,
            borrowed_tokens=self._borrowed,
            tasks_waiting=self._waiting,
            waits=self._waits,
            peak_borrowed=self._peak,
        )
