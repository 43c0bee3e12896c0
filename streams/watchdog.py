"""A deadline per operation for a stream of operations (reads of an upstream body, sends
of an SSE response): the deadline moves on every one and rarely fires.

``asyncio.timeout_at`` around each one arms a loop timer and cancels it again every time
(about 4 µs with uvloop, a seventh of a chunk's whole cost through the gateway). The
watchdog keeps one timer: moving the deadline later is a float assignment, and the timer,
when it fires early, re-arms itself for the deadline as it now is.

It only ever cancels the task while the task is inside :meth:`Watchdog.wait`: upstream
reads are made by an async generator whose consumer runs in the same task between reads,
and a timeout must not land in the consumer's code. A stream that moves to another task
(a model group's race reads a route's stream up to its first output in a task of its own,
then hands it to the step's) says so with :meth:`Watchdog.rebind`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Watchdog"]

T = TypeVar("T")


class Watchdog:
    """Times out :meth:`wait` calls with :class:`TimeoutError`, like ``asyncio.timeout_at``
    around each of them, with one timer for the whole stream.

    States: idle (no wait in progress; a timer that fires only disarms itself), waiting
    (a timer that fires at or after the deadline cancels the task), expired (the cancel it
    sent is turned into ``TimeoutError`` at the wait). Call :meth:`close` when done.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Watchdog must be used inside a task")
        self._task = task
        self._when = math.inf
        # The armed timer and the time it was armed for. Kept here, not asked of the handle:
        # uvloop's call_at returns a plain Handle, without when(), for a time already past.
        self._handle: asyncio.Handle | None = None
        self._armed_for = math.inf
        self._waiting = False
        self._expired = False
        self._cancelling = 0

    async def wait(self, awaitable: Awaitable[T], deadline: float) -> T:
        """Await ``awaitable``; ``TimeoutError`` if ``deadline`` (loop time) passes first."""
        self._when = deadline
        if self._handle is None or self._armed_for > deadline:
            self._arm(deadline)
        self._waiting = True
        self._cancelling = self._task.cancelling()
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours if no one else asked for a cancel meanwhile (asyncio.Timeout's rule).
            if self._expired and self._task.uncancel() <= self._cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._waiting = False
            self._expired = False

    def rebind(self) -> None:
        """The waits from now on are the current task's (not asked at every wait: a call
        per chunk of every stream, for what happens once, in a model group's race)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Watchdog must be used inside a task")
        self._task = task

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed_for = math.inf

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._fire)
        self._armed_for = when

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = math.inf
        if not self._waiting or self._expired:
            return  # the next wait arms a timer for its own deadline
        if self._loop.time() < self._when:
            self._arm(self._when)
            return
        self._expired = True
        self._task.cancel()
