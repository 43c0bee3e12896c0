"""The gateway with GATEWAY_REDIS_URL, in process (two instances in two threads of this test,
sharing one real redis-server): what an operator sees, and runs crossing instances."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis

from streams.cluster.keys import Keys
from tests.gateway_process import eventually
from tests.integration.test_observability import samples
from tests.redis_server import RedisServer
from tests.support import SSE, agent_spec, collect, running_gateway

SLOW = agent_spec("count down from 30", ["countdown"], on_disconnect="continue")


async def test_readyz_and_metrics_show_the_shared_store(redis_url: str) -> None:
    with running_gateway(redis_url=redis_url, instance_id="a") as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            ready = await client.get("/readyz")
            spec = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                events = await collect(response)

            async def slot_given_back() -> dict[Any, float] | None:
                # The response gives its slot back (a Redis round trip) after its last byte.
                found = samples((await client.get("/metrics")).text)
                return found if found["gateway_stream_slots_held", ()] == 0 else None

            metrics = await eventually(slot_given_back, timeout=5, what="the slot released")
    assert ready.status_code == 200
    assert ready.json()["store_available"] is True
    assert ready.json()["instance"] == "a"
    assert metrics["gateway_store_available", ()] == 1
    assert metrics["gateway_store_written_events_total", ()] >= len(events)
    assert 1 <= metrics["gateway_store_write_batches_total", ()] <= len(events)
    assert metrics["gateway_store_pending_events", ()] == 0


async def test_a_run_is_in_redis_under_its_seq_ids_with_the_bytes_readers_got(
    redis_url: str,
) -> None:
    with running_gateway(redis_url=redis_url, redis_prefix="p:") as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            spec = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
    redis = aioredis.from_url(redis_url)
    try:
        run_id = raw.split(b'"run_id":"')[1].split(b'"')[0].decode()
        entries = await redis.xrange(Keys("p:").events(run_id))
        record = await redis.hgetall(Keys("p:").run(run_id))
        ttl = await redis.ttl(Keys("p:").events(run_id))
    finally:
        await redis.aclose()
    frames = [f for f in raw.split(b"\n\n") if f.startswith(b"id: ")]
    assert [entry_id for entry_id, _ in entries] == [
        f"{n}-0".encode() for n in range(1, len(frames) + 1)
    ]
    assert [b"id: %s\ndata: %s" % (i.split(b"-")[0], f[b"e"]) for i, f in entries] == frames
    assert record[b"status"] == b"completed"
    assert int(record[b"last_seq"]) == len(frames)
    assert ttl > 0  # a finished run expires with the retention TTL


async def test_a_run_started_on_one_instance_is_read_and_cancelled_on_another(
    redis_url: str,
) -> None:
    with (
        running_gateway(redis_url=redis_url, instance_id="a") as a,
        running_gateway(redis_url=redis_url, instance_id="b") as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
        ):
            run_id = (await on_a.post("/v1/runs", json=SLOW)).json()["run_id"]
            # The run is registered before its 201: instance b finds it at once. Its status
            # reaches the registry with its events (the writer's next batch), so b may
            # still see it queued, and sees it running soon after.
            first_seen = await on_b.get(f"/v1/runs/{run_id}")

            async def running_on_b() -> dict[str, Any] | None:
                run = (await on_b.get(f"/v1/runs/{run_id}")).json()
                return run if run["status"] == "running" else None

            seen = await eventually(running_on_b, timeout=5, what="b seeing the run running")
            cancelled = await on_b.post(f"/v1/runs/{run_id}/cancel")
            async with on_b.stream("GET", f"/v1/runs/{run_id}/events") as response:
                from_b = await collect(response)
            async with on_a.stream("GET", f"/v1/runs/{run_id}/events") as response:
                from_a = await collect(response)
            ready_b = (await on_b.get("/readyz")).json()
    assert first_seen.status_code == 200
    assert first_seen.json()["status"] in ("queued", "running")
    assert seen["started_at"] is not None
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "cancelled by client"
    assert from_b == from_a
    assert from_b[-1]["type"] == "run.cancelled"
    assert ready_b["cancels_forwarded"] == 1


async def test_the_run_rate_of_a_key_holds_across_instances(redis_url: str) -> None:
    spec = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    with (
        running_gateway(redis_url=redis_url, runs_per_key_per_minute=3) as a,
        running_gateway(redis_url=redis_url, runs_per_key_per_minute=3) as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
        ):
            answers = [
                await on_a.post("/v1/runs", json=spec),
                await on_b.post("/v1/runs", json=spec),
                await on_a.post("/v1/runs", json=spec),
                await on_b.post("/v1/runs", json=spec),
                await on_a.post("/v1/runs", json=spec),
            ]
    assert [answer.status_code for answer in answers] == [201, 201, 201, 429, 429]
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert float(refused.headers["retry-after"]) > 0


async def test_a_redis_that_hangs_makes_the_instance_unready_and_its_runs_fail_typed(
    own_redis: RedisServer,
) -> None:
    """Not a refused connection but a store that stops answering (a partition): every call
    is bounded, so the outage is noticed and the instance recovers when Redis answers."""
    spec = agent_spec("sleep 60 seconds", ["sleep"], on_disconnect="continue")
    settings = {"redis_url": own_redis.url, "redis_timeout": 0.3, "redis_outage_grace": 0.3}
    with running_gateway(**settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                own_redis.pause()
                try:
                    events = await collect(response)

                    async def unready() -> bool:
                        return (await client.get("/readyz")).status_code == 503

                    await eventually(unready, timeout=5, what="readiness false")
                finally:
                    own_redis.resume()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, timeout=10, what="readiness back")
            quick = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            async with client.stream("POST", "/v1/runs", json=quick, headers=SSE) as again:
                after = await collect(again)
    assert events[-1]["type"] == "run.failed"
    assert events[-1]["error"]["code"] == "store_unavailable"
    assert after[-1]["type"] == "run.completed"
