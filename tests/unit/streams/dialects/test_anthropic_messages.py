"""Specification of the Anthropic Messages dialect (``streams/dialects/anthropic_messages.py``):
a run's native events as one Messages message's stream events, byte for byte, blocks in
order, each event as the ``anthropic`` package's own types read it, and the message its
stream helper accumulates from our bytes equal to :meth:`MessagesEncoder.message`."""

from __future__ import annotations

import itertools
import json
import typing
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2  # the HTTP client the anthropic package is built on
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from anthropic.types.beta import BetaRawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dialects.anthropic_messages import (
    ERROR_STATUS,
    PING_FRAME,
    MessagesEncoder,
    error_type,
    message_id,
    run_id_of,
)
from streams.events import Event, EventType
from streams.spec import ChatMessage, ClientTool, RunSpec
from tests.unit.streams.dialects.support import NativeEvents, parse, split_frames

RUN = "run_abc"
MESSAGE = "msg_abc"
MODEL = "claude-test"
SPEC = RunSpec(
    model="upstream-model",
    messages=[ChatMessage(role="user", content="hi")],
    tools=["calculator"],
    client_tools=[ClientTool(name="clock", description="the time")],
    metadata={"messages": {"model": MODEL, "input_tokens": 12}},
)


class Events(NativeEvents):
    """This module's run."""

    def __init__(self) -> None:
        super().__init__(RUN, usage=(20, 7))


def encoder() -> MessagesEncoder:
    return MessagesEncoder.for_run(RUN, SPEC)


