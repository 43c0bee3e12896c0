"""A circuit breaker per upstream route.

States::

    closed ──(failure_threshold failures in a row)──▶ open
    open ──(reset_timeout passed)──▶ half-open: one probe request goes through
    half-open ──probe succeeds──▶ closed
    half-open ──probe fails──▶ open (for another reset_timeout)

While open, requests fail at once with :class:`~streams.errors.CircuitOpenError` instead of
waiting on an upstream that is down.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from streams.errors import CircuitOpenError

__all__ = ["BreakerState", "BreakerStatistics", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    state: BreakerState
    consecutive_failures: int
    opened: int  # times it has opened


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._opened = 0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            return BreakerState.HALF_OPEN
        return self._state

    def before_request(self) -> bool:
        """Raise :class:`CircuitOpenError` unless a request may go to the upstream now.

        Returns True when this request is the half-open probe: its caller passes that to
        :meth:`record_success` / :meth:`record_failure` (or calls :meth:`release_probe`), so
        a straggler that started before the breaker opened is never taken for the probe.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._state = BreakerState.HALF_OPEN
            self._probing = True
            return True
        wait = max(0.0, self.reset_timeout - (self._clock() - self._opened_at))
        raise CircuitOpenError(
            f"the circuit breaker of route {self.name!r} is open after repeated upstream "
            f"failures; the next try is in {wait:.1f}s",
            retry_after=wait,
        )

    def record_success(self, probe: bool = False) -> None:
        if probe:
            self._probing = False
            self._state = BreakerState.CLOSED
            self._failures = 0
        elif self._state is BreakerState.CLOSED:
            self._failures = 0

    def record_failure(self, probe: bool = False) -> None:
        self._failures += 1
        if probe:
            self._probing = False
            self._open()
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._opened += 1
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled): let another request probe."""
        self._probing = False

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(self.state, self._failures, self._opened)
