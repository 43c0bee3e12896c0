"""The producers without a manager: a tool call past its timeout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from streams.connection import Connection
from streams.events import EventType
from streams.log import MemoryEventLog
from streams.runs.limits import RunLimits
from streams.runs.producers import Producers
from streams.runs.run import Run
from streams.tools import Emit, Tool, ToolRegistry
from tests.support import run_spec


async def hang(arguments: Mapping[str, Any], emit: Emit) -> Any:
    await asyncio.Event().wait()  # never set: only the timeout ends it


def call(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


async def test_a_tool_past_its_timeout_fails_with_tool_timeout() -> None:
    tools = ToolRegistry()
    tools.register(Tool("hang", "Never answers.", {"type": "object"}, hang, timeout=0.01))
    producers = Producers(tools=tools, limits=RunLimits(), tracer=trace.NoOpTracer())
    run = Run(
        "run_1", run_spec("hi", ["hang"]), MemoryEventLog("run_1"), Connection("c"), "continue"
    )

    content = await producers.tool_call(run, call("call_1", "hang"))

    batch = await run.log.read(0, limit=10, timeout=0)
    assert [e.type for e in batch.events] == [EventType.TOOL_STARTED, EventType.TOOL_FAILED]
    assert batch.events[-1].data == {
        "call_id": "call_1",
        "error": {"code": "tool_timeout", "message": "tool 'hang' did not finish within 0.01s"},
    }
    assert json.loads(content) == {"error": "tool 'hang' did not finish within 0.01s"}
    assert run.producers["call_1"].status == "failed"


async def test_a_client_tool_with_no_result_within_its_timeout_fails_with_tool_timeout() -> None:
    producers = Producers(
        tools=ToolRegistry(), limits=RunLimits(client_tool_timeout=0.01), tracer=trace.NoOpTracer()
    )
    spec = run_spec("hi", client_tools=[{"name": "get_location"}])
    run = Run("run_1", spec, MemoryEventLog("run_1"), Connection("c"), "continue")

    await producers.tool_call(run, call("call_1", "get_location"))

    batch = await run.log.read(0, limit=10, timeout=0)
    assert batch.events[-1].type is EventType.TOOL_FAILED
    assert batch.events[-1].data["error"] == {
        "code": "tool_timeout",
        "message": "client tool 'get_location' sent no result within 0.01s",
    }
    assert run.snapshot()["pending_client_tools"] == []