def emitted(events: list[Event]) -> list[dict[str, Any]]:
    return [parse(frame)[2] for frame in split_frames(encoder()(events))]


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event as (type, index, what it carries)."""
    kind = event["type"]
    if kind == "content_block_start":
        block = dict(event["content_block"])
        return (kind, event["index"], block.pop("type"), block)
    if kind == "content_block_delta":
        delta = dict(event["delta"])
        return (kind, event["index"], delta.pop("type"), *delta.values())
    if kind == "content_block_stop":
        return (kind, event["index"])
    if kind == "message_delta":
        return (kind, event["delta"]["stop_reason"], event["delta"]["stop_sequence"])
    if kind == "error":
        return (kind, event["error"]["type"], event["error"]["message"])
    return (kind,)


# -- scenarios ------------------------------------------------------------------------------


def plain_text(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.delta("Hel"),
        ev.delta("lo"),
        ev.message_done("Hello"),
        ev.run_completed(),
    ]


def thinking_then_text(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.thinking("Let me "),
        ev.thinking("think."),
        ev.signature("EqQBCgIYAhIM+/sig=="),
        ev.delta("Yes."),
        ev.message_done("Yes."),
        ev.run_completed(),
    ]


def two_thinking_blocks(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.thinking("one"),
        ev.signature("s1"),
        ev.thinking("two"),
        ev.signature("s2"),
        ev.signature("s3"),
        ev.message_done(),
        ev.run_completed(),
    ]


def redacted_thinking(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.thinking("a"),
        ev.redacted("EmwKAhgBEgy3va"),
        ev.delta("Ok."),
        ev.message_done("Ok."),
        ev.run_completed(),
    ]


def text_then_client_call(ev: Events) -> list[Event]:
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
        ev.run_completed("client_tool_calls"),
    ]


def parallel_client_calls(ev: Events) -> list[Event]:
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
        ev.message_done(),
        ev.client_tool("c1"),
        ev.client_tool("c2"),
        ev.run_completed("client_tool_calls"),
    ]


def arguments_only_in_completed(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.call("c1", "clock"),
        ev.call_done("c1", "clock", '{"tz":"UTC"}'),
        ev.message_done(),
        ev.run_completed("client_tool_calls"),
    ]


def gateway_tools(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message("m1"),
        ev.call("c1", "calculator", "m1"),
        ev.call_delta("c1", '{"expression":'),
        ev.call("c2", "calculator", "m1"),
        ev.call_delta("c1", '"2+2"}'),
        ev.call_done("c1", "calculator", '{"expression":"2+2"}'),
        ev.call_done("c2", "calculator", '{"expression":"1/0"}'),
        ev.message_done("", "m1"),
        ev.tool_started("c1"),
        ev.tool_started("c2"),
        ev.tool_done("c1", {"value": 4}),
        ev.tool_failed("c2"),
        ev.message("m2", step=1),
        ev.delta("4", "m2"),
        ev.message_done("4", "m2"),
        ev.run_completed(),
    ]


def text_during_a_call(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.call("c1", "clock"),
        ev.call_delta("c1", '{"tz":'),
        ev.delta("meanwhile"),
        ev.delta(" more"),
        ev.call_done("c1", "clock", '{"tz":"UTC"}'),
        ev.delta(" after"),
        ev.message_done("meanwhile more after"),
        ev.run_completed("client_tool_calls"),
    ]


def run_failed_mid_text(ev: Events) -> list[Event]:
    return [ev.run_started(), ev.message(), ev.delta("par"), ev.run_failed(), ev.delta("x")]


def cancelled_mid_call(ev: Events) -> list[Event]:
    return [
        ev.run_started(),
        ev.message(),
        ev.call("c1", "clock"),
        ev.call_delta("c1", '{"tz"'),
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


def tool_use(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "name": "clock", "input": {}}


def mcp_use(call_id: str, expression: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "name": "calculator",
        "server_name": "gateway",
        "input": {"expression": expression},
    }


def mcp_result(call_id: str, is_error: bool, text: str) -> dict[str, Any]:
    return {
        "tool_use_id": call_id,
        "is_error": is_error,
        "content": [{"type": "text", "text": text}],
    }


Scenario = Callable[[Events], list[Event]]
START = [("message_start",)]
END_TURN = [("message_delta", "end_turn", None), ("message_stop",)]
TOOL_USE = [("message_delta", "tool_use", None), ("message_stop",)]
EXPECTED: dict[str, tuple[Scenario, list[tuple[Any, ...]]]] = {
    "plain text": (
        plain_text,
        [
            *START,
            ("content_block_start", 0, "text", {"text": ""}),
            ("content_block_delta", 0, "text_delta", "Hel"),
            ("content_block_delta", 0, "text_delta", "lo"),
            ("content_block_stop", 0),
            *END_TURN,
        ],
    ),
    "thinking with a signature, then text": (
        thinking_then_text,
        [
            *START,
            ("content_block_start", 0, "thinking", {"thinking": "", "signature": ""}),
            ("content_block_delta", 0, "thinking_delta", "Let me "),
            ("content_block_delta", 0, "thinking_delta", "think."),
            ("content_block_delta", 0, "signature_delta", "EqQBCgIYAhIM+/sig=="),
            ("content_block_stop", 0),
            ("content_block_start", 1, "text", {"text": ""}),
            ("content_block_delta", 1, "text_delta", "Yes."),
            ("content_block_stop", 1),
            *END_TURN,
        ],
    ),
    "a signature ends its thinking block": (
        two_thinking_blocks,
        [
            *START,
            ("content_block_start", 0, "thinking", {"thinking": "", "signature": ""}),
            ("content_block_delta", 0, "thinking_delta", "one"),
            ("content_block_delta", 0, "signature_delta", "s1"),
            ("content_block_stop", 0),
            ("content_block_start", 1, "thinking", {"thinking": "", "signature": ""}),
            ("content_block_delta", 1, "thinking_delta", "two"),
            ("content_block_delta", 1, "signature_delta", "s2"),
            ("content_block_stop", 1),
            ("content_block_start", 2, "thinking", {"thinking": "", "signature": ""}),
            ("content_block_delta", 2, "signature_delta", "s3"),
            ("content_block_stop", 2),
            *END_TURN,
        ],
    ),
    "redacted thinking": (
        redacted_thinking,
        [
            *START,
            ("content_block_start", 0, "thinking", {"thinking": "", "signature": ""}),
            ("content_block_delta", 0, "thinking_delta", "a"),
            ("content_block_stop", 0),
            ("content_block_start", 1, "redacted_thinking", {"data": "EmwKAhgBEgy3va"}),
            ("content_block_stop", 1),
            ("content_block_start", 2, "text", {"text": ""}),
            ("content_block_delta", 2, "text_delta", "Ok."),
            ("content_block_stop", 2),
            *END_TURN,
        ],
    ),
    "text then a client tool call": (
        text_then_client_call,
        [
            *START,
            ("content_block_start", 0, "text", {"text": ""}),
            ("content_block_delta", 0, "text_delta", "Let me check."),
            ("content_block_stop", 0),
            ("content_block_start", 1, "tool_use", tool_use("c1")),
            ("content_block_delta", 1, "input_json_delta", '{"tz":'),
            ("content_block_delta", 1, "input_json_delta", '"UTC"}'),
            ("content_block_stop", 1),
            *TOOL_USE,
        ],
    ),
    "parallel calls' interleaved deltas become sequential blocks": (
        parallel_client_calls,
        [
            *START,
            ("content_block_start", 0, "tool_use", tool_use("c1")),
            ("content_block_delta", 0, "input_json_delta", '{"tz":'),
            ("content_block_delta", 0, "input_json_delta", '"UTC"}'),
            ("content_block_stop", 0),
            ("content_block_start", 1, "tool_use", tool_use("c2")),
            ("content_block_delta", 1, "input_json_delta", '{"tz":"CET"}'),
            ("content_block_stop", 1),
            *TOOL_USE,
        ],
    ),
    "a call's arguments only in its completion": (
        arguments_only_in_completed,
        [
            *START,
            ("content_block_start", 0, "tool_use", tool_use("c1")),
            ("content_block_delta", 0, "input_json_delta", '{"tz":"UTC"}'),
            ("content_block_stop", 0),
            *TOOL_USE,
        ],
    ),
    "gateway tools as mcp blocks": (
        gateway_tools,
        [
            *START,
            ("content_block_start", 0, "mcp_tool_use", mcp_use("c1", "2+2")),
            ("content_block_stop", 0),
            ("content_block_start", 1, "mcp_tool_use", mcp_use("c2", "1/0")),
            ("content_block_stop", 1),
            ("content_block_start", 2, "mcp_tool_result", mcp_result("c1", False, '{"value":4}')),
            ("content_block_stop", 2),
            (
                "content_block_start",
                3,
                "mcp_tool_result",
                mcp_result("c2", True, "tool_error: division by zero"),
            ),
            ("content_block_stop", 3),
            ("content_block_start", 4, "text", {"text": ""}),
            ("content_block_delta", 4, "text_delta", "4"),
            ("content_block_stop", 4),
            *END_TURN,
        ],
    ),
    "text during a call waits for its block": (
        text_during_a_call,
        [
            *START,
            ("content_block_start", 0, "tool_use", tool_use("c1")),
            ("content_block_delta", 0, "input_json_delta", '{"tz":'),
            ("content_block_stop", 0),
            ("content_block_start", 1, "text", {"text": ""}),
            ("content_block_delta", 1, "text_delta", "meanwhile more"),
            ("content_block_delta", 1, "text_delta", " after"),
            ("content_block_stop", 1),
            *TOOL_USE,
        ],
    ),
    "a failure mid-text: an error, nothing after it": (
        run_failed_mid_text,
        [
            *START,
            ("content_block_start", 0, "text", {"text": ""}),
            ("content_block_delta", 0, "text_delta", "par"),
            ("content_block_stop", 0),
            ("error", "timeout_error", "upstream_timeout: too slow"),
        ],
    ),
    "a cancel mid-call": (
        cancelled_mid_call,
        [
            *START,
            ("content_block_start", 0, "tool_use", tool_use("c1")),
            ("content_block_delta", 0, "input_json_delta", '{"tz"'),
            ("content_block_stop", 0),
            ("error", "api_error", "cancelled: cancelled by client"),
        ],
    ),
    "a gap": (
        gap_then_text,
        [
            *START,
            (
                "error",
                "api_error",
                "stream_gap: events after seq 1 up to 8 are no longer retained",
            ),
            ("content_block_start", 0, "text", {"text": ""}),
            ("content_block_delta", 0, "text_delta", "late"),
            ("content_block_stop", 0),
            *END_TURN,
        ],
    ),
}
SCENARIOS = {name: scenario for name, (scenario, _) in EXPECTED.items()}
# The scenarios whose stream has an error event (the SDK raises it), and the others.
ERRORS = [name for name, (_, events) in EXPECTED.items() if ("error",) in [e[:1] for e in events]]
COMPLETE = [name for name in EXPECTED if name not in ERRORS]
# Those the SDK reads without its beta types (an mcp block is beta only).
NOT_BETA = [name for name in COMPLETE if "mcp" not in name]


@pytest.mark.parametrize("name", EXPECTED)
def test_a_run_encodes_to_its_messages_events(name: str) -> None:
    scenario, expected = EXPECTED[name]

    assert [summary(event) for event in emitted(scenario(Events()))] == expected


def test_a_text_run_is_these_bytes() -> None:
    body = encoder()(plain_text(Events()))

    assert body == (
        b"id: 1\nevent: message_start\ndata: "
        b'{"type":"message_start","message":{"id":"msg_abc","type":"message",'
        b'"role":"assistant","model":"claude-test","content":[],"stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1,'
        b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}\n\n'
        b"event: content_block_start\ndata: "
        b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
        b"\n\n"
        b"id: 3\nevent: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}'
        b"\n\n"
        b"id: 4\nevent: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}'
        b"\n\n"
        b'id: 5\nevent: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b"event: message_delta\ndata: "
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":20,"output_tokens":7,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":0}}\n\n'
        b'id: 6\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


@pytest.mark.parametrize(
    ("run_completed", "reason", "sequence"),
    [
        ({"stop_reason": "completed"}, "end_turn", None),
        ({"stop_reason": "completed", "finish_reason": "stop"}, "end_turn", None),
        ({"stop_reason": "client_tool_calls", "finish_reason": "tool_calls"}, "tool_use", None),
        ({"stop_reason": "max_steps", "finish_reason": "tool_calls"}, "pause_turn", None),
        ({"stop_reason": "completed", "finish_reason": "length"}, "max_tokens", None),
        (
            {"stop_reason": "completed", "finish_reason": "stop_sequence", "stop_sequence": "\n#"},
            "stop_sequence",
            "\n#",
        ),
        ({"stop_reason": "completed", "finish_reason": "content_filter"}, "refusal", None),
        ({"stop_reason": "completed", "finish_reason": "weird"}, "end_turn", None),
    ],
)
def test_the_stop_reason_of_a_run(
    run_completed: dict[str, Any], reason: str, sequence: str | None
) -> None:
    ev = Events()
    enc = encoder()
    enc([ev.run_started(), ev.message(), ev.delta("x"), ev.message_done("x")])

    *_, delta, stop = [parse(f)[2] for f in split_frames(enc([ev.run_completed(**run_completed)]))]

    assert delta["delta"] == {"stop_reason": reason, "stop_sequence": sequence}
    assert stop == {"type": "message_stop"}
    assert (enc.message()["stop_reason"], enc.message()["stop_sequence"]) == (reason, sequence)


def test_the_usage_is_the_runs_totals_with_its_cache_counts() -> None:
    ev = Events()
    enc = encoder()
    enc([ev.run_started()])
    usage = {
        "input_tokens": 5,
        "output_tokens": 9,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 40,
    }
    done = Event.create(2, RUN, EventType.RUN_COMPLETED, 3.0, None, {"usage": usage})

    delta = parse(split_frames(enc([done]))[0])[2]

    expected = {
        "input_tokens": 5,
        "output_tokens": 9,
        "cache_creation_input_tokens": 40,
        "cache_read_input_tokens": 100,
    }
    assert delta["usage"] == expected
    assert enc.message()["usage"] == expected


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        ("upstream_timeout", "the upstream idle timeout (30s) passed", "timeout_error"),
        ("circuit_open", "open", "overloaded_error"),
        ("upstream_status", "the upstream answered 529: busy", "overloaded_error"),
        ("upstream_stream_error", "…: overloaded_error: Overloaded", "overloaded_error"),
        ("upstream_status", "the upstream answered 429: slow down", "rate_limit_error"),
        ("rate_limited", "too many", "rate_limit_error"),
        ("upstream_status", "the upstream answered 500: oops", "api_error"),
        ("internal_error", "boom", "api_error"),
    ],
)
def test_a_failed_run_is_an_error_of_the_type_its_code_says(
    code: str, message: str, kind: str
) -> None:
    ev = Events()
    enc = encoder()
    enc([ev.run_started()])

    (error,) = [parse(f)[2] for f in split_frames(enc([ev.run_failed(code, message)]))]

    assert error_type({"code": code, "message": message}) == kind
    assert error == {"type": "error", "error": {"type": kind, "message": f"{code}: {message}"}}
    assert enc.error() == error
    assert kind in ERROR_STATUS


def test_a_cancelled_run_has_an_error_and_a_completed_one_none() -> None:
    enc = encoder()
    enc(cancelled_mid_call(Events()))
    done = encoder()
    done(plain_text(Events()))

    assert enc.error() == {
        "type": "error",
        "error": {"type": "api_error", "message": "cancelled: cancelled by client"},
    }
    assert done.error() is None


@pytest.mark.parametrize("name", EXPECTED)
def test_only_the_last_frame_of_a_native_event_carries_its_seq(name: str) -> None:
    events = SCENARIOS[name](Events())
    enc = encoder()
    for event in events:
        frames = split_frames(enc([event]))
        ids = [parse(frame)[0] for frame in frames]
        assert ids == ([None] * (len(frames) - 1) + [event.seq] if frames else [])


@pytest.mark.parametrize("name", EXPECTED)
def test_every_frame_has_an_event_line_naming_its_type(name: str) -> None:
    for frame in split_frames(encoder()(SCENARIOS[name](Events()))):
        _, kind, data = parse(frame)
        assert kind == data["type"]


def test_the_ids_and_the_ping() -> None:
    assert message_id("run_abc") == "msg_abc"
    assert run_id_of("msg_abc") == "run_abc"
    assert PING_FRAME == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_a_run_from_elsewhere_is_read_with_its_own_model_and_an_input_estimate_of_one() -> None:
    spec = RunSpec(model="upstream-model", messages=[ChatMessage(role="user", content="hi")])
    enc = MessagesEncoder.for_run(RUN, spec)
    enc([Events().run_started()])

    assert enc.message()["model"] == "upstream-model"
    assert enc.message()["usage"]["input_tokens"] == 1


def test_a_signature_is_passed_byte_for_byte() -> None:
    ev = Events()
    signature = 'a+/="\\\u00e9\n\u2028' * 50
    enc = encoder()
    body = enc([ev.run_started(), ev.message(), ev.thinking("x"), ev.signature(signature)])

    deltas = [parse(f)[2]["delta"] for f in split_frames(body) if b"signature_delta" in f]

    assert deltas == [{"type": "signature_delta", "signature": signature}]
    assert enc.message()["content"][0]["signature"] == signature


# -- resuming -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED)
def test_a_primed_encoder_sends_the_frames_after_the_events_it_took_in(name: str) -> None:
    events = SCENARIOS[name](Events())
    whole = encoder()
    per_event = [whole([event]) for event in events]
    for k in range(len(events) + 1):
        primed = encoder()
        primed.prime(events[:k])
        assert primed(events[k:]) == b"".join(per_event[k:])


# -- the anthropic SDK's types and stream helper ---------------------------------------------

STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
BETA_STREAM_EVENT = pydantic.TypeAdapter(BetaRawMessageStreamEvent)


def undeclared(value: Any) -> Iterator[tuple[str, str]]:
    """(model, field) of every field of ``value`` (models within models) its model does not
    declare."""
    if isinstance(value, pydantic.BaseModel):
        for name in value.model_extra or {}:
            yield type(value).__name__, name
        for name in type(value).model_fields:
            yield from undeclared(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from undeclared(item)


def validate(event: dict[str, Any], *, beta: bool) -> None:
    """``event`` as the SDK's (beta) stream event union reads it, every field declared, the
    same as sent."""
    model = (BETA_STREAM_EVENT if beta else STREAM_EVENT).validate_python(event)
    assert typing.cast(pydantic.BaseModel, model).type == event["type"]
    assert set(undeclared(model)) == set()
    dumped = typing.cast(pydantic.BaseModel, model).model_dump(mode="json", exclude_unset=True)
    assert dumped == event


@pytest.mark.parametrize("name", EXPECTED)
def test_every_event_validates_as_the_sdk_beta_stream_event(name: str) -> None:
    for event in emitted(SCENARIOS[name](Events())):
        if event["type"] != "error":
            validate(event, beta=True)


@pytest.mark.parametrize("name", [name for name in EXPECTED if "mcp" not in name])
def test_every_event_validates_as_the_sdk_stream_event(name: str) -> None:
    for event in emitted(SCENARIOS[name](Events())):
        if event["type"] != "error":
            validate(event, beta=False)


def sdk_client(body: bytes) -> anthropic.Anthropic:
    """An ``anthropic`` client whose every request is answered with ``body`` as an event
    stream, without a socket."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


