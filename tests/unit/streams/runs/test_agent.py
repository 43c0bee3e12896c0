"""The agent loop without sockets: steps, stop reasons, client tools handed back."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from streams.builtin.tools import builtin_tools
from streams.connection import Connection
from streams.events import EventType
from streams.models import Model, ModelOutput, ModelRegistry, TextDelta
from streams.runs.manager import RunManager
from tests.support import all_events, run_spec


async def test_max_steps_stops_the_agent_loop(manager: RunManager) -> None:
    run = manager.start(
        run_spec("count down from 2", ["countdown"], max_steps=1),
        Connection("c"),
        default_on_disconnect="continue",
    )
    await run.wait()
    events = await all_events(manager, run.id)
    assert events[-1].type.value == "run.completed"
    assert events[-1].data["stop_reason"] == "max_steps"
    assert events[-1].data["steps"] == 1
    assert sum(1 for e in events if e.type.value == "message.started") == 1


async def test_in_return_mode_the_run_ends_after_the_step_calling_client_tools(
    manager: RunManager,
) -> None:
    spec = run_spec(
        "what time is it, and call get_location",
        ["clock"],
        client_tools=[{"name": "get_location"}],
        client_tool_mode="return",
    )
    run = manager.start(spec, Connection("c"), default_on_disconnect="continue")
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
            run_spec("hi", model="one-read"),
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
