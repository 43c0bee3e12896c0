"""A run: one unit of work a client started, and its state machine::

    queued ──▶ running ──▶ completed
       │          ├──────▶ failed
       └──────────┴──────▶ cancelled

A terminal state is final, and its event (``run.completed`` / ``run.failed`` /
``run.cancelled``) is the last one of the run's log. :class:`Run` makes every transition
itself (:meth:`Run.begin`, :meth:`Run.finish`), and keeps the client tool calls it waits for
(:meth:`Run.awaiting_client_tool`, :meth:`Run.resolve_client_tool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.approvals import ApprovalAnswer, ApprovalRequest, check_arguments
from streams.connection import Connection
from streams.errors import (
    ApprovalAnsweredError,
    InvalidRequestError,
    NotFoundError,
    RunFinishedError,
    ToolError,
)
from streams.events import EventType
from streams.log import EventLog
from streams.spec import OnDisconnect, RunSpec

__all__ = ["ProducerInfo", "Run", "RunStatus", "is_run_id", "new_run_id"]

# One logger for the whole package, under the name it has always had.
logger = logging.getLogger("streams.runs")

# What new_run_id makes: "run_" + secrets.token_hex(8).
_RUN_ID = re.compile(r"run_[0-9a-f]{16}")


def new_run_id() -> str:
    """A fresh, unguessable run id."""
    return "run_" + secrets.token_hex(8)


def is_run_id(value: str) -> bool:
    """Whether ``value`` has the shape of a run id. A client's id is checked before it goes
    into a key name of the shared store: ``<id>:events`` names a run's event stream."""
    return _RUN_ID.fullmatch(value) is not None


class RunStatus(enum.StrEnum):
    """Where a run is in its state machine (see the module doc)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


# The event that ends a run in each terminal state.
_TERMINAL_EVENTS: Mapping[RunStatus, EventType] = {
    RunStatus.COMPLETED: EventType.RUN_COMPLETED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}

ProducerStatus = Literal["queued", "running", "completed", "failed", "cancelled"]


@dataclass(slots=True)
class ProducerInfo:
    """What the run's snapshot says about one producer."""

    id: str
    kind: Literal["model", "tool", "client_tool"]
    name: str
    status: ProducerStatus = "queued"
    started_at: float | None = None
    ended_at: float | None = None
    # A model group's step: each route's try, as it ended (Attempt.to_dict()), in order.
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
        if self.attempts:
            info["attempts"] = self.attempts
        return info


