"""Specification of the AG-UI 1.0 dialect's events out (``streams/dialects/agui.py``): native
events to AG-UI SSE frames. Every AG-UI event the encoder emits is validated against the
``ag-ui-protocol`` package's own models. (``RunAgentInput`` in: ``test_agui_input.py``.)"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

import pytest
from ag_ui.core import Event as AGUIEventUnion
from ag_ui.core import TextMessageContentEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from streams.connection import Connection
from streams.dialects.agui import AGUIEncoder, agui_ids, frame_group
from streams.dialects.agui_input import run_spec_from_agui
from streams.events import Event, EventType
from streams.runs.manager import RunManager

AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AGUIEventUnion)
TERMINAL = ("RUN_FINISHED", "RUN_ERROR")
TS = 1.5  # every test event's time: AG-UI timestamp 1500 (ms)


# -- helpers ----------------------------------------------------------------------------------


class Log:
    """Builds a run's native events with consecutive seqs."""

    def __init__(self, run_id: str = "run_1") -> None:
        self.run_id = run_id
        self.events: list[Event] = []

    def add(self, type: str, producer: str | None = None, **data: Any) -> Event:
        event = Event.create(len(self.events) + 1, self.run_id, EventType(type), TS, producer, data)
        self.events.append(event)
        return event

    def started(self, **metadata: Any) -> Log:
        self.add("run.started", kind="agent", model="demo", tools=[], metadata=metadata)
        return self


def assert_no_extra_fields(value: Any) -> None:
    """AG-UI's models keep unknown fields: a misspelt optional field would validate. Refuse
    any, at every depth."""
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"unknown fields {value.model_extra} in {value!r}"
        for field in type(value).model_fields:
            assert_no_extra_fields(getattr(value, field))
    elif isinstance(value, list):
        for item in value:
            assert_no_extra_fields(item)


def assert_valid(event: dict[str, Any]) -> None:
    """``event`` is a valid AG-UI 1.0 event, field for field (it round-trips exactly)."""
    model = AGUI_EVENT.validate_python(event)
    assert_no_extra_fields(model)
    assert model.model_dump(by_alias=True, mode="json") == event


def frames(data: bytes) -> list[tuple[int | None, dict[str, Any]]]:
    """``(id, event)`` per SSE frame, checking the framing: LF only, ``id:`` then ``data:``."""
    assert b"\r" not in data
    assert data == b"" or data.endswith(b"\n\n")
    out = []
    for raw in data.split(b"\n\n")[:-1]:
        lines = raw.decode().split("\n")
        frame_id = None
        if lines[0].startswith("id: "):
            frame_id = int(lines.pop(0)[4:])
        assert len(lines) == 1
        assert lines[0].startswith("data: ")
        out.append((frame_id, json.loads(lines[0][6:])))
    return out


def encode(events: Iterable[Event], encoder: AGUIEncoder | None = None) -> list[dict[str, Any]]:
    """The AG-UI events for ``events``, each validated."""
    data = (encoder or AGUIEncoder())(list(events))
    out = [event for _, event in frames(data)]
    for event in out:
        assert_valid(event)
    return out


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# -- framing ----------------------------------------------------------------------------------


def test_a_text_run_encodes_to_exact_frames() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Hi")
    log.add("message.delta", "model.1", message_id="m1", delta=" there")
    log.add("message.completed", "model.1", message_id="m1", text="Hi there", usage={})
    log.add(
        "run.completed",
        output="Hi there",
        steps=1,
        stop_reason="answer",
        usage={"input_tokens": 2, "output_tokens": 2},
    )

    assert AGUIEncoder()(log.events) == (
        b'id: 1\ndata: {"type":"RUN_STARTED","timestamp":1500,"threadId":"run_1","runId":"run_1"}'
        b"\n\n"
        b'data: {"type":"TEXT_MESSAGE_START","timestamp":1500,"messageId":"m1","role":"assistant"}'
        b"\n\n"
        b'id: 3\ndata: {"type":"TEXT_MESSAGE_CONTENT","timestamp":1500,"messageId":"m1",'
        b'"delta":"Hi"}\n\n'
        b'id: 4\ndata: {"type":"TEXT_MESSAGE_CONTENT","timestamp":1500,"messageId":"m1",'
        b'"delta":" there"}\n\n'
        b'id: 5\ndata: {"type":"TEXT_MESSAGE_END","timestamp":1500,"messageId":"m1"}\n\n'
        b'id: 6\ndata: {"type":"RUN_FINISHED","timestamp":1500,"threadId":"run_1","runId":"run_1",'
        b'"result":"Hi there","usage":[{"model":"demo","inputTokens":2,"outputTokens":2,'
        b'"totalTokens":4}]}\n\n'
    )
    assert encode(log.events)  # and every event validates


