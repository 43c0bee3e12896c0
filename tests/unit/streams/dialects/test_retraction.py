"""Specification of how every dialect maps the failover events (``streams/dialects/
retraction.py`` and each encoder): ``message.rerouted`` is informational (only native and
AG-UI carry it), ``message.retracted`` voids the message's output so far: a streamed dialect
that cannot take text back ends with its error (byte-exact below) and encodes nothing more
(``ended``), and a non-streamed answer is the last attempt's alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ag_ui.core import Event as AGUIEventUnion
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from streams.dialects.agui import AGUIEncoder
from streams.dialects.ai_sdk import UIStreamEncoder
from streams.dialects.anthropic_messages import MessagesEncoder
from streams.dialects.native import encode_sse_batch
from streams.dialects.openai_chat import ChatChunkEncoder, chat_completion
from streams.dialects.responses import ResponsesEncoder
from streams.dialects.retraction import (
    RETRACTED_CODE,
    EndingEncoder,
    retracted_message,
    without_retracted,
)
from streams.events import Event, EventType
from tests.unit.streams.dialects.support import NativeEvents, parse_data, split_frames

AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AGUIEventUnion)

RUN = "run_abc"
WHY = (
    b"the route failed after output started (stream_broken) and the answer is being "
    b"restarted on another route; this dialect cannot take back text already sent"
)

Encoder = Callable[[list[Event]], bytes]

ENCODERS: dict[str, Callable[[], Encoder]] = {
    "native": lambda: encode_sse_batch,
    "openai_chat": lambda: ChatChunkEncoder("chatcmpl-abc", "demo", 1_700_000_000),
    "responses": lambda: ResponsesEncoder(RUN, model="demo"),
    "anthropic_messages": lambda: MessagesEncoder(RUN, model="demo"),
    "ai_sdk": lambda: UIStreamEncoder(RUN),
    "agui": lambda: AGUIEncoder(),
}


def after_text(name: str) -> tuple[Encoder, NativeEvents]:
    """An encoder of dialect ``name`` that has sent a message's first text, "Hel"."""
    encode = ENCODERS[name]()
    events = NativeEvents(RUN)
    encode([events.run_started(), events.message(), events.delta("Hel")])
    return encode, events


def test_the_message_says_why_and_that_text_sent_stays_sent() -> None:
    assert retracted_message("stream_broken").encode() == WHY
    assert RETRACTED_CODE == "output_retracted"


REROUTED = {
    "native": b'id: 4\ndata: {"seq":4,"run_id":"run_abc","type":"message.rerouted","ts":5.0,'
    b'"producer":"model","message_id":"m1","reason":"http_503","from":"a","to":"b"}\n\n',
    "openai_chat": b"",
    "responses": b"",
    "anthropic_messages": b"",
    "ai_sdk": b"",
    "agui": b'id: 4\ndata: {"type":"CUSTOM","timestamp":5000,"name":"message.rerouted",'
    b'"value":{"from":"a","to":"b","reason":"http_503"}}\n\n',
}


@pytest.mark.parametrize("name", ENCODERS)
def test_a_reroute_is_informational(name: str) -> None:
    encode, events = after_text(name)
    assert encode([events.rerouted()]) == REROUTED[name]
    assert not getattr(encode, "ended", False)  # the stream goes on
    assert encode([events.delta("lo")]) != b""


