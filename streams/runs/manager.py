"""The registry of runs and their lifecycle.

Each run is one supervisor task, owned by the :class:`RunManager`'s task group, with one
:class:`asyncio.TaskGroup` for its producers (the :class:`~streams.runs.agent.RunWorker`
does the work in it). Cancelling the run cancels the supervisor; the task group then
cancels every producer and waits for their cleanup (closing upstream streams) before
``run.cancelled`` is appended. A finished run is kept for its TTL, then swept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import trace

from streams.approvals import ApprovalObserver
from streams.connection import Connection
from streams.errors import (
    LimitExceededError,
    NotFoundError,
    RunBusyError,
    RunFinishedError,
    ShuttingDownError,
)
from streams.events import EventType
from streams.log import EventLog, MemoryEventLog, Retention
from streams.models import ModelRegistry
from streams.runs.agent import RunWorker
from streams.runs.failures import describe_exception, is_expected
from streams.runs.limits import RunLimits
from streams.runs.run import Run, RunStatus, new_run_id
from streams.spec import OnDisconnect, RunSpec
from streams.tools import ToolRegistry

__all__ = ["RunManager", "RunStatistics"]

# The package's logger (see streams.runs.run).
logger = logging.getLogger("streams.runs")


@dataclass(frozen=True, slots=True)
class RunStatistics:
    """How many runs a manager holds, as ``/readyz`` and the metrics show it."""

    active_runs: int  # not yet finished
    retained_runs: int  # active, or finished and within their TTL
    runs_by_status: Mapping[str, int]  # finished runs by terminal status, since the start

    def to_dict(self) -> dict[str, Any]:
        return {
            "active_runs": self.active_runs,
            "retained_runs": self.retained_runs,
            "runs_by_status": dict(self.runs_by_status),
        }


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
        approval_observer: ApprovalObserver | None = None,
    ) -> None:
        self.tracer = tracer or trace.NoOpTracer()
        self._on_run_end = on_run_end  # the gateway's run-end log line and metrics
        self.models = models
        self.tools = tools
        self.limits = limits or RunLimits()
        self._worker = RunWorker(
            models=models,
            tools=tools,
            limits=self.limits,
            tracer=self.tracer,
            approval_observer=approval_observer,  # the gateway's metrics
        )
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
            # A run whose end is being written (it is done, not yet retired) is left to it.
            with contextlib.suppress(RunFinishedError):
                self._runs[run_id].cancel(reason)

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
        self._worker.validate(spec)
        if len(self._active) >= self.limits.max_active_runs:
            raise LimitExceededError(
                f"the gateway is running {self.limits.max_active_runs} runs (its limit); "
                "try again shortly"
            )
        run_id = new_run_id()
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

    def get(self, run_id: str, owner: str | None) -> Run:
        """``owner``'s run ``run_id``: a run of another owner is not found, exactly like a
        run that does not exist (``None`` is the owner when the gateway has no keys)."""
        run = self._runs.get(run_id)
        if run is None or run.owner != owner:
            raise NotFoundError(f"no run {run_id!r}")
        return run

    def get_unchecked(self, run_id: str) -> Run:
        """The run ``run_id`` whoever owns it, for the gateway's own callers (the cluster's
        control channel, a face cancelling the run it started, tests)."""
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run

    def cancel(self, run_id: str, reason: str, owner: str | None) -> Run:
        """Cancel ``owner``'s run (see :meth:`Run.cancel`)."""
        run = self.get(run_id, owner)
        run.cancel(reason)
        return run

    def delete(self, run_id: str, owner: str | None) -> Run:
        """Forget ``owner``'s ended run now, before its TTL (its log goes with it). Raises
        :class:`~streams.errors.RunBusyError` while it is still queued or running."""
        run = self.get(run_id, owner)
        self.forget(run)
        return run

    def forget(self, run: Run) -> None:
        """Forget the ended ``run`` (see :meth:`delete`; for callers that checked access)."""
        if not run.done:
            raise RunBusyError(f"run {run.id} is still {run.status.value}: cancel it first")
        self._runs.pop(run.id, None)

    def abort(self, run_id: str, code: str, message: str) -> None:
        """Stop the run like a cancel, but end it with ``run.failed`` (``code``): the run
        cannot go on for a reason of the gateway's, not the client's."""
        run = self._runs.get(run_id)
        if run is None or run.done or run.cancel_reason is not None:
            return
        run.abort_error = {"code": code, "message": message}
        run.cancel(message)

    @property
    def active_run_ids(self) -> list[str]:
        return list(self._active)

    def attach_reader(self, run: Run) -> None:
        run.readers += 1

    def detach_reader(self, run: Run) -> None:
        """A reader left. If it was the last and the run's policy is ``cancel``, cancel it."""
        run.readers -= 1
        if run.readers == 0:
            if run.done:
                run.log.pack()  # retained for its TTL, most likely unread
            elif run.on_disconnect == "cancel":
                run.cancel("last reader disconnected")

    def statistics(self) -> RunStatistics:
        return RunStatistics(
            active_runs=len(self._active),
            retained_runs=len(self._runs),
            runs_by_status={status.value: n for status, n in self._counts.items()},
        )

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
            run.begin()
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
                run.output, stop_reason, steps, finish = await self._worker.work(run, producers)
            await self._finish(
                run,
                RunStatus.COMPLETED,
                {
                    "output": run.output,
                    "steps": steps,
                    "stop_reason": stop_reason,
                    **finish,
                    "usage": dict(run.usage),
                },
            )
        except asyncio.CancelledError:
            if run.abort_error is not None:
                await self._finish(run, RunStatus.FAILED, {"error": run.abort_error})
                raise
            if run.cancel_reason is None:  # cancelled from outside: the loop is going away
                run.cancel_reason = "shutdown"
            await self._finish(run, RunStatus.CANCELLED, {"reason": run.cancel_reason})
            raise
        except Exception as exc:  # a producer failed (or a bug): fail this run only
            error = describe_exception(exc)
            if is_expected(exc):
                logger.info("run %s failed: %s", run.id, error["message"])
            else:
                logger.exception("run %s failed", run.id)
            await self._finish(run, RunStatus.FAILED, {"error": error})

    async def _finish(self, run: Run, status: RunStatus, data: Mapping[str, Any]) -> None:
        try:
            await run.finish(status, data, retire=self._retire)
        finally:
            if self._on_run_end is not None:
                self._on_run_end(run)

    def _retire(self, run: Run) -> None:
        """``run`` has ended: it is no longer active, and expires after its TTL."""
        assert run.ended_at is not None
        self._active.discard(run.id)
        if not self._active:
            self._idle.set()
        run.connection.remove_run(run.id)
        self._counts[run.status] += 1
        self._expiry.append((run.ended_at + self.limits.retention.ttl, run.id))
        self._expiry_added.set()

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