class Run:
    """One run: its spec, state, log, producers and readers. Created by
    :class:`~streams.runs.manager.RunManager`."""

    def __init__(
        self,
        run_id: str,
        spec: RunSpec,
        log: EventLog,
        connection: Connection,
        on_disconnect: OnDisconnect,
        owner: str | None = None,
    ) -> None:
        self.id = run_id
        self.owner = owner  # the API key's name that started it; None when the gateway is open
        self.spec = spec
        self.log = log
        self.connection = connection
        self.on_disconnect: OnDisconnect = on_disconnect
        self.status = RunStatus.QUEUED
        self.created_at = time.time()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.output: Any = None
        self.error: dict[str, str] | None = None
        self.cancel_reason: str | None = None
        self.abort_error: dict[str, str] | None = None  # ends a cancel as run.failed
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.producers: dict[str, ProducerInfo] = {}
        self.readers = 0
        self.task: asyncio.Task[None] | None = None
        self.client_tool_names = frozenset(t.name for t in spec.client_tools)
        self._pending_client_tools: dict[str, asyncio.Future[Any]] = {}
        # Calls waiting for a person's answer, and the calls answered (a second answer: 409).
        self._pending_approvals: dict[
            str, tuple[ApprovalRequest, asyncio.Future[ApprovalAnswer]]
        ] = {}
        self._answered_approvals: set[str] = set()
        self._call_ids = itertools.count(1)
        self._done = asyncio.Event()
        self._producer_watch: Callable[[ProducerInfo], None] | None = None
        self._end_callbacks: list[Callable[[Run], None]] = []

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    async def wait(self) -> None:
        """Wait until the run has reached a terminal state."""
        await self._done.wait()

    def on_end(self, callback: Callable[[Run], None]) -> None:
        """Call ``callback`` once the run has ended (at once if it has), whichever way: it
        gives back what was taken for the run (its owner's active-run slot)."""
        if self._done.is_set():
            callback(self)
        else:
            self._end_callbacks.append(callback)

    # -- transitions ------------------------------------------------------------------------

    def begin(self) -> None:
        """``queued`` → ``running``."""
        self.status = RunStatus.RUNNING
        self.started_at = time.time()

    def cancel(self, reason: str) -> None:
        """Cancel the run's task group; its log ends with ``run.cancelled`` and ``reason``
        (the first reason given wins). Raises :class:`~streams.errors.RunFinishedError` once
        the run has ended."""
        if self.done:
            raise RunFinishedError(f"run {self.id} has already {self.status.value}")
        if self.cancel_reason is None:
            self.cancel_reason = reason
            assert self.task is not None
            # A task cancelled before its first step never runs its body (so it could not
            # log run.cancelled): a queued run sees cancel_reason when it starts instead.
            if self.status is not RunStatus.QUEUED:
                self.task.cancel(reason)

    async def finish(
        self, status: RunStatus, data: Mapping[str, Any], *, retire: Callable[[Run], None]
    ) -> None:
        """Reach the terminal ``status``: its event (with ``data``; ``data["error"]`` is the
        run's error when it failed) ends the log, unless the log has ended already.

        Then, whatever happened to the log: ``retire(self)`` (its manager's bookkeeping),
        :meth:`wait` returns, and the :meth:`on_end` callbacks run.
        """
        if not status.is_terminal:
            raise ValueError(f"{status.value} is not a terminal state")
        if status is RunStatus.FAILED:
            self.error = data["error"]
        self.status = status
        self.ended_at = time.time()
        try:
            if not self.log.ended:
                await self.log.append(_TERMINAL_EVENTS[status], None, data)
            # Whoever waits for the run reads its whole log next: it must all be visible
            # (with a shared store, written there).
            await self.log.settled()
        finally:
            # Whoever waits for the run wakes after its terminal event is in the log.
            retire(self)
            self._done.set()
            callbacks, self._end_callbacks = self._end_callbacks, []
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:  # one callback's bug must not keep the others from running
                    logger.exception("a callback at the end of run %s failed", self.id)
            if not self.readers:
                self.log.pack()  # retained for its TTL, most likely unread

    # -- producers --------------------------------------------------------------------------

    def next_call_id(self) -> str:
        # Unique beyond this run: a conversation carried on across runs (AG-UI threads,
        # OpenAI-style clients) must never see the same tool call id twice.
        return f"call_{self.id.removeprefix('run_')[:8]}_{next(self._call_ids)}"

    def add_producer(self, info: ProducerInfo) -> None:
        """``info`` is one of the run's producers from now on."""
        self.producers[info.id] = info
        self.producer_changed(info)

    def watch_producers(self, callback: Callable[[ProducerInfo], None]) -> None:
        """Call ``callback`` with every producer the run has now, and from then on with each
        producer whose state changed (a shared store writes only what changed)."""
        self._producer_watch = callback
        for info in self.producers.values():
            callback(info)

    def producer_changed(self, info: ProducerInfo) -> None:
        """``info`` was added to :attr:`producers` or its state changed."""
        if self._producer_watch is not None:
            self._producer_watch(info)

    # -- client tools -----------------------------------------------------------------------

    @contextlib.contextmanager
    def awaiting_client_tool(self, call_id: str) -> Iterator[asyncio.Future[Any]]:
        """The future the client's result for ``call_id`` resolves
        (:meth:`resolve_client_tool`), while the block runs: the call is pending until then."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending_client_tools[call_id] = future
        try:
            yield future
        finally:
            del self._pending_client_tools[call_id]

    def resolve_client_tool(
        self, call_id: str, output: Any = None, error: str | None = None
    ) -> None:
        """Deliver the client's result for a ``client_tool.requested`` call."""
        future = self._pending_client_tools.get(call_id)
        if future is None or future.done():
            raise InvalidRequestError(
                f"run {self.id} is not waiting for a result of call {call_id!r}"
            )
        if error is not None:
            future.set_exception(ToolError(error))
        else:
            future.set_result(output)

    # -- approvals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def awaiting_approval(
        self, request: ApprovalRequest
    ) -> Iterator[asyncio.Future[ApprovalAnswer]]:
        """The future a person's answer to ``request`` resolves (:meth:`answer_approval`),
        while the block runs. From the first request on, the run no longer needs a reader:
        its last reader leaving does not cancel it (it waits for someone to come back)."""
        future: asyncio.Future[ApprovalAnswer] = asyncio.get_running_loop().create_future()
        self._pending_approvals[request.call_id] = (request, future)
        self.on_disconnect = "continue"
        try:
            yield future
        finally:
            del self._pending_approvals[request.call_id]
            self._answered_approvals.add(request.call_id)

    def answer_approval(self, call_id: str, answer: ApprovalAnswer) -> None:
        """Deliver a person's answer to a waiting call: :class:`ApprovalAnsweredError` if it
        was answered already, :class:`NotFoundError` if it never waited, and
        :class:`InvalidRequestError` for edited arguments that do not fit the tool's schema
        (the call still waits)."""
        pending = self._pending_approvals.get(call_id)
        if pending is None or pending[1].done():
            if pending is not None or call_id in self._answered_approvals:
                raise ApprovalAnsweredError(
                    f"the approval of call {call_id!r} of run {self.id} is answered already"
                )
            raise NotFoundError(f"run {self.id} has no call {call_id!r} waiting for approval")
        request, future = pending
        if answer.arguments is not None:
            check_arguments(answer.arguments, request.parameters)
        future.set_result(answer)

    def pending_approvals(self) -> list[dict[str, Any]]:
        """The calls waiting for an answer (``tool.approval_requested``'s fields), in order."""
        return [
            request.to_dict()
            for request, future in self._pending_approvals.values()
            if not future.done()
        ]

    def snapshot(self, *, producers: bool = True) -> dict[str, Any]:
        """The run's current state, as ``GET /v1/runs/{id}`` and ``stream.gap`` show it
        (without its producers if not ``producers``: what grows with them)."""
        snapshot = {
            "run_id": self.id,
            "kind": self.spec.kind,
            "status": self.status.value,
            "model": self.spec.model,
            "on_disconnect": self.on_disconnect,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "last_seq": self.log.last_seq,
            "output": self.output,
            "error": self.error,
            "cancel_reason": self.cancel_reason,
            "usage": dict(self.usage),
            "pending_client_tools": sorted(self._pending_client_tools),
            "pending_approvals": self.pending_approvals(),
            "readers": self.readers,
            "owner": self.owner,
            "metadata": self.spec.metadata,
        }
        if producers:
            snapshot["producers"] = [p.to_dict() for p in self.producers.values()]
        return snapshot
