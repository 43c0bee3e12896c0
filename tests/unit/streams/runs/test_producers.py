"""The producers without a manager: a tool call past its timeout; a model step's reasoning,
finish reason and usage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry import trace

from streams.connection import Connection
from streams.errors import ModelOutputLimitError
from streams.events import EventType
from streams.log import MemoryEventLog
from streams.models import (
    Finish,
    ModelOutput,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    TextDelta,
    Usage,
)
from streams.runs.limits import RunLimits
from streams.runs.producers import Producers
from streams.runs.run import Run
from streams.tools import Emit, Tool, ToolRegistry
from tests.support import ScriptedModel, run_spec


async def hang(arguments: Mapping[str, Any], emit: Emit) -> Any:
    await asyncio.Event().wait()  # never set: only the timeout ends it


def call(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


async def test_a_tool_past_its_timeout_fails_with_tool_timeout() -> None:
    tools = ToolRegistry()
    tools.register(Tool("hang", "Never answers.", {"type": "object"}, hang, timeout=0.01))
    producers = Producers(tools=tools, limits=RunLimits(), tracer=trace.NoOpTracer())
    run = Run(
        "run_1", run_spec("hi", ["hang"]), MemoryEventLog("run_1"), Connection("c"), "continue"
    )

    content = await producers.tool_call(run, call("call_1", "hang"))

    batch = await run.log.read(0, limit=10, timeout=0)
    assert [e.type for e in batch.events] == [EventType.TOOL_STARTED, EventType.TOOL_FAILED]
    assert batch.events[-1].data == {
        "call_id": "call_1",
        "error": {"code": "tool_timeout", "message": "tool 'hang' did not finish within 0.01s"},
    }
    assert json.loads(content) == {"error": "tool 'hang' did not finish within 0.01s"}
    assert run.producers["call_1"].status == "failed"


async def test_a_client_tool_with_no_result_within_its_timeout_fails_with_tool_timeout() -> None:
    producers = Producers(
        tools=ToolRegistry(), limits=RunLimits(client_tool_timeout=0.01), tracer=trace.NoOpTracer()
    )
    spec = run_spec("hi", client_tools=[{"name": "get_location"}])
    run = Run("run_1", spec, MemoryEventLog("run_1"), Connection("c"), "continue")

    await producers.tool_call(run, call("call_1", "get_location"))

    batch = await run.log.read(0, limit=10, timeout=0)
    assert batch.events[-1].type is EventType.TOOL_FAILED
    assert batch.events[-1].data["error"] == {
        "code": "tool_timeout",
        "message": "client tool 'get_location' sent no result within 0.01s",
    }
    assert run.snapshot()["pending_client_tools"] == []


def step_run() -> Run:
    return Run("run_1", run_spec("hi"), MemoryEventLog("run_1"), Connection("c"), "continue")


async def model_step(
    outputs: list[ModelOutput], run: Run | None = None, limits: RunLimits | None = None
) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """The step's result and its events after ``message.started`` (type, data)."""
    run = run or step_run()
    producers = Producers(
        tools=ToolRegistry(), limits=limits or RunLimits(), tracer=trace.NoOpTracer()
    )
    try:
        result: Any = await producers.model_step(
            run, ScriptedModel("scripted", outputs), [], [], 1, "model.1"
        )
    except ModelOutputLimitError as exc:
        result = exc
    batch = await run.log.read(1, limit=100, timeout=0)
    return result, [(e.type.value, dict(e.data)) for e in batch.events]