def test_only_the_last_frame_of_a_native_event_carries_its_seq() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Let me")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")

    data = AGUIEncoder()(log.events)

    assert [(frame_id, event["type"]) for frame_id, event in frames(data)] == [
        (1, "RUN_STARTED"),
        (None, "TEXT_MESSAGE_START"),
        (3, "TEXT_MESSAGE_CONTENT"),
        (None, "TEXT_MESSAGE_END"),
        (4, "TOOL_CALL_START"),
    ]
    assert data.endswith(
        b'data: {"type":"TEXT_MESSAGE_END","timestamp":1500,"messageId":"m1"}\n\n'
        b'id: 4\ndata: {"type":"TOOL_CALL_START","timestamp":1500,"toolCallId":"c1",'
        b'"toolCallName":"clock","parentMessageId":"m1"}\n\n'
    )


def test_frame_group_of_nothing_is_nothing_and_of_one_event_is_one_framed_event() -> None:
    assert frame_group(7, []) == b""
    assert frame_group(7, [{"type": "X"}]) == b'id: 7\ndata: {"type":"X"}\n\n'
    assert frame_group(7, [{"a": 1}, {"b": 2}]) == b'data: {"a":1}\n\nid: 7\ndata: {"b":2}\n\n'


def test_native_events_that_have_no_agui_counterpart_send_nothing() -> None:
    encoder = AGUIEncoder()
    log = Log().started()
    encoder(log.events)
    started = log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    empty = log.add("message.delta", "model.1", message_id="m1", delta="")

    assert encoder([started]) == b""
    assert encoder([empty]) == b""  # an empty delta would only open an empty message


# -- text and tool calls ----------------------------------------------------------------------


def test_text_is_closed_before_a_tool_call_and_resumes_in_a_new_message() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Let me look.")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("tool_call.delta", "model.1", call_id="c1", delta="{}")
    log.add("message.delta", "model.1", message_id="m1", delta="And more.")
    log.add("tool_call.completed", "model.1", call_id="c1", name="clock", arguments="{}")
    log.add("message.completed", "model.1", message_id="m1", text="", usage={})

    out = encode(log.events)

    assert [(e["type"], e.get("messageId") or e.get("toolCallId")) for e in out[1:]] == [
        ("TEXT_MESSAGE_START", "m1"),
        ("TEXT_MESSAGE_CONTENT", "m1"),
        ("TEXT_MESSAGE_END", "m1"),
        ("TOOL_CALL_START", "c1"),
        ("TOOL_CALL_ARGS", "c1"),
        ("TEXT_MESSAGE_START", "m1.2"),  # m1 is closed and holds the call: never reopened
        ("TEXT_MESSAGE_CONTENT", "m1.2"),
        ("TOOL_CALL_END", "c1"),
        ("TEXT_MESSAGE_END", "m1.2"),
    ]
    assert out[4]["parentMessageId"] == "m1"


def test_a_call_before_any_text_names_the_message_as_parent_and_later_text_gets_a_new_id() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c2", name="clock")
    log.add("message.delta", "model.1", message_id="m1", delta="text")

    out = encode(log.events)

    assert [e.get("parentMessageId") for e in out if e["type"] == "TOOL_CALL_START"] == [
        "m1",
        "m1",
    ]
    assert [e["messageId"] for e in out if e["type"] == "TEXT_MESSAGE_START"] == ["m1.2"]


