"""The long-lived objects of one gateway app, made by the lifespan."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import weakref
from dataclasses import dataclass, field

from gateway.auth import KeyRing, StreamTokens
from gateway.limits.quotas import KeyQuotas
from gateway.limits.redis_quotas import RedisKeyQuotas
from gateway.settings import Settings
from gateway.streaming.sse import OpenStreams
from gateway.telemetry.metrics import GatewayMetrics
from gateway.transport.connections import ConnectionStats
from streams.cluster.backend import ClusterBackend
from streams.connection import Connection
from streams.runs.manager import UNCHECKED, RunManager, _Unchecked
from streams.runs.run import Run


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

    # Every open SSE stream, stopped together once the gateway has drained.
    sse_streams: OpenStreams = field(default_factory=OpenStreams)
    ws_sessions: OpenStreams = field(default_factory=OpenStreams)
    # With Redis (several instances): the registry, and the limits held across instances.
    cluster: ClusterBackend | None = None
    shared_quotas: RedisKeyQuotas | None = None
    # The server's connections: how many are open, and those it let go by reason.
    connections: ConnectionStats = field(default_factory=ConnectionStats)

    def run_slot(self, owner: str | None) -> RunSlot:
        """One of ``owner``'s active-run slots (not taken yet)."""
        return RunSlot(self, owner)

    def stream_slot(self, owner: str | None, channel: str) -> StreamSlot:
        """One of ``owner``'s stream slots, counted as an open stream of ``channel`` while
        held (not taken yet)."""
        return StreamSlot(self, owner, channel)

    async def count_run_start(self, owner: str | None) -> None:
        """Count a run start against ``owner``'s rate (raises when over it)."""
        if self.shared_quotas is not None:
            await self.shared_quotas.start_run(owner)
        else:
            self.quotas.start_run(owner)

    async def find_run(self, run_id: str, owner: str | _Unchecked | None = UNCHECKED) -> Run:
        """The run, on this instance or (with Redis) on another one."""
        if self.cluster is not None:
            return await self.cluster.get(run_id, owner)
        return self.manager.get(run_id, owner)

    async def cancel_run(
        self, run_id: str, reason: str, owner: str | _Unchecked | None = UNCHECKED
    ) -> Run:
        """Cancel the run wherever it runs."""
        if self.cluster is not None:
            return await self.cluster.cancel(run_id, reason, owner)
        return self.manager.cancel(run_id, reason, owner)

    @property
    def ready(self) -> bool:
        if self.shutdown.is_set() or self.manager.closing:
            return False
        return self.cluster is None or self.cluster.available

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


class StreamSlot:
    """One of an owner's open-stream slots: :meth:`take` it (raises when the owner's limit
    is reached, or the shared store is gone), :meth:`release` it on every way the stream
    ends. One small object per open stream, where nested context managers cost several
    generators and frames for as long as the stream is open."""

    __slots__ = ("_channel", "_owner", "_shared", "_state", "held")

    def __init__(self, state: GatewayState, owner: str | None, channel: str) -> None:
        self._state = state
        self._owner = owner
        self._channel = channel
        self._shared: contextlib.AbstractAsyncContextManager[None] | None = None
        self.held = False

    async def take(self) -> None:
        if self.held:
            raise RuntimeError("this stream slot is taken already")
        state = self._state
        if state.shared_quotas is not None:
            shared = state.shared_quotas.stream(self._owner)
            await shared.__aenter__()
            self._shared = shared
        else:
            state.quotas.take_stream(self._owner)
        self.held = True
        state.open_streams[self._channel] += 1

    async def release(self) -> None:
        """Give the slot back; a slot not held is left alone."""
        if not self.held:
            return
        self.held = False
        self._state.open_streams[self._channel] -= 1
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.__aexit__(None, None, None)
        else:
            self._state.quotas.release_stream(self._owner)


class RunSlot:
    """One of an owner's active-run slots: :meth:`take` it before the run starts (raises when
    the owner's limit is reached, or the shared store is gone), :meth:`release` it when the
    run ends (a run's :meth:`~streams.runs.run.Run.on_end` callback), or if it never starts."""

    __slots__ = ("_owner", "_shared", "_state", "held")

    def __init__(self, state: GatewayState, owner: str | None) -> None:
        self._state = state
        self._owner = owner
        self._shared: str | None = None  # the slot's id in Redis
        self.held = False

    async def take(self) -> None:
        if self.held:
            raise RuntimeError("this run slot is taken already")
        state = self._state
        if state.shared_quotas is not None:
            self._shared = await state.shared_quotas.take_active_run(self._owner)
        else:
            state.quotas.take_active_run(self._owner)
        self.held = True

    def release(self, _run: object = None) -> None:
        """Give the slot back; a slot not held is left alone. Never waits (with Redis, a task
        of the shared quotas' own tells Redis)."""
        if not self.held:
            return
        self.held = False
        shared, self._shared = self._shared, None
        if shared is not None:
            assert self._state.shared_quotas is not None
            self._state.shared_quotas.release_active_run(self._owner, shared)
        else:
            self._state.quotas.release_active_run(self._owner)
