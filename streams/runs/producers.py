"""A run's producers: what appends its events, each in a task and a slot of its connection.

- a **model step** streams one assistant turn into ``message.*``, ``reasoning.*`` and
  ``tool_call.*`` events, and assembles its reasoning blocks and finish reason;
- a **tool call** runs a server tool (``tool.*``), or asks the client for a client tool's
  result (``client_tool.requested``) and waits for it, each within its timeout (past it:
  ``tool.failed`` with code ``tool_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import structlog
from opentelemetry import trace

from streams.approvals import ApprovalAnswer, ApprovalObserver, ApprovalRequest, denial_message
from streams.connection import ProducerSlot
from streams.errors import (
    ApprovalExpiredError,
    GatewayError,
    ModelOutputLimitError,
    ToolError,
    ToolTimeoutError,
    UpstreamProtocolError,
)
from streams.events import EventType
from streams.models import (
    Attempt,
    Finish,
    Model,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    Rerouted,
    Retracted,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.runs.failures import describe_exception
from streams.runs.limits import RunLimits
from streams.runs.run import ProducerInfo, Run
from streams.spec import RunSpec
from streams.tools import ToolRegistry

__all__ = ["MAX_MODEL_NAME_LENGTH", "Producers", "StepResult"]

# The package's logger (see streams.runs.run).
logger = logging.getLogger("streams.runs")

T = TypeVar("T")

# Longest tool name and call id a model may send (OpenAI and Anthropic allow 64 characters
# for a name and send ids of about 30): they become event fields and producer ids.
MAX_MODEL_NAME_LENGTH = 256


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one model step said: its text, the tools it called, its reasoning blocks (in
    Anthropic's shape, in order) and why it ended."""

    text: str
    tool_calls: list[dict[str, Any]]  # OpenAI shape: {id, type, function: {name, arguments}}
    reasoning: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None  # None when the model gave none
    stop_sequence: str | None = None  # only when finish_reason is "stop_sequence"