RESPONSES_PART = b'{"type":"output_text","text":"Hel","annotations":[],"logprobs":[]}'
RESPONSES_ITEM = (
    b'{"id":"m1","type":"message","role":"assistant","status":"incomplete","content":['
    + RESPONSES_PART
    + b"]}"
)
RETRACTED = {
    "native": b'id: 4\ndata: {"seq":4,"run_id":"run_abc","type":"message.retracted","ts":5.0,'
    b'"producer":"model","message_id":"m1","reason":"stream_broken"}\n\n',
    "openai_chat": b'id: 4\ndata: {"error":{"message":"'
    + WHY
    + b'","type":"server_error","param":null,"code":"output_retracted"}}\n\n'
    b"data: [DONE]\n\n",
    "responses": b"event: response.output_text.done\n"
    b'data: {"type":"response.output_text.done","item_id":"m1","output_index":0,'
    b'"content_index":0,"text":"Hel","logprobs":[],"sequence_number":5}\n\n'
    b"event: response.content_part.done\n"
    b'data: {"type":"response.content_part.done","item_id":"m1","output_index":0,'
    b'"content_index":0,"part":' + RESPONSES_PART + b',"sequence_number":6}\n\n'
    b"event: response.output_item.done\n"
    b'data: {"type":"response.output_item.done","output_index":0,"item":'
    + RESPONSES_ITEM
    + b',"sequence_number":7}\n\n'
    b"id: 4\nevent: response.failed\n"
    b'data: {"type":"response.failed","response":{"id":"resp_abc","object":"response",'
    b'"created_at":2.0,"completed_at":null,"status":"failed","background":false,'
    b'"error":{"code":"server_error","message":"output_retracted: ' + WHY + b'"},'
    b'"incomplete_details":null,"instructions":null,"max_output_tokens":null,"metadata":{},'
    b'"model":"demo","output":[' + RESPONSES_ITEM + b'],"parallel_tool_calls":true,'
    b'"previous_response_id":null,"store":true,"temperature":null,'
    b'"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,'
    b'"truncation":"disabled","usage":null,"user":null},"sequence_number":8}\n\n',
    "anthropic_messages": b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"id: 4\nevent: error\n"
    b'data: {"type":"error","error":{"type":"api_error","message":"output_retracted: '
    + WHY
    + b'"}}\n\n',
    "ai_sdk": b'data: {"type":"text-end","id":"msg_abc:1"}\n\n'
    b'id: 4\ndata: {"type":"error","errorText":"output_retracted: ' + WHY + b'"}\n\n'
    b"data: [DONE]\n\n",
    "agui": b'data: {"type":"TEXT_MESSAGE_END","timestamp":5000,"messageId":"m1"}\n\n'
    b'id: 4\ndata: {"type":"RUN_ERROR","timestamp":5000,"message":"'
    + WHY
    + b'","code":"output_retracted"}\n\n',
}


@pytest.mark.parametrize("name", ENCODERS)
def test_a_retraction_is_carried_or_ends_the_stream_with_an_error(name: str) -> None:
    encode, events = after_text(name)
    assert encode([events.retracted()]) == RETRACTED[name]
    restarted = [
        events.rerouted("a", "b", "stream_broken"),
        events.delta("Hi"),
        events.message_done("Hi"),
        events.run_completed(),
    ]
    if name == "native":  # it carries the retraction: the new attempt follows
        assert not isinstance(encode, EndingEncoder)
        assert encode(restarted) == b"".join(event.sse_frame() for event in restarted)
        return
    # Never the restarted answer silently joined to the text already sent.
    assert isinstance(encode, EndingEncoder)
    assert encode.ended
    assert encode(restarted) == b""


@pytest.mark.parametrize("sent", [REROUTED["agui"], RETRACTED["agui"]])
def test_agui_s_frames_for_them_are_valid_ag_ui_events(sent: bytes) -> None:
    for frame in split_frames(sent):
        AGUI_EVENT.validate_python(parse_data(frame)[1])


def test_agui_closes_an_open_tool_call_before_its_run_error() -> None:
    encode = AGUIEncoder()
    events = NativeEvents(RUN)
    encode([events.run_started(), events.message(), events.call("c1", "clock")])
    assert encode([events.call_delta("c1", '{"a')]) != b""
    assert encode([events.retracted()]) == (
        b'data: {"type":"TOOL_CALL_END","timestamp":6000,"toolCallId":"c1"}\n\n'
        b'id: 5\ndata: {"type":"RUN_ERROR","timestamp":6000,"message":"'
        + WHY
        + b'","code":"output_retracted"}\n\n'
    )
    assert encode.ended


