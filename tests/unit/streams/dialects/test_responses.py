"""Specification of the OpenAI Responses dialect (``streams/dialects/responses.py``): a run's
native events as Responses stream events, byte for byte, in the order OpenAI sends them, each
one as the ``openai`` package's own types read it and its stream helper accumulates it."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Iterator
from typing import Any

import httpx2  # the HTTP client the openai package is built on
import openai
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from streams.dialects.responses import ResponsesEncoder
from streams.events import Event, EventType
from streams.spec import ChatMessage, ClientTool, RunSpec
from tests.unit.streams.dialects.support import NativeEvents, parse, split_frames

RUN = "run_abc"
RESPONSE = "resp_abc"
MODEL = "demo"
SPEC = RunSpec(
    model=MODEL,
    messages=[ChatMessage(role="user", content="hi")],
    tools=["calculator"],
    client_tools=[ClientTool(name="clock", description="the time")],
)
TOOLS = [
    {
        "type": "function",
        "name": "clock",
        "description": "the time",
        "parameters": {"type": "object", "properties": {}},
        "strict": False,
    },
    {
        "type": "mcp",
        "server_label": "gateway",
        "allowed_tools": ["calculator"],
        "require_approval": "never",
    },
]


class Events(NativeEvents):
    """This module's run."""

    def __init__(self) -> None:
        super().__init__(RUN, model=MODEL, tools=["calculator"])


def encoder() -> ResponsesEncoder:
    return ResponsesEncoder.for_run(RUN, SPEC)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def emitted(events: list[Event]) -> list[dict[str, Any]]:
    """The Responses events of a whole run, as a client reads them off the wire."""
    return [parse(frame)[2] for frame in split_frames(encoder()(events))]


# -- scenarios: one run each, and the (type, fields) sequence it must encode to ------------


def plain_text(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.delta("Hel"),
        ev.delta("lo"),
        ev.message_done("Hello"),
        ev.run_completed(usage=(7, 3)),
    ]


def text_then_function_call(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.delta("Let me check."),
        ev.call("c1", "clock"),
        ev.call_delta("c1", '{"tz":'),
        ev.call_delta("c1", '"UTC"}'),
        ev.call_done("c1", "clock", '{"tz":"UTC"}'),
        ev.message_done("Let me check."),
        ev.client_tool("c1"),
        ev.run_completed(),
    ]


def parallel_function_calls(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.call("c1", "clock"),
        ev.call("c2", "clock"),
        ev.call_delta("c1", '{"tz":'),
        ev.call_delta("c2", '{"tz":'),
        ev.call_delta("c2", '"CET"}'),
        ev.call_delta("c1", '"UTC"}'),
        ev.call_done("c1", "clock", '{"tz":"UTC"}'),
        ev.call_done("c2", "clock", '{"tz":"CET"}'),
        ev.message_done(""),
        ev.run_completed(),
    ]


def gateway_tool_completed(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message("m1"),
        ev.call("c1", "calculator", "m1"),
        ev.call_delta("c1", '{"expression":"2+2"}'),
        ev.call_done("c1", "calculator", '{"expression":"2+2"}'),
        ev.message_done("", "m1"),
        ev.tool_started("c1"),
        ev.tool_delta("c1", "working"),
        ev.tool_done("c1", {"value": 4}),
        ev.message("m2", step=1),
        ev.delta("4", "m2"),
        ev.message_done("4", "m2"),
        ev.run_completed(),
    ]


def gateway_tool_failed(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message("m1"),
        ev.call("c1", "calculator", "m1"),
        ev.call_done("c1", "calculator", '{"expression":"1/0"}'),
        ev.message_done("", "m1"),
        ev.tool_started("c1"),
        ev.tool_failed("c1"),
        ev.message("m2", step=1),
        ev.delta("No.", "m2"),
        ev.message_done("No.", "m2"),
        ev.run_completed(),
    ]


def run_failed_mid_text(ev: Events) -> list[Event]:
    return [ev.run_started(), ev.message(), ev.delta("par"), ev.run_failed()]


def message_failed_mid_call(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.delta("par"),
        ev.call("c1", "clock"),
        ev.call_delta("c1", '{"tz"'),
        ev.message_failed(),
        ev.run_failed(),
    ]