def test_tool_output_streams_as_an_activity_and_its_result_as_tool_call_result() -> None:
    log = Log("run_x").started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="countdown")
    log.add("tool_call.completed", "model.1", call_id="c1", name="countdown", arguments="{}")
    log.add("message.completed", "model.1", message_id="m1", text="", usage={})
    log.add("tool.started", "c1", call_id="c1", name="countdown", arguments={"start": 2})
    log.add("tool.delta", "c1", call_id="c1", delta="2\n")
    completed = log.add("tool.completed", "c1", call_id="c1", output={"counted_from": 2})

    out = encode(log.events)
    snapshot, delta, done, result = out[-4:]

    assert snapshot == {
        "type": "ACTIVITY_SNAPSHOT",
        "timestamp": 1500,
        "messageId": "run_x.c1.activity",
        "activityType": "tool_execution",
        "content": {
            "toolCallId": "c1",
            "name": "countdown",
            "arguments": {"start": 2},
            "status": "running",
            "deltas": [],
        },
    }
    assert delta["patch"] == [{"op": "add", "path": "/deltas/-", "value": "2\n"}]
    assert done["patch"] == [
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output", "value": {"counted_from": 2}},
    ]
    assert result == {
        "type": "TOOL_CALL_RESULT",
        "timestamp": 1500,
        "messageId": "run_x.c1.result",
        "toolCallId": "c1",
        "content": '{"counted_from":2}',
        "role": "tool",
    }
    assert [frame_id for frame_id, _ in frames(AGUIEncoder()(log.events))][-2:] == [
        None,
        completed.seq,
    ]


def test_a_failed_tool_reports_its_error_in_the_activity_and_as_the_result() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="calculator")
    log.add("tool_call.completed", "model.1", call_id="c1", name="calculator", arguments="{}")
    log.add("tool.started", "c1", call_id="c1", name="calculator", arguments={})
    error = {"code": "tool_error", "message": "division by zero"}
    log.add("tool.failed", "c1", call_id="c1", error=error)

    activity, result = encode(log.events)[-2:]

    assert activity["patch"][1] == {"op": "add", "path": "/error", "value": error}
    assert result["content"] == '{"error":"division by zero"}'


def test_a_parallel_tool_item_has_an_activity_but_no_result_without_a_tool_call() -> None:
    log = Log().started()
    log.add("tool.started", "call_1", call_id="call_1", name="countdown", arguments={})
    log.add("tool.completed", "call_1", call_id="call_1", output=1)

    assert types(encode(log.events)) == ["RUN_STARTED", "ACTIVITY_SNAPSHOT", "ACTIVITY_DELTA"]


def test_tool_output_whose_start_is_not_in_the_stream_comes_as_a_snapshot() -> None:
    log = Log().started()
    log.add("tool.delta", "c1", call_id="c1", delta="x")
    log.add("tool.delta", "c1", call_id="c1", delta="y")

    first, second = encode(log.events)[1:]

    assert first["type"] == "ACTIVITY_SNAPSHOT"
    assert first["content"] == {"toolCallId": "c1", "status": "running", "deltas": ["x"]}
    assert second["type"] == "ACTIVITY_DELTA"


def test_a_client_tool_handed_back_is_pending_in_run_finished() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Let me use get_location.")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="get_location")
    log.add("tool_call.delta", "model.1", call_id="c1", delta="{}")
    log.add("tool_call.completed", "model.1", call_id="c1", name="get_location", arguments="{}")
    log.add("message.completed", "model.1", message_id="m1", text="", usage={})
    log.add(
        "run.completed",
        output="Let me use get_location.",
        steps=1,
        stop_reason="client_tool_calls",
        usage={"input_tokens": 3, "output_tokens": 4},
    )

    out = encode(log.events)

    assert types(out) == [
        "RUN_STARTED",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "RUN_FINISHED",
    ]
    assert out[-1]["outcome"] == {"type": "success", "pendingToolCallIds": ["c1"]}


def test_message_failed_closes_what_the_message_left_open() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="a")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("message.delta", "model.1", message_id="m1", delta="b")
    error = {"code": "upstream_error", "message": "broken"}
    log.add("message.failed", "model.1", message_id="m1", error=error)

    out = encode(log.events)

    assert types(out)[-3:] == ["TEXT_MESSAGE_END", "TOOL_CALL_END", "CUSTOM"]
    assert out[-1]["name"] == "message.failed"
    assert out[-1]["value"] == {"message_id": "m1", "error": error}


