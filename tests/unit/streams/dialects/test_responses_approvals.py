"""Specification of the Responses dialect's approvals (``streams/dialects/responses.py``): a
call waiting for a person ends the response with an ``mcp_approval_request`` item, and the
run's next response (``resp_<hex>_<seq>``) goes on after it, byte for byte, each event as the
``openai`` package's own types read it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall

from streams.dialects.responses import (
    ResponsesEncoder,
    approval_request_id,
    call_id_of,
    response_id,
    response_start,
    run_id_of,
)
from streams.events import Event, EventType
from streams.spec import ApprovalAsked, ChatMessage, RunSpec
from tests.unit.streams.dialects.support import NativeEvents, parse, split_frames
from tests.unit.streams.dialects.test_responses import (
    MEMBERS,
    STREAM_EVENT,
    UNDECLARED,
    compact,
    sdk_client,
    sdk_dump,
    undeclared,
)

RUN = "run_abc"
MODEL = "demo"
SPEC = RunSpec(
    model=MODEL,
    messages=[ChatMessage(role="user", content="hi")],
    tools=["calculator"],
    approval="all",
)
CUT = 6  # the seq of the approval request in every scenario below
ARGUMENTS = '{"expression":"2+2"}'


class Events(NativeEvents):
    """This module's run."""

    def __init__(self) -> None:
        super().__init__(RUN, model=MODEL, tools=["calculator"])

    def approval_requested(self, call_id: str, arguments: Any) -> Event:
        return self(
            EventType.TOOL_APPROVAL_REQUESTED,
            call_id,
            call_id=call_id,
            name="calculator",
            arguments=arguments,
            expires_at=1000.0,
        )

    def approved(self, call_id: str, **edited: Any) -> Event:
        return self(
            EventType.TOOL_APPROVED, call_id, call_id=call_id, by="k", reason=None, **edited
        )

    def denied(self, call_id: str, reason: str = "no") -> Event:
        return self(EventType.TOOL_DENIED, call_id, call_id=call_id, by="k", reason=reason)


def asking(ev: Events) -> list[Event]:
    """Up to the approval request (seq 6)."""
    return [
        ev.run_started(),  # 1
        ev.message(),  # 2
        ev.call("c1", "calculator"),  # 3
        ev.call_delta("c1", ARGUMENTS),  # 4
        ev.call_done("c1", "calculator", ARGUMENTS),  # 5
        ev.approval_requested("c1", {"expression": "2+2"}),  # 6
    ]


def approved(ev: Events) -> list[Event]:
    return [
        *asking(ev),
        ev.approved("c1"),  # 7
        ev.tool_started("c1"),  # 8
        ev.tool_done("c1", {"value": 4}),  # 9
        ev.message("m2", step=1),  # 10
        ev.delta("4", "m2"),  # 11
        ev.message_done("4", "m2"),  # 12
        ev.run_completed(),  # 13
    ]


def denied(ev: Events) -> list[Event]:
    return [
        *asking(ev),
        ev.denied("c1"),  # 7
        ev.message("m2", step=1),  # 8
        ev.delta("denied", "m2"),  # 9
        ev.message_done("denied", "m2"),  # 10
        ev.run_completed(),  # 11
    ]


def edited(ev: Events) -> list[Event]:
    return [
        *asking(ev),
        ev.approved("c1", arguments={"expression": "3+3"}),  # 7
        ev.tool_started("c1"),  # 8
        ev.tool_done("c1", {"value": 6}),  # 9
        ev.run_completed(),  # 10
    ]


SCENARIOS = {"approved": approved, "denied": denied, "edited": edited}


def frames_of(events: list[Event], after: int = 0) -> list[bytes]:
    return split_frames(ResponsesEncoder.for_run(RUN, SPEC, after)(events))


def emitted(events: list[Event], after: int = 0) -> list[dict[str, Any]]:
    return [parse(frame)[2] for frame in frames_of(events, after)]


def frame(seq: int | None, event: dict[str, Any]) -> bytes:
    head = b"" if seq is None else b"id: %d\n" % seq
    return head + b"event: %s\ndata: %s\n\n" % (event["type"].encode(), compact(event))


# -- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "after", "expected"),
    [("run_abc", 0, "resp_abc"), ("run_abc", 6, "resp_abc_6"), ("run_abc", 123, "resp_abc_123")],
)
def test_a_response_id_names_the_run_and_the_seq_it_starts_after(
    run: str, after: int, expected: str
) -> None:
    assert response_id(run, after) == expected
    assert run_id_of(expected) == run
    assert response_start(expected) == after