def cancelled_mid_text(ev: Events) -> list[Event]:
    return [ev.run_started(), ev.message(), ev.delta("par"), ev.cancelled()]


def cancelled_mid_gateway_tool(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.call("c1", "calculator"),
        ev.call_done("c1", "calculator", "{}"),
        ev.message_done(""),
        ev.tool_started("c1"),
        ev.cancelled(),
    ]


def gap_then_text(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.gap(after=1, next_seq=9),
        ev.message("m2"),
        ev.delta("late", "m2"),
        ev.message_done("late", "m2"),
        ev.run_completed(),
    ]


def multi_step(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message("m1"),
        ev.delta("First", "m1"),
        ev.call("c1", "calculator", "m1"),
        ev.delta(" then", "m1"),
        ev.call_done("c1", "calculator", "{}"),
        ev.message_done("First then", "m1"),
        ev.tool_started("c1"),
        ev.tool_done("c1", 1),
        ev.message("m2", step=1),
        ev.call("c2", "calculator", "m2"),
        ev.call_done("c2", "calculator", "{}"),
        ev.message_done("", "m2"),
        ev.tool_started("c2"),
        ev.tool_done("c2", 2),
        ev.message("m3", step=2),
        ev.delta("Done", "m3"),
        ev.message_done("Done", "m3"),
        ev.run_completed(),
    ]


Scenario = Callable[[Events], list[Event]]

