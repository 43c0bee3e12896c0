"""Runs and their lifecycle.

A :class:`Run` is one unit of work a client started. Its state machine::

    queued ──▶ running ──▶ completed
       │          ├──────▶ failed
       └──────────┴──────▶ cancelled

A terminal state is final, and its event (``run.completed`` / ``run.failed`` /
``run.cancelled``) is the last one of the run's log.

Each run is one supervisor task, owned by the :class:`RunManager`'s task group, with one
:class:`asyncio.TaskGroup` for its producers. Cancelling the run cancels the supervisor; the
task group then cancels every producer and waits for their cleanup (closing upstream
streams) before ``run.cancelled`` is appended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import structlog
from opentelemetry import trace

from streams.connection import Connection, ProducerSlot
from streams.errors import (
    GatewayError,
    InvalidRequestError,
    LimitExceededError,
    ModelOutputLimitError,
    NotFoundError,
    RunFinishedError,
    ShuttingDownError,
    ToolError,
    UpstreamProtocolError,
)
from streams.events import Event, EventType, error_payload
from streams.log import EventLog, MemoryEventLog, Retention
from streams.models import Model, ModelRegistry, TextDelta, ToolCallDelta, ToolCallStart, Usage
from streams.spec import OnDisconnect, ParallelModelCall, RunSpec
from streams.tools import ToolRegistry

logger = logging.getLogger("streams.runs")

T = TypeVar("T")


class _Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


UNCHECKED = _Unchecked.UNCHECKED  # internal callers that need no ownership check

# What RunManager.start makes: "run_" + secrets.token_hex(8).
_RUN_ID = re.compile(r"run_[0-9a-f]{16}")


def is_run_id(value: str) -> bool:
    """Whether ``value`` has the shape of a run id. A client's id is checked before it goes
    into a key name of the shared store: ``<id>:events`` names a run's event stream."""
    return _RUN_ID.fullmatch(value) is not None


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


