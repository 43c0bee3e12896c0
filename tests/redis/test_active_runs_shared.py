"""With Redis, a key's active-run limit holds across instances: two real gateway processes
share it, and the slots of an instance killed mid-run come back within about ``lease_ttl``
(they are no longer renewed), as its runs are failed as lost."""

from __future__ import annotations

import time
from typing import Any

from tests.gateway_process import api_keys, eventually, gateway_processes
from tests.support import agent_spec

LEASE_TTL = 1.5
SLEEPING = agent_spec("sleep 60 seconds", ["sleep"], on_disconnect="continue")


async def test_a_key_s_active_runs_are_counted_across_instances_and_freed_by_a_lost_one(
    any_redis_url: str,
) -> None:
    keys = api_keys("k1", "k2")
    settings = {"lease_ttl": LEASE_TTL, "api_keys": keys, "max_active_runs_per_key": 2}
    async with gateway_processes(2, redis_url=any_redis_url, **settings) as (a, b):
        async with a.client("k1") as k1_a, b.client("k1") as k1_b, b.client("k2") as k2_b:
            on_a = await k1_a.post("/v1/runs", json=SLEEPING)
            on_b = await k1_b.post("/v1/runs", json=SLEEPING)
            assert (on_a.status_code, on_b.status_code) == (201, 201)
            refused = [await c.post("/v1/runs", json=SLEEPING) for c in (k1_a, k1_b)]
            other_key = await k2_b.post("/v1/runs", json=SLEEPING)

            a.kill()
            killed_at = time.monotonic()

            async def starts_on_b() -> int | None:
                answer = await k1_b.post("/v1/runs", json=SLEEPING)
                return answer.status_code if answer.status_code == 201 else None

            await eventually(
                starts_on_b, timeout=LEASE_TTL * 3 + 5, interval=0.1, what="a slot freed"
            )
            freed_after = time.monotonic() - killed_at
            full_again = await k1_b.post("/v1/runs", json=SLEEPING)

            async def failed_as_lost() -> dict[str, Any] | None:
                seen = (await k1_b.get(f"/v1/runs/{on_a.json()['run_id']}")).json()
                return seen if seen["status"] == "failed" else None

            lost = await eventually(failed_as_lost, timeout=LEASE_TTL * 3 + 5, what="run lost")
    for answer in refused:
        assert answer.status_code == 429
        assert "max_active_runs_per_key" in answer.json()["error"]["message"]
    assert other_key.status_code == 201
    assert freed_after < LEASE_TTL * 2 + 1
    assert lost["error"]["code"] == "instance_lost"
    assert full_again.status_code == 429
