"""Faults from every side: a broken or trickling upstream, clients that leave at every phase
(or vanish without a word), and tools that hang, misbehave or resist cancellation. After each,
the gateway holds nothing: no task, no upstream request, no connection slot, no stream quota."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from gateway.limits.quotas import MemoryQuotaStatistics
from streams.builtin.tools import builtin_tools
from streams.errors import NotFoundError
from streams.tools import Emit, Tool, ToolRegistry
from tests.support import (
    HEAVY,
    SSE,
    RunningGateway,
    agent_spec,
    collect,
    running_gateway,
    sse_events,
)
from tests.upstream_server import (
    RESET,
    STALL,
    Reply,
    Step,
    UpstreamServer,
    ask,
    chat_chunk,
    route,
    split_bytes,
    text_reply,
)

# -- helpers ---------------------------------------------------------------------------------


def tool_call_reply(call_id: str, name: str, arguments: str) -> Reply:
    return Reply(
        steps=[
            chat_chunk({"role": "assistant", "content": None}),
            chat_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            ),
            chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
            chat_chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )


def trickle(reply: Reply, pause: float) -> Reply:
    """``reply`` one byte at a time, ``pause`` seconds between bytes."""
    steps: list[Step] = []
    for step in split_bytes(reply, 1).steps:
        steps += [step, pause]
    return Reply(reply.status, steps, reply.headers)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def stream_run(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


async def assert_nothing_held(
    gateway: RunningGateway, run_ids: list[str], baseline_tasks: int
) -> None:
    """Every run has ended and released everything it took (a run no longer retained has
    ended and was dropped)."""
    for run_id in run_ids:
        with contextlib.suppress(NotFoundError):
            await gateway.wait_run(run_id)
    state = gateway.state
    manager = state.manager

    def released() -> bool:
        models = manager.models
        in_flight = models.get("up").statistics().in_flight if "up" in models else 0  # type: ignore[attr-defined]
        return (
            manager.statistics().active_runs == 0
            and in_flight == 0
            and all(
                run.connection.statistics().producers_running == 0
                for run in (manager._runs.get(r) for r in run_ids)
                if run is not None
            )
            and isinstance(quotas := state.quotas.statistics(), MemoryQuotaStatistics)
            and quotas.open_streams == 0  # no API keys: every stream is the None owner's
        )

    await gateway.wait_on_server(released)
    assert await gateway.wait_task_count(baseline_tasks) == baseline_tasks


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (state of another thread)
            await asyncio.sleep(0.01)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- upstream faults ---------------------------------------------------------------------------


async def test_an_upstream_trickling_one_byte_at_a_time_still_assembles_text_and_tool_calls(
    upstream: UpstreamServer,
) -> None:
    upstream.script(
        trickle(tool_call_reply("call_t", "clock", '{"utc_offset_hours": 2}'), 0.0005),
        trickle(text_reply("It is ", "two ", "hours ahead."), 0.0005),
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask("time", ["clock"]))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    (call,) = of_type(events, "tool_call.completed")
    assert (call["call_id"], call["arguments"]) == ("call_t", '{"utc_offset_hours": 2}')
    assert of_type(events, "tool.completed")[0]["output"]["utc_offset_hours"] == 2
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == "It is two hours ahead."


async def test_while_one_upstream_stream_is_reset_another_run_on_the_gateway_completes(
    upstream: UpstreamServer,
) -> None:
    upstream.script(
        Reply(steps=[chat_chunk({"role": "assistant", "content": "Partial"}), 0.3, RESET]),
        text_reply(*(["ok "] * 10), pause=0.06),
        text_reply("still serving"),
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            async with client.stream("POST", "/v1/runs", json=ask(), headers=SSE) as broken:
                events = sse_events(broken)
                async for event in events:
                    if event["type"] == "message.delta":
                        break
                healthy = asyncio.create_task(stream_run(gateway, ask()))
                await asyncio.to_thread(upstream.wait_for_requests, 2)
                broken_events = [e async for e in events]
            healthy_events = await healthy
        after = await stream_run(gateway, ask())
    assert broken_events[-1]["type"] == "run.failed"
    assert healthy_events[-1]["type"] == "run.completed"
    assert healthy_events[-1]["output"] == "ok " * 10
    # The healthy run was still streaming when the other one broke.
    assert upstream.requests[1].finished_at is not None
    assert upstream.requests[0].received_at < upstream.requests[1].finished_at
    assert after[-1]["output"] == "still serving"


# -- clients that leave ------------------------------------------------------------------------


def raw_post(body: bytes, *, partial: bool) -> bytes:
    head = (
        "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    return request[: len(head) // 2] if partial else request


@pytest.mark.parametrize("partial", [True, False], ids=["partial_request", "whole_request"])
async def test_a_client_gone_before_the_response_headers_leaves_nothing_behind(
    upstream: UpstreamServer, partial: bool
) -> None:
    upstream.script(Reply(before_headers=STALL))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        baseline = await gateway.task_count()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
            await loop.sock_sendall(sock, raw_post(json.dumps(ask()).encode(), partial=partial))
        finally:
            sock.close()
        # A whole request may have become a run before the close was noticed: it is then
        # cancelled, and its upstream request closed.
        await gateway.wait_on_server(lambda: gateway.state.manager.statistics().active_runs == 0)
        stats = gateway.state.manager.statistics().runs_by_status
        assert stats["completed"] == stats["failed"] == 0
        if partial:
            assert stats["cancelled"] == 0
        for record in upstream.requests:
            await upstream.wait_disconnect(record)
        await assert_nothing_held(gateway, [], baseline)


@pytest.mark.parametrize("phase", ["first_token", "mid_stream", "tool"])
async def test_a_client_gone_at_any_phase_cancels_the_run_and_releases_everything(
    upstream: UpstreamServer, phase: str
) -> None:
    if phase == "first_token":
        upstream.script(Reply(before_headers=STALL))
    elif phase == "mid_stream":
        upstream.script(text_reply(*(["tok "] * 500), pause=0.01))
    else:
        upstream.script(tool_call_reply("call_s", "sleep", '{"seconds": 30}'))
    leave_on = {"first_token": None, "mid_stream": "message.delta", "tool": "tool.started"}[phase]
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        baseline = await gateway.task_count()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            spec = ask("sleep", ["sleep"])
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                run_id = response.headers["x-run-id"]
                if leave_on is None:
                    await asyncio.to_thread(upstream.wait_for_requests, 1)
                else:
                    async for event in sse_events(response):
                        if event["type"] == leave_on:
                            break
        snapshot = await gateway.wait_run(run_id)
        assert snapshot["status"] == "cancelled"
        assert snapshot["cancel_reason"] == "last reader disconnected"
        if phase != "tool":  # in the tool phase the upstream answer was already complete
            await upstream.wait_disconnect(upstream.requests[0])
        await assert_nothing_held(gateway, [run_id], baseline)


async def sse_client_leaving_after(client: httpx.AsyncClient, spec: dict[str, Any], n: int) -> str:
    async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
        assert response.status_code == 200
        run_id = response.headers["x-run-id"]
        seen = 0
        async for _ in sse_events(response):
            seen += 1
            if seen >= n:
                break
        return run_id


async def ws_client_leaving_after(
    gateway: RunningGateway, spec: dict[str, Any], n: int, abrupt: bool
) -> str:
    async with websockets.connect(gateway.ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
        run_id = ""
        seen = 0
        while seen < n:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == "ack":
                run_id = message["run_id"]
                continue
            seen += 1
            if message["type"].startswith("run.") and message["type"] != "run.started":
                break
        if abrupt:
            ws.transport.abort()  # no close frame: the TCP connection just goes
        return run_id


async def raw_client_leaving_early(gateway: RunningGateway, spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
        await loop.sock_sendall(sock, raw_post(json.dumps(spec).encode(), partial=False))
    finally:
        sock.close()


@HEAVY
async def test_1000_clients_dropping_at_random_points_leak_no_task_slot_quota_or_memory() -> None:
    rng = random.Random(20261123)
    specs = [
        {"parallel": [{"tool": "countdown", "arguments": {"start": 30, "interval": 0.005}}]},
        agent_spec("count down from 10", ["countdown"]),
        agent_spec("what is 6 * 7", ["calculator"]),
    ]
    # Finished runs expire quickly, so that what memory is left afterwards is a leak, not a
    # run kept readable on purpose.
    settings = {
        "runs_per_key_per_minute": 100_000,
        "max_streams_per_key": 1000,
        "retention_ttl": 2.0,
    }
    with running_gateway(**settings) as gateway:
        baseline = await gateway.task_count()
        limit = asyncio.Semaphore(50)
        # One client (making one per request costs an SSL context each), a new TCP
        # connection per request.
        client = httpx.AsyncClient(
            base_url=gateway.base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=0),
        )

        async def one_client() -> str | None:
            spec, n, kind = rng.choice(specs), rng.randint(1, 40), rng.random()
            abrupt = rng.random() < 0.5
            async with limit:
                if kind < 0.1:
                    await raw_client_leaving_early(gateway, spec)
                    return None
                if kind < 0.55:
                    return await sse_client_leaving_after(client, spec, n)
                return await ws_client_leaving_after(gateway, spec, n, abrupt)

        await asyncio.gather(*(one_client() for _ in range(20)))  # warm up: imports, caches
        await gateway.wait_on_server(lambda: gateway.state.manager.statistics().active_runs == 0)
        gc.collect()
        rss_before = rss_bytes()
        run_ids = [r for r in await asyncio.gather(*(one_client() for _ in range(1000))) if r]
        statuses = set()
        for run_id in run_ids:
            with contextlib.suppress(NotFoundError):  # already expired: it ended
                statuses.add((await gateway.wait_run(run_id))["status"])
        await assert_nothing_held(gateway, run_ids, baseline)
        await gateway.wait_on_server(lambda: gateway.state.manager.statistics().retained_runs == 0)
        gc.collect()
        rss_after = rss_bytes()
        await client.aclose()
    assert statuses <= {"cancelled", "completed"}
    assert gateway.state.open_streams["sse"] == gateway.state.open_streams["ws"] == 0
    assert rss_after - rss_before < 50 * 1024 * 1024


async def test_a_websocket_peer_that_vanishes_without_a_close_frame_is_dropped_by_ping() -> None:
    with running_gateway(ws_ping_interval=0.2, ws_ping_timeout=0.2) as gateway:
        baseline = await gateway.task_count()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
            protocol = ClientProtocol(parse_uri(gateway.ws_url), max_size=None)
            protocol.send_request(protocol.connect())
            for data in protocol.data_to_send():
                await loop.sock_sendall(sock, data)
            while protocol.state is State.CONNECTING:
                protocol.receive_data(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
            assert protocol.state is State.OPEN
            start = {
                "type": "run.start",
                "id": 1,
                "run": {"parallel": [{"tool": "sleep", "arguments": {"seconds": 60}}]},
            }
            protocol.send_text(json.dumps(start).encode())
            for data in protocol.data_to_send():
                await loop.sock_sendall(sock, data)
            # From here on the peer reads nothing and answers no ping: it has vanished.
            await gateway.wait_on_server(
                lambda: gateway.state.manager.statistics().active_runs == 1
            )
            (run_id,) = gateway.state.manager.active_run_ids
            snapshot = await gateway.wait_run(run_id, timeout=5)
            assert snapshot["status"] == "cancelled"
            assert snapshot["cancel_reason"] == "last reader disconnected"
            await assert_nothing_held(gateway, [run_id], baseline)
        finally:
            sock.close()


# -- misbehaving tools -------------------------------------------------------------------------


class Opaque:
    def __str__(self) -> str:
        return "<opaque thing>"


class CleanupRecord:
    def __init__(self) -> None:
        self.cancelled = 0
        self.cleaned_up = 0


def misbehaving_tools(record: CleanupRecord) -> ToolRegistry:
    registry = builtin_tools(countdown_interval=0.01)

    def tool(name: str, function: Callable[[Mapping[str, Any], Emit], Any]) -> None:
        registry.register(Tool(name, f"test tool {name}", {"type": "object"}, function))

    async def hang(arguments: Mapping[str, Any], emit: Emit) -> Any:
        await asyncio.Event().wait()

    async def opaque(arguments: Mapping[str, Any], emit: Emit) -> Any:
        return Opaque()

    async def a_set(arguments: Mapping[str, Any], emit: Emit) -> Any:
        return {"items": {3}}

    async def some_bytes(arguments: Mapping[str, Any], emit: Emit) -> Any:
        return b"\x00raw"

    async def stubborn(arguments: Mapping[str, Any], emit: Emit) -> Any:
        await emit("working\n")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            record.cancelled += 1
            await asyncio.sleep(0.2)  # ignores the cancel for a while: its cleanup
            record.cleaned_up += 1
            raise

    tool("hang", hang)
    tool("opaque", opaque)
    tool("a_set", a_set)
    tool("some_bytes", some_bytes)
    tool("stubborn", stubborn)
    return registry


async def test_a_tool_hanging_past_its_timeout_fails_and_the_run_continues() -> None:
    spec = {
        "parallel": [
            {"tool": "hang", "arguments": {}},
            {"tool": "countdown", "arguments": {"start": 3}},
        ]
    }
    with running_gateway(tools=misbehaving_tools(CleanupRecord()), tool_timeout=0.2) as gateway:
        events = await stream_run(gateway, spec)
    (failed,) = of_type(events, "tool.failed")
    assert failed["error"]["code"] == "tool_timeout"
    assert "did not finish within 0.2s" in failed["error"]["message"]
    assert of_type(events, "tool.completed")[0]["output"]["done"] == "liftoff"
    assert events[-1]["type"] == "run.completed"


@pytest.mark.parametrize(
    ("tool", "expected"),
    [("opaque", "<opaque thing>"), ("a_set", {"items": "{3}"}), ("some_bytes", "b'\\x00raw'")],
)
async def test_a_tool_returning_something_not_json_still_encodes_as_its_str(
    tool: str, expected: Any
) -> None:
    with running_gateway(tools=misbehaving_tools(CleanupRecord())) as gateway:
        events = await stream_run(gateway, {"parallel": [{"tool": tool, "arguments": {}}]})
    assert of_type(events, "tool.completed")[0]["output"] == expected
    assert events[-1]["type"] == "run.completed"


async def test_cancelling_a_run_waits_for_a_stubborn_tools_cleanup_then_ends_cancelled() -> None:
    record = CleanupRecord()
    spec = {"parallel": [{"tool": "stubborn", "arguments": {}}]}
    with running_gateway(tools=misbehaving_tools(record)) as gateway:
        baseline = await gateway.task_count()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            run_id = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                events = []
                async for event in sse_events(response):
                    events.append(event)
                    if event["type"] == "tool.delta":
                        answer = await client.post(f"/v1/runs/{run_id}/cancel")
                        assert answer.status_code == 200
        await assert_nothing_held(gateway, [run_id], baseline)
    assert record.cancelled == record.cleaned_up == 1
    assert events[-1]["type"] == "run.cancelled"
    assert events[-1]["ts"] - events[-2]["ts"] >= 0.19  # it waited for the cleanup