class _Reasoning:
    """A step's reasoning assembled into blocks: a thinking block is the deltas since the
    last block ended, closed by its signature; a redacted block is a block of its own."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self._open: list[str] = []  # thinking since the last block ended

    def delta(self, text: str) -> None:
        self._open.append(text)

    def signature(self, signature: str) -> None:
        # A signature with no thinking before it still signs a block (of empty thinking).
        thinking = "".join(self._open)
        self._open.clear()
        self.blocks.append({"type": "thinking", "thinking": thinking, "signature": signature})

    def redacted(self, data: str) -> None:
        self._close_unsigned()
        self.blocks.append({"type": "redacted_thinking", "data": data})

    def finish(self) -> list[dict[str, Any]]:
        """The blocks, thinking left open (an upstream that does not sign: OpenAI-compatible
        ones) closed with an empty signature."""
        self._close_unsigned()
        return self.blocks

    def _close_unsigned(self) -> None:
        if self._open:
            self.signature("")


class Producers:
    """Starts and runs the producers of runs, with the tools, limits and tracer of its
    manager."""

    def __init__(
        self,
        *,
        tools: ToolRegistry,
        limits: RunLimits,
        tracer: trace.Tracer,
        approval_observer: ApprovalObserver | None = None,
    ) -> None:
        self.tools = tools
        self.limits = limits
        self.tracer = tracer
        self.approval_observer = approval_observer

    async def start(
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

    async def produce(
        self,
        run: Run,
        info: ProducerInfo,
        body: Callable[[], Awaitable[T]],
        slot: ProducerSlot | None = None,
    ) -> T:
        """Run one producer in a slot of its connection (``slot`` if it was reserved for
        it), tracking its status."""
        run.add_producer(info)
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

    async def model_step(
        self,
        run: Run,
        model: Model,
        messages: list[dict[str, Any]],
        offered: list[dict[str, Any]],
        step: int,
        producer: str,
        options: Mapping[str, Any] | None = None,
    ) -> StepResult:
        """Stream one assistant turn into ``message.*``, ``reasoning.*`` and ``tool_call.*``
        events."""
        log = run.log
        message_id = f"msg_{run.id.removeprefix('run_')}_{producer.split('.')[-1]}"
        await log.append(
            EventType.MESSAGE_STARTED,
            producer,
            {"message_id": message_id, "step": step, "model": model.name},
        )
        text: list[str] = []
        text_bytes = 0  # text and reasoning, both bounded by max_step_text_bytes
        opaque_bytes = 0  # signatures and redacted blocks, bounded the same
        reasoning = _Reasoning()
        finish: Finish | None = None
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
                            text_bytes = _text_within(
                                text_bytes + _utf8_size(item.text), limits.max_step_text_bytes
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
                    elif isinstance(item, ReasoningDelta):
                        if item.text:
                            text_bytes = _text_within(
                                text_bytes + _utf8_size(item.text), limits.max_step_text_bytes
                            )
                            reasoning.delta(item.text)
                            await log.append(
                                EventType.REASONING_DELTA,
                                producer,
                                {"message_id": message_id, "delta": item.text},
                            )
                    elif isinstance(item, ReasoningSignature | RedactedReasoning):
                        opaque = (
                            item.signature if isinstance(item, ReasoningSignature) else item.data
                        )
                        if not opaque:
                            # Signs nothing, holds nothing; and each block that counts costs
                            # the bound at least a byte, so their list is bounded too.
                            continue
                        opaque_bytes += _utf8_size(opaque)
                        if opaque_bytes > limits.max_step_text_bytes:
                            raise ModelOutputLimitError(
                                f"the model's reasoning signatures and redacted blocks in one "
                                f"step passed {limits.max_step_text_bytes} bytes "
                                "(max_step_text_bytes)"
                            )
                        if isinstance(item, ReasoningSignature):
                            reasoning.signature(opaque)
                            await log.append(
                                EventType.REASONING_SIGNATURE,
                                producer,
                                {"message_id": message_id, "signature": opaque},
                            )
                        else:
                            reasoning.redacted(opaque)
                            await log.append(
                                EventType.REASONING_REDACTED,
                                producer,
                                {"message_id": message_id, "data": opaque},
                            )
                    elif isinstance(item, Finish):
                        finish = item  # the last one wins
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
                        _add_usage(usage, item)
                        _add_usage(run.usage, item)
                    elif isinstance(item, Retracted):
                        # A model group starts the answer again: what was said is void
                        # (the tokens it cost are not). No tool call of it is ever run.
                        text.clear()
                        text_bytes = opaque_bytes = 0
                        reasoning = _Reasoning()
                        finish = None
                        calls.clear()
                        await log.append(
                            EventType.MESSAGE_RETRACTED,
                            producer,
                            {"message_id": message_id, "reason": item.reason},
                        )
                    elif isinstance(item, Rerouted):
                        await log.append(
                            EventType.MESSAGE_REROUTED,
                            producer,
                            {
                                "message_id": message_id,
                                "from": item.from_route,
                                "to": item.to_route,
                                "reason": item.reason,
                            },
                        )
                    elif isinstance(item, Attempt):
                        info = run.producers.get(producer)
                        if info is not None:
                            info.attempts.append(item.to_dict())
                            run.producer_changed(info)
        except GatewayError as exc:
            await log.append(
                EventType.MESSAGE_FAILED,
                producer,
                {"message_id": message_id, "error": describe_exception(exc)},
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
        completed: dict[str, Any] = {"message_id": message_id, "text": full_text, "usage": usage}
        if finish is not None:
            completed["finish_reason"] = finish.reason
            # The sequence the model met, only for the reason that names one.
            if finish.reason == "stop_sequence":
                completed["stop_sequence"] = finish.stop_sequence
        blocks = reasoning.finish()
        if blocks:
            completed["reasoning"] = blocks
        await log.append(EventType.MESSAGE_COMPLETED, producer, completed)
        return StepResult(
            full_text,
            tool_calls,
            blocks,
            completed.get("finish_reason"),
            completed.get("stop_sequence"),
        )

    async def tool_call(
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

        denied: ApprovalAnswer | None = None

        async def body() -> Any:
            nonlocal denied
            raw = call["function"]["arguments"] or "{}"
            try:
                arguments = json.loads(raw)
            except ValueError:
                arguments = raw
            parameters = self._parameters(run, name, is_client)
            if (
                parameters is not None
                and isinstance(arguments, dict)
                and self.limits.approvals.required(name, run.owner, _asked(run.spec))
            ):
                answer = await self._approval(run, call_id, name, arguments, parameters)
                if answer.decision == "deny":
                    denied = answer
                    return None
                if answer.arguments is not None:
                    arguments = answer.arguments
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
                raise ToolTimeoutError(
                    f"tool {name!r} did not finish within {timeout:g}s",
                ) from None

        try:
            output = await self.produce(run, info, body, slot)
            if denied is not None:
                # The model reads a refusal, and the run carries on.
                refusal = denial_message(denied.reason)
                return json.dumps({"error": refusal}, ensure_ascii=False)
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
            error = describe_exception(exc)
            await log.append(EventType.TOOL_FAILED, call_id, {"call_id": call_id, "error": error})
            return json.dumps({"error": error["message"]})
        # What the model reads is exactly what the client saw.
        return json.dumps(event.to_dict()["output"], ensure_ascii=False)

    def _parameters(self, run: Run, name: str, is_client: bool) -> Mapping[str, Any] | None:
        """The schema of the arguments of the tool ``name`` (None: no such tool)."""
        if is_client:
            for tool in run.spec.client_tools:
                if tool.name == name:
                    return tool.parameters
            return None
        return self.tools.get(name).parameters if name in self.tools else None

    async def _approval(
        self,
        run: Run,
        call_id: str,
        name: str,
        arguments: dict[str, Any],
        parameters: Mapping[str, Any],
    ) -> ApprovalAnswer:
        """Ask for a person's answer to the call and wait for it (``approval_timeout`` at
        most: then deny, or fail the call, as the policy says); ``tool.approved`` or
        ``tool.denied`` in the log."""
        policy = self.limits.approvals
        request = ApprovalRequest(
            call_id, name, arguments, parameters, time.time() + policy.timeout
        )
        observer = self.approval_observer
        # A client tool's name is the client's: its metrics share one label.
        tool = "client" if name in run.client_tool_names else name
        with run.awaiting_approval(request) as answered:
            await run.log.append(EventType.TOOL_APPROVAL_REQUESTED, call_id, request.to_dict())
            if observer is not None:
                observer.requested(tool)
            asked_at = time.monotonic()
            try:
                async with asyncio.timeout(policy.timeout):
                    answer = await answered
            except TimeoutError:
                if observer is not None:
                    observer.expired(tool)
                if policy.on_timeout == "fail":
                    raise ApprovalExpiredError(
                        f"no one answered the approval of tool {name!r} within "
                        f"{policy.timeout:g}s (approval_timeout)"
                    ) from None
                answer = ApprovalAnswer(
                    "deny", by="timeout", reason=f"no answer within {policy.timeout:g}s"
                )
            else:
                if observer is not None:
                    observer.answered(tool, answer.decision, time.monotonic() - asked_at)
        approved = answer.decision == "approve"
        await run.log.append(
            EventType.TOOL_APPROVED if approved else EventType.TOOL_DENIED,
            call_id,
            answer.event(call_id),
        )
        return answer

    async def _client_tool(
        self, run: Run, call_id: str, name: str, arguments: dict[str, Any]
    ) -> Any:
        with run.awaiting_client_tool(call_id) as result:
            await run.log.append(
                EventType.CLIENT_TOOL_REQUESTED,
                call_id,
                {"call_id": call_id, "name": name, "arguments": arguments},
            )
            timeout = self.limits.client_tool_timeout
            try:
                async with asyncio.timeout(timeout):
                    return await result
            except TimeoutError:
                raise ToolTimeoutError(
                    f"client tool {name!r} sent no result within {timeout:g}s"
                ) from None


def _asked(spec: RunSpec) -> Literal["all"] | list[str] | None:
    """The tools a run's spec asks approval for."""
    asked = spec.approval
    return asked if asked is None or asked == "all" else asked.tools


def _add_usage(totals: dict[str, int], usage: Usage) -> None:
    """Add ``usage`` to a usage dict. A cache count enters it only when not zero, so a usage
    dict of an upstream without caching is what it always was."""
    totals["input_tokens"] += usage.input_tokens
    totals["output_tokens"] += usage.output_tokens
    for name, count in (
        ("cache_read_input_tokens", usage.cache_read_tokens),
        ("cache_creation_input_tokens", usage.cache_write_tokens),
    ):
        if count:
            totals[name] = totals.get(name, 0) + count


def _text_within(total: int, limit: int) -> int:
    """``total``, the bytes of a step's text and reasoning so far, if within ``limit``."""
    if total > limit:
        raise ModelOutputLimitError(
            f"the model's text and reasoning in one step passed {limit} bytes (max_step_text_bytes)"
        )
    return total


def _utf8_size(text: str) -> int:
    """The bytes ``text`` takes in UTF-8 (without encoding it when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _check_model_name(what: str, value: str) -> None:
    if len(value) > MAX_MODEL_NAME_LENGTH:
        raise UpstreamProtocolError(
            f"the model sent a {what} of {len(value)} characters (at most {MAX_MODEL_NAME_LENGTH})"
        )
