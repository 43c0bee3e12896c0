"""Every list, map and string of a run's input is bounded, on every face that starts runs: past
a count or size limit the answer is a 413 naming the setting (``max_tools_per_run``,
``max_metadata_bytes``, ``max_tool_calls_per_step``), a name or id longer than any real one
is a 400, and nothing is started."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.support import SSE, RunningGateway, agent_spec, running_gateway

TOOLS, METADATA, CALLS = 4, 256, 3


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    limits = {"max_tools_per_run": TOOLS, "max_metadata_bytes": METADATA}
    with running_gateway(**limits, max_tool_calls_per_step=CALLS) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


def retained(gateway: RunningGateway) -> int:
    count: int = gateway.state.manager.statistics().retained_runs
    return count


def client_tools(count: int) -> list[dict[str, Any]]:
    return [{"name": f"t{i}"} for i in range(count)]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": "hi"}], **extra}


def chat_tools(count: int) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": f"t{i}"}} for i in range(count)]


def agui(**extra: Any) -> dict[str, Any]:
    return {
        "threadId": "t1",
        "runId": "r1",
        "messages": [{"id": "m1", "role": "user", "content": "hi"}],
        "forwardedProps": {"model": "demo"},
        **extra,
    }


def parallel_model(**extra: Any) -> dict[str, Any]:
    return {
        "parallel": [{"model": "demo", "messages": [{"role": "user", "content": "hi"}], **extra}]
    }


def calls(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"c{i}", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
        for i in range(count)
    ]


def history(count: int) -> list[dict[str, Any]]:
    """A conversation whose assistant message made ``count`` tool calls."""
    return [
        {"role": "user", "content": "what time is it?"},
        {"role": "assistant", "content": None, "tool_calls": calls(count)},
        *({"role": "tool", "tool_call_id": f"c{i}", "content": "{}"} for i in range(count)),
    ]


def agui_history(count: int) -> list[dict[str, Any]]:
    tool_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
        for i in range(count)
    ]
    return [
        {"id": "m1", "role": "user", "content": "what time is it?"},
        {"id": "m2", "role": "assistant", "toolCalls": tool_calls},
        *(
            {"id": f"r{i}", "role": "tool", "toolCallId": f"c{i}", "content": "{}"}
            for i in range(count)
        ),
    ]


# (path, body past the limit, body at the limit) for each limit and face
PAST_A_LIMIT = {
    "server tools": (
        "max_tools_per_run",
        "/v1/runs",
        agent_spec("hi", ["clock"] * (TOOLS + 1)),
        agent_spec("hi", ["clock"] * TOOLS),
    ),
    "server and client tools": (
        "max_tools_per_run",
        "/v1/runs",
        agent_spec("hi", ["clock"] * 2, client_tools=client_tools(3), client_tool_mode="return"),
        agent_spec("hi", ["clock"] * 2, client_tools=client_tools(2), client_tool_mode="return"),
    ),
    "a parallel model call's tools": (
        "max_tools_per_run",
        "/v1/runs",
        parallel_model(tools=client_tools(TOOLS + 1)),
        parallel_model(tools=client_tools(TOOLS)),
    ),
    "chat completions tools": (
        "max_tools_per_run",
        "/v1/chat/completions",
        chat(tools=chat_tools(TOOLS + 1)),
        chat(tools=chat_tools(TOOLS)),
    ),
    "AG-UI tools": (
        "max_tools_per_run",
        "/v1/ag-ui",
        agui(tools=client_tools(TOOLS + 1)),
        agui(tools=client_tools(TOOLS)),
    ),
    "metadata": (
        "max_metadata_bytes",
        "/v1/runs",
        agent_spec("hi", [], metadata={"note": "x" * METADATA}),
        agent_spec("hi", [], metadata={"note": "x" * (METADATA - 20)}),
    ),
    "tool calls of a message": (
        "max_tool_calls_per_step",
        "/v1/runs",
        {"model": "demo", "messages": history(CALLS + 1)},
        {"model": "demo", "messages": history(CALLS)},
    ),
    "chat completions tool calls of a message": (
        "max_tool_calls_per_step",
        "/v1/chat/completions",
        {"model": "demo", "messages": history(CALLS + 1)},
        {"model": "demo", "messages": history(CALLS)},
    ),
    "AG-UI tool calls of a message": (
        "max_tool_calls_per_step",
        "/v1/ag-ui",
        agui(messages=agui_history(CALLS + 1)),
        agui(messages=agui_history(CALLS)),
    ),
}


@pytest.mark.parametrize(("limit", "path", "past", "at"), PAST_A_LIMIT.values(), ids=PAST_A_LIMIT)
async def test_past_a_limit_is_a_413_naming_it_and_at_it_the_run_starts(
    client: httpx.AsyncClient,
    gateway: RunningGateway,
    limit: str,
    path: str,
    past: dict[str, Any],
    at: dict[str, Any],
) -> None:
    before = retained(gateway)
    refused = await client.post(path, json=past, headers=SSE)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "body_too_large"
    assert limit in error["message"]
    assert retained(gateway) == before

    async with client.stream("POST", path, json=at, headers=SSE) as accepted:
        assert accepted.status_code == 200
        await accepted.aread()
    assert retained(gateway) == before + 1


@pytest.mark.parametrize(
    ("spec", "limit"),
    [
        (agent_spec("hi", ["clock"] * (TOOLS + 1)), "max_tools_per_run"),
        (agent_spec("hi", [], metadata={"note": "x" * METADATA}), "max_metadata_bytes"),
        ({"model": "demo", "messages": history(CALLS + 1)}, "max_tool_calls_per_step"),
    ],
    ids=["tools", "metadata", "tool calls of a message"],
)
async def test_past_a_limit_on_the_websocket_is_an_error_and_the_session_goes_on(
    gateway: RunningGateway, spec: dict[str, Any], limit: str
) -> None:
    async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
        error = json.loads(await ws.recv())
        assert (error["type"], error["id"], error["code"]) == ("error", 1, "body_too_large")
        assert limit in error["message"]
        await ws.send(json.dumps({"type": "ping", "id": 2}))
        assert json.loads(await ws.recv())["type"] == "ack"


LONG = {
    "a model name": ("/v1/runs", agent_spec("hi", [], model="m" * 129), "model"),
    "a tool name": ("/v1/runs", agent_spec("hi", ["t" * 129]), "tools.0"),
    "a parallel tool's name": ("/v1/runs", {"parallel": [{"tool": "t" * 129}]}, "parallel.0"),
    "a parallel model's name": (
        "/v1/runs",
        {"parallel": [{"model": "m" * 129, "messages": [{"role": "user", "content": "hi"}]}]},
        "parallel.0",
    ),
    "a tool call id": (
        "/v1/runs",
        {
            "model": "demo",
            "messages": [{"role": "tool", "tool_call_id": "c" * 257, "content": "{}"}],
        },
        "messages.0.tool_call_id",
    ),
    "a message's name": (
        "/v1/chat/completions",
        {"model": "demo", "messages": [{"role": "user", "content": "hi", "name": "n" * 257}]},
        "messages.0.name",
    ),
    "an AG-UI thread id": ("/v1/ag-ui", agui(threadId="t" * 257), "threadId"),
    "an AG-UI run id": ("/v1/ag-ui", agui(runId="r" * 257), "runId"),
    "an AG-UI tool call id": (
        "/v1/ag-ui",
        agui(messages=[{"id": "m", "role": "tool", "toolCallId": "c" * 257, "content": "{}"}]),
        "tool_call_id",
    ),
}


@pytest.mark.parametrize(("path", "body", "field"), LONG.values(), ids=LONG)
async def test_a_name_or_id_longer_than_any_real_one_is_a_400_naming_the_field(
    client: httpx.AsyncClient, gateway: RunningGateway, path: str, body: dict[str, Any], field: str
) -> None:
    before = retained(gateway)
    refused = await client.post(path, json=body, headers=SSE)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert "at most" in error["message"]
    assert retained(gateway) == before
