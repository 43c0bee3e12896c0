"""The open streams of one app, so its shutdown can stop them all at once.

Shutdown comes in from the app, never a global: each SSE stream and WebSocket session adds a
way to stop itself here, and the app, once it has drained (its runs have ended), gives them a
grace period to deliver their last events and stops them all. One list for the app instead of
a watcher task per stream: an idle stream costs less.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

__all__ = ["OpenStreams"]


class OpenStreams:
    """How to stop each open stream of one app, so shutdown can stop them all at once."""

    def __init__(self) -> None:
        self._stops: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self.closed = False

    def add(self, stop: Callable[[], None]) -> int:
        if self.closed:  # opened while shutting down: stopped at once
            asyncio.get_running_loop().call_soon(stop)
        key = next(self._ids)
        self._stops[key] = stop
        return key

    def remove(self, key: int) -> None:
        self._stops.pop(key, None)

    def close_all(self) -> None:
        self.closed = True
        for stop in list(self._stops.values()):
            stop()

    def __len__(self) -> int:
        return len(self._stops)
