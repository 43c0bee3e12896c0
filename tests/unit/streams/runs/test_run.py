"""A run's own state machine: its transitions, the client tool calls it waits for, its id."""

from __future__ import annotations

import pytest

from streams.connection import Connection
from streams.errors import InvalidRequestError, ToolError
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
