"""Cleanup that must finish even when the task that needs it is cancelled.

Closing a pub/sub connection or giving a slot back to a shared store has to happen whatever
ended the work, cancellation included, yet nothing may wait on it for ever. Two forms:

- :func:`finish_shielded`: await one cleanup shielded from the caller's cancellation and
  bounded by a timeout; a cancel that came meanwhile is raised once the cleanup is over.
- :class:`Cleanups`: cleanups that may outlive their caller (a run's end cannot wait on a
  store; a cancelled stream need not). Each is a task this object owns, bounded by its
  timeout; a caller's cancellation interrupts only its own wait; :meth:`Cleanups.aclose`
  awaits whatever is still under way, so none is left unowned at shutdown.

A cleanup that fails is logged, never raised: it must not mask what ended the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Cleanups", "finish_shielded"]

logger = logging.getLogger("streams.cleanup")


Expected = tuple[type[Exception], ...]


async def _bounded(
    cleanup: Coroutine[Any, Any, object], timeout: float, name: str, expected: Expected
) -> None:
    try:
        async with asyncio.timeout(timeout):
            await cleanup
    except expected:
        pass  # the failure its caller expects (the peer is gone): nothing to report
    except Exception:  # TimeoutError too, unless expected: the cleanup gave up
        logger.warning("cleanup %s failed", name, exc_info=True)


async def finish_shielded(
    cleanup: Coroutine[Any, Any, object],
    *,
    timeout: float,
    name: str = "cleanup",
    expected: Expected = (),
) -> None:
    """Run ``cleanup`` to its end (at most ``timeout`` seconds) even if the calling task is
    cancelled meanwhile; then re-raise that cancellation. Never raises anything else: a
    failure is logged, unless it is one of ``expected`` (and a timeout is one)."""
    task = asyncio.get_running_loop().create_task(
        _bounded(cleanup, timeout, name, (TimeoutError, *expected)), name=name
    )
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            # The task is bounded by ``timeout`` itself: this wait ends when it does.
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            # Keep waiting for the cleanup; the caller's cancel is raised once it is over.
            cancelled = error
    if cancelled is not None:
        raise cancelled


class Cleanups:
    """Owner of cleanup tasks, each bounded by ``timeout`` seconds.

    :meth:`start` one that nobody waits for, or :meth:`run` one whose end the caller waits
    for unless it is cancelled; :meth:`aclose` (at shutdown) waits for those under way.
    """

    def __init__(self, *, timeout: float, name: str = "cleanup") -> None:
        self._timeout = timeout
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, cleanup: Coroutine[Any, Any, object]) -> asyncio.Task[None]:
        """Run ``cleanup`` in a task of this object's own, without waiting for it."""
        task = asyncio.get_running_loop().create_task(
            _bounded(cleanup, self._timeout, self._name, ()), name=self._name
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, cleanup: Coroutine[Any, Any, object]) -> None:
        """Run ``cleanup`` and wait for its end. A cancellation of the caller interrupts
        only the wait (and is raised): the cleanup goes on, owned by this object."""
        await asyncio.shield(self.start(cleanup))

    @property
    def pending(self) -> int:
        """How many cleanups are under way."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Wait for every cleanup under way (each bounded by the timeout)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
