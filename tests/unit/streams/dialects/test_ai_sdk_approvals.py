"""The AI SDK dialect's tool approvals (the ``tool-approval`` feature): byte-exact chunks of a
call that waits, the pause that ends the SDK's turn while the run waits, the stream after the
answer, denials with and without the feature, and the answers a chat request carries."""

from __future__ import annotations

from typing import Any

import pytest

from streams.dialects.ai_sdk import (
    APPROVAL_PREFIX,
    CHUNK_KEYS,
    DONE_FRAME,
    UIStreamEncoder,
    approval_id,
    call_of_approval,
)
from streams.dialects.ai_sdk_input import ApprovalResponse, approval_responses
from streams.errors import InvalidRequestError
from streams.events import Event, EventType
from tests.unit.streams.dialects.support import NativeEvents, parse_data, split_frames

RUN = "run_0123abcd"
APPROVAL = ["tool-approval"]


def requested(n: NativeEvents, call_id: str, name: str = "clock") -> Event:
    return n(
        EventType.TOOL_APPROVAL_REQUESTED,
        call_id,
        call_id=call_id,
        name=name,
        arguments={},
        expires_at=100.0,
    )


def approved(n: NativeEvents, call_id: str) -> Event:
    return n(EventType.TOOL_APPROVED, call_id, call_id=call_id, by="alice", reason=None)


def denied(n: NativeEvents, call_id: str, reason: str | None = "not now") -> Event:
    return n(EventType.TOOL_DENIED, call_id, call_id=call_id, by="alice", reason=reason)


def _head(n: NativeEvents, *calls: str) -> list[Event]:
    """A step whose model calls ``calls`` (each the clock, no arguments)."""
    events = [n.run_started(), n.message()]
    for call_id in calls:
        events += [n.call(call_id, "clock"), n.call_done(call_id, "clock", "{}")]
    return [*events, n.message_done()]


def _approved_run(n: NativeEvents) -> list[Event]:
    return [
        *_head(n, "c1"),
        requested(n, "c1"),
        approved(n, "c1"),
        n.tool_started("c1", "clock"),
        n.tool_done("c1", {"iso": "x"}),
        n.message("m2", 1),
        n.delta("It is x", "m2"),
        n.message_done("It is x", "m2"),
        n.run_completed(),
    ]


def _denied_run(n: NativeEvents) -> list[Event]:
    return [*_head(n, "c1"), requested(n, "c1"), denied(n, "c1"), n.run_completed()]


HEAD = (
    b'id: 1\ndata: {"type":"start","messageId":"msg_0123abcd"}\n\n'
    b'id: 2\ndata: {"type":"start-step"}\n\n'
    b'id: 3\ndata: {"type":"tool-input-start","toolCallId":"c1","toolName":"clock"}\n\n'
    b'id: 4\ndata: {"type":"tool-input-available","toolCallId":"c1","toolName":"clock",'
    b'"input":{}}\n\n'
)
PAUSE = (
    b'data: {"type":"tool-approval-request","approvalId":"approval_c1","toolCallId":"c1"}\n\n'
    b'data: {"type":"finish-step"}\n\n'
    b'id: 6\ndata: {"type":"finish"}\n\n' + DONE_FRAME
)
APPROVED_REST = (
    b'id: 7\ndata: {"type":"start","messageId":"msg_0123abcd"}\n\n'
    b'id: 9\ndata: {"type":"tool-output-available","toolCallId":"c1","output":{"iso":"x"}}\n\n'
    b'id: 10\ndata: {"type":"start-step"}\n\n'
    b'data: {"type":"text-start","id":"msg_0123abcd:1"}\n\n'
    b'id: 11\ndata: {"type":"text-delta","id":"msg_0123abcd:1","delta":"It is x"}\n\n'
    b'id: 12\ndata: {"type":"text-end","id":"msg_0123abcd:1"}\n\n'
    b'data: {"type":"finish-step"}\n\n'
    b'id: 13\ndata: {"type":"finish"}\n\n' + DONE_FRAME
)
DENIED_REST = (
    b'data: {"type":"start","messageId":"msg_0123abcd"}\n\n'
    b'id: 7\ndata: {"type":"tool-output-denied","toolCallId":"c1"}\n\n'
    b'id: 8\ndata: {"type":"finish"}\n\n' + DONE_FRAME
)


def test_approval_ids() -> None:
    assert APPROVAL_PREFIX == "approval_"
    assert approval_id("call_7") == "approval_call_7"
    assert call_of_approval("approval_call_7") == "call_7"
    for other in ("approval_", "call_7", "aitxt-1", ""):
        assert call_of_approval(other) is None
    assert CHUNK_KEYS["tool-approval-request"] == {"type", "approvalId", "toolCallId"}
    assert CHUNK_KEYS["tool-output-denied"] == {"type", "toolCallId"}