@pytest.mark.parametrize(
    ("terminal", "data", "message", "code"),
    [
        (
            "run.failed",
            {"error": {"code": "internal_error", "message": "boom"}},
            "boom",
            "internal_error",
        ),
        (
            "run.cancelled",
            {"reason": "cancelled by client"},
            "run cancelled: cancelled by client",
            "cancelled",
        ),
    ],
)
def test_a_run_that_fails_or_is_cancelled_closes_what_is_open_then_ends_with_run_error(
    terminal: str, data: dict[str, Any], message: str, code: str
) -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="a")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("message.delta", "model.1", message_id="m1", delta="b")
    log.add(terminal, **data)

    out = encode(log.events)

    assert types(out)[-3:] == ["TEXT_MESSAGE_END", "TOOL_CALL_END", "RUN_ERROR"]
    assert out[-1] == {"type": "RUN_ERROR", "timestamp": 1500, "message": message, "code": code}


@pytest.mark.parametrize(
    ("type", "data"),
    [
        ("client_tool.requested", {"call_id": "c1", "name": "get_location", "arguments": {}}),
        ("stream.gap", {"after": 0, "next_seq": 9, "snapshot": {"status": "running"}}),
    ],
)
def test_events_without_an_agui_counterpart_are_custom_events_with_the_native_payload(
    type: str, data: dict[str, Any]
) -> None:
    log = Log().started()
    log.add(type, **data)

    assert encode(log.events)[-1] == {
        "type": "CUSTOM",
        "timestamp": 1500,
        "name": type,
        "value": data,
    }


# -- ids --------------------------------------------------------------------------------------


def test_run_ids_come_from_the_overrides_then_the_metadata_then_the_native_run() -> None:
    metadata = {"ag_ui": {"thread_id": "t1", "run_id": "r1"}}
    from_metadata = Log().started(**metadata).events
    plain = Log().started().events

    assert encode(from_metadata)[0]["threadId"] == "t1"
    assert encode(from_metadata)[0]["runId"] == "r1"
    assert encode(plain)[0]["threadId"] == "run_1"
    overridden = encode(plain, AGUIEncoder(thread_id="t2", run_id="r2"))[0]
    assert (overridden["threadId"], overridden["runId"]) == ("t2", "r2")
    assert AGUIEncoder.for_run("run_1", metadata)._ids(plain[0]) == ("t1", "r1")
    assert agui_ids("run_1", {"ag_ui": "nonsense"}) == ("run_1", "run_1")


def test_run_finished_reports_the_same_ids_as_run_started() -> None:
    log = Log().started(ag_ui={"thread_id": "t1", "run_id": "r1"})
    log.add("run.completed", output=None, steps=1, stop_reason="answer", usage={})

    _, finished = encode(log.events)

    assert (finished["threadId"], finished["runId"]) == ("t1", "r1")
    assert "result" not in finished  # no output: left out, not null


# -- resume -----------------------------------------------------------------------------------


def a_run_with_everything() -> list[Event]:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Let")
    log.add("message.delta", "model.1", message_id="m1", delta=" me")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("tool_call.delta", "model.1", call_id="c1", delta="{")
    log.add("tool_call.delta", "model.1", call_id="c1", delta="}")
    log.add("message.delta", "model.1", message_id="m1", delta=" ok")
    log.add("tool_call.completed", "model.1", call_id="c1", name="clock", arguments="{}")
    log.add("message.completed", "model.1", message_id="m1", text="Let me ok", usage={})
    log.add("tool.started", "c1", call_id="c1", name="clock", arguments={})
    log.add("tool.delta", "c1", call_id="c1", delta="now")
    log.add("tool.completed", "c1", call_id="c1", output={"iso": "now"})
    log.add("message.started", "model.2", message_id="m2", step=2, model="demo")
    log.add("message.delta", "model.2", message_id="m2", delta="It is now.")
    log.add("message.completed", "model.2", message_id="m2", text="It is now.", usage={})
    log.add("run.completed", output="It is now.", steps=2, stop_reason="answer", usage={})
    return log.events


def test_a_primed_encoder_continues_exactly_where_any_cursor_left_off() -> None:
    events = a_run_with_everything()
    per_event = [AGUIEncoder()(events[: i + 1]) for i in range(len(events))]
    full = AGUIEncoder()(events)

    for cursor in range(len(events) + 1):
        encoder = AGUIEncoder()
        encoder.prime(events[:cursor])
        resumed = encoder(events[cursor:])
        already = per_event[cursor - 1] if cursor else b""
        assert already + resumed == full, f"cursor {cursor}"