REQUEST: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
}


def sdk_final(body: bytes, *, beta: bool) -> dict[str, Any]:
    """The message the SDK's stream helper accumulates from ``body``, as JSON."""
    client = sdk_client(body)
    if beta:
        with client.beta.messages.stream(**REQUEST) as beta_stream:
            final: pydantic.BaseModel = beta_stream.get_final_message()
    else:
        with client.messages.stream(**REQUEST) as stream:
            final = stream.get_final_message()
    return sdk_dump(final)


def sdk_dump(message: pydantic.BaseModel) -> dict[str, Any]:
    """A message the SDK accumulated, as JSON, the fields it was sent (and not the
    ``stop_details`` its accumulator copies from every message_delta, None when it has none)."""
    dumped = message.model_dump(mode="json", exclude_unset=True)
    if dumped.get("stop_details", ...) is None:
        del dumped["stop_details"]
    return dumped


@pytest.mark.parametrize("name", NOT_BETA)
def test_the_sdk_stream_helper_accumulates_our_message(name: str) -> None:
    enc = encoder()
    body = enc(SCENARIOS[name](Events()))

    assert sdk_final(body, beta=False) == enc.message()


@pytest.mark.parametrize("name", COMPLETE)
def test_the_sdk_beta_stream_helper_accumulates_our_message(name: str) -> None:
    enc = encoder()
    body = enc(SCENARIOS[name](Events()))

    assert sdk_final(body, beta=True) == enc.message()