@pytest.mark.parametrize("malformed", ["resp_abc_", "resp_abc_x", "resp_abc_0", "resp_abc_-1"])
def test_a_malformed_suffix_starts_no_response(malformed: str) -> None:
    assert response_start(malformed) == -1
    assert run_id_of(malformed) == "run_abc"


@pytest.mark.parametrize(
    ("request_id", "call_id"),
    [("mcpr_c1", "c1"), ("mcpr_call_7", "call_7"), ("mcpr_", None), ("mcp_c1", None), ("c1", None)],
)
def test_an_approval_request_id_is_the_call_id_after_mcpr(
    request_id: str, call_id: str | None
) -> None:
    assert call_id_of(request_id) == call_id
    if call_id is not None:
        assert approval_request_id(call_id) == request_id


# -- the response that asks -----------------------------------------------------------------


def test_the_approval_request_ends_the_response_byte_for_byte() -> None:
    events = approved(Events())
    frames = frames_of(events)
    waiting = {
        "id": "mcp_c1",
        "type": "mcp_call",
        "server_label": "gateway",
        "name": "calculator",
        "arguments": ARGUMENTS,
        "output": None,
        "error": None,
        "status": "incomplete",
        "approval_request_id": "mcpr_c1",
    }
    request = {
        "id": "mcpr_c1",
        "type": "mcp_approval_request",
        "server_label": "gateway",
        "name": "calculator",
        "arguments": ARGUMENTS,
    }
    encoder = ResponsesEncoder.for_run(RUN, SPEC)
    encoder.prime(events[:5])
    numbered = iter(range(encoder.sequence_number, 100))
    response = encoder.response()
    response.update(status="completed", completed_at=7.0, output=[waiting, request])
    expected: list[dict[str, Any]] = [
        {"type": "response.output_item.done", "output_index": 0, "item": waiting},
        {"type": "response.output_item.added", "output_index": 1, "item": request},
        {"type": "response.output_item.done", "output_index": 1, "item": request},
        {"type": "response.completed", "response": response},
    ]

    assert frames[-4:] == [
        frame(CUT if index == 3 else None, {**event, "sequence_number": next(numbered)})
        for index, event in enumerate(expected)
    ]
    assert McpApprovalRequest.model_validate(request).id == "mcpr_c1"
    assert McpCall.model_validate(waiting).approval_request_id == "mcpr_c1"


def test_the_response_that_asks_sends_nothing_of_what_comes_after() -> None:
    events = approved(Events())

    assert frames_of(events) == frames_of(events[:CUT])


def test_the_spec_approval_is_the_mcp_tool_require_approval() -> None:
    def tools(approval: Any) -> Any:
        spec = SPEC.model_copy(update={"approval": approval})
        return ResponsesEncoder.for_run(RUN, spec).response()["tools"][0]["require_approval"]

    assert tools("all") == "always"
    assert tools(None) == "never"
    assert tools(ApprovalAsked(tools=["calculator"])) == {"always": {"tool_names": ["calculator"]}}


# -- the response that goes on --------------------------------------------------------------


def test_the_next_response_goes_on_after_the_request_byte_for_byte() -> None:
    frames = frames_of(approved(Events()), CUT)
    response = ResponsesEncoder.for_run(RUN, SPEC).response()
    opening = {
        **response,
        "id": "resp_abc_6",
        "created_at": 7.0,
        "status": "in_progress",
        "previous_response_id": "resp_abc",
    }
    call = {
        "id": "mcp_c1",
        "type": "mcp_call",
        "server_label": "gateway",
        "name": "calculator",
        "arguments": ARGUMENTS,
        "output": None,
        "error": None,
        "status": "in_progress",
        "approval_request_id": "mcpr_c1",
    }
    done = {**call, "output": '{"value":4}', "status": "completed"}
    expected: list[tuple[int | None, dict[str, Any]]] = [
        (None, {"type": "response.created", "response": opening}),
        (None, {"type": "response.in_progress", "response": opening}),
        (7, {"type": "response.output_item.added", "output_index": 0, "item": call}),
        (8, {"type": "response.mcp_call.in_progress", "item_id": "mcp_c1", "output_index": 0}),
        (None, {"type": "response.mcp_call.completed", "item_id": "mcp_c1", "output_index": 0}),
        (9, {"type": "response.output_item.done", "output_index": 0, "item": done}),
    ]

    assert frames[: len(expected)] == [
        frame(seq, {**event, "sequence_number": number})
        for number, (seq, event) in enumerate(expected)
    ]
    final = parse(frames[-1])[2]
    assert final["type"] == "response.completed"
    assert [item["type"] for item in final["response"]["output"]] == ["mcp_call", "message"]
    assert final["response"]["output"][1]["content"][0]["text"] == "4"


def test_a_denied_call_has_no_item_in_the_next_response() -> None:
    events = emitted(denied(Events()), CUT)

    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["message"]


