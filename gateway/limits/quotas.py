"""Per-key quotas: runs started per minute (a token bucket), streams open at once, and runs
active at once.

Every stream slot taken is given back on every exit path (a context manager), so no slot
leaks whatever way a stream ends; an active-run slot is given back when its run ends (see
:class:`gateway.state.RunSlot`).

:class:`Quotas` is the interface; :class:`MemoryQuotas` holds the limits in this process
(the default), :class:`~gateway.limits.redis_quotas.RedisQuotas` across instances.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from streams.errors import LimitExceededError, RateLimitedError
from streams.statistics import StoreMetric, StoreStatistics

__all__ = [
    "MEMORY_SLOT",
    "MemoryQuotaStatistics",
    "MemoryQuotas",
    "Quotas",
    "RunStart",
    "Slot",
    "TokenBucket",
    "active_runs_exceeded",
    "open_streams_exceeded",
    "runs_rate_exceeded",
]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


#: A slot taken from a quotas store, given back to the store that took it.
Slot = str


@dataclass(frozen=True, slots=True)
class RunStart:
    """What :meth:`Quotas.take_run_start` took: the run's active-run slot and, if asked for,
    the stream slot of its reader."""

    run: Slot
    stream: Slot | None


class Quotas(Protocol):
    """Per-key quotas: runs started per minute, streams open at once, runs active at once.

    One interface whether the limits are this process's (:class:`MemoryQuotas`, the
    default) or held across instances in Redis
    (:class:`~gateway.limits.redis_quotas.RedisQuotas`). Use as an async context manager
    for as long as the gateway runs: a shared store renews the slots it holds meanwhile and
    gives them back on exit.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def start_run(self, owner: str | None) -> None:
        """Count a run start against ``owner``'s rate, or raise :class:`RateLimitedError`."""

    async def take_stream(self, owner: str | None) -> Slot:
        """Take one of ``owner``'s stream slots, or raise :class:`LimitExceededError`."""

    async def take_run_start(self, owner: str | None, *, stream: bool) -> RunStart:
        """All a run start takes, in this order, at once (with a shared store, one round
        trip): a stream slot if ``stream``, an active-run slot, a token of the run rate.
        Raises as :meth:`take_stream`, :meth:`take_active_run` or :meth:`start_run` would,
        having taken nothing (a start refused for one limit spends nothing of the next)."""

    async def release_stream(self, owner: str | None, slot: Slot) -> None:
        """Give back a slot :meth:`take_stream` took (even if the caller is cancelled
        meanwhile); never raises but CancelledError."""

    async def take_active_run(self, owner: str | None) -> Slot:
        """Take one of ``owner``'s active-run slots, or raise :class:`LimitExceededError`."""

    def release_active_run(self, owner: str | None, slot: Slot) -> None:
        """Give back a slot :meth:`take_active_run` took. Never waits (a run's end cannot):
        the one method that is not async."""

    async def open_streams(self, owner: str | None) -> int:
        """How many of ``owner``'s stream slots are held now."""

    async def active_runs(self, owner: str | None) -> int:
        """How many of ``owner``'s active-run slots are held now."""

    def statistics(self) -> StoreStatistics:
        """What the store reports about itself (read at scrape time: never waits)."""


@dataclass(frozen=True, slots=True)
class MemoryQuotaStatistics:
    """This process's quotas, over every owner."""

    open_streams: int
    active_runs: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def metrics(self) -> Sequence[StoreMetric]:
        return ()  # the process's own counts: the gateway's metrics show them already


# The one slot id of the memory store: its slots are counts, not names.
MEMORY_SLOT: Slot = "memory"


class MemoryQuotas:
    """Per-key quotas held in this process (a gateway without a shared store)."""

    def __init__(
        self,
        *,
        runs_per_minute: float,
        max_streams: int,
        max_active_runs: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runs_per_second = runs_per_minute / 60
        self._burst = max(1.0, runs_per_minute)
        self._max_streams = max_streams
        self._max_active_runs = max_active_runs
        self._clock = clock
        self._buckets: dict[str | None, TokenBucket] = {}
        self._streams: collections.Counter[str | None] = collections.Counter()
        self._active_runs: collections.Counter[str | None] = collections.Counter()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Nothing to give back: the counts go with the process."""

    async def start_run(self, owner: str | None) -> None:
        now = self._clock()
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = TokenBucket.full(
                self._runs_per_second, self._burst, now
            )
        wait = bucket.take(now)
        if wait:
            raise runs_rate_exceeded(self._runs_per_second * 60, wait)

    @contextlib.asynccontextmanager
    async def stream(self, owner: str | None) -> AsyncIterator[None]:
        """Hold one of ``owner``'s stream slots while the body runs."""
        slot = await self.take_stream(owner)
        try:
            yield
        finally:
            await self.release_stream(owner, slot)

    async def take_stream(self, owner: str | None) -> Slot:
        if self._streams[owner] >= self._max_streams:
            raise open_streams_exceeded(self._max_streams)
        self._streams[owner] += 1
        return MEMORY_SLOT

    async def take_run_start(self, owner: str | None, *, stream: bool) -> RunStart:
        streams = await self.take_stream(owner) if stream else None
        try:
            run = await self.take_active_run(owner)
            try:
                await self.start_run(owner)
            except BaseException:
                self.release_active_run(owner, run)
                raise
        except BaseException:
            if streams is not None:
                await self.release_stream(owner, streams)
            raise
        return RunStart(run, streams)

    async def release_stream(self, owner: str | None, slot: Slot = MEMORY_SLOT) -> None:
        self._streams[owner] -= 1
        if not self._streams[owner]:
            del self._streams[owner]

    async def open_streams(self, owner: str | None) -> int:
        return self._streams[owner]

    async def take_active_run(self, owner: str | None) -> Slot:
        if self._active_runs[owner] >= self._max_active_runs:
            raise active_runs_exceeded(self._max_active_runs)
        self._active_runs[owner] += 1
        return MEMORY_SLOT

    def release_active_run(self, owner: str | None, slot: Slot = MEMORY_SLOT) -> None:
        self._active_runs[owner] -= 1
        if not self._active_runs[owner]:
            del self._active_runs[owner]

    async def active_runs(self, owner: str | None) -> int:
        return self._active_runs[owner]

    def statistics(self) -> MemoryQuotaStatistics:
        return MemoryQuotaStatistics(
            open_streams=self._streams.total(), active_runs=self._active_runs.total()
        )


def runs_rate_exceeded(per_minute: float, retry_after: float) -> RateLimitedError:
    """The error of a run start past ``per_minute`` runs of its key (``runs_per_key_per_minute``),
    in every quotas store."""
    return RateLimitedError(
        f"too many runs started with this key (limit {per_minute:g} per minute); retry in "
        f"{retry_after:.1f}s",
        retry_after=retry_after,
    )


def open_streams_exceeded(limit: int) -> LimitExceededError:
    """The error of a stream past ``limit`` open streams of its key, in every quotas store."""
    return LimitExceededError(
        f"this key already has {limit} streams open (the limit); close one first"
    )


def active_runs_exceeded(limit: int) -> LimitExceededError:
    """The error of a run past ``limit`` active runs of its key, in every quotas store."""
    return LimitExceededError(
        f"this key already has {limit} active runs (the limit, max_active_runs_per_key); wait "
        "for one to end or cancel one"
    )
