"""A parallel run is bounded: past ``max_parallel_items`` it is refused before it starts, and
at the limit its producers are created as slots of the connection free up, never all at once
(a task parked on the semaphore per item, tens of thousands for one 1 MiB body)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets

from tests.support import SSE, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


def sleeping_items(count: int, seconds: float = 60) -> dict[str, Any]:
    return {"parallel": [{"tool": "sleep", "arguments": {"seconds": seconds}}] * count}


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_a_parallel_run_past_max_parallel_items_is_a_413_naming_it(accept: str) -> None:
    with running_gateway(max_parallel_items=10) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            response = await client.post(
                "/v1/runs", json=sleeping_items(11, 0), headers={"accept": accept}
            )
            assert response.status_code == 413
            error = response.json()["error"]
            assert error["code"] == "body_too_large"
            assert "max_parallel_items" in error["message"]
            assert "11 items" in error["message"]
            at_limit = await client.post("/v1/runs", json=sleeping_items(10, 0))
            assert at_limit.status_code == 201
            await gateway.wait_run(at_limit.json()["run_id"])
        assert gateway.state.manager.statistics().retained_runs == 1


async def test_a_parallel_run_past_max_parallel_items_on_the_websocket_is_an_error() -> None:
    with running_gateway(max_parallel_items=10) as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": sleeping_items(11)}))
            error = json.loads(await ws.recv())
            assert error["type"] == "error"
            assert error["id"] == 1
            assert error["code"] == "body_too_large"
            assert "max_parallel_items" in error["message"]
            await ws.send(json.dumps({"type": "ping", "id": 2}))
            assert json.loads(await ws.recv())["type"] == "ack"
        assert gateway.state.manager.statistics().retained_runs == 0


async def test_a_parallel_run_at_the_limit_has_a_task_only_for_each_producer_slot() -> None:
    items, slots = 40, 4
    with running_gateway(max_parallel_items=items, max_producers_per_connection=slots) as gateway:
        baseline = await gateway.task_count()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            response = await client.post("/v1/runs", json=sleeping_items(items))
            assert response.status_code == 201
            run_id = response.json()["run_id"]
            run = gateway.state.manager.get_unchecked(run_id)
            await gateway.wait_on_server(
                lambda: run.connection.statistics().producers_running == slots
            )
            # The run's supervisor, and one task per producer holding a slot: the other 36
            # items are not tasks yet. (Waited for: the request's own task may still be
            # finishing just after its answer arrived, on Redis most of all.)
            expected = baseline + 1 + slots
            assert await gateway.wait_task_count(expected) == expected
            assert len(run.producers) == slots
            assert run.connection.statistics().producers_waiting == 1  # the supervisor

            cancel = await client.post(f"/v1/runs/{run_id}/cancel")
            assert cancel.status_code == 200
        snapshot = await gateway.wait_run(run_id)
        assert snapshot["status"] == "cancelled"
        assert [p["status"] for p in snapshot["producers"]] == ["cancelled"] * slots
        # Everything it held is back: tasks and the connection's slots.
        assert await gateway.wait_task_count(baseline) == baseline
        stats = run.connection.statistics()
        assert (stats.producers_running, stats.producers_waiting) == (0, 0)


async def test_a_parallel_run_at_the_limit_runs_every_item_through_the_slots() -> None:
    items, slots = 30, 3
    with running_gateway(max_parallel_items=items, max_producers_per_connection=slots) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            spec = {
                "parallel": [
                    {"tool": "calculator", "arguments": {"expression": f"{i} * 2"}}
                    for i in range(items)
                ]
            }
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                assert response.status_code == 200
                body = (await response.aread()).decode()
        run_id = response.headers["x-run-id"]
        snapshot = await gateway.wait_run(run_id)
        run = gateway.state.manager.get_unchecked(run_id)
    assert snapshot["status"] == "completed"
    # In the order of the spec, every one of them.
    assert [item["output"]["value"] for item in snapshot["output"]] == [i * 2 for i in range(items)]
    assert run.connection.statistics().producers_peak == slots
    assert body.count('"type":"tool.completed"') == items