def test_an_approved_call_with_edited_arguments_runs_with_them() -> None:
    events = emitted(edited(Events()), CUT)

    added = events[2]
    assert added["type"] == "response.output_item.added"
    assert added["item"]["arguments"] == '{"expression":"3+3"}'
    assert events[-1]["response"]["output"][0]["arguments"] == '{"expression":"3+3"}'
    assert events[-1]["response"]["output"][0]["output"] == '{"value":6}'


def test_a_call_open_at_the_cut_is_added_to_the_next_response_when_it_ends() -> None:
    ev = Events()
    events = [
        ev.run_started(),  # 1
        ev.message(),  # 2
        ev.call("c1", "calculator"),  # 3
        ev.call_done("c1", "calculator", ARGUMENTS),  # 4
        ev.call("c2", "calculator"),  # 5
        ev.call_done("c2", "calculator", ARGUMENTS),  # 6
        ev.tool_started("c2"),  # 7
        ev.approval_requested("c1", {"expression": "2+2"}),  # 8
        ev.tool_done("c2", {"value": 4}),  # 9
    ]
    first = emitted(events)
    after = emitted(events, 8)

    assert [item["status"] for item in first[-1]["response"]["output"][:2]] == [
        "incomplete",
        "incomplete",
    ]
    assert [(event["type"], event.get("item", {}).get("id")) for event in after] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", "mcp_c2"),
        ("response.mcp_call.completed", None),
        ("response.output_item.done", "mcp_c2"),
    ]


def test_a_later_response_starts_after_each_earlier_cut() -> None:
    ev = Events()
    events = [
        *asking(ev),  # 1-6
        ev.approved("c1"),  # 7
        ev.tool_started("c1"),  # 8
        ev.tool_done("c1", {"value": 4}),  # 9
        ev.call("c2", "calculator", "m2"),  # 10
        ev.call_done("c2", "calculator", ARGUMENTS),  # 11
        ev.approval_requested("c2", {"expression": "2+2"}),  # 12
        ev.approved("c2"),  # 13
        ev.run_completed(),  # 14
    ]
    second, third = emitted(events, 6), emitted(events, 12)

    assert second[-1]["response"]["id"] == "resp_abc_6"
    assert second[-1]["response"]["output"][-1]["id"] == "mcpr_c2"
    assert third[0]["response"]["id"] == "resp_abc_12"
    assert third[0]["response"]["previous_response_id"] == "resp_abc_6"
    assert third[0]["sequence_number"] == 0


# -- the openai SDK's types -----------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("after", [0, CUT])
def test_every_event_validates_as_the_sdk_stream_event_of_its_type(name: str, after: int) -> None:
    for event in emitted(SCENARIOS[name](Events()), after):
        model = MEMBERS[event["type"]].model_validate(event)

        assert isinstance(STREAM_EVENT.validate_python(event), MEMBERS[event["type"]])
        assert set(undeclared(model)) <= UNDECLARED


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("after", [0, CUT])
def test_the_sdk_stream_helper_accumulates_our_response(name: str, after: int) -> None:
    encoder = ResponsesEncoder.for_run(RUN, SPEC, after)
    body = encoder(SCENARIOS[name](Events()))
    ours = Response.model_validate(encoder.response())

    with sdk_client(body).responses.stream(model=MODEL, input="hi") as stream:
        final = stream.get_final_response()

    assert sdk_dump(final) == sdk_dump(ours)
    assert set(undeclared(ours)) <= UNDECLARED
    assert ours.id == response_id(RUN, after)
    if after == 0:
        (request,) = [item for item in ours.output if item.type == "mcp_approval_request"]
        assert json.loads(request.arguments) == {"expression": "2+2"}


def test_a_retraction_before_the_cut_does_not_end_the_next_response() -> None:
    ev = Events()
    events = [
        ev.run_started(),  # 1
        ev.message(),  # 2
        ev.delta("Let me"),  # 3
        ev.retracted(),  # 4
        ev.message("m1b"),  # 5
        ev.call("c1", "calculator", "m1b"),  # 6
        ev.call_done("c1", "calculator", ARGUMENTS),  # 7
        ev.approval_requested("c1", {"expression": "2+2"}),  # 8
        ev.approved("c1"),  # 9
        ev.tool_started("c1"),  # 10
        ev.tool_done("c1", {"value": 4}),  # 11
        ev.run_completed(),  # 12
    ]
    after = emitted(events, 8)

    assert after[0]["type"] == "response.created"
    final = after[-1]["response"]
    assert (after[-1]["type"], final["status"], final["error"]) == (
        "response.completed",
        "completed",
        None,
    )
    assert [item["id"] for item in final["output"]] == ["mcp_c1"]
