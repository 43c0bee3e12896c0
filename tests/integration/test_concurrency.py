"""Producers run side by side, within their connection's limits."""

from __future__ import annotations

import itertools

import httpx
import pytest

from tests.probes import ProbeRecord, tools_with_probe
from tests.support import agent_spec, run_events, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


def parallel(*items: dict[str, object]) -> dict[str, object]:
    return {"parallel": list(items)}


async def test_two_tools_overlap_in_time_and_their_deltas_interleave() -> None:
    spec = parallel(
        {"tool": "countdown", "arguments": {"start": 5, "interval": 0.02}},
        {"tool": "countdown", "arguments": {"start": 5, "interval": 0.02}},
    )
    with running_gateway() as gateway:
        events = await run_events(gateway, spec)
    producers = [e["producer"] for e in events if e["type"] == "tool.delta"]
    calls = [e["call_id"] for e in events if e["type"] == "tool.started"]
    assert len(set(calls)) == 2
    assert set(producers) == set(calls)
    switches = sum(1 for a, b in itertools.pairwise(producers) if a != b)
    assert switches >= 4, f"deltas did not interleave: {producers}"
    first_completed = next(i for i, e in enumerate(events) if e["type"] == "tool.completed")
    started = [i for i, e in enumerate(events) if e["type"] == "tool.started"]
    assert len(started) == 2
    assert max(started) < first_completed
    assert events[-1]["type"] == "run.completed"
    assert [r["status"] for r in events[-1]["output"]] == ["completed", "completed"]


async def test_the_connection_semaphore_bounds_producers_running_at_once() -> None:
    record = ProbeRecord()
    spec = parallel(
        *({"tool": "probe", "arguments": {"ticks": 4, "label": str(i)}} for i in range(6))
    )
    with running_gateway(tools=tools_with_probe(record), max_producers_per_connection=2) as gw:
        events = await run_events(gw, spec)
    assert events[-1]["type"] == "run.completed"
    assert record.started == 6
    assert record.peak == 2  # overlapping (2 at once) and never more than the limit
    assert sum(1 for e in events if e["type"] == "tool.completed") == 6


async def test_the_connection_semaphore_is_shared_by_the_runs_of_one_connection() -> None:
    record = ProbeRecord()
    spec = parallel(*({"tool": "probe", "arguments": {"ticks": 3}} for _ in range(3)))
    with running_gateway(tools=tools_with_probe(record), max_producers_per_connection=2) as gw:
        # One keep-alive connection (one TCP connection) starts two runs.
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=10, limits=limits) as client:
            first = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            second = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            await gw.wait_run(first)
            await gw.wait_run(second)
    assert record.started == 6
    assert record.peak == 2


async def test_past_the_global_run_limit_a_start_gets_429_with_retry_after() -> None:
    spec = agent_spec("sleep 5 seconds", ["sleep"])
    with running_gateway(max_active_runs=1) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            first = await client.post("/v1/runs", json=spec)
            assert first.status_code == 201
            second = await client.post("/v1/runs", json=spec)
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            assert second.json()["error"]["code"] == "limit_exceeded"
            await client.post(f"/v1/runs/{first.json()['run_id']}/cancel")
            third = await client.post("/v1/runs", json=spec)
            assert third.status_code == 201
            await client.post(f"/v1/runs/{third.json()['run_id']}/cancel")


async def test_past_the_per_connection_run_limit_a_start_gets_429() -> None:
    spec = agent_spec("sleep 5 seconds", ["sleep"])
    with running_gateway(max_runs_per_connection=1) as gateway:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=gateway.base_url, timeout=10, limits=limits
        ) as client:
            first = await client.post("/v1/runs", json=spec)
            second = await client.post("/v1/runs", json=spec)
            assert second.status_code == 429
            assert "this connection already has 1 active runs" in second.json()["error"]["message"]
            # Another connection is not affected.
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as other:
                third = await other.post("/v1/runs", json=spec)
                assert third.status_code == 201
                await other.post(f"/v1/runs/{third.json()['run_id']}/cancel")
            await client.post(f"/v1/runs/{first.json()['run_id']}/cancel")
