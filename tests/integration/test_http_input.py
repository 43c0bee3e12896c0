"""Bad input to the HTTP endpoints gets a 4xx with a JSON body saying what was wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import RunningGateway, agent_spec, running_gateway


@pytest.fixture(scope="module")
def gateway() -> AsyncIterator[RunningGateway]:
    with running_gateway(max_body_bytes=4096) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (
            agent_spec("hi", [], model="gpt-nope"),
            400,
            "invalid_request",
            "unknown model 'gpt-nope'",
        ),
        (
            agent_spec("hi", ["clock", "teleport"]),
            400,
            "invalid_request",
            "unknown tool 'teleport'",
        ),
        ({"model": "demo"}, 400, "invalid_request", "'messages' must hold at least one"),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            400,
            "invalid_request",
            "give 'model' and 'messages'",
        ),
        (agent_spec("hi", [], max_steps="many"), 400, "invalid_request", "max_steps"),
        (agent_spec("hi", [], max_steps=0), 400, "invalid_request", "max_steps"),
        (agent_spec("hi", "clock"), 400, "invalid_request", "tools"),
        (agent_spec("hi", [], on_disconnect="later"), 400, "invalid_request", "on_disconnect"),
        (agent_spec("hi", [], temperature=2), 400, "invalid_request", "temperature"),
        (
            {"model": "demo", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "invalid_request",
            "messages.0.role",
        ),
        ({"parallel": []}, 400, "invalid_request", "parallel"),
        ({"parallel": [{"tool": "nope"}]}, 400, "invalid_request", "unknown tool 'nope'"),
        ({"parallel": [{"model": "demo", "messages": []}]}, 400, "invalid_request", "parallel"),
        (
            agent_spec("hi", [], client_tools=[{"name": "x"}]),
            400,
            "invalid_request",
            "start the run on the WebSocket",
        ),
        ([1, 2, 3], 400, "invalid_request", "body"),
    ],
)
async def test_an_invalid_run_spec_is_refused_with_what_was_wrong(
    client: httpx.AsyncClient, body: Any, status: int, code: str, says: str
) -> None:
    response = await client.post("/v1/runs", json=body)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert says in error["message"]


async def test_malformed_json_is_a_400_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/runs", content=b'{"model": "demo",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


async def test_an_oversized_body_is_a_413(client: httpx.AsyncClient) -> None:
    big = agent_spec("x" * 5000, [])
    response = await client.post("/v1/runs", json=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_an_oversized_chunked_body_is_a_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "demo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    response = await client.post(
        "/v1/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


@pytest.mark.parametrize("path", ["/v1/runs/run_missing", "/v1/runs/run_missing/events"])
async def test_an_unknown_run_is_a_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_cancelling_an_unknown_run_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/runs/run_missing/cancel")
    assert response.status_code == 404


async def test_a_bad_cursor_is_a_400(client: httpx.AsyncClient, gateway: RunningGateway) -> None:
    run_id = (await client.post("/v1/runs", json=agent_spec("hi", []))).json()["run_id"]
    await gateway.wait_run(run_id)
    not_a_number = await client.get(f"/v1/runs/{run_id}/events", headers={"last-event-id": "seven"})
    negative = await client.get(f"/v1/runs/{run_id}/events?after=-1")
    # Ahead of a run still running (past a finished run's end, a resume is a 204).
    spec = agent_spec("sleep 30 seconds", ["sleep"], on_disconnect="continue")
    running = (await client.post("/v1/runs", json=spec)).json()["run_id"]
    last_seq = (await client.get(f"/v1/runs/{running}")).json()["last_seq"]
    ahead = await client.get(f"/v1/runs/{running}/events?after={last_seq + 1000}")
    await client.post(f"/v1/runs/{running}/cancel")
    assert not_a_number.status_code == 400
    assert "Last-Event-ID" in error_of(not_a_number)["message"]
    assert ahead.status_code == 400
    assert "ahead of run" in error_of(ahead)["message"]
    assert negative.status_code == 400


async def test_an_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_a_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/runs")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


async def test_models_and_tools_are_listed(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    tools = (await client.get("/v1/tools")).json()
    assert [m["id"] for m in models["data"]] == ["demo"]
    assert {t["name"] for t in tools["data"]} == {"clock", "calculator", "countdown", "sleep"}
    assert all(t["parameters"]["type"] == "object" for t in tools["data"])


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
