"""Heartbeats, shutdown, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.probes import ProbeRecord, tools_with_probe
from tests.sockets import eventually
from tests.support import (
    SSE,
    agent_spec,
    collect,
    running_gateway,
    sse_events,
    sse_frames,
)

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


async def test_a_ping_comment_goes_out_at_once_and_then_while_the_stream_is_idle() -> None:
    spec = agent_spec("sleep 1 seconds", ["sleep"])
    with running_gateway(heartbeat_interval=0.2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                frames = [frame async for frame in sse_frames(response)]
    assert frames[0].comments == ["ping"]
    assert frames[0].data is None
    tool_started = next(
        i for i, f in enumerate(frames) if f.data and f.event["type"] == "tool.started"
    )
    tool_completed = next(
        i for i, f in enumerate(frames) if f.data and f.event["type"] == "tool.completed"
    )
    pings_during_tool = [f for f in frames[tool_started:tool_completed] if f.comments]
    assert len(pings_during_tool) >= 2  # a 1 s tool, a ping every 0.2 s of silence


async def stream_shutting_down_at_the_tool(
    spec: dict[str, Any], **settings: Any
) -> list[dict[str, Any]]:
    """Stream a run; when its tool starts, the gateway starts draining. All events read."""
    with running_gateway(**settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                events = []
                async for event in sse_events(response):
                    events.append(event)
                    if event["type"] == "tool.started":
                        gateway.loop.call_soon_threadsafe(gateway.shutdown.set)
    return events


async def test_on_shutdown_runs_past_the_drain_timeout_end_with_run_cancelled_shutdown() -> None:
    spec = agent_spec("sleep 60 seconds", ["sleep"])
    events = await stream_shutting_down_at_the_tool(spec, drain_timeout=0.3)
    assert events[-1]["type"] == "run.cancelled"
    assert events[-1]["reason"] == "shutdown"


async def test_a_run_that_finishes_within_the_drain_timeout_completes() -> None:
    spec = agent_spec("count down from 5", ["countdown"])
    events = await stream_shutting_down_at_the_tool(spec, drain_timeout=10, countdown_interval=0.05)
    assert events[-1]["type"] == "run.completed"


async def test_while_draining_readiness_fails_and_new_runs_are_refused() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            gateway.loop.call_soon_threadsafe(gateway.shutdown.set)
            await gateway.call(gateway.state.shutdown.wait())
            ready = await client.get("/readyz")
            refused = await client.post("/v1/runs", json=agent_spec("hi", []))
    assert ready.status_code == 503
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "shutting_down"


async def test_no_task_is_left_behind_after_runs_of_every_kind_end() -> None:
    record = ProbeRecord()
    long_probe = {"parallel": [{"tool": "probe", "arguments": {"ticks": 1000}}]}
    with running_gateway(tools=tools_with_probe(record)) as gateway:
        baseline = await gateway.task_count()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            # A completed SSE run, a run cancelled by the endpoint, one by a disconnect.
            async with client.stream(
                "POST",
                "/v1/runs",
                json=agent_spec("count down from 3", ["countdown"]),
                headers=SSE,
            ) as response:
                await collect(response)
            cancelled = (await client.post("/v1/runs", json=long_probe)).json()["run_id"]
            await eventually(lambda: record.started == 1)  # cancelled once it runs
            await client.post(f"/v1/runs/{cancelled}/cancel")
            async with client.stream("POST", "/v1/runs", json=long_probe, headers=SSE) as response:
                dropped = response.headers["x-run-id"]
                async for event in sse_events(response):
                    if event["type"] == "tool.delta":
                        break
            await gateway.wait_run(dropped)
        # WebSocket: two runs, one left running when the socket closes.
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(
                json.dumps({"type": "run.start", "id": 1, "run": agent_spec("hello", [])})
            )
            await ws.send(json.dumps({"type": "run.start", "id": 2, "run": long_probe}))
            run_ids = []
            while len(run_ids) < 2:
                message = json.loads(await ws.recv())
                if message["type"] == "ack":
                    run_ids.append(message["run_id"])
            while json.loads(await ws.recv())["type"] != "run.completed":
                pass
        for run_id in run_ids:
            await gateway.wait_run(run_id)
        remaining = await gateway.wait_task_count(baseline)
    assert remaining == baseline
    assert record.started == record.cleaned_up == 3


async def test_many_clients_dropping_at_random_points_leave_no_task_or_slot_behind() -> None:
    record = ProbeRecord()
    spec = {
        "parallel": [
            {"tool": "probe", "arguments": {"ticks": 50, "interval": 0.005}},
            {"tool": "probe", "arguments": {"ticks": 50, "interval": 0.005}},
        ]
    }
    with running_gateway(tools=tools_with_probe(record), max_producers_per_connection=1) as gw:
        baseline = await gw.task_count()

        async def client_that_leaves_after(events_wanted: int) -> str:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as client:
                async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                    count = 0
                    async for _ in sse_events(response):
                        count += 1
                        if count >= events_wanted:
                            break
                    return response.headers["x-run-id"]

        run_ids = await asyncio.gather(*(client_that_leaves_after(n) for n in range(1, 41)))
        snapshots = [await gw.wait_run(run_id) for run_id in run_ids]
        remaining = await gw.wait_task_count(baseline)
    assert {s["status"] for s in snapshots} <= {"cancelled", "completed"}
    assert remaining == baseline
    assert record.running == 0
    assert record.started == record.cleaned_up