# What each run encodes to, one tuple per Responses event: its type, then the fields that
# place it (output_index, the item's type, id and status, the text or arguments it carries).
CREATED = [("response.created", "in_progress", []), ("response.in_progress", "in_progress", [])]
EXPECTED: dict[str, tuple[Scenario, list[tuple[Any, ...]]]] = {
    "plain text": (
        plain_text,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "Hel"),
            ("response.output_text.delta", 0, 0, "lo"),
            ("response.output_text.done", 0, 0, "Hello"),
            ("response.content_part.done", 0, 0, "Hello"),
            ("response.output_item.done", 0, "message", "m1", "completed"),
            ("response.completed", "completed", [("m1", "completed")]),
        ],
    ),
    "text then a function call": (
        text_then_function_call,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "Let me check."),
            ("response.output_text.done", 0, 0, "Let me check."),
            ("response.content_part.done", 0, 0, "Let me check."),
            ("response.output_item.done", 0, "message", "m1", "completed"),
            ("response.output_item.added", 1, "function_call", "fc_c1", "in_progress"),
            ("response.function_call_arguments.delta", 1, '{"tz":'),
            ("response.function_call_arguments.delta", 1, '"UTC"}'),
            ("response.function_call_arguments.done", 1, '{"tz":"UTC"}'),
            ("response.output_item.done", 1, "function_call", "fc_c1", "completed"),
            ("response.completed", "completed", [("m1", "completed"), ("fc_c1", "completed")]),
        ],
    ),
    "parallel function calls": (
        parallel_function_calls,
        [
            *CREATED,
            ("response.output_item.added", 0, "function_call", "fc_c1", "in_progress"),
            ("response.output_item.added", 1, "function_call", "fc_c2", "in_progress"),
            ("response.function_call_arguments.delta", 0, '{"tz":'),
            ("response.function_call_arguments.delta", 1, '{"tz":'),
            ("response.function_call_arguments.delta", 1, '"CET"}'),
            ("response.function_call_arguments.delta", 0, '"UTC"}'),
            ("response.function_call_arguments.done", 0, '{"tz":"UTC"}'),
            ("response.output_item.done", 0, "function_call", "fc_c1", "completed"),
            ("response.function_call_arguments.done", 1, '{"tz":"CET"}'),
            ("response.output_item.done", 1, "function_call", "fc_c2", "completed"),
            (
                "response.completed",
                "completed",
                [("fc_c1", "completed"), ("fc_c2", "completed")],
            ),
        ],
    ),
    "a gateway tool that completes": (
        gateway_tool_completed,
        [
            *CREATED,
            ("response.output_item.added", 0, "mcp_call", "mcp_c1", "in_progress"),
            ("response.mcp_call_arguments.delta", 0, '{"expression":"2+2"}'),
            ("response.mcp_call_arguments.done", 0, '{"expression":"2+2"}'),
            ("response.mcp_call.in_progress", 0),
            ("response.mcp_call.completed", 0),
            ("response.output_item.done", 0, "mcp_call", "mcp_c1", "completed"),
            ("response.output_item.added", 1, "message", "m2", "in_progress"),
            ("response.content_part.added", 1, 0, ""),
            ("response.output_text.delta", 1, 0, "4"),
            ("response.output_text.done", 1, 0, "4"),
            ("response.content_part.done", 1, 0, "4"),
            ("response.output_item.done", 1, "message", "m2", "completed"),
            ("response.completed", "completed", [("mcp_c1", "completed"), ("m2", "completed")]),
        ],
    ),
    "a gateway tool that fails": (
        gateway_tool_failed,
        [
            *CREATED,
            ("response.output_item.added", 0, "mcp_call", "mcp_c1", "in_progress"),
            ("response.mcp_call_arguments.done", 0, '{"expression":"1/0"}'),
            ("response.mcp_call.in_progress", 0),
            ("response.mcp_call.failed", 0),
            ("response.output_item.done", 0, "mcp_call", "mcp_c1", "failed"),
            ("response.output_item.added", 1, "message", "m2", "in_progress"),
            ("response.content_part.added", 1, 0, ""),
            ("response.output_text.delta", 1, 0, "No."),
            ("response.output_text.done", 1, 0, "No."),
            ("response.content_part.done", 1, 0, "No."),
            ("response.output_item.done", 1, "message", "m2", "completed"),
            ("response.completed", "completed", [("mcp_c1", "failed"), ("m2", "completed")]),
        ],
    ),
    "run.failed while text is open": (
        run_failed_mid_text,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "par"),
            ("response.output_text.done", 0, 0, "par"),
            ("response.content_part.done", 0, 0, "par"),
            ("response.output_item.done", 0, "message", "m1", "incomplete"),
            ("response.failed", "failed", [("m1", "incomplete")]),
        ],
    ),
    "message.failed while a call is open": (
        message_failed_mid_call,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "par"),
            ("response.output_text.done", 0, 0, "par"),
            ("response.content_part.done", 0, 0, "par"),
            ("response.output_item.done", 0, "message", "m1", "completed"),
            ("response.output_item.added", 1, "function_call", "fc_c1", "in_progress"),
            ("response.function_call_arguments.delta", 1, '{"tz"'),
            ("response.output_item.done", 1, "function_call", "fc_c1", "incomplete"),
            ("response.failed", "failed", [("m1", "completed"), ("fc_c1", "incomplete")]),
        ],
    ),
    "cancelled while text is open": (
        cancelled_mid_text,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "par"),
            ("response.output_text.done", 0, 0, "par"),
            ("response.content_part.done", 0, 0, "par"),
            ("response.output_item.done", 0, "message", "m1", "incomplete"),
        ],
    ),
    "cancelled while a gateway tool runs": (
        cancelled_mid_gateway_tool,
        [
            *CREATED,
            ("response.output_item.added", 0, "mcp_call", "mcp_c1", "in_progress"),
            ("response.mcp_call_arguments.done", 0, "{}"),
            ("response.mcp_call.in_progress", 0),
            ("response.output_item.done", 0, "mcp_call", "mcp_c1", "incomplete"),
        ],
    ),
    "stream.gap": (
        gap_then_text,
        [
            *CREATED,
            ("error", "stream_gap", "events after seq 1 up to 8 are no longer retained"),
            ("response.output_item.added", 0, "message", "m2", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "late"),
            ("response.output_text.done", 0, 0, "late"),
            ("response.content_part.done", 0, 0, "late"),
            ("response.output_item.done", 0, "message", "m2", "completed"),
            ("response.completed", "completed", [("m2", "completed")]),
        ],
    ),
    "multi-step run": (
        multi_step,
        [
            *CREATED,
            ("response.output_item.added", 0, "message", "m1", "in_progress"),
            ("response.content_part.added", 0, 0, ""),
            ("response.output_text.delta", 0, 0, "First"),
            ("response.output_text.done", 0, 0, "First"),
            ("response.content_part.done", 0, 0, "First"),
            ("response.output_item.done", 0, "message", "m1", "completed"),
            ("response.output_item.added", 1, "mcp_call", "mcp_c1", "in_progress"),
            # Text after a call in the same step is an item of its own, after the call's.
            ("response.output_item.added", 2, "message", "m1.2", "in_progress"),
            ("response.content_part.added", 2, 0, ""),
            ("response.output_text.delta", 2, 0, " then"),
            ("response.mcp_call_arguments.done", 1, "{}"),
            ("response.output_text.done", 2, 0, " then"),
            ("response.content_part.done", 2, 0, " then"),
            ("response.output_item.done", 2, "message", "m1.2", "completed"),
            ("response.mcp_call.in_progress", 1),
            ("response.mcp_call.completed", 1),
            ("response.output_item.done", 1, "mcp_call", "mcp_c1", "completed"),
            ("response.output_item.added", 3, "mcp_call", "mcp_c2", "in_progress"),
            ("response.mcp_call_arguments.done", 3, "{}"),
            ("response.mcp_call.in_progress", 3),
            ("response.mcp_call.completed", 3),
            ("response.output_item.done", 3, "mcp_call", "mcp_c2", "completed"),
            ("response.output_item.added", 4, "message", "m3", "in_progress"),
            ("response.content_part.added", 4, 0, ""),
            ("response.output_text.delta", 4, 0, "Done"),
            ("response.output_text.done", 4, 0, "Done"),
            ("response.content_part.done", 4, 0, "Done"),
            ("response.output_item.done", 4, "message", "m3", "completed"),
            (
                "response.completed",
                "completed",
                [
                    ("m1", "completed"),
                    ("mcp_c1", "completed"),
                    ("m1.2", "completed"),
                    ("mcp_c2", "completed"),
                    ("m3", "completed"),
                ],
            ),
        ],
    ),
}
SCENARIOS = {name: scenario for name, (scenario, _) in EXPECTED.items()}