def test_the_sdk_reads_thinking_text_and_tool_input_as_sent() -> None:
    ev = Events()
    body = encoder()(
        [
            ev.run_started(),
            ev.message(),
            ev.thinking("hmm"),
            ev.signature("sig"),
            ev.delta("Let me check."),
            ev.call("c1", "clock"),
            ev.call("c2", "clock"),
            ev.call_delta("c2", '{"tz":"CET"}'),
            ev.call_delta("c1", '{"tz":'),
            ev.call_delta("c1", '"UTC"}'),
            ev.call_done("c1", "clock", '{"tz":"UTC"}'),
            ev.call_done("c2", "clock", '{"tz":"CET"}'),
            ev.message_done("Let me check."),
            ev.run_completed("client_tool_calls"),
        ]
    )

    with sdk_client(body).messages.stream(**REQUEST) as stream:
        final = stream.get_final_message()

    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, first, second = final.content
    assert (thinking.thinking, thinking.signature) == ("hmm", "sig")  # type: ignore[union-attr]
    assert text.text == "Let me check."  # type: ignore[union-attr]
    assert (first.id, first.input) == ("c1", {"tz": "UTC"})  # type: ignore[union-attr]
    assert (second.id, second.input) == ("c2", {"tz": "CET"})  # type: ignore[union-attr]
    assert (final.stop_reason, final.usage.input_tokens) == ("tool_use", 20)


