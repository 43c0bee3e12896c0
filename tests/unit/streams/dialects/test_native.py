"""Specification of the native dialect (``streams/dialects/native.py``) and of how an
:class:`~streams.events.Event` serialises itself (``streams/events.py``)."""

from __future__ import annotations

import decimal
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dialects.native import (
    SSE_PING,
    encode_sse,
    encode_sse_batch,
    encode_sse_comment,
    encode_stream_error,
    encode_ws_ack,
    encode_ws_error,
    encode_ws_event,
    encoder_for_run,
)
from streams.events import ENVELOPE, TERMINAL_TYPES, Event, EventType, dumps, error_payload
from tests.support import run_spec

ENVELOPE_KEYS = ("seq", "run_id", "type", "ts", "producer")


def delta(seq: int = 7, text: str = "hi", producer: str | None = "model.1") -> Event:
    return Event.create(
        seq, "run_1", EventType.MESSAGE_DELTA, 1.5, producer, {"message_id": "m", "delta": text}
    )


# -- Event.create -------------------------------------------------------------------------


def test_event_json_puts_envelope_first_then_payload_in_insertion_order() -> None:
    event = Event.create(3, "run_x", EventType.TOOL_DELTA, 2.25, "call_1", {"b": 1, "a": 2})

    assert event.json == (
        b'{"seq":3,"run_id":"run_x","type":"tool.delta","ts":2.25,"producer":"call_1","b":1,"a":2}'
    )
    assert list(event.to_dict()) == ["seq", "run_id", "type", "ts", "producer", "b", "a"]


def test_event_json_omits_producer_when_none() -> None:
    event = Event.create(1, "run_x", EventType.RUN_STARTED, 0.5, None, {"kind": "agent"})

    assert event.json == b'{"seq":1,"run_id":"run_x","type":"run.started","ts":0.5,"kind":"agent"}'
    assert "producer" not in event.to_dict()


@pytest.mark.parametrize("data", [None, {}])
def test_event_without_payload_has_only_the_envelope(data: dict[str, Any] | None) -> None:
    event = Event.create(1, "r", EventType.RUN_CANCELLED, 1.0, None, data)

    assert event.json == b'{"seq":1,"run_id":"r","type":"run.cancelled","ts":1.0}'
    assert event.data == {}


def test_event_keeps_its_fields_alongside_the_json() -> None:
    event = delta()

    assert (event.seq, event.run_id, event.type, event.ts, event.producer) == (
        7,
        "run_1",
        EventType.MESSAGE_DELTA,
        1.5,
        "model.1",
    )
    assert event.data == {"message_id": "m", "delta": "hi"}


def test_event_json_keeps_non_ascii_as_utf8() -> None:
    event = delta(text="héllo ✓ 日本")

    assert b'"delta":"h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac"' in event.json
    assert b"\\u" not in event.json


def test_event_json_escapes_control_characters() -> None:
    event = delta(text='a\nb\rc\t"d"')

    assert b'"delta":"a\\nb\\rc\\t\\"d\\""' in event.json
    assert b"\n" not in event.json
    assert b"\r" not in event.json


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param({1, 2}, "{1, 2}", id="set"),
        pytest.param(b"ab", "b'ab'", id="bytes"),
        pytest.param(1 + 2j, "(1+2j)", id="complex"),
        pytest.param(decimal.Decimal("1.10"), "1.10", id="decimal"),
        pytest.param(ValueError("boom"), "boom", id="exception"),
    ],
)
def test_non_json_payload_value_is_encoded_as_its_str(value: object, encoded: str) -> None:
    event = Event.create(1, "r", EventType.TOOL_COMPLETED, 1.0, None, {"output": value})

    assert event.to_dict()["output"] == encoded


def test_tuple_payload_value_is_encoded_as_a_list() -> None:
    event = Event.create(1, "r", EventType.TOOL_COMPLETED, 1.0, None, {"output": (1, "a")})

    assert event.to_dict()["output"] == [1, "a"]