async def test_a_step_with_signed_thinking_logs_its_reasoning_and_completes_with_it() -> None:
    result, events = await model_step(
        [
            ReasoningDelta("Let me "),
            ReasoningDelta("think."),
            ReasoningSignature("c2ln"),
            TextDelta("Done."),
            Finish("stop"),
            Usage(3, 4),
        ]
    )

    thinking = {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"}
    assert events == [
        ("reasoning.delta", {"message_id": "msg_1_1", "delta": "Let me "}),
        ("reasoning.delta", {"message_id": "msg_1_1", "delta": "think."}),
        ("reasoning.signature", {"message_id": "msg_1_1", "signature": "c2ln"}),
        ("message.delta", {"message_id": "msg_1_1", "delta": "Done."}),
        (
            "message.completed",
            {
                "message_id": "msg_1_1",
                "text": "Done.",
                "usage": {"input_tokens": 3, "output_tokens": 4},
                "finish_reason": "stop",
                "reasoning": [thinking],
            },
        ),
    ]
    assert (result.reasoning, result.finish_reason, result.stop_sequence) == (
        [thinking],
        "stop",
        None,
    )


@pytest.mark.parametrize(
    ("outputs", "blocks"),
    [
        pytest.param(
            [ReasoningSignature("s")],
            [{"type": "thinking", "thinking": "", "signature": "s"}],
            id="a-signature-alone-signs-empty-thinking",
        ),
        pytest.param(
            [
                ReasoningDelta("a"),
                ReasoningSignature("s1"),
                ReasoningDelta("b"),
                ReasoningSignature("s2"),
            ],
            [
                {"type": "thinking", "thinking": "a", "signature": "s1"},
                {"type": "thinking", "thinking": "b", "signature": "s2"},
            ],
            id="two-signed-blocks",
        ),
        pytest.param(
            [RedactedReasoning("enc"), ReasoningDelta("a"), ReasoningSignature("s")],
            [
                {"type": "redacted_thinking", "data": "enc"},
                {"type": "thinking", "thinking": "a", "signature": "s"},
            ],
            id="redacted-then-thinking",
        ),
        pytest.param(
            [ReasoningDelta("unsigned "), ReasoningDelta("thought"), TextDelta("x")],
            [{"type": "thinking", "thinking": "unsigned thought", "signature": ""}],
            id="unsigned-thinking-closed-at-the-end",
        ),
        pytest.param(
            [ReasoningDelta("a"), RedactedReasoning("enc")],
            [
                {"type": "thinking", "thinking": "a", "signature": ""},
                {"type": "redacted_thinking", "data": "enc"},
            ],
            id="a-redacted-block-closes-open-thinking",
        ),
        pytest.param(
            [ReasoningSignature(""), RedactedReasoning(""), ReasoningDelta("")],
            [],
            id="empty-ones-are-nothing",
        ),
    ],
)
async def test_a_steps_reasoning_blocks_in_order(
    outputs: list[ModelOutput], blocks: list[dict[str, Any]]
) -> None:
    result, events = await model_step(outputs)

    assert result.reasoning == blocks
    assert events[-1][1].get("reasoning", []) == blocks


async def test_a_redacted_block_is_logged_as_it_came() -> None:
    _, events = await model_step([RedactedReasoning("EmwKAhgB==")])

    assert events[0] == ("reasoning.redacted", {"message_id": "msg_1_1", "data": "EmwKAhgB=="})


async def test_a_step_without_reasoning_or_finish_completes_as_before() -> None:
    result, events = await model_step([TextDelta("hi"), Usage(1, 1)])

    assert events[-1] == (
        "message.completed",
        {"message_id": "msg_1_1", "text": "hi", "usage": {"input_tokens": 1, "output_tokens": 1}},
    )
    assert (result.reasoning, result.finish_reason) == ([], None)


@pytest.mark.parametrize(
    ("finishes", "fields"),
    [
        pytest.param([Finish("length")], {"finish_reason": "length"}, id="length"),
        pytest.param(
            [Finish("stop_sequence", "END")],
            {"finish_reason": "stop_sequence", "stop_sequence": "END"},
            id="stop-sequence",
        ),
        pytest.param(
            [Finish("stop"), Finish("tool_calls")], {"finish_reason": "tool_calls"}, id="last-wins"
        ),
        pytest.param(
            [Finish("stop", "ignored")],
            {"finish_reason": "stop"},
            id="sequence-only-for-its-reason",
        ),
    ],
)
async def test_the_finish_reason_in_message_completed(
    finishes: list[ModelOutput], fields: dict[str, Any]
) -> None:
    _, events = await model_step(finishes)

    assert events[-1] == (
        "message.completed",
        {
            "message_id": "msg_1_1",
            "text": "",
            "usage": {"input_tokens": 0, "output_tokens": 0},
            **fields,
        },
    )


async def test_a_step_result_keeps_the_stop_sequence_only_for_its_reason() -> None:
    met, _ = await model_step([Finish("stop_sequence", "END")])
    other, _ = await model_step([Finish("stop", "END")])

    assert (met.finish_reason, met.stop_sequence) == ("stop_sequence", "END")
    assert (other.finish_reason, other.stop_sequence) == ("stop", None)


async def test_cache_counts_enter_usage_only_when_not_zero_and_add_up_in_the_run() -> None:
    run = step_run()

    _, events = await model_step(
        [Usage(5, 1, cache_read_tokens=100), Usage(0, 2, cache_read_tokens=10)], run
    )
    await model_step([Usage(1, 1, cache_write_tokens=7)], run)

    assert events[-1][1]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 3,
        "cache_read_input_tokens": 110,
    }
    assert run.usage == {
        "input_tokens": 6,
        "output_tokens": 4,
        "cache_read_input_tokens": 110,
        "cache_creation_input_tokens": 7,
    }


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param([TextDelta("abc"), ReasoningDelta("def")], id="reasoning-after-text"),
        pytest.param([ReasoningDelta("abc"), TextDelta("def")], id="text-after-reasoning"),
    ],
)
async def test_reasoning_and_text_share_the_step_text_bound(outputs: list[ModelOutput]) -> None:
    result, events = await model_step(outputs, limits=RunLimits(max_step_text_bytes=5))

    assert isinstance(result, ModelOutputLimitError)
    assert (
        str(result)
        == "the model's text and reasoning in one step passed 5 bytes (max_step_text_bytes)"
    )
    assert events[-1][0] == "message.failed"


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param(
            [ReasoningSignature("abc"), RedactedReasoning("def")], id="signature-and-redacted"
        ),
        pytest.param([ReasoningSignature("abcdef")], id="one-signature"),
    ],
)
async def test_signatures_and_redacted_blocks_have_their_own_bound(
    outputs: list[ModelOutput],
) -> None:
    # 4 bytes of text beside them: the bound of the opaque bytes is not the text's.
    result, events = await model_step(
        [TextDelta("text"), *outputs], limits=RunLimits(max_step_text_bytes=5)
    )

    assert isinstance(result, ModelOutputLimitError)
    assert str(result) == (
        "the model's reasoning signatures and redacted blocks in one step passed 5 bytes "
        "(max_step_text_bytes)"
    )
    assert events[-1][0] == "message.failed"


async def test_opaque_bytes_within_their_bound_pass_beside_text_at_its_bound() -> None:
    result, events = await model_step(
        [TextDelta("12345"), ReasoningSignature("abcde")], limits=RunLimits(max_step_text_bytes=5)
    )

    assert result.reasoning == [{"type": "thinking", "thinking": "", "signature": "abcde"}]
    assert events[-1][0] == "message.completed"
