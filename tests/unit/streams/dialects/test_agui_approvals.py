"""Specification of approvals in the AG-UI 1.0 dialect: ``tool.approval_requested`` finishes
the AG-UI run with an interrupt (``streams/dialects/agui.py``), and ``RunAgentInput.resume[]``
answers it (``streams/dialects/agui_input.py``). Every event and input is validated against
the ``ag-ui-protocol`` package's own models."""

from __future__ import annotations

from typing import Any

import pytest
from ag_ui.core import RunAgentInput

from streams.approvals import ApprovalAnswer, denial_message
from streams.dialects.agui import AGUIEncoder, interrupt_id, parse_interrupt_id
from streams.dialects.agui_input import (
    AGUIResume,
    AGUIRunInput,
    resume_answers,
    run_spec_from_agui,
)
from streams.errors import InvalidRequestError
from streams.spec import ApprovalAsked
from tests.unit.streams.dialects.test_agui import Log, encode, frames

SCHEMA = (
    b'"responseSchema":{"type":"object","properties":{"approved":{"type":"boolean"},'
    b'"reason":{"type":"string","maxLength":1000},"arguments":{"type":"object"}},'
    b'"required":["approved"],"additionalProperties":false}'
)


def a_call_waiting() -> Log:
    """A run whose model said a little, called clock (c1), and waits for its approval."""
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("message.delta", "model.1", message_id="m1", delta="Let me")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("tool_call.completed", "model.1", call_id="c1", name="clock", arguments="{}")
    log.add("message.completed", "model.1", message_id="m1", text="Let me", usage={})
    log.add(
        "tool.approval_requested",
        "tool.c1",
        call_id="c1",
        name="clock",
        arguments={},
        expires_at=601.5,
    )
    return log


def resumed(log: Log) -> AGUIEncoder:
    """An encoder as the AG-UI face makes it for an answer: primed, resumed as run 2."""
    encoder = AGUIEncoder()
    encoder.prime(log.events)
    encoder.resume(thread_id="thread_1", run_id="agui_run_2")
    return encoder


# -- the interrupt ----------------------------------------------------------------------------


def test_a_call_waiting_for_approval_finishes_the_agui_run_with_an_interrupt() -> None:
    log = a_call_waiting()
    encoder = AGUIEncoder()

    encoder.prime(log.events[:-1])
    data = encoder(log.events[-1:])

    assert data == (
        b'id: 7\ndata: {"type":"RUN_FINISHED","timestamp":1500,"threadId":"run_1",'
        b'"runId":"run_1","outcome":{"type":"interrupt","interrupts":[{"id":"run_1:7:c1",'
        b'"reason":"tool_approval","message":"Approve the call of tool \'clock\'?",'
        b'"toolCallId":"c1",' + SCHEMA + b',"expiresAt":"1970-01-01T00:10:01.500Z",'
        b'"metadata":{"toolName":"clock","arguments":{}}}]}}\n\n'
    )
    assert encoder.ended  # the SSE response ends here, while the run waits
    assert encode(log.events)  # and the whole stream validates, the interrupt included


def test_the_interrupt_closes_open_text_and_calls_and_later_text_gets_a_new_id() -> None:
    log = Log().started()
    log.add("message.started", "model.1", message_id="m1", step=1, model="demo")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c1", name="clock")
    log.add("tool_call.completed", "model.1", call_id="c1", name="clock", arguments="{}")
    log.add("tool_call.started", "model.1", message_id="m1", call_id="c2", name="clock")
    log.add("message.delta", "model.1", message_id="m1", delta="and")
    log.add("tool.approval_requested", "tool.c1", call_id="c1", name="clock", arguments={})
    encoder = AGUIEncoder()

    out = encode(log.events, encoder)

    assert [(e["type"], e.get("messageId", e.get("toolCallId"))) for e in out[-3:]] == [
        ("TEXT_MESSAGE_END", "m1.2"),
        ("TOOL_CALL_END", "c2"),
        ("RUN_FINISHED", None),
    ]
    assert "expiresAt" not in out[-1]["outcome"]["interrupts"][0]
    encoder.resume(thread_id="t", run_id="r2")
    more = Log()
    more.events = list(log.events)
    more.add("message.delta", "model.1", message_id="m1", delta=" more")
    assert [(e["type"], e.get("messageId")) for e in encode(more.events[-1:], encoder)] == [
        ("RUN_STARTED", None),
        ("TEXT_MESSAGE_START", "m1.3"),
        ("TEXT_MESSAGE_CONTENT", "m1.3"),
    ]


