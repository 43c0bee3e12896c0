"""Specification of the scripted ``demo`` model (``streams/demo.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from streams.builtin.demo import DemoModel, plan_tool_calls
from streams.models import ModelOutput, TextDelta, ToolCallDelta, ToolCallStart, Usage

BUILTIN = ["clock", "countdown", "calculator", "sleep"]


@pytest.mark.parametrize(
    ("prompt", "calls"),
    [
        pytest.param("What time is it?", [("clock", {})], id="time"),
        pytest.param("what is the date today", [("clock", {})], id="date"),
        pytest.param("Which DAY is it", [("clock", {})], id="day-any-case"),
        pytest.param("count down from 7", [("countdown", {"start": 7})], id="countdown-from"),
        pytest.param("Countdown please", [("countdown", {"start": 5})], id="countdown-default"),
        pytest.param("count-down from 3", [("countdown", {"start": 3})], id="count-hyphen-down"),
        pytest.param(
            "what is 2 + 3 * 4?",
            [("calculator", {"expression": "2 + 3 * 4"})],
            id="arithmetic",
        ),
        pytest.param(
            "compute (1 + 2) ** 3 now",
            [("calculator", {"expression": "(1 + 2) ** 3"})],
            id="arithmetic-with-parens",
        ),
        pytest.param("sleep 2 seconds", [("sleep", {"seconds": 2.0})], id="sleep"),
        pytest.param("wait for 1.5s", [("sleep", {"seconds": 1.5})], id="wait-for"),
        pytest.param("hello there", [], id="nothing-asked"),
        pytest.param("sometimes at lunchtime", [], id="time-inside-words"),
    ],
)
def test_plan_maps_the_prompt_to_builtin_tools(
    prompt: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    assert plan_tool_calls(prompt, BUILTIN) == calls


@pytest.mark.parametrize(
    ("prompt", "calls"),
    [
        pytest.param("check get_weather for Paris", [("get_weather", {})], id="by-name"),
        pytest.param("check GET_WEATHER for Paris", [("get_weather", {})], id="any-case"),
        pytest.param("get_weathers", [], id="whole-word-only"),
        pytest.param(
            "read_gps then get_weather",
            [("read_gps", {}), ("get_weather", {})],
            id="several",
        ),
    ],
)
def test_plan_calls_client_tools_named_in_the_prompt(
    prompt: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    assert plan_tool_calls(prompt, ["get_weather", "read_gps"]) == calls


@pytest.mark.parametrize(
    ("available", "calls"),
    [
        pytest.param([], [], id="none-offered"),
        pytest.param(["countdown"], [("countdown", {"start": 3})], id="only-countdown"),
        pytest.param(["clock"], [("clock", {})], id="only-clock"),
        pytest.param(["sleep", "calculator"], [], id="others-offered"),
    ],
)
def test_plan_calls_only_offered_tools(
    available: list[str], calls: list[tuple[str, dict[str, Any]]]
) -> None:
    assert plan_tool_calls("What time is it? Count down from 3", available) == calls


@pytest.mark.parametrize(
    ("prompt", "order"),
    [
        ("count down from 3, then tell me the time", ["countdown", "clock"]),
        ("what time is it, then count down from 3", ["clock", "countdown"]),
        ("sleep 2 seconds and compute 6*7", ["sleep", "calculator"]),
        (
            "compute 6*7, sleep 2 seconds, the time, count down",
            ["calculator", "sleep", "clock", "countdown"],
        ),
    ],
)
@pytest.mark.parametrize("available", [BUILTIN, BUILTIN[::-1]], ids=["offered", "reversed"])
def test_plan_follows_the_order_of_the_prompt_not_of_the_tools(
    prompt: str, order: list[str], available: list[str]
) -> None:
    assert [name for name, _ in plan_tool_calls(prompt, available)] == order


# -- streaming ----------------------------------------------------------------------------


async def collect(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[str] = ()
) -> list[ModelOutput]:
    model = DemoModel(token_delay=0)
    offered = [{"name": name, "description": "", "parameters": {}} for name in tools]
    return [item async for item in model.stream(messages, offered)]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def text_of(items: Sequence[ModelOutput]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def arguments_by_call(items: Sequence[ModelOutput]) -> dict[int, str]:
    fragments: dict[int, str] = {}
    for item in items:
        if isinstance(item, ToolCallDelta):
            fragments[item.index] = fragments.get(item.index, "") + item.arguments
    return fragments


def test_demo_model_is_named_demo_by_default() -> None:
    assert DemoModel().name == "demo"
    assert DemoModel("other").name == "other"


async def test_stream_with_a_tool_request_says_so_then_calls_the_tool() -> None:
    items = await collect([user("what is 2 + 3 * 4?")], ["calculator", "clock"])

    assert text_of(items) == "Let me use calculator for that."
    starts = [item for item in items if isinstance(item, ToolCallStart)]
    assert starts == [ToolCallStart(index=0, name="calculator")]
    assert json.loads(arguments_by_call(items)[0]) == {"expression": "2 + 3 * 4"}


async def test_stream_calls_several_tools_in_prompt_order() -> None:
    items = await collect(
        [user("What time is it? Also count down from 5.")], ["countdown", "clock"]
    )

    assert text_of(items) == "Let me use clock and countdown for that."
    starts = [item for item in items if isinstance(item, ToolCallStart)]
    assert starts == [ToolCallStart(0, "clock"), ToolCallStart(1, "countdown")]
    assert {i: json.loads(a) for i, a in arguments_by_call(items).items()} == {
        0: {},
        1: {"start": 5},
    }


async def test_stream_orders_text_then_each_call_start_before_its_deltas() -> None:
    items = await collect([user("count down from 9 and tell me the time")], BUILTIN)

    kinds = [type(item).__name__ for item in items]
    first_call = kinds.index("ToolCallStart")
    assert set(kinds[:first_call]) == {"TextDelta"}
    assert "TextDelta" not in kinds[first_call:]
    started: set[int] = set()
    for item in items:
        if isinstance(item, ToolCallStart):
            started.add(item.index)
        elif isinstance(item, ToolCallDelta):
            assert item.index in started
            assert item.index == max(started)  # a call's deltas come before the next call


async def test_stream_sends_tool_arguments_in_several_fragments() -> None:
    items = await collect([user("count down from 7")], ["countdown"])

    fragments = [item.arguments for item in items if isinstance(item, ToolCallDelta)]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == {"start": 7}


@pytest.mark.parametrize(
    "prompt",
    ["What time is it?", "count down from 7", "sleep 2 seconds", "2 + 2", "use get_weather"],
)
async def test_stream_arguments_join_to_the_planned_json(prompt: str) -> None:
    tools = [*BUILTIN, "get_weather"]

    items = await collect([user(prompt)], tools)

    planned = plan_tool_calls(prompt, tools)
    calls = [item for item in items if isinstance(item, ToolCallStart)]
    assert [call.name for call in calls] == [name for name, _ in planned]
    arguments = arguments_by_call(items)
    assert [json.loads(arguments[i]) for i in range(len(planned))] == [a for _, a in planned]


@pytest.mark.parametrize(
    ("messages", "tools"),
    [
        pytest.param([user("What time is it?")], ["clock"], id="tool-call"),
        pytest.param([user("hello")], [], id="plain-answer"),
        pytest.param([], [], id="no-messages"),
    ],
)
async def test_stream_ends_with_exactly_one_usage(
    messages: list[dict[str, Any]], tools: list[str]
) -> None:
    items = await collect(messages, tools)

    assert isinstance(items[-1], Usage)
    assert sum(isinstance(item, Usage) for item in items) == 1


async def test_usage_counts_prompt_words_and_text_deltas() -> None:
    messages = [{"role": "system", "content": "be brief"}, user("What time is it?")]

    items = await collect(messages, ["clock"])

    text_deltas = sum(isinstance(item, TextDelta) for item in items)
    assert items[-1] == Usage(input_tokens=6, output_tokens=text_deltas)


async def test_stream_streams_text_word_by_word() -> None:
    items = await collect([user("What time is it?")], ["clock"])

    words = [item.text for item in items if isinstance(item, TextDelta)]
    assert words == ["Let", " me", " use", " clock", " for", " that."]


async def test_stream_without_a_matching_tool_explains_itself() -> None:
    items = await collect([user("tell me a story please")], ["calculator"])

    assert text_of(items) == (
        "I am the demo model, a script rather than an LLM. You wrote 5 words. Ask me the "
        "time, a sum such as 2 + 3 * 4, or to count down from 5, with the matching tools "
        "enabled, and I will call them."
    )
    assert not any(isinstance(item, ToolCallStart | ToolCallDelta) for item in items)


async def test_stream_reads_text_parts_of_list_content() -> None:
    message = {"role": "user", "content": [{"type": "text", "text": "what"}, {"text": "time"}]}

    items = await collect([message], ["clock"])

    assert [item for item in items if isinstance(item, ToolCallStart)] == [
        ToolCallStart(0, "clock")
    ]


def tool_turn(name: str, content: str, prompt: str = "do it") -> list[dict[str, Any]]:
    return [
        user(prompt),
        {
            "role": "assistant",
            "content": "Let me",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": content},
    ]


@pytest.mark.parametrize(
    ("name", "content", "answer"),
    [
        pytest.param(
            "calculator",
            '{"expression": "2 + 3", "value": 5}',
            "Here is what I found: 2 + 3 = 5.",
            id="calculator",
        ),
        pytest.param(
            "clock",
            '{"iso": "2030-01-02T03:04:05+00:00", "utc_offset_hours": 0}',
            "Here is what I found: the time is 2030-01-02T03:04:05+00:00.",
            id="clock",
        ),
        pytest.param(
            "countdown",
            '{"counted_from": 3, "done": "liftoff"}',
            "Here is what I found: the countdown from 3 reached liftoff.",
            id="countdown",
        ),
        pytest.param(
            "sleep",
            '{"slept": 1.0}',
            'Here is what I found: sleep returned {"slept": 1.0}.',
            id="other-tool",
        ),
        pytest.param(
            "calculator",
            '{"error": "division by zero"}',
            "Here is what I found: calculator failed (division by zero).",
            id="failed-tool",
        ),
        pytest.param(
            "get_weather", "sunny", "Here is what I found: get_weather said sunny.", id="not-json"
        ),
        pytest.param(
            "get_weather", '"é"', 'Here is what I found: get_weather returned "é".', id="unicode"
        ),
    ],
)
async def test_stream_with_tool_results_answers_quoting_them(
    name: str, content: str, answer: str
) -> None:
    items = await collect(tool_turn(name, content, prompt="what time is it"), BUILTIN)

    assert text_of(items) == answer
    assert not any(isinstance(item, ToolCallStart | ToolCallDelta) for item in items)
    assert isinstance(items[-1], Usage)


async def test_stream_quotes_every_tool_result_in_order() -> None:
    messages = [
        user("time and 1+1"),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "a", "function": {"name": "clock"}},
                {"id": "b", "function": {"name": "calculator"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": '{"iso": "T"}'},
        {"role": "tool", "tool_call_id": "b", "content": '{"expression": "1+1", "value": 2}'},
    ]

    items = await collect(messages, BUILTIN)

    assert text_of(items) == "Here is what I found: the time is T; 1+1 = 2."


async def test_tool_results_before_the_last_user_message_are_ignored() -> None:
    messages = [*tool_turn("clock", '{"iso": "T"}'), user("count down from 2")]

    items = await collect(messages, BUILTIN)

    assert [item for item in items if isinstance(item, ToolCallStart)] == [
        ToolCallStart(0, "countdown")
    ]