def test_priming_emits_nothing_and_an_unprimed_resume_would_be_invalid() -> None:
    events = a_run_with_everything()
    # Without priming, the text after the tool call would reopen m1 and the tool result
    # would be dropped (its TOOL_CALL_START is unknown): priming is what makes resume right.
    unprimed = encode(events[7:])
    primed_encoder = AGUIEncoder()
    assert primed_encoder.prime(events[:7]) is None
    primed = encode(events[7:], primed_encoder)

    assert next(e["messageId"] for e in unprimed if e["type"] == "TEXT_MESSAGE_START") == "m1"
    assert next(e["messageId"] for e in primed if e["type"] == "TEXT_MESSAGE_START") == "m1.2"
    assert "TOOL_CALL_RESULT" in types(primed)
    assert "TOOL_CALL_RESULT" not in types(unprimed)


# -- properties -------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=6)


@st.composite
def agent_runs(draw: st.DrawFn) -> list[Event]:
    """Event sequences the engine can produce for an agent run: model steps (text and tool
    calls, their arguments streamed interleaved), tool executions side by side, and an end
    that may come at any point (failure or cancel)."""
    log = Log().started()
    calls = 0
    ended = False
    for step in range(1, draw(st.integers(1, 3)) + 1):
        producer, message_id = f"model.{step}", f"msg_1_{step}"
        log.add("message.started", producer, message_id=message_id, step=step, model="demo")
        step_calls: list[tuple[str, str]] = []
        actions = draw(
            st.lists(
                st.one_of(
                    st.tuples(st.just("text"), TEXT),
                    st.tuples(st.just("call"), st.sampled_from(["clock", "get_location"])),
                    st.tuples(st.just("args"), st.text(max_size=4)),
                ),
                max_size=10,
            )
        )
        for kind, value in actions:
            if kind == "text":
                log.add("message.delta", producer, message_id=message_id, delta=value)
            elif kind == "call":
                calls += 1
                step_calls.append((f"call_{calls}", value))
                log.add(
                    "tool_call.started",
                    producer,
                    message_id=message_id,
                    call_id=f"call_{calls}",
                    name=value,
                )
            elif step_calls:
                call_id, _ = draw(st.sampled_from(step_calls))
                log.add("tool_call.delta", producer, call_id=call_id, delta=value)
        if draw(st.integers(0, 9)) == 0:
            error = {"code": "upstream_error", "message": "broken"}
            log.add("message.failed", producer, message_id=message_id, error=error)
            log.add("run.failed", error=error)
            ended = True
            break
        for call_id, name in step_calls:
            log.add("tool_call.completed", producer, call_id=call_id, name=name, arguments="{}")
        log.add("message.completed", producer, message_id=message_id, text="", usage={})
        if not step_calls:
            break
        if draw(st.booleans()):  # client tools handed back: the run ends here
            log.add("run.completed", output="", steps=step, stop_reason="client_tool_calls")
            ended = True
            break
        queues = []
        for call_id, name in step_calls:
            queue: list[tuple[str, dict[str, Any]]] = [
                ("tool.started", {"call_id": call_id, "name": name, "arguments": {}})
            ]
            if name == "get_location" and draw(st.booleans()):
                queue.append(
                    ("client_tool.requested", {"call_id": call_id, "name": name, "arguments": {}})
                )
            queue += [
                ("tool.delta", {"call_id": call_id, "delta": d})
                for d in draw(st.lists(TEXT, max_size=3))
            ]
            if draw(st.booleans()):
                queue.append(("tool.completed", {"call_id": call_id, "output": {"v": 1}}))
            else:
                error = {"code": "tool_error", "message": "no"}
                queue.append(("tool.failed", {"call_id": call_id, "error": error}))
            queues.append(queue)
        while queues:
            queue = draw(st.sampled_from(queues))
            type, data = queue.pop(0)
            log.add(type, data["call_id"], **data)
            if not queue:
                queues.remove(queue)
    if not ended:
        log.add("run.completed", output="done", steps=1, stop_reason="answer")
    events = log.events
    # A cancel (or an engine failure) may end the run after any event.
    cut = draw(st.integers(1, len(events)))
    if cut < len(events):
        events = events[:cut]
        if draw(st.booleans()):
            events.append(
                Event.create(
                    cut + 1, "run_1", EventType.RUN_CANCELLED, TS, None, {"reason": "shutdown"}
                )
            )
        else:
            error = {"code": "internal_error", "message": "boom"}
            events.append(
                Event.create(cut + 1, "run_1", EventType.RUN_FAILED, TS, None, {"error": error})
            )
    return events