@pytest.mark.parametrize(
    "value", [2**64, -(2**63) - 1, 10**100], ids=["2**64", "-2**63-1", "10**100"]
)
def test_integer_beyond_64_bits_still_encodes(value: int) -> None:
    event = Event.create(1, "r", EventType.TOOL_COMPLETED, 1.0, None, {"output": value})

    assert json.loads(event.json)["output"] in (value, str(value))


def test_nested_dict_with_non_str_keys_still_encodes() -> None:
    event = Event.create(1, "r", EventType.TOOL_COMPLETED, 1.0, None, {"output": {1: "a"}})

    assert "output" in event.to_dict()


def test_event_size_is_the_length_of_its_json() -> None:
    event = delta(text="x" * 100)

    assert event.size == len(event.json)


@pytest.mark.parametrize("type_", list(EventType))
def test_event_is_terminal_exactly_for_run_completed_failed_cancelled(type_: EventType) -> None:
    expected = type_ in {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}

    assert type_.is_terminal is expected
    assert Event.create(1, "r", type_, 1.0).is_terminal is expected
    assert (type_ in TERMINAL_TYPES) is expected


def test_error_payload_has_code_and_message() -> None:
    assert error_payload("tool_error", "bad") == {"code": "tool_error", "message": "bad"}


def test_dumps_is_compact_utf8_json() -> None:
    assert dumps({"a": [1, 2.5, None, True], "é": "✓"}) == (
        b'{"a":[1,2.5,null,true],"\xc3\xa9":"\xe2\x9c\x93"}'
    )


# -- SSE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "frame"),
    [
        pytest.param(
            delta(),
            b'id: 7\ndata: {"seq":7,"run_id":"run_1","type":"message.delta","ts":1.5,'
            b'"producer":"model.1","message_id":"m","delta":"hi"}\n\n',
            id="with-producer",
        ),
        pytest.param(
            Event.create(1, "run_1", EventType.RUN_STARTED, 0.0, None, {"kind": "agent"}),
            b'id: 1\ndata: {"seq":1,"run_id":"run_1","type":"run.started","ts":0.0,'
            b'"kind":"agent"}\n\n',
            id="without-producer",
        ),
        pytest.param(
            delta(seq=12345, text="a\r\nb", producer=None),
            b'id: 12345\ndata: {"seq":12345,"run_id":"run_1","type":"message.delta",'
            b'"ts":1.5,"message_id":"m","delta":"a\\r\\nb"}\n\n',
            id="crlf-in-payload",
        ),
        pytest.param(
            delta(seq=2, text="data: x\n\nid: 9", producer=None),
            b'id: 2\ndata: {"seq":2,"run_id":"run_1","type":"message.delta","ts":1.5,'
            b'"message_id":"m","delta":"data: x\\n\\nid: 9"}\n\n',
            id="field-lookalike-in-payload",
        ),
        pytest.param(
            delta(seq=3, text="é", producer=None),
            b'id: 3\ndata: {"seq":3,"run_id":"run_1","type":"message.delta","ts":1.5,'
            b'"message_id":"m","delta":"\xc3\xa9"}\n\n',
            id="non-ascii",
        ),
    ],
)
def test_encode_sse_frame_is_id_line_data_line_blank_line(event: Event, frame: bytes) -> None:
    assert encode_sse(event) == frame
    assert b"\r" not in encode_sse(event)


def test_encode_sse_batch_concatenates_frames_in_order() -> None:
    events = [delta(seq=1, text="a"), delta(seq=2, text="b"), delta(seq=3, text="c")]

    assert encode_sse_batch(events) == b"".join(encode_sse(e) for e in events)


def test_encode_sse_batch_of_nothing_is_empty() -> None:
    assert encode_sse_batch([]) == b""


