"""The AI SDK UI message stream dialect: byte-exact chunks for each native event, ids on the
last frame of each native event, [DONE] after every terminal, resume by priming, optional
chunks only when asked for, and a fuzz test of the stream's invariants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dialects.ai_sdk import (
    CHUNK_KEYS,
    DONE_FRAME,
    FEATURES,
    METADATA_KEY,
    STREAM_HEADERS,
    UIStreamEncoder,
    default_message_id,
    error_frame,
    parse_input,
)
from streams.dialects.registry import DIALECTS
from streams.events import Event
from streams.spec import ChatMessage, RunSpec
from tests.unit.streams.dialects.support import NativeEvents, parse_data, split_frames

RUN = "run_0123abcd"
MSG = "msg_0123abcd"


def chunks_of(stream: bytes) -> list[Any]:
    return [parse_data(frame)[1] for frame in split_frames(stream)]


def encode(events: list[Event], **options: Any) -> bytes:
    return UIStreamEncoder(RUN, **options)(events)


def test_constants() -> None:
    assert DONE_FRAME == b"data: [DONE]\n\n"
    assert dict(STREAM_HEADERS) == {"x-vercel-ai-ui-message-stream": "v1"}
    assert METADATA_KEY == "ai_sdk"
    assert frozenset({"reasoning", "preliminary-tool-output", "tool-approval"}) == FEATURES
    assert default_message_id(RUN) == MSG


def test_registered_as_ai_sdk() -> None:
    spec = RunSpec(model="demo", messages=[ChatMessage(role="user", content="hi")])
    encoder = DIALECTS["ai-sdk"].encoder_for(RUN, spec)
    assert isinstance(encoder, UIStreamEncoder)
    assert encoder.message_id == MSG
    assert encoder.features == frozenset()


def test_for_run_reads_the_face_metadata() -> None:
    spec = RunSpec(
        model="demo",
        messages=[ChatMessage(role="user", content="hi")],
        metadata={METADATA_KEY: {"message_id": "m-7", "features": ["reasoning", "nope", 3]}},
    )
    encoder = UIStreamEncoder.for_run(RUN, spec)
    assert encoder.message_id == "m-7"
    assert encoder.features == frozenset({"reasoning"})


def _text_run(n: NativeEvents) -> list[Event]:
    return [
        n.run_started(),
        n.message(),
        n.delta("Hel"),
        n.delta("lo"),
        n.message_done("Hello"),
        n.run_completed(),
    ]


def _tool_run(n: NativeEvents) -> list[Event]:
    return [
        n.run_started(),
        n.message(),
        n.delta("On it"),
        n.call("c1", "calculator"),
        n.call_delta("c1", '{"x":'),
        n.call_delta("c1", "1}"),
        n.call_done("c1", "calculator", '{"x":1}'),
        n.message_done("On it"),
        n.tool_started("c1"),
        n.tool_delta("c1", "partial"),
        n.tool_done("c1", {"value": 2}),
        n.run_completed(),
    ]


def _failing_tool_run(n: NativeEvents) -> list[Event]:
    return [
        n.run_started(),
        n.message(),
        n.call("c1", "calculator"),
        n.call_done("c1", "calculator", ""),
        n.message_done(),
        n.tool_started("c1"),
        n.tool_failed("c1"),
        n.run_failed(),
    ]


def _cancelled_run(n: NativeEvents) -> list[Event]:
    return [n.run_started(), n.message(), n.delta("a"), n.cancelled()]


def _gap_run(n: NativeEvents) -> list[Event]:
    return [n.run_started(), n.gap(1, 5), n.message(), n.run_completed()]


def _two_step_run(n: NativeEvents) -> list[Event]:
    return [
        n.run_started(),
        n.message("m1", 0),
        n.message_done("", "m1"),
        n.message("m2", 1),
        n.delta("x", "m2"),
        n.message_done("x", "m2"),
        n.run_completed(),
    ]


S = b'id: 1\ndata: {"type":"start","messageId":"msg_0123abcd"}\n\n'
STEP = b'data: {"type":"start-step"}\n\n'
FINISH_STEP = b'data: {"type":"finish-step"}\n\n'
TEXT_START = b'data: {"type":"text-start","id":"msg_0123abcd:1"}\n\n'


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            _text_run,
            S
            + b'id: 2\ndata: {"type":"start-step"}\n\n'
            + TEXT_START
            + b'id: 3\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"Hel"}\n\n'
            + b'id: 4\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"lo"}\n\n'
            + b'id: 5\ndata: {"type":"text-end","id":"msg_0123abcd:1"}\n\n'
            + FINISH_STEP
            + b'id: 6\ndata: {"type":"finish"}\n\n'
            + DONE_FRAME,
            id="text",
        ),
        pytest.param(
            _tool_run,
            S
            + b'id: 2\ndata: {"type":"start-step"}\n\n'
            + TEXT_START
            + b'id: 3\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"On it"}\n\n'
            + b'data: {"type":"text-end","id":"msg_0123abcd:1"}\n\n'
            + b'id: 4\ndata: {"type":"tool-input-start","toolCallId":"c1",'
            b'"toolName":"calculator"}\n\n'
            + b'id: 5\ndata: {"type":"tool-input-delta","toolCallId":"c1",'
            b'"inputTextDelta":"{\\"x\\":"}\n\n'
            + b'id: 6\ndata: {"type":"tool-input-delta","toolCallId":"c1",'
            b'"inputTextDelta":"1}"}\n\n'
            + b'id: 7\ndata: {"type":"tool-input-available","toolCallId":"c1",'
            b'"toolName":"calculator","input":{"x":1}}\n\n'
            + b'id: 11\ndata: {"type":"tool-output-available","toolCallId":"c1",'
            b'"output":{"value":2}}\n\n'
            + FINISH_STEP
            + b'id: 12\ndata: {"type":"finish"}\n\n'
            + DONE_FRAME,
            id="server-tool",
        ),
        pytest.param(
            _failing_tool_run,
            S
            + b'id: 2\ndata: {"type":"start-step"}\n\n'
            + b'id: 3\ndata: {"type":"tool-input-start","toolCallId":"c1",'
            b'"toolName":"calculator"}\n\n'
            + b'id: 4\ndata: {"type":"tool-input-available","toolCallId":"c1",'
            b'"toolName":"calculator","input":{}}\n\n'
            + b'id: 7\ndata: {"type":"tool-output-error","toolCallId":"c1",'
            b'"errorText":"tool_error: division by zero"}\n\n'
            + b'id: 8\ndata: {"type":"error","errorText":"upstream_timeout: too slow"}\n\n'
            + DONE_FRAME,
            id="tool-failed-run-failed",
        ),
        pytest.param(
            _cancelled_run,
            S
            + b'id: 2\ndata: {"type":"start-step"}\n\n'
            + TEXT_START
            + b'id: 3\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"a"}\n\n'
            + b'data: {"type":"text-end","id":"msg_0123abcd:1"}\n\n'
            + b'id: 4\ndata: {"type":"abort"}\n\n'
            + DONE_FRAME,
            id="cancelled",
        ),
        pytest.param(
            _gap_run,
            S + b'id: 4\ndata: {"type":"error","errorText":"stream_gap: events after seq 1 up '
            b'to 4 are no longer retained"}\n\n'
            + b'id: 5\ndata: {"type":"start-step"}\n\n'
            + FINISH_STEP
            + b'id: 6\ndata: {"type":"finish"}\n\n'
            + DONE_FRAME,
            id="gap",
        ),
        pytest.param(
            _two_step_run,
            S
            + b'id: 2\ndata: {"type":"start-step"}\n\n'
            + FINISH_STEP
            + b'id: 4\ndata: {"type":"start-step"}\n\n'
            + TEXT_START
            + b'id: 5\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"x"}\n\n'
            + b'id: 6\ndata: {"type":"text-end","id":"msg_0123abcd:1"}\n\n'
            + FINISH_STEP
            + b'id: 7\ndata: {"type":"finish"}\n\n'
            + DONE_FRAME,
            id="two-steps",
        ),
    ],
)
def test_frames_byte_exact(build: Callable[[NativeEvents], list[Event]], expected: bytes) -> None:
    events = build(NativeEvents(RUN))
    assert encode(events) == expected
    # One event at a time (the general path, no batch) gives the same bytes.
    encoder = UIStreamEncoder(RUN)
    assert b"".join(encoder([event]) for event in events) == expected


def test_a_client_tool_call_ends_the_run_with_its_input() -> None:
    n = NativeEvents(RUN)
    events = [
        n.run_started(),
        n.message(),
        n.call("c9", "clock"),
        n.call_done("c9", "clock", '{"tz":"UTC"}'),
        n.message_done(),
        n.client_tool("c9"),
        n.run_completed("client_tool_calls"),
    ]
    encoder = UIStreamEncoder(RUN)
    chunks = chunks_of(encoder(events))
    assert [c if c == "[DONE]" else c["type"] for c in chunks] == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-available",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert encoder.message()["parts"] == [
        {"type": "step-start"},
        {
            "type": "tool-clock",
            "toolCallId": "c9",
            "state": "input-available",
            "input": {"tz": "UTC"},
        },
    ]


def test_the_message_it_builds() -> None:
    encoder = UIStreamEncoder(RUN, message_id="ui-1")
    encoder(_tool_run(NativeEvents(RUN)))
    assert encoder.message() == {
        "id": "ui-1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "On it", "state": "done"},
            {
                "type": "tool-calculator",
                "toolCallId": "c1",
                "state": "output-available",
                "input": {"x": 1},
                "output": {"value": 2},
            },
        ],
    }


@pytest.mark.parametrize(
    ("arguments", "value"),
    [("", {}), ('{"a":1}', {"a": 1}), ("[1]", [1]), ("not json", "not json")],
)
def test_parse_input(arguments: str, value: Any) -> None:
    assert parse_input(arguments) == value


def test_optional_chunks_only_when_asked_for() -> None:
    def run(n: NativeEvents) -> list[Event]:
        return [
            n.run_started(),
            n.message(),
            n.thinking("hmm"),
            n.delta("ok"),
            n.call("c1", "calculator"),
            n.call_done("c1", "calculator", "{}"),
            n.message_done("ok"),
            n.tool_delta("c1", "a"),
            n.tool_delta("c1", "b"),
            n.tool_done("c1", 3),
            n.run_completed(),
        ]

    plain = chunks_of(encode(run(NativeEvents(RUN))))
    kinds = {c["type"] for c in plain if c != "[DONE]"}
    assert not kinds & {"reasoning-start", "reasoning-delta", "reasoning-end"}
    assert not any("preliminary" in c for c in plain if c != "[DONE]")
    assert [c for c in plain if c != "[DONE]" and c["type"] == "tool-output-available"] == [
        {"type": "tool-output-available", "toolCallId": "c1", "output": 3}
    ]

    encoder = UIStreamEncoder(RUN, features=FEATURES)
    rich = chunks_of(encoder(run(NativeEvents(RUN))))
    assert rich[2:6] == [
        {"type": "reasoning-start", "id": f"{MSG}:1"},
        {"type": "reasoning-delta", "id": f"{MSG}:1", "delta": "hmm"},
        {"type": "reasoning-end", "id": f"{MSG}:1"},
        {"type": "text-start", "id": f"{MSG}:2"},
    ]
    outputs = [c for c in rich if c != "[DONE]" and c["type"] == "tool-output-available"]
    assert outputs == [
        {"type": "tool-output-available", "toolCallId": "c1", "output": "a", "preliminary": True},
        {"type": "tool-output-available", "toolCallId": "c1", "output": "ab", "preliminary": True},
        {"type": "tool-output-available", "toolCallId": "c1", "output": 3},
    ]
    assert encoder.message()["parts"][1] == {"type": "reasoning", "text": "hmm", "state": "done"}
    assert encoder.message()["parts"][3]["output"] == 3
    assert "preliminary" not in encoder.message()["parts"][3]


def test_an_output_without_its_call_is_not_sent() -> None:
    # A parallel run's own tool calls have no tool-input chunks: the SDK would throw.
    n = NativeEvents(RUN)
    events = [n.run_started(), n.tool_started("t1"), n.tool_done("t1", 1), n.run_completed()]
    assert [c if c == "[DONE]" else c["type"] for c in chunks_of(encode(events))] == [
        "start",
        "finish",
        "[DONE]",
    ]


def test_nothing_after_the_end() -> None:
    n = NativeEvents(RUN)
    encoder = UIStreamEncoder(RUN)
    encoder(_text_run(n))
    assert encoder.ended
    assert encoder([n.gap(1, 99), n.delta("late")]) == b""


# -- the fuzz test ----------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> list[Event]:
    """A valid run: steps of text, reasoning and parallel tool calls (interleaved deltas,
    server and client tools), tool results, and an end (completed, failed or cancelled,
    possibly mid-step)."""
    n = NativeEvents(RUN)
    events = [n.run_started()]
    calls_made = 0
    for step in range(draw(st.integers(0, 3))):
        mid = f"m{step}"
        events.append(n.message(mid, step))
        open_calls: list[str] = []
        server: list[str] = []
        for _ in range(draw(st.integers(0, 8))):
            action = draw(st.sampled_from(["text", "think", "call", "delta"]))
            if action == "text":
                events.append(n.delta(draw(st.text(max_size=5)), mid))
            elif action == "think":
                events.append(n.thinking(draw(st.text(max_size=5)), mid))
            elif action == "call":
                calls_made += 1
                call_id = f"c{calls_made}"
                open_calls.append(call_id)
                events.append(n.call(call_id, "calculator", mid))
            elif open_calls:
                call_id = draw(st.sampled_from(open_calls))
                events.append(n.call_delta(call_id, draw(st.text(max_size=4))))
        if draw(st.booleans()) and draw(st.booleans()):
            events.append(n.message_failed(mid))
            events.append(n.run_failed())
            return events
        client = draw(st.booleans())
        for call_id in open_calls:
            events.append(n.call_done(call_id, "clock" if client else "calculator", "{}"))
            if not client:
                server.append(call_id)
        events.append(n.message_done("", mid))
        if client and open_calls:
            events += [n.client_tool(call_id) for call_id in open_calls]
            events.append(n.run_completed("client_tool_calls"))
            return events
        for call_id in server:
            events.append(n.tool_started(call_id))
            for _ in range(draw(st.integers(0, 2))):
                events.append(n.tool_delta(call_id, draw(st.text(max_size=3))))
        for call_id in server:
            events.append(
                n.tool_failed(call_id) if draw(st.booleans()) else n.tool_done(call_id, 1)
            )
        if draw(st.integers(0, 5)) == 0:
            events.append(n.cancelled())
            return events
    events.append(draw(st.sampled_from([n.run_completed(), n.run_failed(), n.cancelled()])))
    return events


@settings(max_examples=200, deadline=None)
@given(events=runs(), features=st.sets(st.sampled_from(sorted(FEATURES))))
def test_any_run_gives_a_valid_stream(events: list[Event], features: set[str]) -> None:
    stream = encode(events, features=features)
    frames = split_frames(stream)
    assert frames[-1] == DONE_FRAME
    assert frames.count(DONE_FRAME) == 1
    chunks = [parse_data(frame)[1] for frame in frames[:-1]]
    terminals = [c for c in chunks if c["type"] in ("finish", "abort", "error")]
    assert terminals[-1] is chunks[-1]
    assert sum(c["type"] in ("finish", "abort") for c in chunks) <= 1
    open_texts: set[str] = set()
    text_ids: set[str] = set()
    step_open = False
    started: set[str] = set()
    available: set[str] = set()
    for chunk in chunks:
        kind = chunk["type"]
        assert set(chunk) <= CHUNK_KEYS[kind], chunk
        if "preliminary" in chunk:
            assert "preliminary-tool-output" in features
        if kind.startswith("reasoning-"):
            assert "reasoning" in features
        if kind in ("text-start", "reasoning-start"):
            assert chunk["id"] not in text_ids
            text_ids.add(chunk["id"])
            open_texts.add(chunk["id"])
        elif kind in ("text-delta", "reasoning-delta"):
            assert chunk["id"] in open_texts
        elif kind in ("text-end", "reasoning-end"):
            open_texts.remove(chunk["id"])
        elif kind == "start-step":
            assert not step_open
            step_open = True
        elif kind == "finish-step":
            assert step_open and not open_texts
            step_open = False
        elif kind == "tool-input-start":
            started.add(chunk["toolCallId"])
        elif kind == "tool-input-delta":
            assert chunk["toolCallId"] in started
            assert chunk["toolCallId"] not in available
        elif kind == "tool-input-available":
            assert chunk["toolCallId"] in started
            available.add(chunk["toolCallId"])
        elif kind in ("tool-output-available", "tool-output-error"):
            assert chunk["toolCallId"] in available
        elif kind == "finish":
            assert not open_texts and not step_open
        elif kind == "abort":  # a cancel leaves its step open, as the SDK's own server does
            assert not open_texts
    assert not open_texts
    assert chunks[0] == {"type": "start", "messageId": MSG}


@settings(max_examples=100, deadline=None)
@given(events=runs(), features=st.sets(st.sampled_from(sorted(FEATURES))))
def test_resume_by_priming_equals_the_rest_of_the_whole(
    events: list[Event], features: set[str]
) -> None:
    whole = UIStreamEncoder(RUN, features=features)
    per_event = [whole([event]) for event in events]
    assert encode(events, features=features) == b"".join(per_event)
    for k in range(len(events) + 1):
        resumed = UIStreamEncoder(RUN, features=features)
        resumed.prime(events[:k])
        assert resumed(events[k:]) == b"".join(per_event[k:])
        assert resumed.message() == whole.message()


@settings(max_examples=100, deadline=None)
@given(events=runs())
def test_only_the_last_frame_of_an_event_has_its_id(events: list[Event]) -> None:
    encoder = UIStreamEncoder(RUN)
    for event in events:
        frames = split_frames(encoder([event]))
        if not frames:
            continue
        if frames[-1] == DONE_FRAME:
            assert event.is_terminal
            frames = frames[:-1]
        ids = [parse_data(frame)[0] for frame in frames]
        assert ids[-1] == event.seq
        assert all(i is None for i in ids[:-1])


def test_a_stream_ended_for_the_gateway_s_own_reason_ends_with_an_error_chunk_and_done() -> None:
    assert error_frame("store_unavailable", "Redis is gone") == (
        b'data: {"type":"error","errorText":"store_unavailable: Redis is gone"}\n\ndata: [DONE]\n\n'
    )