@st.composite
def parallel_runs(draw: st.DrawFn) -> list[Event]:
    """A parallel run: model items streaming text at the same time, and tool items."""
    log = Log()
    log.add("run.started", kind="parallel", model=None, tools=[], metadata={})
    queues: list[list[tuple[str, str, dict[str, Any]]]] = []
    for index in range(1, draw(st.integers(1, 3)) + 1):
        producer, message_id = f"model.{index}", f"msg_1_{index}"
        queue = [("message.started", producer, {"message_id": message_id, "step": index})]
        queue += [
            ("message.delta", producer, {"message_id": message_id, "delta": d})
            for d in draw(st.lists(TEXT, max_size=4))
        ]
        queue.append(("message.completed", producer, {"message_id": message_id, "text": ""}))
        queues.append(queue)
    for index in range(1, draw(st.integers(0, 2)) + 1):
        call_id = f"call_{index}"
        queues.append(
            [
                ("tool.started", call_id, {"call_id": call_id, "name": "clock", "arguments": {}}),
                ("tool.delta", call_id, {"call_id": call_id, "delta": "t"}),
                ("tool.completed", call_id, {"call_id": call_id, "output": None}),
            ]
        )
    while queues:
        queue = draw(st.sampled_from(queues))
        type, producer, data = queue.pop(0)
        log.add(type, producer, **data)
        if not queue:
            queues.remove(queue)
    log.add("run.completed", output=[], steps=1, stop_reason="parallel_done")
    return log.events


def assert_a_well_formed_agui_stream(events: list[Event], out: list[dict[str, Any]]) -> None:
    """What an AG-UI client checks (its ``verifyEvents``), and that no text is lost."""
    assert out[0]["type"] == "RUN_STARTED"
    assert out[-1]["type"] in TERMINAL
    assert not any(e["type"] in (*TERMINAL, "RUN_STARTED") for e in out[1:-1])
    open_messages: set[str] = set()
    open_calls: set[str] = set()
    seen_messages: set[str] = set()
    seen_calls: set[str] = set()
    activities: set[str] = set()
    for event in out:
        kind = event["type"]
        if kind == "TEXT_MESSAGE_START":
            assert event["messageId"] not in seen_messages, "a message id is never reopened"
            seen_messages.add(event["messageId"])
            open_messages.add(event["messageId"])
        elif kind == "TEXT_MESSAGE_CONTENT":
            assert event["messageId"] in open_messages
        elif kind == "TEXT_MESSAGE_END":
            open_messages.remove(event["messageId"])
        elif kind == "TOOL_CALL_START":
            assert event["toolCallId"] not in seen_calls
            assert event["parentMessageId"] not in open_messages, "text closes before a call"
            seen_calls.add(event["toolCallId"])
            open_calls.add(event["toolCallId"])
        elif kind == "TOOL_CALL_ARGS":
            assert event["toolCallId"] in open_calls
        elif kind == "TOOL_CALL_END":
            open_calls.remove(event["toolCallId"])
        elif kind == "TOOL_CALL_RESULT":
            assert event["toolCallId"] in seen_calls
            assert event["toolCallId"] not in open_calls
        elif kind == "ACTIVITY_SNAPSHOT":
            activities.add(event["messageId"])
        elif kind == "ACTIVITY_DELTA":
            assert event["messageId"] in activities
        elif kind in TERMINAL:
            assert not open_messages, "every TEXT_MESSAGE_START is ended before the run ends"
            assert not open_calls, "every TOOL_CALL_START is ended before the run ends"
    # Every native delta reaches the client, in its message or one derived from it.
    for message_id in {e.data["message_id"] for e in events if "message_id" in e.data}:
        native = "".join(
            e.data["delta"]
            for e in events
            if e.type is EventType.MESSAGE_DELTA and e.data["message_id"] == message_id
        )
        shown = "".join(
            e["delta"]
            for e in out
            if e["type"] == "TEXT_MESSAGE_CONTENT"
            and (e["messageId"] == message_id or e["messageId"].startswith(message_id + "."))
        )
        assert shown == native