def test_encode_sse_batch_accepts_any_iterable() -> None:
    events = [delta(seq=1), delta(seq=2)]

    assert encode_sse_batch(iter(events)) == encode_sse(events[0]) + encode_sse(events[1])


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        pytest.param("ping", b": ping\n\n", id="single-line"),
        pytest.param("", b": \n\n", id="empty"),
        pytest.param("a\nb", b": a\n: b\n\n", id="lf"),
        pytest.param("a\r\nb", b": a\n: b\n\n", id="crlf"),
        pytest.param("a\rb", b": a\n: b\n\n", id="cr"),
        pytest.param("a\n\nb", b": a\n: \n: b\n\n", id="blank-line-inside"),
        pytest.param("tail\n", b": tail\n: \n\n", id="trailing-lf"),
        pytest.param("x\r\ndata: evil", b": x\n: data: evil\n\n", id="crlf-data-injection"),
        pytest.param("x\rid: 99", b": x\n: id: 99\n\n", id="cr-id-injection"),
        pytest.param("x\n\ndata: evil", b": x\n: \n: data: evil\n\n", id="frame-end-injection"),
        pytest.param("é ✓", b": \xc3\xa9 \xe2\x9c\x93\n\n", id="non-ascii"),
    ],
)
def test_encode_sse_comment_prefixes_every_line(text: str, frame: bytes) -> None:
    assert encode_sse_comment(text) == frame


def test_sse_ping_is_the_ping_comment() -> None:
    assert encode_sse_comment("ping") == SSE_PING


@given(st.text())  # hypothesis text never holds lone surrogates
@settings(max_examples=200, deadline=None)
def test_encode_sse_comment_never_yields_a_field_line(text: str) -> None:
    frame = encode_sse_comment(text)

    assert b"\r" not in frame
    assert frame.endswith(b"\n\n")
    lines = frame[:-2].split(b"\n")
    assert all(line.startswith(b": ") for line in lines)


# -- WebSocket ----------------------------------------------------------------------------


def test_encode_ws_event_is_the_event_json_as_text() -> None:
    event = delta(text="é")

    assert encode_ws_event(event) == (
        '{"seq":7,"run_id":"run_1","type":"message.delta","ts":1.5,'
        '"producer":"model.1","message_id":"m","delta":"é"}'
    )


@pytest.mark.parametrize(
    ("command_id", "fields", "message"),
    [
        pytest.param(1, {}, '{"type":"ack","id":1}', id="int-id"),
        pytest.param("c-1", {}, '{"type":"ack","id":"c-1"}', id="str-id"),
        pytest.param(None, {}, '{"type":"ack","id":null}', id="no-id"),
        pytest.param(
            3,
            {"command": "subscribe", "run_id": "run_1", "after": 0},
            '{"type":"ack","id":3,"command":"subscribe","run_id":"run_1","after":0}',
            id="with-fields",
        ),
    ],
)
def test_encode_ws_ack(command_id: Any, fields: dict[str, Any], message: str) -> None:
    assert encode_ws_ack(command_id, **fields) == message


@pytest.mark.parametrize(
    ("command_id", "fields", "message"),
    [
        pytest.param(
            1,
            {},
            '{"type":"error","id":1,"code":"invalid_json","message":"bad ✓"}',
            id="int-id",
        ),
        pytest.param(
            None,
            {},
            '{"type":"error","id":null,"code":"invalid_json","message":"bad ✓"}',
            id="no-id",
        ),
        pytest.param(
            "x",
            {"run_id": "run_1"},
            '{"type":"error","id":"x","code":"invalid_json","message":"bad ✓","run_id":"run_1"}',
            id="with-fields",
        ),
    ],
)
def test_encode_ws_error(command_id: Any, fields: dict[str, Any], message: str) -> None:
    assert encode_ws_error(command_id, "invalid_json", "bad ✓", **fields) == message


# -- fuzz ---------------------------------------------------------------------------------

tricky_text = st.one_of(
    st.text(),
    st.sampled_from(["data: x", "id: 1", "\r", "\n", "\r\n", "\n\n", "data:\r\ndata:", "é✓"]),
)
payload_keys = tricky_text.filter(lambda key: key not in ENVELOPE_KEYS)


