"""An agent run streamed over SSE, read by curl and by httpx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import require_binary
from tests.support import SSE, agent_spec, collect, parse_frame, run_events, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")

PROMPT = "What time is it? Also count down from 5."


def assert_well_formed(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run.started"
    assert events[-1]["type"] in ("run.completed", "run.failed", "run.cancelled")
    assert all(not e["type"].startswith("run.") for e in events[1:-1])


async def test_curl_prints_an_agent_run_in_order_ending_with_run_completed() -> None:
    curl = require_binary("curl", "apt-get install curl")
    with running_gateway() as gateway:
        process = await asyncio.create_subprocess_exec(
            curl,
            "-sS",
            "-N",
            "--max-time",
            "30",
            "-X",
            "POST",
            f"{gateway.base_url}/v1/runs",
            "-H",
            "Accept: text/event-stream",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(agent_spec(PROMPT, ["clock", "countdown"])),
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await process.communicate()
    assert process.returncode == 0
    assert stdout.startswith(b": ping\n\n")
    assert b"\r" not in stdout
    frames = [parse_frame(raw) for raw in stdout.split(b"\n\n") if raw]
    events = [frame.event for frame in frames if frame.data is not None]
    assert_well_formed(events)
    types = [e["type"] for e in events]
    assert types[-1] == "run.completed"
    assert types.count("message.started") == 2  # tool-calling step, then the answer
    assert [e["name"] for e in events if e["type"] == "tool.started"] == ["clock", "countdown"]
    countdown_call = next(
        e["call_id"] for e in events if e["type"] == "tool.started" and e["name"] == "countdown"
    )
    ticks = [
        e["delta"] for e in events if e["type"] == "tool.delta" and e["call_id"] == countdown_call
    ]
    assert ticks == ["5\n", "4\n", "3\n", "2\n", "1\n"]
    answer = events[-1]["output"]
    assert "liftoff" in answer and "the time is" in answer


async def test_model_text_arrives_token_by_token_before_the_step_completes() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream(
                "POST",
                "/v1/runs",
                json=agent_spec("hello there", []),
                headers=SSE,
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-store"
                assert response.headers["x-accel-buffering"] == "no"
                assert "content-length" not in response.headers
                events = await collect(response)
    assert_well_formed(events)
    deltas = [e for e in events if e["type"] == "message.delta"]
    completed = next(e for e in events if e["type"] == "message.completed")
    assert len(deltas) > 10
    assert "".join(d["delta"] for d in deltas) == completed["text"]
    assert events[-1] == {
        **events[-1],
        "type": "run.completed",
        "output": completed["text"],
        "stop_reason": "answer",
        "steps": 1,
    }


async def test_run_started_with_json_answer_is_readable_from_its_events_url() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            answer = await client.post("/v1/runs", json=agent_spec("2 + 3 * 4?", ["calculator"]))
            assert answer.status_code == 201
            body = answer.json()
            assert body["events_url"] == f"/v1/runs/{body['run_id']}/events"
            assert answer.headers["location"] == body["url"]
            async with client.stream("GET", body["events_url"]) as response:
                events = await collect(response)
            snapshot = (await client.get(body["url"])).json()
    assert_well_formed(events)
    completed = next(e for e in events if e["type"] == "tool.completed")
    assert completed["output"] == {"expression": "2 + 3 * 4", "value": 14}
    assert snapshot["status"] == "completed"
    assert snapshot["last_seq"] == events[-1]["seq"]
    assert snapshot["output"] == events[-1]["output"]
    assert {p["status"] for p in snapshot["producers"]} == {"completed"}


async def test_a_failing_tool_reports_tool_failed_and_the_model_reads_the_error() -> None:
    with running_gateway() as gateway:
        events = await run_events(gateway, agent_spec("what is 1 / 0", ["calculator"]))
    assert_well_formed(events)
    failed = next(e for e in events if e["type"] == "tool.failed")
    assert failed["error"] == {"code": "tool_error", "message": "division by zero"}
    assert events[-1]["type"] == "run.completed"
    assert "division by zero" in events[-1]["output"]
