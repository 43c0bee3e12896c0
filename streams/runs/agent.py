"""What a run does, in its producers' task group: the agent loop (model step → concurrent
tool calls → model step …) or, for a ``parallel`` spec, its items side by side."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry import trace

from streams.approvals import ApprovalObserver
from streams.connection import ProducerSlot
from streams.errors import GatewayError
from streams.models import ModelRegistry
from streams.runs.failures import describe_exception
from streams.runs.limits import RunLimits
from streams.runs.producers import Producers, StepResult
from streams.runs.run import ProducerInfo, Run
from streams.spec import ParallelModelCall, RunSpec
from streams.tools import ToolRegistry

__all__ = ["RunWorker", "model_input"]

# What a run's work ends with: its output, stop reason, number of steps, and the fields
# run.completed takes from its last model step (finish_reason, stop_sequence; none if the
# model gave no finish reason, or for a parallel run).
Outcome = tuple[Any, str, int, dict[str, Any]]


def model_input(
    tools: ToolRegistry, spec: RunSpec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The conversation and the tools (the server tools it enables, described, then its
    client tools) that an agent run's first model step is given."""
    messages = [message.model_dump(exclude_none=True) for message in spec.messages]
    offered = [tool.describe() for tool in tools.require(spec.tools)]
    offered += [tool.model_dump() for tool in spec.client_tools]
    return messages, offered


class RunWorker:
    """Does the work of runs with the models, tools, limits and tracer it is given (one per
    :class:`~streams.runs.manager.RunManager`)."""

    def __init__(
        self,
        *,
        models: ModelRegistry,
        tools: ToolRegistry,
        limits: RunLimits,
        tracer: trace.Tracer,
        approval_observer: ApprovalObserver | None = None,
    ) -> None:
        self.models = models
        self.tools = tools
        self.producers = Producers(
            tools=tools, limits=limits, tracer=tracer, approval_observer=approval_observer
        )

    def validate(self, spec: RunSpec) -> None:
        """Raise if ``spec`` names a model or tool the gateway does not offer."""
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

    async def work(self, run: Run, producers: asyncio.TaskGroup) -> Outcome:
        """Do ``run``'s work, its producers' tasks in ``producers``."""
        if run.spec.parallel is not None:
            return await self._run_parallel(run, producers)
        return await self._run_agent(run, producers)

    async def _run_agent(self, run: Run, producers: asyncio.TaskGroup) -> Outcome:
        """Model step → concurrent tool calls → model step …, up to ``max_steps``."""
        spec = run.spec
        assert spec.model is not None
        model = self.models.get(spec.model)
        messages, offered = model_input(self.tools, spec)
        text = ""
        finish: dict[str, Any] = {}
        for step in range(1, spec.max_steps + 1):
            info = ProducerInfo(f"model.{step}", "model", model.name)
            body = functools.partial(
                self.producers.model_step,
                run,
                model,
                messages,
                offered,
                step,
                info.id,
                spec.options,
            )
            result = await producers.create_task(
                self.producers.produce(run, info, body), name=f"{run.id} {info.id}"
            )
            text = result.text
            finish = _finish_fields(result)
            assistant: dict[str, Any] = {"role": "assistant", "content": _content(result)}
            if result.tool_calls:
                assistant["tool_calls"] = result.tool_calls
            messages.append(assistant)
            if not result.tool_calls:
                return text, "answer", step, finish
            handing_back = spec.client_tool_mode == "return" and any(
                call["function"]["name"] in run.client_tool_names for call in result.tool_calls
            )
            to_run = [
                call
                for call in result.tool_calls
                if not handing_back or call["function"]["name"] not in run.client_tool_names
            ]
            calls = [
                await self.producers.start(
                    run,
                    producers,
                    functools.partial(self.producers.tool_call, run, call),
                    f"{run.id} {call['id']}",
                )
                for call in to_run
            ]
            for call, task in zip(to_run, calls, strict=True):
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": await task})
            if handing_back:
                # The client runs its tools and starts a new run with their results.
                return text, "client_tool_calls", step, finish
        return text, "max_steps", spec.max_steps, finish

    async def _run_parallel(self, run: Run, producers: asyncio.TaskGroup) -> Outcome:
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
            tasks.append(await self.producers.start(run, producers, make, f"{run.id} {producer}"))
        return [await task for task in tasks], "parallel_done", 1, {}

    async def _parallel_model(
        self, run: Run, item: ParallelModelCall, index: int, slot: ProducerSlot
    ) -> dict[str, Any]:
        model = self.models.get(item.model)
        info = ProducerInfo(f"model.{index}", "model", model.name)
        messages = [m.model_dump(exclude_none=True) for m in item.messages]
        body = functools.partial(
            self.producers.model_step,
            run,
            model,
            messages,
            item.tools,
            index,
            info.id,
            item.options,
        )
        try:
            result = await self.producers.produce(run, info, body, slot)
        except GatewayError as exc:
            return {"producer": info.id, "status": "failed", "error": describe_exception(exc)}
        return {"producer": info.id, "status": "completed", "output": result.text}

    async def _parallel_tool(
        self, run: Run, call: dict[str, Any], slot: ProducerSlot
    ) -> dict[str, Any]:
        content = await self.producers.tool_call(run, call, slot)
        info = run.producers[call["id"]]
        return {"producer": info.id, "status": info.status, "output": json.loads(content)}


def _content(result: StepResult) -> str | list[dict[str, Any]]:
    """The content of the assistant message a step adds to the conversation: its text, or,
    when it had reasoning, its reasoning blocks then its text as a part (Anthropic wants a
    step's signed thinking back before its tool results are read)."""
    if not result.reasoning:
        return result.text
    parts: list[dict[str, Any]] = [*result.reasoning]
    if result.text:
        parts.append({"type": "text", "text": result.text})
    return parts


def _finish_fields(result: StepResult) -> dict[str, Any]:
    """What ``run.completed`` says of why its last step ended, as ``message.completed``."""
    if result.finish_reason is None:
        return {}
    fields: dict[str, Any] = {"finish_reason": result.finish_reason}
    if result.finish_reason == "stop_sequence":
        fields["stop_sequence"] = result.stop_sequence
    return fields
