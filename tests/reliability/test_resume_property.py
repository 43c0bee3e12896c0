"""Property: however often an SSE reader drops and resumes with ``Last-Event-ID``, the events
it reassembles are the run's log, each seq exactly once, ending with the terminal event; when
retention has let events go, one ``stream.gap`` stands for them and what follows is exact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import RunningGateway, running_gateway, sse_events

SMALL_RETENTION = 16
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


@pytest.fixture(scope="module")
def gateways() -> Iterator[dict[str, RunningGateway]]:
    common = {"runs_per_key_per_minute": 100_000}
    with running_gateway(**common) as full:
        with running_gateway(retention_max_events=SMALL_RETENTION, **common) as small:
            yield {"full": full, "small": small}


countdowns = st.lists(
    st.fixed_dictionaries(
        {
            "tool": st.just("countdown"),
            "arguments": st.fixed_dictionaries(
                {
                    "start": st.integers(5, 60),
                    "interval": st.floats(0, 0.005, allow_nan=False),
                }
            ),
        }
    ),
    min_size=1,
    max_size=3,
)


async def read(
    client: httpx.AsyncClient, run_id: str, cursor: int, limit: int | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` events after ``cursor`` (all of them: None), then drop the stream."""
    headers = {"last-event-id": str(cursor)} if cursor else {}
    events: list[dict[str, Any]] = []
    async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
    return events


async def drop_and_resume(
    gateway: RunningGateway, parallel: list[dict[str, Any]], drops: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events one reader reassembled over its resumes, and the log read from 0 after
    the run ended."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        spec = {"parallel": parallel, "on_disconnect": "continue"}
        run_id = (await client.post("/v1/runs", json=spec)).json()["run_id"]
        reassembled: list[dict[str, Any]] = []
        cursor = 0
        for limit in [*drops, None]:
            events = await read(client, run_id, cursor, limit)
            if events and events[0]["type"] == "stream.gap":
                assert events[0]["after"] == cursor
            reassembled += events
            if events:
                cursor = events[-1]["seq"]
            if reassembled and reassembled[-1]["type"] in TERMINAL:
                break
        await gateway.wait_run(run_id)
        return reassembled, await read(client, run_id, 0, None)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    parallel=countdowns,
    drops=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    retention=st.sampled_from(["full", "small"]),
)
def test_a_reader_dropped_and_resumed_at_random_points_reassembles_the_log_exactly(
    gateways: dict[str, RunningGateway],
    parallel: list[dict[str, Any]],
    drops: list[int],
    retention: str,
) -> None:
    # 0 events read before a drop: the reader reconnects at once with the same cursor.
    reassembled, log = asyncio.run(drop_and_resume(gateways[retention], parallel, drops))
    seqs = [e["seq"] for e in reassembled]
    assert len(seqs) == len(set(seqs)), "a seq was delivered twice"
    assert reassembled[-1]["type"] == "run.completed"
    assert reassembled[-1]["seq"] == log[-1]["seq"]
    gaps = [e for e in reassembled if e["type"] == "stream.gap"]
    if retention == "full":
        assert gaps == []
        assert reassembled == log
        assert seqs == list(range(1, len(seqs) + 1))
        return
    # With a gap: every event up to it and after it is exact, the gap's next_seq is the
    # seq of the event that follows it, and nothing else is missing.
    expected = 1
    for event in reassembled:
        if event["type"] == "stream.gap":
            assert event["after"] == expected - 1
            assert event["next_seq"] > expected
            assert event["seq"] == event["next_seq"] - 1
            expected = event["next_seq"]
            continue
        assert event["seq"] == expected
        expected += 1
    # The log's retained tail (read from 0 after the end) is exactly what was reassembled.
    retained = [e for e in log if e["type"] != "stream.gap"]
    assert retained == [e for e in reassembled if e["seq"] >= retained[0]["seq"]]
