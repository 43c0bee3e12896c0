"""A run's own state machine: its transitions, the client tool calls it waits for, its id."""

from __future__ import annotations

import pytest

from streams.approvals import ApprovalAnswer, ApprovalRequest
from streams.connection import Connection
from streams.errors import ApprovalAnsweredError, InvalidRequestError, NotFoundError, ToolError
from streams.log import MemoryEventLog
from streams.runs.run import Run, RunStatus, is_run_id, new_run_id
from tests.support import run_spec


def new_run() -> Run:
    return Run("run_1", run_spec("hi"), MemoryEventLog("run_1"), Connection("c"), "continue")


def test_a_new_run_id_has_the_shape_of_a_run_id() -> None:
    assert is_run_id(new_run_id())
    assert not is_run_id("run_1:events")


def test_begin_makes_a_queued_run_running() -> None:
    run = new_run()
    run.begin()
    assert run.status is RunStatus.RUNNING
    assert run.started_at is not None


async def test_finish_ends_the_log_with_the_terminal_event_then_retires_and_wakes() -> None:
    run = new_run()
    seen: list[tuple[str, bool, int]] = []
    run.on_end(lambda r: seen.append(("on_end", r.done, r.log.last_seq)))

    def retire(r: Run) -> None:
        seen.append(("retire", r.done, r.log.last_seq))

    await run.finish(RunStatus.FAILED, {"error": {"code": "c", "message": "m"}}, retire=retire)
    await run.wait()
    batch = await run.log.read(0, limit=10, timeout=0)
    assert [(e.type.value, e.data) for e in batch.events] == [
        ("run.failed", {"error": {"code": "c", "message": "m"}})
    ]
    assert run.error == {"code": "c", "message": "m"}
    assert seen == [("retire", True, 1), ("on_end", True, 1)]
    assert run.log.statistics().packed  # no reader


async def test_finish_refuses_a_state_that_is_not_terminal() -> None:
    run = new_run()
    with pytest.raises(ValueError, match="running"):
        await run.finish(RunStatus.RUNNING, {}, retire=lambda r: None)


async def test_a_client_tool_call_is_pending_while_awaited_and_resolved_by_the_client() -> None:
    run = new_run()
    with run.awaiting_client_tool("call_1") as result:
        assert run.snapshot()["pending_client_tools"] == ["call_1"]
        run.resolve_client_tool("call_1", output={"city": "Lisbon"})
        assert await result == {"city": "Lisbon"}
    assert run.snapshot()["pending_client_tools"] == []


async def test_a_client_tool_error_fails_the_awaited_call() -> None:
    run = new_run()
    with run.awaiting_client_tool("call_1") as result:
        run.resolve_client_tool("call_1", error="no GPS")
        with pytest.raises(ToolError, match="no GPS"):
            await result


async def test_resolving_a_call_the_run_does_not_wait_for_is_an_invalid_request() -> None:
    run = new_run()
    with pytest.raises(InvalidRequestError, match="call_9"):
        run.resolve_client_tool("call_9", output=1)
    with run.awaiting_client_tool("call_1"):
        run.resolve_client_tool("call_1", output=1)
        with pytest.raises(InvalidRequestError):  # answered already
            run.resolve_client_tool("call_1", output=2)


APPROVAL = ApprovalRequest(
    "call_1",
    "countdown",
    {"start": 3},
    {"type": "object", "properties": {"start": {"type": "integer"}}, "required": ["start"]},
    99.0,
)


async def test_a_call_waits_for_its_answer_and_the_run_no_longer_needs_a_reader() -> None:
    run = new_run()
    run.on_disconnect = "cancel"
    with run.awaiting_approval(APPROVAL) as answered:
        assert run.on_disconnect == "continue"
        assert run.pending_approvals() == [APPROVAL.to_dict()]
        assert run.snapshot()["pending_approvals"] == [APPROVAL.to_dict()]
        answer = ApprovalAnswer("approve", "alice", arguments={"start": 2})
        run.answer_approval("call_1", answer)
        assert await answered is answer
        assert run.pending_approvals() == []  # answered: no longer pending
    assert run.pending_approvals() == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"start": "x"}, "arguments.start must be integer"), ({}, "arguments.start is required")],
)
async def test_edited_arguments_that_do_not_fit_leave_the_call_waiting(
    arguments: dict[str, object], message: str
) -> None:
    run = new_run()
    with run.awaiting_approval(APPROVAL) as answered:
        with pytest.raises(InvalidRequestError) as caught:
            run.answer_approval("call_1", ApprovalAnswer("approve", "a", arguments=arguments))
        assert str(caught.value) == message
        assert not answered.done()
        run.answer_approval("call_1", ApprovalAnswer("deny", "a"))
        assert (await answered).decision == "deny"


async def test_a_second_answer_and_an_unknown_call() -> None:
    run = new_run()
    with pytest.raises(NotFoundError):
        run.answer_approval("call_1", ApprovalAnswer("approve", "a"))
    with run.awaiting_approval(APPROVAL):
        run.answer_approval("call_1", ApprovalAnswer("approve", "a"))
        with pytest.raises(ApprovalAnsweredError):  # answered, the call not yet gone on
            run.answer_approval("call_1", ApprovalAnswer("deny", "b"))
    with pytest.raises(ApprovalAnsweredError):  # answered and gone on
        run.answer_approval("call_1", ApprovalAnswer("deny", "b"))
    with pytest.raises(NotFoundError):
        run.answer_approval("call_2", ApprovalAnswer("approve", "a"))
