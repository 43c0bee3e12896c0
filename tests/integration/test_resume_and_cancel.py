"""Resume with Last-Event-ID, retention gaps, and the three ways a run is cancelled."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tests.probes import ProbeRecord, tools_with_probe
from tests.support import SSE, agent_spec, collect, running_gateway, sse_events

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")

COUNTDOWN = agent_spec("count down from 20", ["countdown"], on_disconnect="continue")


async def test_a_reader_that_reconnects_with_last_event_id_gets_exactly_the_rest() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=COUNTDOWN)).json()["run_id"]
            first_part = []
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                async for event in sse_events(response):
                    first_part.append(event)
                    if event["type"] == "tool.delta":
                        break  # drop the connection mid-run
            cursor = first_part[-1]["seq"]
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers={"last-event-id": str(cursor)}
            ) as response:
                rest = await collect(response)
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                everything = await collect(response)
    assert rest[0]["seq"] == cursor + 1
    assert first_part + rest == everything
    assert everything[-1]["type"] == "run.completed"


async def test_after_query_parameter_resumes_like_last_event_id() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=COUNTDOWN)).json()["run_id"]
            await gateway.wait_run(run_id)
            async with client.stream("GET", f"/v1/runs/{run_id}/events?after=7") as response:
                rest = await collect(response)
            # Last-Event-ID (sent by EventSource on reconnect) wins over the URL's ?after=.
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events?after=7", headers={"last-event-id": "9"}
            ) as response:
                later = await collect(response)
    assert rest[0]["seq"] == 8
    assert later[0]["seq"] == 10
    assert rest[2:] == later


async def test_a_cursor_older_than_retention_gets_stream_gap_then_the_retained_events() -> None:
    with running_gateway(retention_max_events=5) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=COUNTDOWN)).json()["run_id"]
            snapshot = await gateway.wait_run(run_id)
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers={"last-event-id": "2"}
            ) as response:
                events = await collect(response)
    last = snapshot["last_seq"]
    gap = events[0]
    assert gap["type"] == "stream.gap"
    assert gap["after"] == 2
    assert gap["next_seq"] == last - 4
    assert gap["seq"] == gap["next_seq"] - 1  # resuming from the gap's id continues correctly
    assert gap["snapshot"]["status"] == "completed"
    assert [e["seq"] for e in events[1:]] == list(range(last - 4, last + 1))
    assert events[-1]["type"] == "run.completed"


async def test_cancel_endpoint_cancels_every_producer_and_ends_the_log_with_run_cancelled() -> None:
    record = ProbeRecord()
    spec = {
        "parallel": [
            {"tool": "probe", "arguments": {"ticks": 1000, "interval": 0.05}},
            {"tool": "sleep", "arguments": {"seconds": 60}},
        ]
    }
    with running_gateway(tools=tools_with_probe(record)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                events = []
                async for event in sse_events(response):
                    events.append(event)
                    started = [e for e in events if e["type"] == "tool.started"]
                    if event["type"] == "tool.started" and len(started) == 2:
                        answer = await client.post(f"/v1/runs/{run_id}/cancel")
                        assert answer.status_code == 200
                        assert answer.json()["status"] == "cancelled"
            again = await client.post(f"/v1/runs/{run_id}/cancel")
    assert events[-1]["type"] == "run.cancelled"
    assert events[-1]["reason"] == "cancelled by client"
    assert record.cancelled == 1
    assert record.cleaned_up == 1
    assert {p["status"] for p in answer.json()["producers"]} == {"cancelled"}
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_finished"


async def test_dropping_the_stream_of_a_post_cancels_the_run() -> None:
    record = ProbeRecord()
    spec = {"parallel": [{"tool": "probe", "arguments": {"ticks": 1000, "interval": 0.05}}]}
    with running_gateway(tools=tools_with_probe(record)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                run_id = response.headers["x-run-id"]
                async for event in sse_events(response):
                    if event["type"] == "tool.delta":
                        break  # leaving the block closes the connection
            snapshot = await gateway.wait_run(run_id)
    assert snapshot["status"] == "cancelled"
    assert snapshot["cancel_reason"] == "last reader disconnected"
    assert record.cancelled == 1
    assert record.cleaned_up == 1


async def test_with_on_disconnect_continue_the_run_completes_and_a_later_reader_gets_it_all() -> (
    None
):
    spec = agent_spec("count down from 10", ["countdown"], on_disconnect="continue")
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                run_id = response.headers["x-run-id"]
                async for event in sse_events(response):
                    if event["type"] == "tool.started":
                        break
            snapshot = await gateway.wait_run(run_id)
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                events = await collect(response)
    assert snapshot["status"] == "completed"
    assert [e["seq"] for e in events] == list(range(1, snapshot["last_seq"] + 1))
    ticks = [e["delta"] for e in events if e["type"] == "tool.delta"]
    assert ticks == [f"{n}\n" for n in range(10, 0, -1)]
    assert events[-1]["type"] == "run.completed"


async def test_ws_run_cancel_cancels_a_run_and_its_producers() -> None:
    record = ProbeRecord()
    spec = {"parallel": [{"tool": "probe", "arguments": {"ticks": 1000, "interval": 0.05}}]}
    with running_gateway(tools=tools_with_probe(record)) as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            ack = json.loads(await ws.recv())
            run_id = ack["run_id"]
            while json.loads(await ws.recv())["type"] != "tool.delta":
                pass
            await ws.send(json.dumps({"type": "run.cancel", "id": 2, "run_id": run_id}))
            messages = []
            while not messages or messages[-1].get("type") != "run.cancelled":
                messages.append(json.loads(await ws.recv()))
    assert {"type": "ack", "id": 2, "command": "run.cancel", "run_id": run_id} in messages
    assert messages[-1]["reason"] == "cancelled by client"
    assert record.cancelled == 1
    assert record.cleaned_up == 1


async def test_closing_the_websocket_cancels_the_runs_it_started() -> None:
    record = ProbeRecord()
    spec = {"parallel": [{"tool": "probe", "arguments": {"ticks": 1000, "interval": 0.05}}]}
    with running_gateway(tools=tools_with_probe(record)) as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": "a", "run": spec}))
            run_id = json.loads(await ws.recv())["run_id"]
            while json.loads(await ws.recv())["type"] != "tool.delta":
                pass
        snapshot = await gateway.wait_run(run_id)
    assert snapshot["status"] == "cancelled"
    assert snapshot["cancel_reason"] == "last reader disconnected"
    assert record.cancelled == 1
