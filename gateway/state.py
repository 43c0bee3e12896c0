"""The long-lived objects of one gateway app, made by the lifespan."""

from __future__ import annotations

import asyncio
import collections
import itertools
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.auth import KeyRing, StreamTokens
from gateway.limits.quotas import Quotas, Slot
from gateway.settings import Settings
from gateway.streaming.open_streams import OpenStreams
from gateway.telemetry.metrics import GatewayMetrics
from gateway.transport.connections import ConnectionStats
from gateway.worker import Worker
from streams.approvals import ApprovalAnswer, answered_by
from streams.chats import ChatDirectory, MemoryChatDirectory, chat_ttl
from streams.connection import Connection
from streams.directory import RunDirectory
from streams.errors import NotFoundError
from streams.runs.manager import RunManager
from streams.view import RunView

__all__ = ["GatewayState", "RunSlot", "StreamSlot"]


@dataclass
class GatewayState:
    settings: Settings
    manager: RunManager
    # Where runs are found and cancelled: this instance's, or (with Redis) any instance's.
    runs: RunDirectory
    keys: KeyRing
    tokens: StreamTokens
    # The per-key limits: this process's, or (with Redis) held across instances.
    quotas: Quotas
    # Set when the gateway starts draining (SIGTERM): no new runs, readiness false.
    shutdown: asyncio.Event
    metrics: GatewayMetrics
    # Set once draining is over (every run has ended): open streams then get a short grace
    # to deliver their last events and are closed.
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    # The AI SDK face's chats (the stores' own: with Redis, every instance's).
    chats: ChatDirectory = field(default_factory=lambda: MemoryChatDirectory(chat_ttl(600.0)))
    # Which worker of a ``--workers N`` gateway this is (None: the gateway is one process).
    worker: Worker | None = None
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
        await self.quotas.start_run(owner)

    async def take_run_start(self, run: RunSlot, stream: StreamSlot | None = None) -> None:
        """Take ``stream`` (if any), ``run`` and a token of the run rate of their owner's at
        once: with a shared store one round trip, not three before the run can start.
        Raises as each would, having taken nothing."""
        taken = await self.quotas.take_run_start(run.owner, stream=stream is not None)
        run.hold(taken.run)
        if stream is not None:
            assert taken.stream is not None
            stream.hold(taken.stream)

    async def find_run(self, run_id: str, owner: str | None) -> RunView:
        """``owner``'s run, on this instance or (with Redis) on another one."""
        return await self.runs.get(run_id, owner)

    async def find_run_unchecked(self, run_id: str) -> RunView:
        """The run whoever owns it: for a caller that proves access otherwise."""
        return await self.runs.get_unchecked(run_id)

    async def cancel_run(self, run_id: str, reason: str, owner: str | None) -> RunView:
        """Cancel ``owner``'s run wherever it runs."""
        return await self.runs.cancel(run_id, reason, owner)

    async def answer_approval(
        self,
        run_id: str,
        call_id: str,
        caller: str | None,
        decision: Literal["approve", "deny"],
        reason: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Answer run ``run_id``'s call ``call_id`` waiting for approval as the API key
        ``caller``, wherever the run runs: only its owner or an approver key may (to anyone
        else the run is not found, as for every other run of another key)."""
        await self.approvable_run(run_id, caller)
        answer = ApprovalAnswer(
            decision, by=answered_by(caller), reason=reason, arguments=arguments
        )
        await self.runs.answer_approval(run_id, call_id, answer)

    async def approvable_run(self, run_id: str, caller: str | None) -> RunView:
        """Run ``run_id``, wherever it runs, if the API key ``caller`` may answer its
        approvals (see :meth:`may_answer`); else it is not found."""
        run = await self.runs.get_unchecked(run_id)
        if not self.may_answer(caller, run):
            raise NotFoundError(f"run {run_id} not found")
        return run

    def may_answer(self, caller: str | None, run: RunView) -> bool:
        """Whether the API key ``caller`` may answer ``run``'s approvals: its owner, or a key
        of ``approvers``."""
        return self.manager.limits.approvals.may_answer(caller, run.owner)

    @property
    def ready(self) -> bool:
        if self.shutdown.is_set() or self.manager.closing:
            return False
        return self.runs.available

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

    __slots__ = ("_channel", "_owner", "_slot", "_state", "held")

    def __init__(self, state: GatewayState, owner: str | None, channel: str) -> None:
        self._state = state
        self._owner = owner
        self._channel = channel
        self._slot: Slot | None = None  # the quotas' slot while held
        self.held = False

    @property
    def owner(self) -> str | None:
        return self._owner

    async def take(self) -> None:
        if self._slot is not None:
            raise RuntimeError("this stream slot is taken already")
        self.hold(await self._state.quotas.take_stream(self._owner))

    def hold(self, slot: Slot) -> None:
        """Hold ``slot``, taken from the quotas for this stream (see
        :meth:`GatewayState.take_run_start`)."""
        if self._slot is not None:
            raise RuntimeError("this stream slot is taken already")
        self._slot = slot
        self.held = True
        self._state.open_streams[self._channel] += 1

    async def release(self) -> None:
        """Give the slot back; a slot not held is left alone."""
        slot, self._slot = self._slot, None
        if slot is None:
            return
        self.held = False
        self._state.open_streams[self._channel] -= 1
        await self._state.quotas.release_stream(self._owner, slot)


class RunSlot:
    """One of an owner's active-run slots: :meth:`take` it before the run starts (raises when
    the owner's limit is reached, or the shared store is gone), :meth:`release` it when the
    run ends (a run's :meth:`~streams.runs.run.Run.on_end` callback), or if it never starts."""

    __slots__ = ("_owner", "_slot", "_state", "held")

    def __init__(self, state: GatewayState, owner: str | None) -> None:
        self._state = state
        self._owner = owner
        self._slot: Slot | None = None  # the quotas' slot while held
        self.held = False

    @property
    def owner(self) -> str | None:
        return self._owner

    async def take(self) -> None:
        if self._slot is not None:
            raise RuntimeError("this run slot is taken already")
        self.hold(await self._state.quotas.take_active_run(self._owner))

    def hold(self, slot: Slot) -> None:
        """Hold ``slot``, taken from the quotas for this run (see
        :meth:`GatewayState.take_run_start`)."""
        if self._slot is not None:
            raise RuntimeError("this run slot is taken already")
        self._slot = slot
        self.held = True

    def release(self, _run: object = None) -> None:
        """Give the slot back; a slot not held is left alone. Never waits (with Redis, a task
        of the shared quotas' own tells Redis)."""
        slot, self._slot = self._slot, None
        if slot is not None:
            self.held = False
            self._state.quotas.release_active_run(self._owner, slot)
