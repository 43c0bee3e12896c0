"""What the run registry writes to Redis with each batch of a run's events: the run's state,
and only the producers that changed since the last batch, so a batch costs the same however
many producers the run has (writing every producer with every batch made a parallel run's
writes grow with the square of its items)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import redis.asyncio as aioredis

from streams.cluster.client import store_client
from tests.support import running_gateway


def countdowns(count: int) -> dict[str, Any]:
    item = {"tool": "countdown", "arguments": {"start": 3, "interval": 0.005}}
    return {"parallel": [item] * count}


async def bytes_written_per_event(redis_url: str, items: int) -> float:
    """Bytes Redis received for one parallel run of ``items`` countdowns, per event."""
    redis = aioredis.from_url(redis_url)
    try:
        with running_gateway(
            redis_url=redis_url, max_parallel_items=items, max_producers_per_connection=8
        ) as gateway:
            before = (await redis.info("stats"))["total_net_input_bytes"]
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                response = await client.post("/v1/runs", json=countdowns(items))
                assert response.status_code == 201
            snapshot = await gateway.wait_run(response.json()["run_id"])
            assert snapshot["status"] == "completed"
            written = (await redis.info("stats"))["total_net_input_bytes"] - before
            return float(written / snapshot["last_seq"])
    finally:
        await redis.aclose()


async def test_the_bytes_written_per_event_do_not_grow_with_the_producers_of_a_run(
    redis_url: str,
) -> None:
    few = await bytes_written_per_event(redis_url, 8)
    many = await bytes_written_per_event(redis_url, 256)
    # Every item makes the same events: 32 times the producers cost no more per event
    # (with every producer written with each batch: 505 bytes an event at 8, 1,800 at 256).
    assert many < few * 1.25, (few, many)


async def test_another_instance_shows_the_producers_of_a_run_in_order_with_their_states(
    redis_url: str,
) -> None:
    spec = {
        "parallel": [
            {"tool": "calculator", "arguments": {"expression": "1 + 1"}},
            {"tool": "sleep", "arguments": {"seconds": 60}},
            {"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
            {"tool": "clock"},
        ]
    }
    with (
        running_gateway(redis_url=redis_url, instance_id="a") as a,
        running_gateway(redis_url=redis_url, instance_id="b") as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
        ):
            run_id = (await on_a.post("/v1/runs", json=spec)).json()["run_id"]

            async def states_on_b() -> list[str]:
                while True:
                    seen = (await on_b.get(f"/v1/runs/{run_id}")).json()
                    states = [p["status"] for p in seen["producers"]]
                    if states == ["completed", "running", "completed", "completed"]:
                        return states
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(states_on_b(), 10)
            on_owner = (await on_a.get(f"/v1/runs/{run_id}")).json()
            await on_b.post(f"/v1/runs/{run_id}/cancel")
            await a.wait_run(run_id)
            ended_on_b = (await on_b.get(f"/v1/runs/{run_id}")).json()
    seen_on_b = ended_on_b["producers"]
    assert [p["id"] for p in seen_on_b] == [p["id"] for p in on_owner["producers"]]
    assert [p["status"] for p in seen_on_b] == ["completed", "cancelled", "completed", "completed"]
    assert ended_on_b["metadata"] == on_owner["metadata"] == {}
    assert ended_on_b["status"] == "cancelled"


async def test_runs_that_end_before_their_registration_lands_are_shown_ended_elsewhere(
    any_redis_url: str,
) -> None:
    # A run's events reach Redis without waiting for its registration: a run that ends at
    # once may be all in first (one in ten of these, before), and the registration must
    # not put it back as queued (5 runs out of 5 of this test failed so, before). Nor may it
    # stay in its instance's runs: on a cluster the registration's SADD and the end's SREM
    # go to two nodes, in either order.
    spec = {"parallel": [{"tool": "clock"}]}
    settings = {"redis_url": any_redis_url, "runs_per_key_per_minute": 1e6}
    with (
        running_gateway(instance_id="a", max_active_runs_per_key=1000, **settings) as a,
        running_gateway(instance_id="b", **settings) as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=30) as on_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=30) as on_b,
        ):
            answers = await asyncio.gather(*(on_a.post("/v1/runs", json=spec) for _ in range(400)))
            run_ids = [answer.json()["run_id"] for answer in answers]
            for run_id in run_ids:
                await a.wait_run(run_id)
            seen = [(await on_b.get(f"/v1/runs/{run_id}")).json() for run_id in run_ids]
    redis = store_client(any_redis_url, max_connections=2, timeout=2.0)
    try:
        left = await redis.scard("gw:instance:{a}:runs")
    finally:
        await redis.aclose()
    assert [s["status"] for s in seen] == ["completed"] * len(run_ids)
    assert left == 0
