"""Per-key quotas: runs started per minute (a token bucket), streams open at once, and runs
active at once.

Every stream slot taken is given back on every exit path (a context manager), so no slot
leaks whatever way a stream ends; an active-run slot is given back when its run ends (see
:class:`gateway.state.RunSlot`).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streams.errors import LimitExceededError, RateLimitedError


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


class KeyQuotas:
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

    def start_run(self, owner: str | None) -> None:
        """Count a run start against ``owner``'s rate, or raise :class:`RateLimitedError`."""
        now = self._clock()
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = TokenBucket.full(
                self._runs_per_second, self._burst, now
            )
        wait = bucket.take(now)
        if wait:
            raise RateLimitedError(
                f"too many runs started with this key (limit {self._runs_per_second * 60:g} "
                f"per minute); retry in {wait:.1f}s",
                retry_after=wait,
            )

    @contextlib.contextmanager
    def stream(self, owner: str | None) -> Iterator[None]:
        """Hold one of ``owner``'s stream slots while the body runs."""
        self.take_stream(owner)
        try:
            yield
        finally:
            self.release_stream(owner)

    def take_stream(self, owner: str | None) -> None:
        """Take one of ``owner``'s stream slots, or raise :class:`LimitExceededError`."""
        if self._streams[owner] >= self._max_streams:
            raise LimitExceededError(
                f"this key already has {self._max_streams} streams open (the limit); close "
                "one first"
            )
        self._streams[owner] += 1

    def release_stream(self, owner: str | None) -> None:
        """Give back a slot :meth:`take_stream` took."""
        self._streams[owner] -= 1
        if not self._streams[owner]:
            del self._streams[owner]

    def open_streams(self, owner: str | None) -> int:
        return self._streams[owner]

    def take_active_run(self, owner: str | None) -> None:
        """Take one of ``owner``'s active-run slots, or raise :class:`LimitExceededError`."""
        if self._active_runs[owner] >= self._max_active_runs:
            raise active_runs_exceeded(self._max_active_runs)
        self._active_runs[owner] += 1

    def release_active_run(self, owner: str | None) -> None:
        """Give back a slot :meth:`take_active_run` took."""
        self._active_runs[owner] -= 1
        if not self._active_runs[owner]:
            del self._active_runs[owner]

    def active_runs(self, owner: str | None) -> int:
        return self._active_runs[owner]


def active_runs_exceeded(limit: int) -> LimitExceededError:
    return LimitExceededError(
        f"this key already has {limit} active runs (the limit, max_active_runs_per_key); wait "
        "for one to end or cancel one"
    )