@pytest.mark.parametrize("name", ERRORS)
def test_the_sdk_stream_helper_raises_our_error(name: str) -> None:
    body = encoder()(SCENARIOS[name](Events()))
    (error,) = [event for event in emitted(SCENARIOS[name](Events())) if event["type"] == "error"]

    with sdk_client(body).messages.stream(**REQUEST) as stream:
        with pytest.raises(anthropic.APIStatusError) as raised:
            stream.until_done()

    assert raised.value.body == error


# -- any run ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@st.composite
def fragments(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A call's arguments (a JSON object, or none) and the fragments they stream in."""
    if draw(st.booleans()):
        return "", []
    arguments = json.dumps(draw(st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=3)))
    cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=4)))
    bounds = [0, *cuts, len(arguments)]
    parts = [arguments[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if draw(st.booleans()):
        parts = []  # the arguments only in the call's completion
    return arguments, parts


@st.composite
def runs(draw: st.DrawFn) -> list[Event]:
    """Native runs as the agent loop writes them: steps of reasoning, text and tool calls in
    any interleaving (parallel calls' deltas too), the calls completing in order at the step's
    end, the gateway's tools run after their step, a client's ending the run; cut short by a
    failure or a cancel at any point, or completed."""
    ev = Events()
    events = [ev.run_started()]
    for step in range(draw(st.integers(1, 3))):
        mid = f"m{step}"
        events.append(ev.message(mid, step))
        calls: list[tuple[str, str, str, list[str]]] = []
        for part in draw(
            st.lists(
                st.sampled_from(["text", "thinking", "signature", "redacted", "call", "delta"]),
                max_size=10,
            )
        ):
            if part == "text":
                events.append(ev.delta(draw(st.text(max_size=4)), mid))
            elif part == "thinking":
                events.append(ev.thinking(draw(st.text(max_size=4)), mid))
            elif part == "signature":
                events.append(ev.signature(draw(st.text(max_size=4)), mid))
            elif part == "redacted":
                events.append(ev.redacted(draw(st.text(max_size=4)), mid))
            elif part == "call":
                call_id = f"c{step}_{len(calls)}"
                name = draw(st.sampled_from(["clock", "calculator"]))
                arguments, parts = draw(fragments())
                calls.append((call_id, name, arguments, parts))
                events.append(ev.call(call_id, name, mid))
            else:
                pending = [call for call in calls if call[3]]
                if pending:
                    call_id, _, _, parts = draw(st.sampled_from(pending))
                    events.append(ev.call_delta(call_id, parts.pop(0)))
        for call_id, name, arguments, parts in calls:
            events.extend(ev.call_delta(call_id, part) for part in parts)
            events.append(ev.call_done(call_id, name, arguments))
        events.append(ev.message_done("", mid))
        for call_id, name, _, _ in calls:
            if name == "calculator":
                events.append(ev.tool_started(call_id))
                if draw(st.booleans()):
                    events.append(ev.tool_done(call_id, draw(JSON_VALUES)))
                else:
                    events.append(ev.tool_failed(call_id))
        if any(name == "clock" for _, name, _, _ in calls):
            break
    end = draw(st.sampled_from(["completed", "failed", "cancelled"]))
    if end == "completed":
        return [*events, ev.run_completed()]
    events = events[: draw(st.integers(1, len(events)))]
    ev.seq = len(events)
    return [*events, ev.run_failed() if end == "failed" else ev.cancelled()]


def call_arguments(events: list[Event]) -> dict[str, str]:
    return {
        e.data["call_id"]: e.data["arguments"]
        for e in events
        if e.type is EventType.TOOL_CALL_COMPLETED
    }


@settings(max_examples=150, deadline=None)
@given(events=runs())
def test_the_sdk_accumulator_reads_any_run_and_every_input_is_its_arguments(
    events: list[Event],
) -> None:
    enc = encoder()
    body = enc(events)
    for frame in split_frames(body):
        event = parse(frame)[2]
        if event["type"] != "error":
            validate(event, beta=True)

    with sdk_client(body).beta.messages.stream(**REQUEST) as stream:
        if events[-1].type is EventType.RUN_COMPLETED:
            stream.until_done()
        else:
            with pytest.raises(anthropic.APIStatusError):
                stream.until_done()
        sdk = sdk_dump(stream.current_message_snapshot)

    arguments = call_arguments(events)
    for block in sdk["content"]:
        if block["type"] in ("tool_use", "mcp_tool_use") and block["id"] in arguments:
            expected = arguments[block["id"]]
            assert block["input"] == (json.loads(expected) if expected else {})
    if events[-1].type is EventType.RUN_COMPLETED:
        assert sdk == enc.message()
    else:
        # A call cut short has part of its JSON: the SDK reads what it can of it, the message
        # has {} (only a completed run's message is ever answered).
        def whole(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {k: v for k, v in block.items() if k != "input" or block["id"] in arguments}
                for block in content
            ]

        assert whole(sdk["content"]) == whole(enc.message()["content"])


@settings(max_examples=100, deadline=None)
@given(events=runs(), data=st.data())
def test_a_primed_encoder_continues_exactly_as_a_fresh_one(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)))
    fresh, primed = encoder(), encoder()
    fresh(events[:cut])

    primed.prime(events[:cut])

    assert primed(events[cut:]) == fresh(events[cut:])
    assert primed.message() == fresh.message()