def test_a_chat_stream_ends_at_a_retraction_after_tool_calls_too() -> None:
    encode, events = after_text("openai_chat")
    encode([events.call("c1", "clock"), events.call_delta("c1", "{}")])
    assert encode([events.retracted()]).endswith(b'"code":"output_retracted"}}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize("name", [n for n in ENCODERS if n != "native"])
def test_an_encoder_ends_with_its_stream_s_last_event(name: str) -> None:
    """The pump ends a body on ``ended``: an encoder is not ended before its stream's end."""
    encode, events = after_text(name)
    assert isinstance(encode, EndingEncoder)
    encode([events.message_done("Hel")])
    assert not encode.ended
    encode([events.run_completed()])
    assert encode.ended


def restarted_run(events: NativeEvents) -> list[Event]:
    """A step whose first attempt wrote text and a call, then was retracted; the second
    attempt answers "Hi"."""
    return [
        events.run_started(),
        events.message(),
        events.delta("Hel"),
        events.call("c1", "clock"),
        events.call_delta("c1", "{"),
        events.retracted(),
        events.rerouted("a", "b", "stream_broken"),
        events.delta("Hi"),
        events.message_done("Hi"),
        events.run_completed(),
    ]


def test_without_retracted_leaves_the_last_attempt() -> None:
    events = restarted_run(NativeEvents(RUN))
    assert [event.seq for event in without_retracted(events)] == [1, 2, 7, 8, 9, 10]
    plain = [event for event in events if event.type is not EventType.MESSAGE_RETRACTED]
    assert without_retracted(plain) == plain  # nothing retracted: unchanged


def test_a_retraction_voids_only_its_own_message_s_output() -> None:
    events = NativeEvents(RUN)
    log = [
        events.message("m1"),
        events.delta("one", "m1"),
        events.message_done("one", "m1"),
        events.message("m2", step=1),
        events.delta("tw", "m2"),
        events.call("c2", "clock", "m2"),
        events.call_done("c2", "clock", "{}"),
        events.retracted(message_id="m2"),
        events.delta("two", "m2"),
    ]
    assert [event.seq for event in without_retracted(log)] == [1, 2, 3, 4, 9]


def test_a_non_streamed_chat_completion_is_the_last_attempt_s_answer() -> None:
    answer = chat_completion(restarted_run(NativeEvents(RUN)), "chatcmpl-abc", "demo", 1)
    assert isinstance(answer, dict)
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_a_non_streamed_response_is_the_last_attempt_s_answer() -> None:
    encoder = ResponsesEncoder(RUN, model="demo")
    encoder.prime(without_retracted(restarted_run(NativeEvents(RUN))))
    response = encoder.response()
    assert response["status"] == "completed"
    assert [item["content"][0]["text"] for item in response["output"]] == ["Hi"]


def test_a_non_streamed_message_is_the_last_attempt_s_answer() -> None:
    encoder = MessagesEncoder(RUN, model="demo")
    encoder.prime(without_retracted(restarted_run(NativeEvents(RUN))))
    assert encoder.message()["content"] == [{"type": "text", "text": "Hi"}]
    assert encoder.error() is None


# -- fuzz: any interleaving of two messages' output and retractions -------------------------

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2"]),
        st.sampled_from(["delta", "thinking", "call", "call_delta", "retract", "reroute"]),
    ),
    max_size=30,
)


def build(steps: list[tuple[str, str]]) -> tuple[list[Event], dict[int, str]]:
    """The events of ``steps``, and each output event's message (by seq)."""
    events = NativeEvents(RUN)
    log: list[Event] = []
    owner: dict[int, str] = {}
    calls: dict[str, str] = {}
    for message, kind in steps:
        event: Event
        if kind == "delta":
            event = events.delta("x", message)
        elif kind == "thinking":
            event = events.thinking("t", message)
        elif kind == "call":
            call_id = f"c{events.seq + 1}"
            calls[call_id] = message
            event = events.call(call_id, "clock", message)
        elif kind == "call_delta":
            mine = [call_id for call_id, parent in calls.items() if parent == message]
            if not mine:
                continue
            event = events.call_delta(mine[-1], "{")
        elif kind == "retract":
            event = events.retracted(message_id=message)
        else:
            event = events.rerouted(message_id=message)
        if kind not in ("retract", "reroute"):
            owner[event.seq] = message
        log.append(event)
    return log, owner


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_without_retracted_keeps_exactly_what_no_later_retraction_voids(
    steps: list[tuple[str, str]],
) -> None:
    log, owner = build(steps)
    last: dict[str, int] = {}
    for event in log:
        if event.type is EventType.MESSAGE_RETRACTED:
            last[event.data["message_id"]] = event.seq
    expected = [
        event.seq
        for event in log
        if event.type is not EventType.MESSAGE_RETRACTED
        and (event.seq not in owner or event.seq > last.get(owner[event.seq], 0))
    ]
    assert [event.seq for event in without_retracted(log)] == expected


@settings(max_examples=100, deadline=None)
@given(STEPS)
def test_the_chat_stream_never_sends_text_after_a_retraction(
    steps: list[tuple[str, str]],
) -> None:
    log, _ = build(steps)
    encode = ChatChunkEncoder("chatcmpl-abc", "demo", 1)
    sent: list[Any] = [encode([event]) for event in log]
    retractions = [i for i, event in enumerate(log) if event.type is EventType.MESSAGE_RETRACTED]
    if retractions:
        first = retractions[0]
        assert sent[first].endswith(b"data: [DONE]\n\n")
        assert all(frames == b"" for frames in sent[first + 1 :])