def brief(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event as its type and the fields that place it (see :data:`EXPECTED`)."""
    kind = event["type"]
    if kind == "error":
        return kind, event["code"], event["message"]
    if "response" in event:
        response = event["response"]
        output = [(item["id"], item["status"]) for item in response["output"]]
        return kind, response["status"], output
    if kind in ("response.output_item.added", "response.output_item.done"):
        item = event["item"]
        return kind, event["output_index"], item["type"], item["id"], item["status"]
    if kind.startswith("response.content_part."):
        return kind, event["output_index"], event["content_index"], event["part"]["text"]
    if kind == "response.output_text.delta":
        return kind, event["output_index"], event["content_index"], event["delta"]
    if kind == "response.output_text.done":
        return kind, event["output_index"], event["content_index"], event["text"]
    if kind.endswith("_arguments.delta"):
        return kind, event["output_index"], event["delta"]
    if kind.endswith("_arguments.done"):
        return kind, event["output_index"], event["arguments"]
    return kind, event["output_index"]


# -- the order of events ----------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED)
def test_a_run_encodes_to_its_responses_events_in_order(name: str) -> None:
    scenario, expected = EXPECTED[name]

    assert [brief(event) for event in emitted(scenario(Events()))] == expected


@pytest.mark.parametrize("name", EXPECTED)
def test_sequence_numbers_count_from_zero_one_an_event(name: str) -> None:
    events = emitted(SCENARIOS[name](Events()))

    assert [event["sequence_number"] for event in events] == list(range(len(events)))


@pytest.mark.parametrize("name", EXPECTED)
def test_only_the_last_frame_of_a_native_event_carries_its_seq_as_id(name: str) -> None:
    enc = encoder()
    for event in SCENARIOS[name](Events()):
        frames = [parse(frame) for frame in split_frames(enc([event]))]
        assert all(kind == data["type"] for _, kind, data in frames)
        assert [id_ for id_, _, _ in frames] == [None] * (len(frames) - 1) + [event.seq] * bool(
            frames
        )


@pytest.mark.parametrize("name", EXPECTED)
def test_every_item_event_names_the_item_at_its_output_index(name: str) -> None:
    items: dict[int, str] = {}
    for event in emitted(SCENARIOS[name](Events())):
        if event["type"] == "response.output_item.added":
            items[event["output_index"]] = event["item"]["id"]
        elif "item_id" in event:
            assert items[event["output_index"]] == event["item_id"]


# -- byte for byte --------------------------------------------------------------------------


def response_object(
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    completed_at: float | None = None,
) -> dict[str, Any]:
    return {
        "id": RESPONSE,
        "object": "response",
        "created_at": 2.0,
        "completed_at": completed_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "metadata": {},
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": TOOLS,
        "top_p": None,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
    }


def event_frame(seq: int | None, event: dict[str, Any]) -> bytes:
    head = b"" if seq is None else b"id: %d\n" % seq
    return head + b"event: %s\ndata: %s\n\n" % (event["type"].encode(), compact(event))


def test_plain_text_is_encoded_byte_for_byte() -> None:
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    done_part = {**part, "text": "Hello"}
    item = {"id": "m1", "type": "message", "role": "assistant", "status": "in_progress"}
    added_item = {**item, "content": []}
    done_item = {**item, "status": "completed", "content": [done_part]}
    usage = {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    text = {"item_id": "m1", "output_index": 0, "content_index": 0}
    expected = [
        (1, {"type": "response.created", "response": response_object("in_progress", [])}),
        (1, {"type": "response.in_progress", "response": response_object("in_progress", [])}),
        (3, {"type": "response.output_item.added", "output_index": 0, "item": added_item}),
        (3, {"type": "response.content_part.added", **text, "part": part}),
        (3, {"type": "response.output_text.delta", **text, "delta": "Hel", "logprobs": []}),
        (4, {"type": "response.output_text.delta", **text, "delta": "lo", "logprobs": []}),
        (5, {"type": "response.output_text.done", **text, "text": "Hello", "logprobs": []}),
        (5, {"type": "response.content_part.done", **text, "part": done_part}),
        (5, {"type": "response.output_item.done", "output_index": 0, "item": done_item}),
        (
            6,
            {
                "type": "response.completed",
                "response": response_object("completed", [done_item], usage, completed_at=7.0),
            },
        ),
    ]

    body = encoder()(plain_text(Events()))

    last_of_its_seq = [
        index == len(expected) - 1 or expected[index + 1][0] != seq
        for index, (seq, _) in enumerate(expected)
    ]
    assert body == b"".join(
        event_frame(seq if last else None, {**event, "sequence_number": number})
        for number, ((seq, event), last) in enumerate(zip(expected, last_of_its_seq, strict=True))
    )


def test_a_completed_gateway_tool_carries_its_output_as_json_text() -> None:
    (done,) = [
        event["item"]
        for event in emitted(gateway_tool_completed(Events()))
        if event["type"] == "response.output_item.done" and event["item"]["type"] == "mcp_call"
    ]

    assert done == {
        "id": "mcp_c1",
        "type": "mcp_call",
        "server_label": "gateway",
        "name": "calculator",
        "arguments": '{"expression":"2+2"}',
        "output": '{"value":4}',
        "error": None,
        "status": "completed",
    }


def test_a_failed_gateway_tool_carries_an_mcp_tool_execution_error() -> None:
    (done,) = [
        event["item"]
        for event in emitted(gateway_tool_failed(Events()))
        if event["type"] == "response.output_item.done" and event["item"]["type"] == "mcp_call"
    ]

    assert done["status"] == "failed"
    assert done["output"] is None
    assert done["error"] == {
        "type": "mcp_tool_execution_error",
        "content": [{"type": "text", "text": "tool_error: division by zero"}],
    }


@pytest.mark.parametrize(
    "name", ["run.failed while text is open", "message.failed while a call is open"]
)
def test_a_failed_run_ends_with_response_failed_and_its_error(name: str) -> None:
    last = emitted(SCENARIOS[name](Events()))[-1]

    assert last["type"] == "response.failed"
    assert last["response"]["error"] == {
        "code": "server_error",
        "message": "upstream_timeout: too slow",
    }
    assert last["response"]["usage"] is None


@pytest.mark.parametrize(
    "name", ["cancelled while text is open", "cancelled while a gateway tool runs"]
)
def test_a_cancelled_run_ends_without_a_terminal_response_event(name: str) -> None:
    enc = encoder()
    types = {parse(frame)[1] for frame in split_frames(enc(SCENARIOS[name](Events())))}

    assert not {"response.completed", "response.failed", "response.incomplete"} & types
    assert enc.response()["status"] == "cancelled"


# -- the openai SDK's types -----------------------------------------------------------------

# The union's members by their ``type``, so a wrong event is reported against its own model.
MEMBERS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(member.model_fields["type"].annotation)[0]: member
    for member in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
# Fields OpenAI sends that the SDK's models do not declare (they land in ``model_extra``).
UNDECLARED = {("Response", "store"), ("ResponseFunctionCallArgumentsDoneEvent", "name")}


def undeclared(value: Any) -> Iterator[tuple[str, str]]:
    """(model, field) of every field of ``value`` (models within models) that its model does
    not declare."""
    if isinstance(value, pydantic.BaseModel):
        for name in value.model_extra or {}:
            yield type(value).__name__, name
        for name in type(value).model_fields:
            yield from undeclared(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from undeclared(item)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_event_validates_as_the_sdk_stream_event_of_its_type(name: str) -> None:
    for event in emitted(SCENARIOS[name](Events())):
        model = MEMBERS[event["type"]].model_validate(event)

        assert isinstance(STREAM_EVENT.validate_python(event), MEMBERS[event["type"]])
        assert set(undeclared(model)) <= UNDECLARED


@pytest.mark.parametrize("name", EXPECTED)
def test_the_response_validates_as_the_sdk_response(name: str) -> None:
    enc = encoder()
    enc(SCENARIOS[name](Events()))

    response = Response.model_validate(enc.response())

    assert set(undeclared(response)) <= UNDECLARED
    assert response.id == RESPONSE


def sdk_client(body: bytes) -> openai.OpenAI:
    """An ``openai`` client whose every request is answered with ``body`` as an event stream,
    without a socket."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


def sdk_dump(value: pydantic.BaseModel) -> Any:
    """A model as JSON, without what the SDK's parsing helper adds (``parsed``…)."""

    def strip(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k not in ("parsed", "parsed_arguments")}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item

    return strip(value.model_dump(mode="json"))


def ending(status: str) -> list[str]:
    """The scenarios whose response ends with ``status``."""
    names = []
    for name, scenario in SCENARIOS.items():
        enc = encoder()
        enc(scenario(Events()))
        if enc.status == status:
            names.append(name)
    return names


@pytest.mark.parametrize("name", EXPECTED)
def test_the_sdk_stream_helper_yields_every_event_in_order(name: str) -> None:
    body = encoder()(SCENARIOS[name](Events()))

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        received = [(event.type, event.sequence_number) for event in stream]

    assert received == [(parse(frame)[1], n) for n, frame in enumerate(split_frames(body))]


@pytest.mark.parametrize("name", ending("completed"))
def test_the_sdk_stream_helper_accumulates_our_response(name: str) -> None:
    enc = encoder()
    body = enc(SCENARIOS[name](Events()))
    ours = Response.model_validate(enc.response())

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        final = stream.get_final_response()

    assert sdk_dump(final) == sdk_dump(ours)
    assert final.output_text == ours.output_text


@pytest.mark.parametrize("name", ending("failed"))
def test_the_sdk_stream_helper_passes_on_our_failed_response(name: str) -> None:
    enc = encoder()
    body = enc(SCENARIOS[name](Events()))

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        (failed,) = [event for event in stream if event.type == "response.failed"]

    assert sdk_dump(failed.response) == sdk_dump(Response.model_validate(enc.response()))


@pytest.mark.parametrize("name", ending("cancelled"))
def test_the_sdk_stream_helper_has_no_final_response_for_a_cancelled_one(name: str) -> None:
    body = encoder()(SCENARIOS[name](Events()))

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        stream.until_done()
        with pytest.raises(RuntimeError, match=r"`response\.completed`"):
            stream.get_final_response()


def test_the_sdk_stream_helper_resumes_after_a_sequence_number() -> None:
    body = encoder()(multi_step(Events()))

    with sdk_client(body).responses.stream(response_id=RESPONSE, starting_after=9) as stream:
        numbers = [event.sequence_number for event in stream]
        final = stream.get_final_response()

    assert numbers[0] == 10
    assert final.output_text == "First thenDone"


# -- resuming: skip_through and prime ---------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> list[Event]:
    """Native runs as the agent loop writes them: steps of text and tool calls (deltas of
    parallel calls interleaved), the gateway's tools run after their step, the client's
    ending the run; cut short by a failure or a cancel at any point, or completed."""
    ev = Events()
    events = [ev.run_started()]
    steps = draw(st.integers(1, 3))
    for step in range(steps):
        message_id = f"m{step}"
        events.append(ev.message(message_id, step))
        open_calls: list[tuple[str, str]] = []
        for part in draw(st.lists(st.sampled_from(["text", "call", "call_delta"]), max_size=6)):
            if part == "text":
                events.append(ev.delta(draw(st.text(max_size=4)), message_id))
            elif part == "call":
                call_id = f"c{step}_{len(open_calls)}"
                name = draw(st.sampled_from(["clock", "calculator"]))
                open_calls.append((call_id, name))
                events.append(ev.call(call_id, name, message_id))
            elif open_calls:
                call_id, _ = draw(st.sampled_from(open_calls))
                events.append(ev.call_delta(call_id, draw(st.sampled_from(["{", '"a"', "}"]))))
        for call_id, name in open_calls:
            events.append(ev.call_done(call_id, name, "{}"))
        events.append(ev.message_done("", message_id))
        for call_id, name in open_calls:
            if name == "calculator":
                events.append(ev.tool_started(call_id))
                if draw(st.booleans()):
                    events.append(ev.tool_done(call_id, 1))
                else:
                    events.append(ev.tool_failed(call_id))
        if any(name == "clock" for _, name in open_calls):
            break
    end = draw(st.sampled_from(["completed", "failed", "cancelled"]))
    if end == "completed":
        return [*events, ev.run_completed()]
    events = events[: draw(st.integers(1, len(events)))]
    ev.seq = len(events)
    return [*events, ev.run_failed() if end == "failed" else ev.cancelled()]


@settings(max_examples=150, deadline=None)
@given(events=runs(), data=st.data())
def test_skip_through_sends_exactly_the_frames_after_it(
    events: list[Event], data: st.DataObject
) -> None:
    frames = split_frames(encoder()(events))
    after = data.draw(st.integers(-1, len(frames)))
    enc = encoder()

    enc.skip_through(after)

    assert enc(events) == b"".join(frames[after + 1 :])


@settings(max_examples=150, deadline=None)
@given(events=runs(), data=st.data())
def test_a_primed_encoder_continues_exactly_as_a_fresh_one(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)))
    fresh, primed = encoder(), encoder()
    fresh(events[:cut])

    primed.prime(events[:cut])

    assert primed(events[cut:]) == fresh(events[cut:])
    assert primed.response() == fresh.response()


