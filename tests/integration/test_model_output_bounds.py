"""What one model step may produce is bounded: tool calls (``max_tool_calls_per_step``), text
(``max_step_text_bytes``), one call's arguments (``max_tool_arguments_bytes``), tool names and
call ids. Past a bound the step ends with ``message.failed`` (``upstream_output_limit``, or
``upstream_protocol`` for a name no model sends) and none of its tool calls is run; the
upstream's response is closed at once. Against a real (loopback) upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import SSE, RunningGateway, collect, running_gateway
from tests.upstream_server import (
    STALL,
    Reply,
    UpstreamServer,
    ask,
    chat_chunk,
    route,
    text_reply,
)

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


def tool_calls_reply(
    count: int, *, name: str = "clock", arguments: str = "{}", stall: bool = False
) -> Reply:
    """One step calling ``count`` tools, each call whole in a chunk of its own; then the end
    of the stream, or (``stall``) nothing until the gateway closes it."""
    steps: list[Any] = [chat_chunk({"role": "assistant", "content": None})]
    for index in range(count):
        function = {"name": name, "arguments": arguments}
        call = {"index": index, "id": f"call_{index}", "type": "function", "function": function}
        steps.append(chat_chunk({"tool_calls": [call]}))
    steps += [STALL] if stall else [chat_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    return Reply(steps=steps)


async def stream_run(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def failure(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The step's error, which also ends the run."""
    failed = [e for e in events if e["type"] == "message.failed"]
    assert len(failed) == 1
    assert events[-1]["type"] == "run.failed"
    assert events[-1]["error"] == failed[0]["error"]
    error: dict[str, Any] = failed[0]["error"]
    return error


async def test_a_step_with_more_tool_calls_than_the_limit_fails_and_runs_none(
    upstream: UpstreamServer,
) -> None:
    upstream.script(tool_calls_reply(6, stall=True))
    with running_gateway(routes={"up": route(upstream)}, max_tool_calls_per_step=5) as gateway:
        events = await stream_run(gateway, ask("what time is it?", ["clock"]))
    error = failure(events)
    assert error["code"] == "upstream_output_limit"
    assert "max_tool_calls_per_step" in error["message"]
    assert types(events).count("tool_call.started") == 5
    assert "tool_call.completed" not in types(events)
    assert "tool.started" not in types(events)
    assert len(upstream.requests) == 1  # no second step
    await upstream.wait_disconnect(upstream.requests[0])


async def test_a_step_with_as_many_tool_calls_as_the_limit_runs_them_all(
    upstream: UpstreamServer,
) -> None:
    upstream.script(tool_calls_reply(5), text_reply("done"))
    with running_gateway(routes={"up": route(upstream)}, max_tool_calls_per_step=5) as gateway:
        events = await stream_run(gateway, ask("what time is it?", ["clock"]))
    assert events[-1]["type"] == "run.completed"
    assert types(events).count("tool.completed") == 5
    second = upstream.requests[1].body["messages"]
    assert [m["role"] for m in second].count("tool") == 5


async def test_too_many_tool_calls_is_a_502_naming_the_limit_on_the_chat_completions_face(
    upstream: UpstreamServer,
) -> None:
    upstream.script(tool_calls_reply(3, name="lookup"))
    body = {
        "model": "up",
        "messages": [{"role": "user", "content": "look it up"}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
    }
    with running_gateway(routes={"up": route(upstream)}, max_tool_calls_per_step=2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_output_limit"
    assert "max_tool_calls_per_step" in error["message"]


async def test_a_step_whose_text_passes_max_step_text_bytes_fails_after_what_fitted(
    upstream: UpstreamServer,
) -> None:
    # 900 characters, but 400 + 600 + 100 bytes in UTF-8: the third part passes 1024.
    parts = ["a" * 400, "é" * 300, "c" * 100, "d" * 100]
    upstream.script(Reply(steps=[*text_reply(*parts).steps[: 1 + len(parts)], STALL]))
    with running_gateway(routes={"up": route(upstream)}, max_step_text_bytes=1024) as gateway:
        events = await stream_run(gateway, ask("talk"))
    error = failure(events)
    assert error["code"] == "upstream_output_limit"
    assert "max_step_text_bytes" in error["message"]
    assert [e["delta"] for e in events if e["type"] == "message.delta"] == parts[:2]
    await upstream.wait_disconnect(upstream.requests[0])


async def test_one_call_whose_arguments_pass_max_tool_arguments_bytes_fails_the_step(
    upstream: UpstreamServer,
) -> None:
    arguments = json.dumps({"utc_offset_hours": 1, "padding": "x" * 200})
    upstream.script(tool_calls_reply(1, arguments=arguments))
    with running_gateway(routes={"up": route(upstream)}, max_tool_arguments_bytes=128) as gateway:
        events = await stream_run(gateway, ask("what time is it?", ["clock"]))
    error = failure(events)
    assert error["code"] == "upstream_output_limit"
    assert "max_tool_arguments_bytes" in error["message"]
    assert "tool_call.delta" not in types(events)
    assert "tool.started" not in types(events)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        ({"id": "call_1", "function": {"name": "n" * 300, "arguments": "{}"}}, "tool name"),
        ({"id": "i" * 300, "function": {"name": "clock", "arguments": "{}"}}, "tool call id"),
    ],
    ids=["name", "id"],
)
async def test_a_tool_name_or_call_id_no_model_sends_is_a_protocol_error(
    upstream: UpstreamServer, call: dict[str, Any], what: str
) -> None:
    steps = [
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk({"tool_calls": [{"index": 0, "type": "function", **call}]}),
        chat_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
    upstream.script(Reply(steps=steps))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask("what time is it?", ["clock"]))
    error = failure(events)
    assert error["code"] == "upstream_protocol"
    assert f"{what} of 300 characters" in error["message"]
    assert "tool_call.started" not in types(events)


async def test_a_parallel_item_past_a_bound_fails_alone(upstream: UpstreamServer) -> None:
    upstream.script(tool_calls_reply(3))
    spec = {
        "parallel": [
            {"model": "up", "messages": [{"role": "user", "content": "hi"}]},
            {"tool": "calculator", "arguments": {"expression": "1 + 1"}},
        ]
    }
    with running_gateway(routes={"up": route(upstream)}, max_tool_calls_per_step=2) as gateway:
        events = await stream_run(gateway, spec)
    assert events[-1]["type"] == "run.completed"
    model, tool = events[-1]["output"]
    assert model["status"] == "failed"
    assert model["error"]["code"] == "upstream_output_limit"
    assert tool["status"] == "completed"
