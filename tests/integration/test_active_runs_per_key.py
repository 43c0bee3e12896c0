"""One key cannot take every run the gateway has room for: past ``max_active_runs_per_key``
runs queued or running (detached ones included), a start with that key is a 429 with
Retry-After on every way of starting a run, while other keys still start theirs; the slot
comes back however the run ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.gateway_process import api_keys
from tests.support import SSE, RunningGateway, agent_spec, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")

KEYS = api_keys("k1", "k2")
SLEEPING = agent_spec("sleep 60 seconds", ["sleep"], on_disconnect="continue")


def client(gateway: RunningGateway, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


async def start(client: httpx.AsyncClient, spec: dict[str, Any] = SLEEPING) -> str:
    answer = await client.post("/v1/runs", json=spec)
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def assert_over_the_limit(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert error["type"] == "rate_limit_error"
    assert "max_active_runs_per_key" in error["message"]


async def active_runs_become(gateway: RunningGateway, owner: str, count: int) -> None:
    """Wait until ``owner`` holds ``count`` active-run slots (with Redis, a run's slot goes
    back in a round trip after its end)."""
    async with asyncio.timeout(10):
        while await gateway.active_runs(owner) != count:  # noqa: ASYNC110 (Redis or the server)
            await asyncio.sleep(0.01)


async def test_a_key_at_its_limit_gets_a_429_while_another_key_still_starts_runs() -> None:
    with running_gateway(api_keys=KEYS, max_active_runs_per_key=2) as gateway:
        async with client(gateway, "k1") as k1, client(gateway, "k2") as k2:
            first, second = await start(k1), await start(k1)
            assert_over_the_limit(await k1.post("/v1/runs", json=SLEEPING))
            other = await start(k2)
            assert await gateway.active_runs("k1") == 2
            assert await gateway.active_runs("k2") == 1

            assert (await k1.post(f"/v1/runs/{first}/cancel")).status_code == 200
            await active_runs_become(gateway, "k1", 1)
            third = await start(k1)
            assert_over_the_limit(await k1.post("/v1/runs", json=SLEEPING))

            for run_id, owner in ((second, k1), (third, k1), (other, k2)):
                await owner.post(f"/v1/runs/{run_id}/cancel")
        await active_runs_become(gateway, "k1", 0)
        await active_runs_become(gateway, "k2", 0)


CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
AGUI = {
    "threadId": "t1",
    "runId": "r1",
    "messages": [{"id": "m1", "role": "user", "content": "hi"}],
    "forwardedProps": {"model": "demo"},
}
HTTP_STARTS = {
    "runs, JSON": ("/v1/runs", agent_spec("hi", []), {}),
    "runs, SSE": ("/v1/runs", agent_spec("hi", []), SSE),
    "chat completions": ("/v1/chat/completions", CHAT, {}),
    "chat completions, streamed": ("/v1/chat/completions", {**CHAT, "stream": True}, {}),
    "AG-UI": ("/v1/ag-ui", AGUI, SSE),
}


@pytest.mark.parametrize(("path", "body", "headers"), HTTP_STARTS.values(), ids=HTTP_STARTS)
async def test_every_http_face_answers_a_429_past_the_key_s_limit(
    path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    with running_gateway(api_keys=KEYS, max_active_runs_per_key=1) as gateway:
        async with client(gateway, "k1") as k1, client(gateway, "k2") as k2:
            held = await start(k1)
            assert_over_the_limit(await k1.post(path, json=body, headers=headers))
            async with k2.stream("POST", path, json=body, headers=headers) as answer:
                assert answer.status_code in (200, 201)  # 201: a run started for JSON
                await answer.aread()
            await k1.post(f"/v1/runs/{held}/cancel")
        # Nothing was started for the refused request: only the held run and k2's.
        assert gateway.state.manager.statistics().retained_runs == 2


async def test_the_websocket_answers_an_error_past_the_key_s_limit_and_goes_on() -> None:
    with running_gateway(api_keys=KEYS, max_active_runs_per_key=1) as gateway:
        async with client(gateway, "k1") as k1:
            held = await start(k1)
            headers = {"authorization": "Bearer k1"}
            async with websockets.connect(
                gateway.ws_url, additional_headers=headers, open_timeout=5
            ) as ws:
                await ws.send(json.dumps({"type": "run.start", "id": 1, "run": SLEEPING}))
                error = json.loads(await ws.recv())
                assert (error["type"], error["id"], error["code"]) == ("error", 1, "limit_exceeded")
                assert "max_active_runs_per_key" in error["message"]
                await k1.post(f"/v1/runs/{held}/cancel")
                await active_runs_become(gateway, "k1", 0)
                spec = agent_spec("hi", [])
                await ws.send(json.dumps({"type": "run.start", "id": 2, "run": spec}))
                ack = json.loads(await ws.recv())
                assert (ack["type"], ack["id"]) == ("ack", 2)
                while json.loads(await ws.recv())["type"] != "run.completed":
                    pass
        await active_runs_become(gateway, "k1", 0)


async def end_by_cancel(gateway: RunningGateway, k1: httpx.AsyncClient) -> str:
    run_id = await start(k1)
    await k1.post(f"/v1/runs/{run_id}/cancel")
    return run_id


async def end_by_leaving(gateway: RunningGateway, k1: httpx.AsyncClient) -> str:
    spec = agent_spec("sleep 60 seconds", ["sleep"])  # a stream's run is cancelled with it
    async with k1.stream("POST", "/v1/runs", json=spec, headers=SSE) as answer:
        run_id = answer.headers["x-run-id"]
        async for line in answer.aiter_lines():
            if '"tool.started"' in line:
                break
    return run_id


async def end_by_completing(gateway: RunningGateway, k1: httpx.AsyncClient) -> str:
    return await start(k1, agent_spec("what is 6 * 7", ["calculator"]))


async def end_by_failing(gateway: RunningGateway, k1: httpx.AsyncClient) -> str:
    # Two tool calls in one step, past max_tool_calls_per_step=1: the run fails.
    return await start(k1, agent_spec("what time is it? count down from 2", ["clock", "countdown"]))


ENDINGS = {
    "cancelled": (end_by_cancel, "cancelled"),
    "cancelled by its last reader leaving": (end_by_leaving, "cancelled"),
    "completed": (end_by_completing, "completed"),
    "failed": (end_by_failing, "failed"),
}


@pytest.mark.parametrize(("end", "status"), ENDINGS.values(), ids=ENDINGS)
async def test_the_slot_comes_back_however_the_run_ends(end: Any, status: str) -> None:
    with running_gateway(
        api_keys=KEYS, max_active_runs_per_key=1, max_tool_calls_per_step=1
    ) as gateway:
        async with client(gateway, "k1") as k1:
            run_id = await end(gateway, k1)
            assert (await gateway.wait_run(run_id))["status"] == status
            await active_runs_become(gateway, "k1", 0)
            again = await start(k1)
            await k1.post(f"/v1/runs/{again}/cancel")
        await active_runs_become(gateway, "k1", 0)
