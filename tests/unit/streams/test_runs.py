"""The run engine without sockets: lifecycle, cancellation, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.connection import Connection
from streams.errors import NotFoundError, RunFinishedError, ShuttingDownError
from streams.events import Event, EventType
from streams.log import Retention
from streams.models import Model, ModelOutput, ModelRegistry, TextDelta
from streams.runs import RunLimits, RunManager, RunStatus
from streams.spec import RunSpec


def spec(prompt: str, tools: list[str], **extra: Any) -> RunSpec:
    return RunSpec.model_validate(
        {
            "model": "demo",
            "messages": [{"role": "user", "content": prompt}],
            "tools": tools,
            **extra,
        }
    )


@pytest.fixture
async def manager() -> AsyncIterator[RunManager]:
    models = ModelRegistry()
    models.register(DemoModel(token_delay=0))
    limits = RunLimits(retention=Retention(ttl=0.05))
    async with RunManager(
        models=models, tools=builtin_tools(countdown_interval=0), limits=limits
    ) as running:
        yield running


async def all_events(manager: RunManager, run_id: str) -> list[Event]:
    run = manager.get(run_id)
    batch = await run.log.read(0, limit=10_000, timeout=0)
    return batch.events


async def test_a_run_cancelled_while_still_queued_ends_with_run_cancelled(
    manager: RunManager,
) -> None:
    run = manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")
    assert run.status is RunStatus.QUEUED
    manager.cancel(run.id, "changed my mind")
    await run.wait()
    events = await all_events(manager, run.id)
    assert [e.type.value for e in events] == ["run.cancelled"]
    assert events[0].data == {"reason": "changed my mind"}
    assert run.connection.idle
    assert manager.statistics().active_runs == 0


async def test_cancelling_a_finished_run_raises_run_finished(manager: RunManager) -> None:
    run = manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    with pytest.raises(RunFinishedError):
        manager.cancel(run.id, "too late")


async def test_max_steps_stops_the_agent_loop(manager: RunManager) -> None:
    run = manager.start(
        spec("count down from 2", ["countdown"], max_steps=1),
        Connection("c"),
        default_on_disconnect="continue",
    )
    await run.wait()
    events = await all_events(manager, run.id)
    assert events[-1].type.value == "run.completed"
    assert events[-1].data["stop_reason"] == "max_steps"
    assert events[-1].data["steps"] == 1
    assert sum(1 for e in events if e.type.value == "message.started") == 1


async def test_a_finished_run_expires_after_its_ttl(manager: RunManager) -> None:
    run = manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    assert manager.get(run.id) is run
    async with asyncio.timeout(5):
        while manager.statistics().retained_runs:  # noqa: ASYNC110 (the sweeper's work)
            await asyncio.sleep(0.01)
    with pytest.raises(NotFoundError):
        manager.get(run.id)


async def test_after_close_no_run_starts_and_running_ones_are_cancelled(
    manager: RunManager,
) -> None:
    run = manager.start(
        spec("sleep 30 seconds", ["sleep"]), Connection("c"), default_on_disconnect="continue"
    )
    await asyncio.sleep(0)  # let it start
    manager.close("shutdown")
    await run.wait()
    assert run.status is RunStatus.CANCELLED
    assert run.cancel_reason == "shutdown"
    with pytest.raises(ShuttingDownError):
        manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")


async def test_the_last_reader_leaving_cancels_only_runs_whose_policy_is_cancel(
    manager: RunManager,
) -> None:
    cancel = manager.start(
        spec("sleep 30 seconds", ["sleep"]), Connection("a"), default_on_disconnect="cancel"
    )
    keep = manager.start(
        spec("count down from 3", ["countdown"]), Connection("b"), default_on_disconnect="continue"
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
    run = manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")
    await run.wait()
    assert run.log.statistics().packed
    assert [e.type.value for e in await all_events(manager, run.id)][-1] == "run.completed"


async def test_a_run_is_packed_when_its_last_reader_leaves_after_its_end(
    manager: RunManager,
) -> None:
    run = manager.start(spec("hello", []), Connection("c"), default_on_disconnect="continue")
    manager.attach_reader(run)
    await run.wait()
    assert not run.log.statistics().packed  # its reader reads on as it was
    manager.detach_reader(run)
    assert run.log.statistics().packed


async def test_in_return_mode_the_run_ends_after_the_step_calling_client_tools(
    manager: RunManager,
) -> None:
    run_spec = spec(
        "what time is it, and call get_location",
        ["clock"],
        client_tools=[{"name": "get_location"}],
        client_tool_mode="return",
    )
    run = manager.start(run_spec, Connection("c"), default_on_disconnect="continue")
    await run.wait()
    events = await all_events(manager, run.id)
    types = [e.type.value for e in events]
    assert events[-1].type.value == "run.completed"
    assert events[-1].data["stop_reason"] == "client_tool_calls"
    # The server tool of the same step ran; the client tool was handed back, not awaited.
    assert [e.data["name"] for e in events if e.type.value == "tool.started"] == ["clock"]
    assert "client_tool.requested" not in types
    assert [e.data["name"] for e in events if e.type.value == "tool_call.completed"] == [
        "clock",
        "get_location",
    ]


class OneReadModel(Model):
    """Text that came in one upstream read: every token at once, with no await between."""

    name = "one-read"

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        for token in ("first", " second", " third"):
            yield TextDelta(token)


async def test_a_steps_first_token_reaches_readers_before_the_rest_of_its_read() -> None:
    models = ModelRegistry()
    models.register(OneReadModel())
    async with RunManager(models=models, tools=builtin_tools()) as manager:
        run = manager.start(
            RunSpec.model_validate(
                {"model": "one-read", "messages": [{"role": "user", "content": "hi"}]}
            ),
            Connection("c"),
            default_on_disconnect="continue",
        )
        cursor, deltas = 0, []
        while not deltas:
            batch = await run.log.read(cursor, limit=100, timeout=5)
            cursor = batch.events[-1].seq
            deltas = [e.data["delta"] for e in batch.events if e.type is EventType.MESSAGE_DELTA]
        await run.wait()
    assert deltas == ["first"]