def test_a_parallel_item_waiting_names_no_tool_call_the_client_does_not_hold() -> None:
    log = Log().started()
    log.add("tool.approval_requested", "tool.c9", call_id="c9", name="sleep", arguments={})

    (finished,) = encode(log.events[-1:], AGUIEncoder())

    assert "toolCallId" not in finished["outcome"]["interrupts"][0]
    assert finished["outcome"]["interrupts"][0]["metadata"] == {
        "toolName": "sleep",
        "arguments": {},
    }


# -- the answering stream ---------------------------------------------------------------------


def test_an_approved_call_streams_on_as_a_new_agui_run_with_its_result() -> None:
    log = a_call_waiting()
    encoder = resumed(log)
    log.add("tool.approved", "tool.c1", call_id="c1", by="alice", reason=None)
    log.add("tool.started", "tool.c1", call_id="c1", name="clock", arguments={})
    log.add("tool.completed", "tool.c1", call_id="c1", output={"iso": "now"})

    assert encoder(log.events[-3:]) == (
        b'data: {"type":"RUN_STARTED","timestamp":1500,"threadId":"thread_1",'
        b'"runId":"agui_run_2"}\n\n'
        b'id: 8\ndata: {"type":"CUSTOM","timestamp":1500,"name":"tool.approved",'
        b'"value":{"call_id":"c1","by":"alice","reason":null}}\n\n'
        b'id: 9\ndata: {"type":"ACTIVITY_SNAPSHOT","timestamp":1500,'
        b'"messageId":"run_1.c1.activity","activityType":"tool_execution",'
        b'"content":{"toolCallId":"c1","name":"clock","arguments":{},"status":"running",'
        b'"deltas":[]}}\n\n'
        b'data: {"type":"ACTIVITY_DELTA","timestamp":1500,"messageId":"run_1.c1.activity",'
        b'"activityType":"tool_execution","patch":[{"op":"replace","path":"/status",'
        b'"value":"completed"},{"op":"add","path":"/output","value":{"iso":"now"}}]}\n\n'
        b'id: 10\ndata: {"type":"TOOL_CALL_RESULT","timestamp":1500,'
        b'"messageId":"run_1.c1.result","toolCallId":"c1","content":"{\\"iso\\":\\"now\\"}",'
        b'"role":"tool"}\n\n'
    )
    log.add("run.completed", output="done", steps=2, stop_reason="answer")
    (finished,) = encode(log.events[-1:], encoder)
    assert (finished["type"], finished["runId"], finished["threadId"]) == (
        "RUN_FINISHED",
        "agui_run_2",
        "thread_1",
    )


@pytest.mark.parametrize(
    ("reason", "content"),
    [
        ("not now", b'{\\"error\\":\\"the user denied this tool call: not now\\"}'),
        (None, b'{\\"error\\":\\"the user denied this tool call\\"}'),
    ],
)
def test_a_denied_call_gets_the_refusal_the_model_reads_as_its_result(
    reason: str | None, content: bytes
) -> None:
    log = a_call_waiting()
    encoder = resumed(log)
    log.add("tool.denied", "tool.c1", call_id="c1", by="alice", reason=reason)
    value = b'"reason":null' if reason is None else b'"reason":"not now"'

    assert encoder(log.events[-1:]) == (
        b'data: {"type":"RUN_STARTED","timestamp":1500,"threadId":"thread_1",'
        b'"runId":"agui_run_2"}\n\n'
        b'data: {"type":"CUSTOM","timestamp":1500,"name":"tool.denied",'
        b'"value":{"call_id":"c1","by":"alice",' + value + b"}}\n\n"
        b'id: 8\ndata: {"type":"TOOL_CALL_RESULT","timestamp":1500,'
        b'"messageId":"run_1.c1.result","toolCallId":"c1","content":"' + content + b'",'
        b'"role":"tool"}\n\n'
    )
    # The very text the model reads (streams.runs.producers uses the same function).
    assert content.replace(b'\\"', b'"').decode() == f'{{"error":"{denial_message(reason)}"}}'


def test_a_second_waiting_call_finishes_the_answering_stream_at_once() -> None:
    log = a_call_waiting()
    encoder = resumed(log)
    log.add("tool.approval_requested", "tool.c2", call_id="c2", name="clock", arguments={})
    log.add("tool.approved", "tool.c1", call_id="c1", by="alice", reason=None)

    out = [event for _, event in frames(encoder(log.events[-2:]))]

    assert [event["type"] for event in out] == ["RUN_STARTED", "RUN_FINISHED"]
    assert out[1]["outcome"]["interrupts"][0]["id"] == "run_1:8:c2"
    assert encoder.ended