@pytest.mark.parametrize(
    ("build", "paused_at", "rest"),
    [
        pytest.param(_approved_run, 6, APPROVED_REST, id="approved"),
        pytest.param(_denied_run, 6, DENIED_REST, id="denied"),
    ],
)
def test_a_call_that_waits_pauses_the_stream_and_the_answer_goes_on(
    build: Any, paused_at: int, rest: bytes
) -> None:
    events = build(NativeEvents(RUN))
    first = UIStreamEncoder(RUN, features=APPROVAL)
    # The first request's stream: the request, then the end of the SDK's turn.
    assert first(events[:paused_at]) == HEAD + PAUSE
    assert first.paused and first.ended and first.awaiting == {"c1"}
    # The next request's: a fresh encoder primed up to the pause, the rest of the run.
    second = UIStreamEncoder(RUN, features=APPROVAL)
    second.prime(events[:paused_at])
    assert second.paused
    assert second(events[paused_at:]) == rest
    assert second.ended and not second.paused and second.awaiting == frozenset()
    # A stream that goes on from the pause is not ended before the answer's events come.
    third = UIStreamEncoder(RUN, features=APPROVAL)
    third.prime(events[:paused_at])
    third.go_on()
    assert not third.ended and third.awaiting == {"c1"}
    assert third(events[paused_at:]) == rest
    third.go_on()  # no pause: nothing changes
    assert third.ended
    # One encoder over the whole log gives the same (as a GET after the answer reads it).
    whole = UIStreamEncoder(RUN, features=APPROVAL)
    assert whole(events[:paused_at]) + whole(events[paused_at:]) == HEAD + PAUSE + rest


def test_the_message_it_builds_has_the_sdk_s_approval_states() -> None:
    n = NativeEvents(RUN)
    events = _approved_run(n)
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder.prime(events[:6])
    (tool,) = [p for p in encoder.message()["parts"] if p["type"] == "tool-clock"]
    assert tool == {
        "type": "tool-clock",
        "toolCallId": "c1",
        "state": "approval-requested",
        "input": {},
        "approval": {"id": "approval_c1"},
    }
    encoder.prime(events[6:7])
    (tool,) = [p for p in encoder.message()["parts"] if p["type"] == "tool-clock"]
    assert tool["state"] == "approval-responded"
    assert tool["approval"] == {"id": "approval_c1", "approved": True}
    denial = UIStreamEncoder(RUN, features=APPROVAL)
    denial.prime(_denied_run(NativeEvents(RUN)))
    (tool,) = [p for p in denial.message()["parts"] if p["type"] == "tool-clock"]
    assert tool["state"] == "output-denied"
    assert tool["approval"] == {"id": "approval_c1", "approved": False, "reason": "not now"}


def test_the_pause_waits_for_the_step_s_other_calls() -> None:
    n = NativeEvents(RUN)
    events = [
        *_head(n, "c1", "c2"),
        requested(n, "c1"),  # seq 8: c2 still runs
        n.tool_started("c2", "clock"),
        n.tool_done("c2", {"iso": "y"}),  # seq 10: now every call is done or waits
        denied(n, "c1", None),
        n.run_completed(),
    ]
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder.prime(events[:7])
    assert encoder(events[7:8]) == (
        b'id: 8\ndata: {"type":"tool-approval-request","approvalId":"approval_c1",'
        b'"toolCallId":"c1"}\n\n'
    )
    assert not encoder.paused
    assert encoder(events[8:10]) == (
        b'data: {"type":"tool-output-available","toolCallId":"c2","output":{"iso":"y"}}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'id: 10\ndata: {"type":"finish"}\n\n' + DONE_FRAME
    )
    assert encoder.paused and encoder.awaiting == {"c1"}
    assert encoder(events[10:]) == (
        b'data: {"type":"start","messageId":"msg_0123abcd"}\n\n'
        b'id: 11\ndata: {"type":"tool-output-denied","toolCallId":"c1"}\n\n'
        b'id: 12\ndata: {"type":"finish"}\n\n' + DONE_FRAME
    )


def test_a_second_call_waiting_pauses_again_after_the_first_answer() -> None:
    n = NativeEvents(RUN)
    events = [
        *_head(n, "c1", "c2"),
        requested(n, "c1"),
        requested(n, "c2"),  # seq 9: the pause
        approved(n, "c1"),  # seq 10: the stream goes on, c2 still waits
        n.tool_started("c1", "clock"),
        n.tool_done("c1", 1),  # seq 12: paused again, for c2
    ]
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder.prime(events[:9])
    assert encoder.paused and encoder.awaiting == {"c1", "c2"}
    assert encoder(events[9:]) == (
        b'id: 10\ndata: {"type":"start","messageId":"msg_0123abcd"}\n\n'
        b'data: {"type":"tool-output-available","toolCallId":"c1","output":1}\n\n'
        b'id: 12\ndata: {"type":"finish"}\n\n' + DONE_FRAME
    )
    assert encoder.paused and encoder.awaiting == {"c2"}


