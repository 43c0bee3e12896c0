"""How many round trips to Redis a run costs, counted on a real redis-server: a bound, so
that a step put back on the hot path shows (a run started through a face took three quota
round trips and a registration of its own before its first event; each event was an XADD
of its own in the batch's pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis

from tests.support import collect, running_gateway

RUNS = 20


@dataclass(frozen=True)
class Served:
    """What the server has served: round trips (its reads of client sockets) and commands
    by name (those run by scripts too)."""

    reads: int
    commands: dict[str, int]

    def __sub__(self, other: Served) -> Served:
        commands = {k: v - other.commands.get(k, 0) for k, v in self.commands.items()}
        # Two round trips are this very count's (INFO stats, INFO commandstats).
        return Served(self.reads - other.reads - 2, {k: v for k, v in commands.items() if v})


async def served(redis: aioredis.Redis) -> Served:
    stats: dict[str, Any] = await redis.info("stats")
    commands: dict[str, Any] = await redis.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in commands.items()}
    calls.pop("info", None)
    return Served(int(stats["total_reads_processed"]), calls)


async def test_a_streamed_chat_completion_costs_few_round_trips(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        with running_gateway(redis_url=redis_url, demo_token_delay=0) as gateway:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                before = await served(redis)
                for _ in range(RUNS):
                    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                        assert r.status_code == 200
                        assert (await r.aread()).endswith(b"data: [DONE]\n\n")
                spent = await served(redis) - before
    finally:
        await redis.aclose()
    commands = spent.commands
    # One quota script per run start (it alone reads a bucket: HMGET), taking both slots.
    assert commands["hmget"] == RUNS, commands
    assert commands["zremrangebyscore"] == 2 * RUNS, commands
    # The run's batches: one script each (one run per batch, the runs one after another),
    # the first with the registration; the releases of the two slots.
    batches = commands["evalsha"] - RUNS
    others = spent.reads - batches - commands["zrem"]
    # What is left is the quotas' round trip per run, and the lease renewals, sweeps and new
    # connections meanwhile (measured: 1.85 per run; the registration apart and the three
    # quota steps of before were 4 per run).
    assert others <= RUNS * 2.5, (spent.reads, batches, commands)


async def test_a_run_of_many_events_writes_them_in_few_commands(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    spec = {"parallel": [{"tool": "countdown", "arguments": {"start": 100, "interval": 0}}]}
    try:
        with running_gateway(redis_url=redis_url) as gateway:
            before = await served(redis)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                async with client.stream(
                    "POST", "/v1/runs", json=spec, headers={"accept": "text/event-stream"}
                ) as response:
                    events = await collect(response)
            spent = await served(redis) - before
    finally:
        await redis.aclose()
    commands = spent.commands
    assert events[-1]["type"] == "run.completed"
    assert commands["xadd"] == len(events)  # each event once
    # The events go in batches, each batch one script for the run (the other script is the
    # quotas': one HMGET of a bucket). How many share one depends on the machine: a writer
    # that waits a single loop step for an output event (for its reader's sake) put 104
    # events in 14 round trips on a quiet machine and in 74 under the full suite's load;
    # one round trip per event would be 104 and more.
    writes = commands["evalsha"] - commands["hmget"]
    assert writes <= spent.reads < len(events), (len(events), spent.reads, commands)
    # Its hash and its producer's once a batch at most, by the script (and the quotas'
    # bucket): no HSET of a field per event.
    assert commands["hset"] <= 2 * writes + commands["hmget"], commands