# -- interrupt ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("run_ab12:7:call_1", ("run_ab12", 7, "call_1")),
        ("run_ab12:70:toolu:with:colons", ("run_ab12", 70, "toolu:with:colons")),
        ("run_ab12:7:", None),
        (":7:c1", None),
        ("run_ab12:x:c1", None),
        ("run_ab12:-1:c1", None),
        ("run_ab12:\u0661:c1", None),  # a digit, but not an ASCII one
        ("run_ab12:7", None),
        ("", None),
    ],
)
def test_an_interrupt_id_names_the_run_the_seq_and_the_call(
    value: str, parsed: tuple[str, int, str] | None
) -> None:
    assert parse_interrupt_id(value) == parsed
    if parsed is not None:
        assert interrupt_id(*parsed) == value


# -- resume[] ---------------------------------------------------------------------------------


def agui_input(**fields: Any) -> AGUIRunInput:
    body = {
        "threadId": "thread_1",
        "runId": "agui_run_2",
        "messages": [{"id": "u1", "role": "user", "content": "What time is it?"}],
        **fields,
    }
    RunAgentInput.model_validate(body)  # what AG-UI's SDK accepts
    return AGUIRunInput.model_validate(body)


def entry(interrupt: str = "run_1:7:c1", **fields: Any) -> dict[str, Any]:
    return {"interruptId": interrupt, "status": "resolved", **fields}


@pytest.mark.parametrize(
    ("entries", "answers"),
    [
        (
            [entry(payload={"approved": True})],
            [("c1", ApprovalAnswer("approve", by="alice"))],
        ),
        (
            [entry(payload={"approved": True, "arguments": {"tz": "UTC"}})],
            [("c1", ApprovalAnswer("approve", by="alice", arguments={"tz": "UTC"}))],
        ),
        (
            [entry(payload={"approved": False, "reason": "not now"})],
            [("c1", ApprovalAnswer("deny", by="alice", reason="not now"))],
        ),
        (
            [{"interruptId": "run_1:7:c1", "status": "cancelled"}],
            [("c1", ApprovalAnswer("deny", by="alice"))],
        ),
        (
            [entry(payload={"approved": True}), entry("run_1:9:c2", payload={"approved": False})],
            [
                ("c1", ApprovalAnswer("approve", by="alice")),
                ("c2", ApprovalAnswer("deny", by="alice")),
            ],
        ),
    ],
)
def test_resume_entries_are_answers_to_calls_of_one_run(
    entries: list[dict[str, Any]], answers: list[tuple[str, ApprovalAnswer]]
) -> None:
    resume = resume_answers(agui_input(resume=entries), by="alice")

    seq = max(int(e["interruptId"].split(":")[1]) for e in entries)
    assert resume == AGUIResume("run_1", seq, answers)


def test_an_input_without_resume_entries_starts_a_run() -> None:
    assert resume_answers(agui_input(), by="alice") is None
    assert resume_answers(agui_input(resume=[]), by="alice") is None


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("not-ours", payload={"approved": True})], "names no interrupt of this gateway"),
        ([entry()], "its payload must be"),
        ([entry(payload={"approved": "yes"})], "its payload must be"),
        ([entry(payload={"approved": True, "extra": 1})], "its payload must be"),
        ([entry(payload={"approved": True, "reason": "x" * 1001})], "its payload must be"),
        (
            [entry(payload={"approved": False, "arguments": {}})],
            "only an approval may edit the call's arguments",
        ),
        (
            [entry(payload={"approved": True}), entry(payload={"approved": True})],
            "is answered twice",
        ),
        (
            [entry(payload={"approved": True}), entry("run_2:3:c1", payload={"approved": True})],
            "interrupts of different runs",
        ),
    ],
)
def test_resume_entries_that_answer_nothing_are_refused(
    entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        resume_answers(agui_input(resume=entries), by="alice")


def test_too_many_resume_entries_do_not_validate() -> None:
    entries = [entry(f"run_1:{n}:c{n}", payload={"approved": True}) for n in range(1, 66)]
    with pytest.raises(InvalidRequestError, match="resume"):
        run_spec_from_agui({**agui_input().model_dump(by_alias=True), "resume": entries})


@pytest.mark.parametrize(
    ("approval", "asked"),
    [("all", "all"), (["clock"], ApprovalAsked(tools=["clock"])), (None, None)],
)
def test_forwarded_props_approval_is_the_runs_approval(approval: Any, asked: Any) -> None:
    props = {"tools": ["clock"]} | ({} if approval is None else {"approval": approval})
    spec = run_spec_from_agui(agui_input(forwardedProps=props))
    assert spec.approval == asked


@pytest.mark.parametrize("approval", ["some", [1], {"tools": ["clock"]}, True])
def test_forwarded_props_approval_must_be_all_or_tool_names(approval: Any) -> None:
    with pytest.raises(InvalidRequestError, match=r"forwardedProps\.approval"):
        run_spec_from_agui(agui_input(forwardedProps={"approval": approval}))