def test_an_expired_approval_that_fails_the_call() -> None:
    n = NativeEvents(RUN)
    events = [*_head(n, "c1"), requested(n, "c1")]
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder.prime(events)
    failed = n(
        EventType.TOOL_FAILED,
        "c1",
        call_id="c1",
        error={"code": "approval_expired", "message": "no answer"},
    )
    assert encoder([failed]) == (
        b'data: {"type":"start","messageId":"msg_0123abcd"}\n\n'
        b'id: 7\ndata: {"type":"tool-output-error","toolCallId":"c1",'
        b'"errorText":"approval_expired: no answer"}\n\n'
    )
    assert encoder.awaiting == frozenset() and not encoder.paused


@pytest.mark.parametrize(
    ("reason", "text"),
    [("not now", b"tool_denied: not now"), (None, b"tool_denied: ")],
)
def test_without_the_feature_a_wait_gives_nothing_and_a_denial_an_error(
    reason: str | None, text: bytes
) -> None:
    n = NativeEvents(RUN)
    events = [*_head(n, "c1"), requested(n, "c1"), denied(n, "c1", reason), n.run_completed()]
    stream = UIStreamEncoder(RUN)(events)
    assert stream == HEAD + (
        b'id: 7\ndata: {"type":"tool-output-error","toolCallId":"c1","errorText":"'
        + text
        + b'"}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'id: 8\ndata: {"type":"finish"}\n\n' + DONE_FRAME
    )
    kinds = {parse_data(frame)[1]["type"] for frame in split_frames(stream)[:-1]}
    assert not kinds & {"tool-approval-request", "tool-output-denied"}
    # Approved without the feature: the call's output, as any call's.
    m = NativeEvents(RUN)
    events = [*_head(m, "c1"), requested(m, "c1"), approved(m, "c1"), m.tool_done("c1", 2)]
    assert UIStreamEncoder(RUN)(events) == HEAD + (
        b'id: 8\ndata: {"type":"tool-output-available","toolCallId":"c1","output":2}\n\n'
    )


def test_an_approval_of_a_call_it_has_no_part_for_is_ignored() -> None:
    n = NativeEvents(RUN)
    events = [n.run_started(), n.message(), n.message_done(), requested(n, "c9")]
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder(events)
    assert not encoder.paused and encoder.awaiting == frozenset()
    assert encoder([denied(n, "c9")]) == b""


def _assistant(*parts: dict[str, Any], message_id: str = "msg_1") -> dict[str, Any]:
    return {"id": message_id, "role": "assistant", "parts": list(parts)}


def _responded(call_id: str = "c1", **approval: Any) -> dict[str, Any]:
    return {
        "type": "tool-clock",
        "toolCallId": call_id,
        "state": "approval-responded",
        "input": {},
        "approval": {"id": approval_id(call_id), **approval},
    }


USER = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "What time is it?"}]}


def test_approval_responses() -> None:
    messages = [
        USER,
        _assistant(
            {"type": "step-start"},
            _responded("c1", approved=True),
            {"type": "tool-clock", "toolCallId": "c0", "state": "output-available", "output": 1},
            _responded("c2", approved=False, reason="no"),
        ),
    ]
    assert approval_responses(messages) == [
        ApprovalResponse("msg_1", "c1", True, None),
        ApprovalResponse("msg_1", "c2", False, "no"),
    ]
    assert approval_responses([USER]) == []
    assert approval_responses([]) == []
    waiting = {**_responded(), "state": "approval-requested", "approval": {"id": "approval_c1"}}
    assert approval_responses([USER, _assistant(waiting)]) == []


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            {**_responded(approved=True), "approval": {"id": "approval_c2", "approved": True}},
            "messages.1.parts.0.approval.id: is not the approval of call c1",
        ),
        (
            {**_responded(approved=True), "approval": "yes"},
            "messages.1.parts.0.approval: must be an object",
        ),
        (_responded(approved="yes"), "messages.1.parts.0.approval.approved: must be a boolean"),
        (
            _responded(approved=False, reason=3),
            "messages.1.parts.0.approval.reason: must be a string",
        ),
        (
            _responded(approved=False, reason="x" * 1001),
            "messages.1.parts.0.approval.reason: must be at most 1000 characters",
        ),
        (
            {**_responded(approved=True), "toolCallId": ""},
            "messages.1.parts.0.toolCallId: must be a non-empty string",
        ),
    ],
)
def test_approval_responses_refused(part: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        approval_responses([USER, _assistant(part)])
    assert str(raised.value) == message


def test_no_pause_for_calls_the_log_has_the_answers_of() -> None:
    events = _approved_run(NativeEvents(RUN))
    encoder = UIStreamEncoder(RUN, features=APPROVAL)
    encoder.known_answers(["c1"])
    stream = encoder(events)
    assert stream.count(b'"type":"finish"') == 1 and stream.endswith(DONE_FRAME)
    assert stream.count(DONE_FRAME) == 1
    assert b'"tool-approval-request"' in stream and b'"type":"start",' not in stream[40:]
    # A pause still waiting for another call is made.
    n = NativeEvents(RUN)
    waiting = UIStreamEncoder(RUN, features=APPROVAL)
    waiting.known_answers(["c1"])
    waiting.prime([*_head(n, "c1", "c2"), requested(n, "c1"), requested(n, "c2")])
    assert waiting.paused and waiting.awaiting == {"c1", "c2"}
