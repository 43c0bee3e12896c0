"""The agent loop without sockets: steps, stop reasons, client tools handed back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from streams.builtin.tools import builtin_tools
from streams.connection import Connection
from streams.events import EventType
from streams.models import (
    Finish,
    ModelOutput,
    ModelRegistry,
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.runs.manager import RunManager
from streams.tools import Emit, Tool, ToolRegistry
from tests.support import ScriptedModel, all_events, run_spec


async def test_max_steps_stops_the_agent_loop(manager: RunManager) -> None:
    run = manager.start(
        run_spec("count down from 2", ["countdown"], max_steps=1),
        Connection("c"),
        default_on_disconnect="continue",
    )
    await run.wait()
    events = await all_events(manager, run.id)
    assert events[-1].type.value == "run.completed"
    assert events[-1].data["stop_reason"] == "max_steps"
    assert events[-1].data["steps"] == 1
    assert sum(1 for e in events if e.type.value == "message.started") == 1


async def test_in_return_mode_the_run_ends_after_the_step_calling_client_tools(
    manager: RunManager,
) -> None:
    spec = run_spec(
        "what time is it, and call get_location",
        ["clock"],
        client_tools=[{"name": "get_location"}],
        client_tool_mode="return",
    )
    run = manager.start(spec, Connection("c"), default_on_disconnect="continue")
    await run.wait()
    events = await all_events(manager, run.id)
    types = [e.type.value for e in events]
    assert events[-1].type.value == "run.completed"
    assert events[-1].data["stop_reason"] == "client_tool_calls"
    # The server tool of the same step ran; the client tool was handed back, not awaited.
    assert [e.data["name"] for e in events if e.type.value == "tool.started"] == ["clock"]
    assert "client_tool.requested" not in types
    assert [e.data["name"] for e in events if e.type.value == "tool_call.completed"] == [
        "clock",
        "get_location",
    ]


async def test_a_steps_first_token_reaches_readers_before_the_rest_of_its_read() -> None:
    models = ModelRegistry()
    # Text that came in one upstream read: every token at once, with no await between.
    models.register(
        ScriptedModel("one-read", [TextDelta(t) for t in ("first", " second", " third")])
    )
    async with RunManager(models=models, tools=builtin_tools()) as manager:
        run = manager.start(
            run_spec("hi", model="one-read"),
            Connection("c"),
            default_on_disconnect="continue",
        )
        cursor, deltas = 0, []
        while not deltas:
            batch = await run.log.read(cursor, limit=100, timeout=5)
            cursor = batch.events[-1].seq
            deltas = [e.data["delta"] for e in batch.events if e.type is EventType.MESSAGE_DELTA]
        await run.wait()
    assert deltas == ["first"]


async def lookup(arguments: Mapping[str, Any], emit: Emit) -> Any:
    return {"found": arguments["q"]}


async def run_steps(model: ScriptedModel) -> list[tuple[str, str | None, dict[str, Any]]]:
    models = ModelRegistry()
    models.register(model)
    tools = ToolRegistry()
    tools.register(Tool("lookup", "Looks it up.", {"type": "object"}, lookup))
    async with RunManager(models=models, tools=tools) as manager:
        run = manager.start(
            run_spec("find x", ["lookup"], model=model.name),
            Connection("c"),
            default_on_disconnect="continue",
        )
        await run.wait()
        events = await all_events(manager, run.id)
    assert all(e.run_id == run.id for e in events)
    return [(e.type.value, e.producer, dict(e.data)) for e in events]


THINKING = {"type": "thinking", "thinking": "I should look.", "signature": "c2lnbmVk"}


async def test_signed_thinking_with_a_tool_call_is_logged_and_sent_back_first() -> None:
    model = ScriptedModel(
        "steps",
        [
            ReasoningDelta("I should "),
            ReasoningDelta("look."),
            ReasoningSignature("c2lnbmVk"),
            TextDelta("Looking."),
            ToolCallStart(0, "lookup", "toolu_1"),
            ToolCallDelta(0, '{"q": "x"}'),
            Finish("tool_calls"),
            Usage(10, 5, cache_read_tokens=8),
        ],
        [TextDelta("Found x."), Finish("stop"), Usage(20, 3)],
    )

    events = await run_steps(model)

    m1, m2 = (
        next(d["message_id"] for t, p, d in events if t == "message.started" and p == producer)
        for producer in ("model.1", "model.2")
    )
    assert events[1:] == [
        ("message.started", "model.1", {"message_id": m1, "step": 1, "model": "steps"}),
        ("reasoning.delta", "model.1", {"message_id": m1, "delta": "I should "}),
        ("reasoning.delta", "model.1", {"message_id": m1, "delta": "look."}),
        ("reasoning.signature", "model.1", {"message_id": m1, "signature": "c2lnbmVk"}),
        ("message.delta", "model.1", {"message_id": m1, "delta": "Looking."}),
        (
            "tool_call.started",
            "model.1",
            {"message_id": m1, "call_id": "toolu_1", "name": "lookup"},
        ),
        ("tool_call.delta", "model.1", {"call_id": "toolu_1", "delta": '{"q": "x"}'}),
        (
            "tool_call.completed",
            "model.1",
            {"call_id": "toolu_1", "name": "lookup", "arguments": '{"q": "x"}'},
        ),
        (
            "message.completed",
            "model.1",
            {
                "message_id": m1,
                "text": "Looking.",
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 8},
                "finish_reason": "tool_calls",
                "reasoning": [THINKING],
            },
        ),
        (
            "tool.started",
            "toolu_1",
            {"call_id": "toolu_1", "name": "lookup", "arguments": {"q": "x"}},
        ),
        ("tool.completed", "toolu_1", {"call_id": "toolu_1", "output": {"found": "x"}}),
        ("message.started", "model.2", {"message_id": m2, "step": 2, "model": "steps"}),
        ("message.delta", "model.2", {"message_id": m2, "delta": "Found x."}),
        (
            "message.completed",
            "model.2",
            {
                "message_id": m2,
                "text": "Found x.",
                "usage": {"input_tokens": 20, "output_tokens": 3},
                "finish_reason": "stop",
            },
        ),
        (
            "run.completed",
            None,
            {
                "output": "Found x.",
                "steps": 2,
                "stop_reason": "answer",
                "finish_reason": "stop",
                "usage": {"input_tokens": 30, "output_tokens": 8, "cache_read_input_tokens": 8},
            },
        ),
    ]
    assert model.conversations[1] == [
        {"role": "user", "content": "find x"},
        {
            "role": "assistant",
            "content": [THINKING, {"type": "text", "text": "Looking."}],
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": '{"found": "x"}'},
    ]


@pytest.mark.parametrize(
    ("first", "content"),
    [
        pytest.param(
            [ReasoningSignature("c2lnbmVk")],
            [{"type": "thinking", "thinking": "", "signature": "c2lnbmVk"}],
            id="reasoning-without-text-has-no-text-part",
        ),
        pytest.param([TextDelta("Looking.")], "Looking.", id="no-reasoning-the-text-as-before"),
    ],
)
async def test_the_next_steps_assistant_message(first: list[ModelOutput], content: Any) -> None:
    call = [ToolCallStart(0, "lookup", "toolu_1"), ToolCallDelta(0, '{"q": "x"}')]
    model = ScriptedModel("steps", [*first, *call], [TextDelta("Found x.")])

    await run_steps(model)

    assert model.conversations[1][1]["content"] == content


@pytest.mark.parametrize(
    ("finish", "fields"),
    [
        pytest.param([], {}, id="none"),
        pytest.param([Finish("length")], {"finish_reason": "length"}, id="length"),
        pytest.param(
            [Finish("stop_sequence", "END")],
            {"finish_reason": "stop_sequence", "stop_sequence": "END"},
            id="stop-sequence",
        ),
    ],
)
async def test_run_completed_has_the_last_steps_finish_reason(
    finish: list[ModelOutput], fields: dict[str, Any]
) -> None:
    events = await run_steps(ScriptedModel("steps", [TextDelta("Hi"), *finish]))

    assert events[-1] == (
        "run.completed",
        None,
        {
            "output": "Hi",
            "steps": 1,
            "stop_reason": "answer",
            **fields,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    )
