"""The long-lived objects of one gateway app, made by the lifespan."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.connection import Connection
from streams.runs import RunManager

from .auth import KeyRing, StreamTokens
from .metrics import GatewayMetrics
from .quotas import KeyQuotas
from .settings import Settings


@dataclass
class GatewayState:
    settings: Settings
    manager: RunManager
    keys: KeyRing
    tokens: StreamTokens
    quotas: KeyQuotas
    # Set when the gateway starts draining (SIGTERM): no new runs, readiness false.
    shutdown: asyncio.Event
    metrics: GatewayMetrics
    # Set once draining is over (every run has ended): open streams then get a short grace
    # to deliver their last events and are closed.
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    # A connection lives as long as a run (retained in the manager) refers to it.
    _connections: weakref.WeakValueDictionary[str, Connection] = field(
        default_factory=weakref.WeakValueDictionary
    )
    _ws_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Readers that went away, by (channel, reason): done, client, slow, shutdown.
    reader_closes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # Streams open now, by channel ("sse", "ws").
    open_streams: collections.Counter[str] = field(default_factory=collections.Counter)
    _connection_waits: int = 0

    def connection_waits(self) -> int:
        return self._connection_waits

    def _count_wait(self) -> None:
        self._connection_waits += 1

    @contextlib.contextmanager
    def stream_slot(self, owner: str | None, channel: str) -> Iterator[None]:
        """One of ``owner``'s stream slots, counted as an open stream of ``channel``."""
        with self.quotas.stream(owner):
            self.open_streams[channel] += 1
            try:
                yield
            finally:
                self.open_streams[channel] -= 1

    def record_close(self, channel: str, reason: str) -> None:
        self.reader_closes[channel, reason] += 1

    def connection(self, key: str) -> Connection:
        """The :class:`Connection` for ``key``, made on first use."""
        connection = self._connections.get(key)
        if connection is None:
            connection = Connection(
                key,
                max_producers=self.settings.max_producers_per_connection,
                max_runs=self.settings.max_runs_per_connection,
                on_wait=self._count_wait,
            )
            self._connections[key] = connection
        return connection

    def new_ws_connection(self) -> Connection:
        return self.connection(f"ws:{next(self._ws_ids)}")