@settings(max_examples=60, deadline=None)
@given(events=runs())
def test_every_generated_run_is_read_by_the_sdk_stream_helper(events: list[Event]) -> None:
    body = encoder()(events)
    for frame in split_frames(body):
        event = parse(frame)[2]
        assert set(undeclared(MEMBERS[event["type"]].model_validate(event))) <= UNDECLARED

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        numbers = [event.sequence_number for event in stream]

    assert numbers == list(range(len(numbers)))


def test_reasoning_events_send_nothing_and_leave_the_response_as_it_was() -> None:
    ev = Events()
    events = [ev.run_started(), ev.message(), ev.delta("Hi")]
    reasoning = [
        ev(EventType.REASONING_DELTA, "model", message_id="m1", delta="Let me think."),
        ev(EventType.REASONING_SIGNATURE, "model", message_id="m1", signature="c2ln"),
        ev(EventType.REASONING_REDACTED, "model", message_id="m1", data="EmwK"),
    ]
    rest = [ev.message_done("Hi"), ev.run_completed()]
    with_reasoning, without = encoder(), encoder()

    assert [with_reasoning([event]) for event in events] == [without([e]) for e in events]
    assert [with_reasoning([event]) for event in reasoning] == [b"", b"", b""]
    assert with_reasoning(rest) == without(rest)


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_an_answer_the_model_cut_is_an_incomplete_response(finish: str, reason: str) -> None:
    ev = Events()
    out = emitted(
        [
            ev.run_started(),
            ev.message(),
            ev.delta("Hel"),
            ev.message_done("Hel", finish_reason=finish),
            ev.run_completed("answer", finish_reason=finish),
        ]
    )

    last = MEMBERS["response.incomplete"].model_validate(out[-1])
    assert last.response.status == "incomplete"  # type: ignore[attr-defined]
    assert last.response.incomplete_details.reason == reason  # type: ignore[attr-defined]
    assert "response.completed" not in {event["type"] for event in out}
    (done,) = [event for event in out if event["type"] == "response.output_item.done"]
    assert done["item"]["status"] == "incomplete"
