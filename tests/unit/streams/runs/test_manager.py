"""The run manager without sockets: lifecycle, cancellation, expiry."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from streams.approvals import ApprovalAnswer, ApprovalPolicy
from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.connection import Connection
from streams.errors import NotFoundError, RunFinishedError, ShuttingDownError
from streams.models import ModelRegistry
from streams.runs.limits import RunLimits
from streams.runs.manager import RunManager, RunStatistics
from streams.runs.run import RunStatus
from tests.support import all_events, run_spec


async def test_a_run_cancelled_while_still_queued_ends_with_run_cancelled(
    manager: RunManager,
) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    assert run.status is RunStatus.QUEUED
    manager.cancel(run.id, "changed my mind", None)
    await run.wait()
    events = await all_events(manager, run.id)
    assert [e.type.value for e in events] == ["run.cancelled"]
    assert events[0].data == {"reason": "changed my mind"}
    assert run.connection.idle
    assert manager.statistics().active_runs == 0


async def test_cancelling_a_finished_run_raises_run_finished(manager: RunManager) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    with pytest.raises(RunFinishedError):
        manager.cancel(run.id, "too late", None)


async def test_a_finished_run_expires_after_its_ttl(manager: RunManager) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    assert manager.get(run.id, None) is run
    async with asyncio.timeout(5):
        while manager.statistics().retained_runs:  # noqa: ASYNC110 (the sweeper's work)
            await asyncio.sleep(0.01)
    with pytest.raises(NotFoundError):
        manager.get(run.id, None)


async def test_after_close_no_run_starts_and_running_ones_are_cancelled(
    manager: RunManager,
) -> None:
    run = manager.start(
        run_spec("sleep 30 seconds", ["sleep"]), Connection("c"), default_on_disconnect="continue"
    )
    await asyncio.sleep(0)  # let it start
    manager.close("shutdown")
    await run.wait()
    assert run.status is RunStatus.CANCELLED
    assert run.cancel_reason == "shutdown"
    with pytest.raises(ShuttingDownError):
        manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")


async def test_the_last_reader_leaving_cancels_only_runs_whose_policy_is_cancel(
    manager: RunManager,
) -> None:
    cancel = manager.start(
        run_spec("sleep 30 seconds", ["sleep"]), Connection("a"), default_on_disconnect="cancel"
    )
    keep = manager.start(
        run_spec("count down from 3", ["countdown"]),
        Connection("b"),
        default_on_disconnect="continue",
    )
    for run in (cancel, keep):
        manager.attach_reader(run)
        manager.attach_reader(run)
        manager.detach_reader(run)
        assert run.cancel_reason is None  # one reader is still there
        manager.detach_reader(run)
    await cancel.wait()
    await keep.wait()
    assert cancel.status is RunStatus.CANCELLED
    assert cancel.cancel_reason == "last reader disconnected"
    assert keep.status is RunStatus.COMPLETED


async def test_a_run_that_ends_with_no_reader_has_its_log_packed(manager: RunManager) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    assert run.log.statistics().packed
    assert [e.type.value for e in await all_events(manager, run.id)][-1] == "run.completed"


async def test_a_run_is_packed_when_its_last_reader_leaves_after_its_end(
    manager: RunManager,
) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    manager.attach_reader(run)
    await run.wait()
    assert not run.log.statistics().packed  # its reader reads on as it was
    manager.detach_reader(run)
    assert run.log.statistics().packed


async def test_statistics_count_active_retained_and_finished_runs(manager: RunManager) -> None:
    run = manager.start(run_spec("hello", []), Connection("c"), default_on_disconnect="continue")
    assert manager.statistics() == RunStatistics(
        active_runs=1,
        retained_runs=1,
        runs_by_status={"completed": 0, "failed": 0, "cancelled": 0},
    )
    await run.wait()
    stats = manager.statistics()
    assert (stats.active_runs, stats.runs_by_status["completed"]) == (0, 1)
    assert stats.to_dict() == {
        "active_runs": 0,
        "retained_runs": stats.retained_runs,
        "runs_by_status": {"completed": 1, "failed": 0, "cancelled": 0},
    }


class Watched:
    """An :class:`~streams.approvals.ApprovalObserver` that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []
        self.asked = asyncio.Event()

    def requested(self, tool: str) -> None:
        self.seen.append(("requested", tool))
        self.asked.set()

    def answered(self, tool: str, decision: str, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append(("answered", tool, decision))

    def expired(self, tool: str) -> None:
        self.seen.append(("expired", tool))


@pytest.mark.parametrize(
    ("answer", "timeout", "seen"),
    [
        ("approve", 30.0, [("requested", "clock"), ("answered", "clock", "approve")]),
        ("deny", 30.0, [("requested", "clock"), ("answered", "clock", "deny")]),
        (None, 0.01, [("requested", "clock"), ("expired", "clock")]),
    ],
)
async def test_the_approval_observer_hears_each_request_and_how_it_ended(
    answer: Literal["approve", "deny"] | None, timeout: float, seen: list[tuple[str, ...]]
) -> None:
    models = ModelRegistry()
    models.register(DemoModel(token_delay=0))
    watched = Watched()
    limits = RunLimits(approvals=ApprovalPolicy(timeout=timeout))
    async with RunManager(
        models=models, tools=builtin_tools(), limits=limits, approval_observer=watched
    ) as manager:
        spec = run_spec("What time is it?", ["clock"], approval="all")
        run = manager.start(spec, Connection("c"), default_on_disconnect="continue")
        await asyncio.wait_for(watched.asked.wait(), 5)
        if answer is not None:
            (pending,) = run.pending_approvals()
            run.answer_approval(pending["call_id"], ApprovalAnswer(answer, "alice"))
        await asyncio.wait_for(run.wait(), 5)
    assert run.status is RunStatus.COMPLETED
    assert watched.seen == seen