def check_encoding(events: list[Event], data: st.DataObject) -> None:
    encoder = AGUIEncoder()
    groups = [encoder([event]) for event in events]
    out: list[dict[str, Any]] = []
    for event, group in zip(events, groups, strict=True):
        parsed = frames(group)
        # Only the last frame of a native event's group carries its seq.
        assert [frame_id for frame_id, _ in parsed] == [None] * (len(parsed) - 1) + (
            [event.seq] if parsed else []
        )
        out += [agui for _, agui in parsed]
    for agui in out:
        assert_valid(agui)
    assert_a_well_formed_agui_stream(events, out)
    full = b"".join(groups)
    # Batching does not matter ...
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4)))
    batched = AGUIEncoder()
    bounds = [0, *cuts, len(events)]
    assert b"".join(batched(events[a:b]) for a, b in itertools.pairwise(bounds)) == full
    # ... and a primed encoder resumes exactly after any cursor.
    cursor = data.draw(st.integers(0, len(events)))
    resumed = AGUIEncoder()
    resumed.prime(events[:cursor])
    assert b"".join(groups[:cursor]) + resumed(events[cursor:]) == full


@given(agent_runs(), st.data())
@settings(max_examples=300, deadline=None)
def test_any_agent_run_encodes_to_a_valid_agui_stream_that_resumes_exactly(
    events: list[Event], data: st.DataObject
) -> None:
    check_encoding(events, data)


@given(parallel_runs(), st.data())
@settings(max_examples=150, deadline=None)
def test_any_parallel_run_with_concurrent_messages_encodes_to_a_valid_agui_stream(
    events: list[Event], data: st.DataObject
) -> None:
    check_encoding(events, data)


# -- with the engine --------------------------------------------------------------------------


async def test_a_demo_run_from_agui_input_ends_on_the_client_tool_call_as_valid_agui(
    manager: RunManager,
) -> None:
    spec = run_spec_from_agui(
        {
            "threadId": "thread_1",
            "runId": "run_a",
            "messages": [
                {"id": "u", "role": "user", "content": "Count down from 2 and get_location"}
            ],
            "tools": [{"name": "get_location", "description": "Where the user is"}],
            "forwardedProps": {"tools": ["countdown"]},
        }
    )
    run = manager.start(spec, Connection("c"), default_on_disconnect="continue")
    await run.wait()
    events = (await run.log.read(0, limit=10_000, timeout=0)).events

    out = encode(events, AGUIEncoder.for_run(run.id, run.spec.metadata))

    assert_a_well_formed_agui_stream(events, out)
    assert (out[0]["threadId"], out[0]["runId"]) == ("thread_1", "run_a")
    calls = {e["toolCallId"]: e["toolCallName"] for e in out if e["type"] == "TOOL_CALL_START"}
    assert sorted(calls.values()) == ["countdown", "get_location"]
    results = [e["toolCallId"] for e in out if e["type"] == "TOOL_CALL_RESULT"]
    pending = [c for c, name in calls.items() if name == "get_location"]
    assert [calls[c] for c in results] == ["countdown"]  # the server's tool ran; not the client's
    assert out[-1]["outcome"] == {"type": "success", "pendingToolCallIds": pending}
    content = [e for e in out if e["type"] == "TEXT_MESSAGE_CONTENT"]
    assert all(TextMessageContentEvent.model_validate(e).delta for e in content)


def test_reasoning_events_send_nothing_and_leave_the_text_as_it_was() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    reasoning = [
        log.add("reasoning.delta", "model.1", message_id="m1", delta="Let me think."),
        log.add("reasoning.signature", "model.1", message_id="m1", signature="c2ln"),
        log.add("reasoning.redacted", "model.1", message_id="m1", data="EmwK"),
    ]
    log.add("message.delta", "model.1", message_id="m1", delta="Hi")
    without = [e for e in log.events if e not in reasoning]

    assert [AGUIEncoder()([event]) for event in reasoning] == [b"", b"", b""]
    assert encode(log.events) == encode(without)