# Longest tool name and call id a model may send (OpenAI and Anthropic allow 64 characters
# for a name and send ids of about 30): they become event fields and producer ids.
MAX_MODEL_NAME_LENGTH = 256


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Engine-wide settings for runs."""

    max_active_runs: int = 1000
    tool_timeout: float = 60.0
    client_tool_timeout: float = 120.0
    retention: Retention = field(default_factory=Retention)
    # What one model step may produce; past it the step fails (ModelOutputLimitError).
    max_tool_calls_per_step: int = 64
    max_step_text_bytes: int = 1024 * 1024
    max_tool_arguments_bytes: int = 64 * 1024


@dataclass(slots=True)
class _StepResult:
    text: str
    tool_calls: list[dict[str, Any]]  # OpenAI shape: {id, type, function: {name, arguments}}


class Run:
    """One run: its spec, state, log, producers and readers. Created by :class:`RunManager`."""

    remote = False  # a run another instance is running (see streams.cluster)

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

    def next_call_id(self) -> str:
        # Unique beyond this run: a conversation carried on across runs (AG-UI threads,
        # OpenAI-style clients) must never see the same tool call id twice.
        return f"call_{self.id.removeprefix('run_')[:8]}_{next(self._call_ids)}"

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
            "readers": self.readers,
            "owner": self.owner,
            "metadata": self.spec.metadata,
        }
        if producers:
            snapshot["producers"] = [p.to_dict() for p in self.producers.values()]
        return snapshot

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


class RunManager:
    """Starts, tracks, cancels and expires runs.

    Use as an async context manager: it owns the task group every run's supervisor lives in,
    and on exit cancels what still runs (reason ``shutdown``) and waits for it.
    """

    def __init__(
        self,
        *,
        models: ModelRegistry,
        tools: ToolRegistry,
        limits: RunLimits | None = None,
        log_factory: Callable[[str, Retention], EventLog] = MemoryEventLog,
        tracer: trace.Tracer | None = None,
        on_run_end: Callable[[Run], None] | None = None,
    ) -> None:
        self.tracer = tracer or trace.NoOpTracer()
        self._on_run_end = on_run_end  # the gateway's run-end log line and metrics
        self.models = models
        self.tools = tools
        self.limits = limits or RunLimits()
        self._log_factory = log_factory
        self._runs: dict[str, Run] = {}
        self._active: set[str] = set()
        self._expiry: collections.deque[tuple[float, str]] = collections.deque()
        self._expiry_added = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._closing = False
        self._idle = asyncio.Event()  # set while no run is active
        self._idle.set()
        self._counts = {status: 0 for status in RunStatus if status.is_terminal}

    async def __aenter__(self) -> RunManager:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._sweeper = self._task_group.create_task(self._sweep(), name="run-expiry")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close("shutdown")
        self._sweeper.cancel()
        assert self._task_group is not None
        await self._task_group.__aexit__(*exc_info)
        self._task_group = None

    # -- public API -----------------------------------------------------------------------

    def close(self, reason: str = "shutdown") -> None:
        """Take no new runs and cancel every active one with ``reason``."""
        self._closing = True
        for run_id in list(self._active):
            self.cancel(run_id, reason)

    async def drain(self, timeout: float, reason: str = "shutdown") -> None:
        """Take no new runs; give the active ones ``timeout`` seconds to finish, then cancel
        what is left with ``reason`` and wait for it to end."""
        self._closing = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            self.close(reason)
            await self._idle.wait()

    @property
    def closing(self) -> bool:
        return self._closing

    def start(
        self,
        spec: RunSpec,
        connection: Connection,
        *,
        default_on_disconnect: OnDisconnect,
        owner: str | None = None,
    ) -> Run:
        """Validate ``spec`` against what the gateway offers and schedule the run."""
        if self._closing or self._task_group is None:
            raise ShuttingDownError("the gateway is shutting down and takes no new runs")
        self._validate(spec)
        if len(self._active) >= self.limits.max_active_runs:
            raise LimitExceededError(
                f"the gateway is running {self.limits.max_active_runs} runs (its limit); "
                "try again shortly"
            )
        run_id = "run_" + secrets.token_hex(8)
        connection.add_run(run_id)
        run = Run(
            run_id,
            spec,
            self._log_factory(run_id, self.limits.retention),
            connection,
            spec.on_disconnect or default_on_disconnect,
            owner,
        )
        self._runs[run_id] = run
        self._active.add(run_id)
        self._idle.clear()
        run.task = self._task_group.create_task(self._supervise(run), name=f"run {run_id}")
        return run

    def get(self, run_id: str, owner: str | _Unchecked | None = UNCHECKED) -> Run:
        """The run ``run_id``. Given an ``owner``, a run of another owner is not found,
        exactly like a run that does not exist."""
        run = self._runs.get(run_id)
        if run is None or (owner is not UNCHECKED and run.owner != owner):
            raise NotFoundError(f"no run {run_id!r}")
        return run

    def cancel(self, run_id: str, reason: str, owner: str | _Unchecked | None = UNCHECKED) -> Run:
        """Cancel the run's task group; its log ends with ``run.cancelled`` and ``reason``."""
        run = self.get(run_id, owner)
        if run.done:
            raise RunFinishedError(f"run {run_id} has already {run.status.value}")
        if run.cancel_reason is None:
            run.cancel_reason = reason
            assert run.task is not None
            # A task cancelled before its first step never runs its body (so it could not
            # log run.cancelled): a queued run sees cancel_reason when it starts instead.
            if run.status is not RunStatus.QUEUED:
                run.task.cancel(reason)
        return run

    def abort(self, run_id: str, code: str, message: str) -> None:
        """Stop the run like a cancel, but end it with ``run.failed`` (``code``): the run
        cannot go on for a reason of the gateway's, not the client's."""
        run = self._runs.get(run_id)
        if run is None or run.done or run.cancel_reason is not None:
            return
        run.abort_error = {"code": code, "message": message}
        self.cancel(run_id, message)

    @property
    def active_run_ids(self) -> list[str]:
        return list(self._active)

    def attach_reader(self, run: Run) -> None:
        if run.remote:  # the run's instance does not know this instance's readers
            return
        run.readers += 1

    def detach_reader(self, run: Run) -> None:
        """A reader left. If it was the last and the run's policy is ``cancel``, cancel it."""
        if run.remote:
            return
        run.readers -= 1
        if run.readers == 0:
            if run.done:
                run.log.pack()  # retained for its TTL, most likely unread
            elif run.on_disconnect == "cancel":
                self.cancel(run.id, "last reader disconnected")

    def statistics(self) -> dict[str, Any]:
        return {
            "active_runs": len(self._active),
            "retained_runs": len(self._runs),
            "runs_by_status": {status.value: n for status, n in self._counts.items()},
        }

    # -- validation -------------------------------------------------------------------------

    def _validate(self, spec: RunSpec) -> None:
        if spec.parallel is not None:
            for item in spec.parallel:
                if isinstance(item, ParallelModelCall):
                    self.models.get(item.model)
                else:
                    self.tools.get(item.tool)
            return
        assert spec.model is not None
        self.models.get(spec.model)
        self.tools.require(spec.tools)

    # -- the supervisor ---------------------------------------------------------------------

    async def _supervise(self, run: Run) -> None:
        # Every log line of this run (and of its producers' tasks, which copy this context)
        # carries the run id.
        structlog.contextvars.bind_contextvars(run_id=run.id)
        attributes: dict[str, Any] = {"gateway.run.id": run.id, "gateway.run.kind": run.spec.kind}
        if run.spec.model:
            attributes["gen_ai.request.model"] = run.spec.model
        with self.tracer.start_as_current_span(
            "run", attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                await self._supervise_run(run)
            finally:
                span.set_attribute("gateway.run.status", run.status.value)
                span.set_attribute("gateway.run.events", run.log.last_seq)
                span.set_attribute("gen_ai.usage.input_tokens", run.usage["input_tokens"])
                span.set_attribute("gen_ai.usage.output_tokens", run.usage["output_tokens"])
                if run.status is RunStatus.FAILED and run.error:
                    span.set_status(trace.StatusCode.ERROR, run.error["code"])

    async def _supervise_run(self, run: Run) -> None:
        try:
            if run.cancel_reason is not None:  # cancelled while queued
                raise asyncio.CancelledError
            run.status = RunStatus.RUNNING
            run.started_at = time.time()
            await run.log.append(
                EventType.RUN_STARTED,
                None,
                {
                    "kind": run.spec.kind,
                    "model": run.spec.model,
                    "tools": run.spec.tools + sorted(run.client_tool_names),
                    "metadata": run.spec.metadata,
                },
            )
            async with asyncio.TaskGroup() as producers:
                if run.spec.parallel is not None:
                    run.output, stop_reason, steps = await self._run_parallel(run, producers)
                else:
                    run.output, stop_reason, steps = await self._run_agent(run, producers)
            await self._finish(
                run,
                RunStatus.COMPLETED,
                EventType.RUN_COMPLETED,
                {
                    "output": run.output,
                    "steps": steps,
                    "stop_reason": stop_reason,
                    "usage": dict(run.usage),
                },
            )
        except asyncio.CancelledError:
            if run.abort_error is not None:
                run.error = run.abort_error
                await self._finish(
                    run, RunStatus.FAILED, EventType.RUN_FAILED, {"error": run.abort_error}
                )
                raise
            if run.cancel_reason is None:  # cancelled from outside: the loop is going away
                run.cancel_reason = "shutdown"
            await self._finish(
                run, RunStatus.CANCELLED, EventType.RUN_CANCELLED, {"reason": run.cancel_reason}
            )
            raise
        except Exception as exc:  # a producer failed (or a bug): fail this run only
            error = _describe_exception(exc)
            if _is_expected(exc):
                logger.info("run %s failed: %s", run.id, error["message"])
            else:
                logger.exception("run %s failed", run.id)
            run.error = error
            await self._finish(run, RunStatus.FAILED, EventType.RUN_FAILED, {"error": error})

    async def _finish(
        self, run: Run, status: RunStatus, event: EventType, data: Mapping[str, Any]
    ) -> None:
        run.status = status
        run.ended_at = time.time()
        try:
            if not run.log.ended:
                await run.log.append(event, None, data)
            # Whoever waits for the run reads its whole log next: it must all be visible
            # (with a shared store, written there).
            await run.log.settled()
        finally:
            # Whoever waits for the run wakes after its terminal event is in the log.
            self._active.discard(run.id)
            if not self._active:
                self._idle.set()
            run.connection.remove_run(run.id)
            self._counts[status] += 1
            self._expiry.append((run.ended_at + self.limits.retention.ttl, run.id))
            self._expiry_added.set()
            run._done.set()
            callbacks, run._end_callbacks = run._end_callbacks, []
            for callback in callbacks:
                try:
                    callback(run)
                except Exception:  # one callback's bug must not keep the others from running
                    logger.exception("a callback at the end of run %s failed", run.id)
            if not run.readers:
                run.log.pack()  # retained for its TTL, most likely unread
            if self._on_run_end is not None:
                self._on_run_end(run)

    async def _sweep(self) -> None:
        """Drop finished runs (and their logs) once their TTL has passed."""
        while True:
            if not self._expiry:
                self._expiry_added.clear()
                await self._expiry_added.wait()
                continue
            expires_at, run_id = self._expiry[0]
            delay = expires_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self._expiry.popleft()
            self._runs.pop(run_id, None)

    # -- producers --------------------------------------------------------------------------

    async def _start_producer(
        self,
        run: Run,
        producers: asyncio.TaskGroup,
        make: Callable[[ProducerSlot], Coroutine[Any, Any, T]],
        name: str,
    ) -> asyncio.Task[T]:
        """Wait for a free slot of the run's connection, then create the producer's task
        (``make(slot)``) and hand it the slot: the producers of a large parallel run, or of
        a step that calls many tools, are created as slots free up, not all at once."""
        slot = await run.connection.reserve()
        coro = make(slot)
        try:
            task = producers.create_task(coro, name=name)
        except BaseException:  # the task group is shutting down (a sibling failed)
            coro.close()
            slot.release()
            raise
        # A task cancelled before its first step never runs its body (whose exit releases
        # the slot): the slot comes back when the task is done, whichever way it ended.
        task.add_done_callback(slot.release)
        return task

    async def _produce(
        self,
        run: Run,
        info: ProducerInfo,
        body: Callable[[], Awaitable[T]],
        slot: ProducerSlot | None = None,
    ) -> T:
        """Run one producer in a slot of its connection (``slot`` if it was reserved for
        it), tracking its status."""
        run.producers[info.id] = info
        run.producer_changed(info)
        structlog.contextvars.bind_contextvars(producer=info.id)
        attributes: dict[str, Any] = {
            "gateway.producer.id": info.id,
            "gateway.producer.kind": info.kind,
        }
        attributes["gen_ai.request.model" if info.kind == "model" else "gen_ai.tool.name"] = (
            info.name
        )
        async with run.connection.producer_slot(slot):
            info.status = "running"
            info.started_at = time.time()
            run.producer_changed(info)
            try:
                with self.tracer.start_as_current_span(
                    f"{info.kind} {info.name}", attributes=attributes, record_exception=False
                ):
                    result = await body()
            except asyncio.CancelledError:
                info.status = "cancelled"
                raise
            except BaseException:
                info.status = "failed"
                raise
            finally:
                info.ended_at = time.time()
                if info.status == "running":
                    info.status = "completed"
                run.producer_changed(info)
            return result

    async def _run_agent(self, run: Run, producers: asyncio.TaskGroup) -> tuple[str, str, int]:
        """Model step → concurrent tool calls → model step …, up to ``max_steps``."""
        spec = run.spec
        assert spec.model is not None
        model = self.models.get(spec.model)
        messages: list[dict[str, Any]] = [m.model_dump(exclude_none=True) for m in spec.messages]
        offered = [tool.describe() for tool in self.tools.require(spec.tools)]
        offered += [tool.model_dump() for tool in spec.client_tools]
        text = ""
        for step in range(1, spec.max_steps + 1):
            info = ProducerInfo(f"model.{step}", "model", model.name)
            body = functools.partial(
                self._model_step, run, model, messages, offered, step, info.id, spec.options
            )
            result = await producers.create_task(
                self._produce(run, info, body), name=f"{run.id} {info.id}"
            )
            text = result.text
            assistant: dict[str, Any] = {"role": "assistant", "content": result.text}
            if result.tool_calls:
                assistant["tool_calls"] = result.tool_calls
            messages.append(assistant)
            if not result.tool_calls:
                return text, "answer", step
            handing_back = spec.client_tool_mode == "return" and any(
                call["function"]["name"] in run.client_tool_names for call in result.tool_calls
            )
            to_run = [
                call
                for call in result.tool_calls
                if not handing_back or call["function"]["name"] not in run.client_tool_names
            ]
            calls = [
                await self._start_producer(
                    run,
                    producers,
                    functools.partial(self._tool_call, run, call),
                    f"{run.id} {call['id']}",
                )
                for call in to_run
            ]
            for call, task in zip(to_run, calls, strict=True):
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": await task})
            if handing_back:
                # The client runs its tools and starts a new run with their results.
                return text, "client_tool_calls", step
        return text, "max_steps", spec.max_steps

    async def _run_parallel(
        self, run: Run, producers: asyncio.TaskGroup
    ) -> tuple[list[dict[str, Any]], str, int]:
        """Every item of ``parallel`` side by side; each item's failure is its own."""
        assert run.spec.parallel is not None
        tasks: list[asyncio.Task[dict[str, Any]]] = []
        models = 0
        for item in run.spec.parallel:
            make: Callable[[ProducerSlot], Coroutine[Any, Any, dict[str, Any]]]
            if isinstance(item, ParallelModelCall):
                models += 1
                producer = f"model.{models}"
                make = functools.partial(self._parallel_model, run, item, models)
            else:
                producer = run.next_call_id()
                call = {
                    "id": producer,
                    "type": "function",
                    "function": {"name": item.tool, "arguments": json.dumps(item.arguments)},
                }
                make = functools.partial(self._parallel_tool, run, call)
            tasks.append(await self._start_producer(run, producers, make, f"{run.id} {producer}"))
        return [await task for task in tasks], "parallel_done", 1

    async def _parallel_model(
        self, run: Run, item: ParallelModelCall, index: int, slot: ProducerSlot
    ) -> dict[str, Any]:
        model = self.models.get(item.model)
        info = ProducerInfo(f"model.{index}", "model", model.name)
        messages = [m.model_dump(exclude_none=True) for m in item.messages]
        body = functools.partial(
            self._model_step, run, model, messages, item.tools, index, info.id, item.options
        )
        try:
            result = await self._produce(run, info, body, slot)
        except GatewayError as exc:
            return {"producer": info.id, "status": "failed", "error": _describe_exception(exc)}
        return {"producer": info.id, "status": "completed", "output": result.text}

    async def _parallel_tool(
        self, run: Run, call: dict[str, Any], slot: ProducerSlot
    ) -> dict[str, Any]:
        content = await self._tool_call(run, call, slot)
        info = run.producers[call["id"]]
        return {"producer": info.id, "status": info.status, "output": json.loads(content)}

    async def _model_step(
        self,
        run: Run,
        model: Model,
        messages: list[dict[str, Any]],
        offered: list[dict[str, Any]],
        step: int,
        producer: str,
        options: Mapping[str, Any] | None = None,
    ) -> _StepResult:
        """Stream one assistant turn into ``message.*`` and ``tool_call.*`` events."""
        log = run.log
        message_id = f"msg_{run.id.removeprefix('run_')}_{producer.split('.')[-1]}"
        await log.append(
            EventType.MESSAGE_STARTED,
            producer,
            {"message_id": message_id, "step": step, "model": model.name},
        )
        text: list[str] = []
        text_bytes = 0
        calls: dict[int, dict[str, Any]] = {}
        usage = {"input_tokens": 0, "output_tokens": 0}
        limits = self.limits
        try:
            # aclosing: a cancelled step closes the model's stream (and its upstream
            # response) at once, not when the generator is collected.
            stream = model.stream(messages, offered, options)
            async with contextlib.aclosing(stream) as output:
                async for item in output:
                    if isinstance(item, TextDelta):
                        if item.text:
                            text_bytes += _utf8_size(item.text)
                            if text_bytes > limits.max_step_text_bytes:
                                raise ModelOutputLimitError(
                                    f"the model's text in one step passed "
                                    f"{limits.max_step_text_bytes} bytes (max_step_text_bytes)"
                                )
                            text.append(item.text)
                            await log.append(
                                EventType.MESSAGE_DELTA,
                                producer,
                                {"message_id": message_id, "delta": item.text},
                            )
                            if len(text) == 1:
                                # The first token goes out now: its readers send it before
                                # this task parses the rest of the upstream's last read.
                                await asyncio.sleep(0)
                    elif isinstance(item, ToolCallStart):
                        if len(calls) >= limits.max_tool_calls_per_step:
                            raise ModelOutputLimitError(
                                f"the model called more than {limits.max_tool_calls_per_step} "
                                "tools in one step (max_tool_calls_per_step); none was run"
                            )
                        _check_model_name("tool name", item.name)
                        if item.call_id is not None:
                            _check_model_name("tool call id", item.call_id)
                        call_id = item.call_id or run.next_call_id()
                        calls[item.index] = {
                            "id": call_id,
                            "name": item.name,
                            "arguments": [],
                            "size": 0,
                        }
                        await log.append(
                            EventType.TOOL_CALL_STARTED,
                            producer,
                            {"message_id": message_id, "call_id": call_id, "name": item.name},
                        )
                    elif isinstance(item, ToolCallDelta):
                        call = calls.get(item.index)
                        if call is None:
                            raise UpstreamProtocolError(
                                f"model sent arguments for unknown call {item.index}"
                            )
                        call["size"] += _utf8_size(item.arguments)
                        if call["size"] > limits.max_tool_arguments_bytes:
                            raise ModelOutputLimitError(
                                f"the model's arguments for tool call {call['id']} passed "
                                f"{limits.max_tool_arguments_bytes} bytes "
                                "(max_tool_arguments_bytes)"
                            )
                        call["arguments"].append(item.arguments)
                        await log.append(
                            EventType.TOOL_CALL_DELTA,
                            producer,
                            {"call_id": call["id"], "delta": item.arguments},
                        )
                    elif isinstance(item, Usage):
                        usage["input_tokens"] += item.input_tokens
                        usage["output_tokens"] += item.output_tokens
                        run.usage["input_tokens"] += item.input_tokens
                        run.usage["output_tokens"] += item.output_tokens
        except GatewayError as exc:
            await log.append(
                EventType.MESSAGE_FAILED,
                producer,
                {"message_id": message_id, "error": _describe_exception(exc)},
            )
            raise
        tool_calls = []
        for index in sorted(calls):
            call = calls[index]
            arguments = "".join(call["arguments"])
            tool_calls.append(
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": arguments},
                }
            )
            await log.append(
                EventType.TOOL_CALL_COMPLETED,
                producer,
                {"call_id": call["id"], "name": call["name"], "arguments": arguments},
            )
        full_text = "".join(text)
        await log.append(
            EventType.MESSAGE_COMPLETED,
            producer,
            {"message_id": message_id, "text": full_text, "usage": usage},
        )
        return _StepResult(full_text, tool_calls)

    async def _tool_call(
        self, run: Run, call: dict[str, Any], slot: ProducerSlot | None = None
    ) -> str:
        """Execute one tool call (server-side or client-side). Never raises but on cancel:
        a failure becomes ``tool.failed`` and an ``{"error": …}`` result for the model."""
        call_id: str = call["id"]
        name: str = call["function"]["name"]
        is_client = name in run.client_tool_names
        info = ProducerInfo(call_id, "client_tool" if is_client else "tool", name)
        log = run.log

        async def emit(delta: str) -> None:
            await log.append(EventType.TOOL_DELTA, call_id, {"call_id": call_id, "delta": delta})
            # Yield after each delta so that tools streaming at once interleave fairly.
            await asyncio.sleep(0)

        async def body() -> Any:
            raw = call["function"]["arguments"] or "{}"
            try:
                arguments = json.loads(raw)
            except ValueError:
                arguments = raw
            await log.append(
                EventType.TOOL_STARTED,
                call_id,
                {"call_id": call_id, "name": name, "arguments": arguments},
            )
            if not isinstance(arguments, dict):
                raise ToolError("arguments must be a JSON object")
            if is_client:
                return await self._client_tool(run, call_id, name, arguments)
            if name not in self.tools:
                raise ToolError(f"unknown tool {name!r}")
            tool = self.tools.get(name)
            if name not in run.spec.tools and run.spec.parallel is None:
                raise ToolError(f"tool {name!r} is not enabled for this run")
            timeout = tool.timeout or self.limits.tool_timeout
            try:
                async with asyncio.timeout(timeout):
                    return await tool.function(arguments, emit)
            except TimeoutError:
                raise ToolError(
                    f"tool {name!r} did not finish within {timeout:g}s",
                ) from None

        try:
            output = await self._produce(run, info, body, slot)
            try:
                event = await log.append(
                    EventType.TOOL_COMPLETED, call_id, {"call_id": call_id, "output": output}
                )
            except (TypeError, ValueError, RecursionError) as exc:
                info.status = "failed"
                run.producer_changed(info)
                raise ToolError(f"tool {name!r} returned output that is not JSON: {exc}") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                logger.exception("tool %s of run %s raised", name, run.id)
            error = _describe_exception(exc)
            await log.append(EventType.TOOL_FAILED, call_id, {"call_id": call_id, "error": error})
            return json.dumps({"error": error["message"]})
        # What the model reads is exactly what the client saw.
        return json.dumps(event.to_dict()["output"], ensure_ascii=False)

    async def _client_tool(
        self, run: Run, call_id: str, name: str, arguments: dict[str, Any]
    ) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        run._pending_client_tools[call_id] = future
        try:
            await run.log.append(
                EventType.CLIENT_TOOL_REQUESTED,
                call_id,
                {"call_id": call_id, "name": name, "arguments": arguments},
            )
            timeout = self.limits.client_tool_timeout
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                raise ToolError(
                    f"client tool {name!r} sent no result within {timeout:g}s"
                ) from None
        finally:
            del run._pending_client_tools[call_id]