@given(
    seq=st.integers(min_value=1, max_value=2**53),
    producer=st.none() | tricky_text,
    payload=st.dictionaries(payload_keys, tricky_text, max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_sse_frame_of_any_text_payload_is_one_id_line_and_one_data_line(
    seq: int, producer: str | None, payload: dict[str, str]
) -> None:
    event = Event.create(seq, "run_1", EventType.TOOL_DELTA, 1.5, producer, payload)

    frame = encode_sse(event)

    assert b"\r" not in frame
    assert frame.endswith(b"\n\n")
    lines = frame[:-2].split(b"\n")
    assert len(lines) == 2
    id_line, data_line = lines
    assert id_line == b"id: %d" % seq
    assert data_line.startswith(b"data: ")
    expected = {"seq": seq, "run_id": "run_1", "type": "tool.delta", "ts": 1.5}
    if producer is not None:
        expected["producer"] = producer
    expected.update(payload)
    assert json.loads(data_line[len(b"data: ") :]) == expected == event.to_dict()


def test_each_wire_form_of_an_event_is_made_once_and_shared_by_every_reader() -> None:
    event = Event.create(7, "run_x", EventType.MESSAGE_DELTA, 1.5, "model.1", {"delta": "hé"})
    assert encode_sse(event) is encode_sse(event)
    assert encode_sse_batch([event]) == encode_sse(event)
    assert encode_ws_event(event) is encode_ws_event(event)
    assert encode_ws_event(event) == event.json.decode()


@pytest.mark.parametrize(
    ("code", "message", "frame"),
    [
        (
            "store_unavailable",
            "Redis is gone",
            b'event: error\ndata: {"type":"stream.error","code":"store_unavailable",'
            b'"message":"Redis is gone"}\n\n',
        ),
        (
            "x",
            'quote " and é\nnewline',
            b'event: error\ndata: {"type":"stream.error","code":"x",'
            b'"message":"quote \\" and \xc3\xa9\\nnewline"}\n\n',
        ),
    ],
)
def test_encode_stream_error_is_an_error_event_without_an_id(
    code: str, message: str, frame: bytes
) -> None:
    assert encode_stream_error(code, message) == frame


@pytest.mark.parametrize(
    "event",
    [
        Event.create(1, "run_a", EventType.RUN_STARTED, 1.5, None, {"kind": "agent"}),
        Event.create(7, "run_a", EventType.MESSAGE_DELTA, 2.25, "model.1", {"delta": "é\n"}),
        Event.create(9, "run_a", EventType.RUN_FAILED, 3.0, None, {"error": {"code": "x"}}),
        Event.create(2, "run_a", EventType.TOOL_DELTA, 0.1, "call_1", {"n": 2**70}),
    ],
)
def test_an_event_read_back_from_its_json_is_the_same_event_with_the_same_bytes(
    event: Event,
) -> None:
    again = Event.from_json(event.json)
    assert again.json == event.json
    assert again.sse_frame() == event.sse_frame()
    assert (again.seq, again.run_id, again.type, again.ts, again.producer) == (
        event.seq,
        event.run_id,
        event.type,
        event.ts,
        event.producer,
    )
    assert dict(again.data) == dict(event.data)
    assert again.is_terminal == event.is_terminal


@given(st.dictionaries(st.text(min_size=1).filter(lambda k: k not in ENVELOPE), st.text()))
@settings(max_examples=200)
def test_any_payload_survives_the_round_trip_through_json(payload: dict[str, str]) -> None:
    event = Event.create(3, "run_b", EventType.MESSAGE_DELTA, 1.0, "model.1", payload)
    assert Event.from_json(event.json) == event


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        (EventType.REASONING_DELTA, {"message_id": "m1", "delta": "Let me think."}),
        (EventType.REASONING_SIGNATURE, {"message_id": "m1", "signature": "c2ln"}),
        (EventType.REASONING_REDACTED, {"message_id": "m1", "data": "EmwK"}),
    ],
)
def test_the_native_dialect_sends_reasoning_events_as_every_event(
    type_: EventType, data: dict[str, Any]
) -> None:
    event = Event.create(3, "run_1", type_, 1.5, "model.1", data)

    assert encoder_for_run("run_1", run_spec("hi"))([event]) == (
        b'id: 3\ndata: {"seq":3,"run_id":"run_1","type":"%s","ts":1.5,"producer":"model.1",'
        % type_.value.encode()
        + dumps(data)[1:]
        + b"\n\n"
    )