def _utf8_size(text: str) -> int:
    """The bytes ``text`` takes in UTF-8 (without encoding it when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _check_model_name(what: str, value: str) -> None:
    if len(value) > MAX_MODEL_NAME_LENGTH:
        raise UpstreamProtocolError(
            f"the model sent a {what} of {len(value)} characters (at most {MAX_MODEL_NAME_LENGTH})"
        )


def _is_expected(exc: BaseException) -> bool:
    """A failure the gateway reports on purpose (an upstream error, …), not a bug."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_expected(inner) for inner in exc.exceptions)
    return isinstance(exc, GatewayError)


def _describe_exception(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, GatewayError):
        return error_payload(exc.code, str(exc))
    if isinstance(exc, BaseExceptionGroup):
        return _describe_exception(exc.exceptions[0])
    return error_payload("internal_error", f"{type(exc).__name__}: {exc}")


def new_event_for_gap(run: Run, after: int, next_seq: int) -> Event:
    """The ``stream.gap`` event a reader gets instead of events no longer retained.

    Its ``seq`` is ``next_seq - 1`` so a client that resumes from it continues correctly.
    """
    return Event.create(
        next_seq - 1,
        run.id,
        EventType.STREAM_GAP,
        time.time(),
        None,
        {"after": after, "next_seq": next_seq, "snapshot": run.snapshot()},
    )
