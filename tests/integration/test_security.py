"""API keys, ownership, stream tokens, origins and limits, against a real gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets

from gateway.auth import hash_key
from tests.gateway_process import eventually
from tests.support import SSE, RunningGateway, agent_spec, collect, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis (the shared
# gateway below through ``module_store``, the others through ``backend``).
ON_BOTH_BACKENDS = pytest.mark.usefixtures("backend")

KEY_A, KEY_B = "key-for-alice", "key-for-bob"
KEYS = {"alice": hash_key(KEY_A), "bob": hash_key(KEY_B)}
LONG = agent_spec("sleep 30 seconds", ["sleep"], on_disconnect="continue")


def slots_free(gateway: RunningGateway, owner: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await gateway.open_streams(owner) == 0

    return check


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def gateway(module_store: str) -> Iterator[RunningGateway]:
    store = {"redis_url": module_store} if module_store else {}
    with running_gateway(api_keys=KEYS, stream_token_ttl=60, **store) as running:
        yield running


async def start(gateway: RunningGateway, key: str, spec: dict[str, Any] = LONG) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answer = await client.post("/v1/runs", json=spec, headers=auth(key))
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"x-api-key": "wrong"},
        {"authorization": "Basic a2V5LWZvci1hbGljZQ=="},
    ],
    ids=["none", "wrong-bearer", "wrong-x-api-key", "basic"],
)
async def test_without_a_valid_key_every_run_endpoint_answers_401(
    gateway: RunningGateway, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answers = [
            await client.post("/v1/runs", json=agent_spec("hi", []), headers=headers),
            await client.get("/v1/runs/run_x", headers=headers),
            await client.get("/v1/runs/run_x/events", headers=headers),
            await client.post("/v1/runs/run_x/cancel", headers=headers),
            await client.get("/v1/models", headers=headers),
            await client.post(
                "/v1/chat/completions",
                headers=headers,
                json={"model": "demo", "messages": [{"role": "user", "content": "x"}]},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_health_and_metrics_need_no_key(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_x_api_key_works_like_bearer(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answer = await client.get("/v1/models", headers={"x-api-key": KEY_B})
    assert answer.status_code == 200


async def test_another_keys_run_is_not_found_over_http(gateway: RunningGateway) -> None:
    run_id = (await start(gateway, KEY_A))["run_id"]
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        as_bob = [
            await client.get(f"/v1/runs/{run_id}", headers=auth(KEY_B)),
            await client.get(f"/v1/runs/{run_id}/events", headers=auth(KEY_B)),
            await client.post(f"/v1/runs/{run_id}/cancel", headers=auth(KEY_B)),
        ]
        missing = await client.get("/v1/runs/run_0000000000000000", headers=auth(KEY_B))
        as_alice = await client.get(f"/v1/runs/{run_id}", headers=auth(KEY_A))
        await client.post(f"/v1/runs/{run_id}/cancel", headers=auth(KEY_A))
    for answer in as_bob:
        assert answer.status_code == 404
        # Exactly as for a run that does not exist (but for the id).
        assert answer.json()["error"]["code"] == missing.json()["error"]["code"]
    assert as_alice.status_code == 200
    assert as_alice.json()["owner"] == "alice"


async def test_another_keys_run_is_not_found_over_websocket(gateway: RunningGateway) -> None:
    run_id = (await start(gateway, KEY_A))["run_id"]
    async with websockets.connect(gateway.ws_url, additional_headers=auth(KEY_B)) as ws:
        answers = []
        for command in (
            {"type": "subscribe", "id": 1, "run_id": run_id},
            {"type": "run.cancel", "id": 2, "run_id": run_id},
            {"type": "tool.result", "id": 3, "run_id": run_id, "call_id": "c", "output": 1},
        ):
            await ws.send(json.dumps(command))
            answers.append(json.loads(await ws.recv()))
    assert [a["code"] for a in answers] == ["not_found"] * 3
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        await client.post(f"/v1/runs/{run_id}/cancel", headers=auth(KEY_A))


def not_run_ids(run_id: str) -> list[str]:
    """Ids that are not a run's, made of a real one: with Redis, ``<id>:events`` names the
    run's event stream (a key of another type than a run's)."""
    return [f"{run_id}:events", f"{run_id}:x", run_id.upper(), run_id + "0", run_id[4:]]


async def test_an_id_not_shaped_like_a_run_id_is_not_found_over_http(
    gateway: RunningGateway,
) -> None:
    body = await start(gateway, KEY_A)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        for run_id in not_run_ids(body["run_id"]):
            answers = [
                await client.get(f"/v1/runs/{run_id}", headers=auth(KEY_A)),
                await client.get(f"/v1/runs/{run_id}/events", headers=auth(KEY_A)),
                await client.get(f"/v1/runs/{run_id}/events?token={body['token']}"),
                await client.post(f"/v1/runs/{run_id}/cancel", headers=auth(KEY_A)),
            ]
            for answer in answers:
                assert answer.status_code == 404, (run_id, answer.text)
                assert answer.json()["error"]["code"] == "not_found"
        assert (await client.get(f"/v1/runs/{body['run_id']}", headers=auth(KEY_A))).is_success
        await client.post(f"/v1/runs/{body['run_id']}/cancel", headers=auth(KEY_A))


async def test_an_id_not_shaped_like_a_run_id_is_not_found_over_websocket(
    gateway: RunningGateway,
) -> None:
    real = (await start(gateway, KEY_A))["run_id"]
    async with websockets.connect(gateway.ws_url, additional_headers=auth(KEY_A)) as ws:
        for run_id in not_run_ids(real):
            answers = []
            for command in (
                {"type": "subscribe", "id": 1, "run_id": run_id},
                {"type": "run.cancel", "id": 2, "run_id": run_id},
                {"type": "tool.result", "id": 3, "run_id": run_id, "call_id": "c", "output": 1},
            ):
                await ws.send(json.dumps(command))
                answers.append(json.loads(await ws.recv()))
            assert [a["code"] for a in answers] == ["not_found"] * 3, (run_id, answers)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        await client.post(f"/v1/runs/{real}/cancel", headers=auth(KEY_A))


async def test_a_websocket_authenticates_with_its_first_message(gateway: RunningGateway) -> None:
    async with websockets.connect(gateway.ws_url) as ws:
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        refused = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "auth", "id": 2, "key": KEY_A}))
        accepted = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "run.start", "id": 3, "run": agent_spec("hi", [])}))
        started = json.loads(await ws.recv())
    assert refused["code"] == "unauthorized"
    assert accepted == {"type": "ack", "id": 2, "command": "auth"}
    assert started["type"] == "ack"


async def test_a_websocket_with_a_wrong_key_header_is_closed_4401(
    gateway: RunningGateway,
) -> None:
    async with websockets.connect(gateway.ws_url, additional_headers=auth("nope")) as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert error["code"] == "unauthorized"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_three_failed_websocket_authentications_close_the_session(
    gateway: RunningGateway,
) -> None:
    async with websockets.connect(gateway.ws_url) as ws:
        for attempt in range(3):
            await ws.send(json.dumps({"type": "auth", "id": attempt, "key": "bad"}))
        errors = [json.loads(await ws.recv()) for _ in range(3)]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert [e["code"] for e in errors] == ["unauthorized"] * 3
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_stream_token_opens_its_own_run_and_nothing_else(
    gateway: RunningGateway,
) -> None:
    mine = await start(gateway, KEY_A, agent_spec("hi", []))
    other = await start(gateway, KEY_A, agent_spec("hello", []))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        url = f"{mine['events_url']}?token={mine['token']}"
        async with client.stream("GET", url) as response:  # no key: what EventSource does
            events = await collect(response)
        wrong_run = await client.get(f"{other['events_url']}?token={mine['token']}")
        not_events = await client.get(f"{mine['url']}?token={mine['token']}")
        tampered = await client.get(f"{mine['events_url']}?token={mine['token']}x")
    assert events[-1]["type"] == "run.completed"
    assert mine["token_expires_in"] == 60
    assert wrong_run.status_code == 401
    assert not_events.status_code == 401  # only the events endpoint takes tokens
    assert tampered.status_code == 401


@ON_BOTH_BACKENDS
async def test_an_expired_stream_token_is_refused() -> None:
    with running_gateway(api_keys=KEYS, stream_token_ttl=0.001) as gateway:
        body = await start(gateway, KEY_A, agent_spec("hi", []))
        expiry = int(body["token"].split(".")[0])
        # Tokens carry whole seconds: wait for this one to pass.
        while time.time() <= expiry:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            answer = await client.get(f"{body['events_url']}?token={body['token']}")
    assert answer.status_code == 401
    assert "expired" in answer.json()["error"]["message"]


async def test_a_websocket_from_a_foreign_origin_is_refused(gateway: RunningGateway) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(gateway.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    same = f"http://127.0.0.1:{gateway.port}"
    async with websockets.connect(gateway.ws_url, origin=same, additional_headers=auth(KEY_A)):
        pass


@ON_BOTH_BACKENDS
async def test_configured_cors_origins_get_cors_headers_and_may_open_a_websocket() -> None:
    origin = "https://app.example"
    with running_gateway(cors_origins=[origin]) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            preflight = await client.options(
                "/v1/runs",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization,content-type",
                },
            )
            other = await client.get("/v1/models", headers={"origin": "https://other.example"})
        async with websockets.connect(gateway.ws_url, origin=origin):
            pass
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in other.headers


@ON_BOTH_BACKENDS
async def test_runs_per_key_per_minute_answer_429_with_retry_after() -> None:
    with running_gateway(api_keys=KEYS, runs_per_key_per_minute=2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            answers = [
                await client.post("/v1/runs", json=agent_spec("hi", []), headers=auth(KEY_A))
                for _ in range(3)
            ]
            bob = await client.post("/v1/runs", json=agent_spec("hi", []), headers=auth(KEY_B))
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert bob.status_code == 201  # each key has its own budget


@ON_BOTH_BACKENDS
async def test_concurrent_streams_per_key_are_limited_and_given_back() -> None:
    with running_gateway(api_keys=KEYS, max_streams_per_key=1) as gateway:
        run_id = (await start(gateway, KEY_A))["run_id"]
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers=auth(KEY_A)
            ) as first:
                assert first.status_code == 200
                second = await client.get(f"/v1/runs/{run_id}/events", headers=auth(KEY_A))
            await client.post(f"/v1/runs/{run_id}/cancel", headers=auth(KEY_A))
            # The first stream is closed: its slot is free again once the server has seen
            # it go (it gives the slot back as it tears down, after the client left).
            await eventually(slots_free(gateway, "alice"), timeout=5, what="alice's slot back")
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers=auth(KEY_A)
            ) as third:
                events = await collect(third)
    assert second.status_code == 429
    assert "streams open" in second.json()["error"]["message"]
    assert events[-1]["type"] == "run.cancelled"


@ON_BOTH_BACKENDS
@pytest.mark.parametrize(
    ("settings", "spec", "says"),
    [
        (
            {"max_messages_per_run": 2},
            {"model": "demo", "messages": [{"role": "user", "content": "x"}] * 3},
            "3 messages",
        ),
        (
            {"max_tool_arguments_bytes": 100},
            {"parallel": [{"tool": "calculator", "arguments": {"expression": "1" * 200}}]},
            "tool arguments",
        ),
    ],
    ids=["messages", "tool-arguments"],
)
async def test_a_spec_past_a_size_limit_gets_413(
    settings: dict[str, Any], spec: dict[str, Any], says: str
) -> None:
    with running_gateway(**settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            answer = await client.post("/v1/runs", json=spec)
    assert answer.status_code == 413
    assert says in answer.json()["error"]["message"]


@ON_BOTH_BACKENDS
async def test_websocket_message_size_and_rate_limits_answer_errors_and_keep_the_session() -> None:
    with running_gateway(
        ws_max_message_bytes=1024, ws_messages_per_second=1, ws_message_burst=3
    ) as gateway:
        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "ping", "id": "big", "pad": "x" * 2000}))
            too_large = json.loads(await ws.recv())
            for index in range(4):
                await ws.send(json.dumps({"type": "ping", "id": index}))
            answers = [json.loads(await ws.recv()) for _ in range(4)]
    assert too_large["code"] == "message_too_large"
    # A message refused for its size takes nothing from the rate: a burst of 3 goes through.
    assert [a["type"] for a in answers[:3]] == ["ack", "ack", "ack"]
    assert answers[3]["code"] == "rate_limited"
    assert answers[3]["retry_after"] > 0


@ON_BOTH_BACKENDS
async def test_streams_never_leak_their_slot_after_many_aborts() -> None:
    with running_gateway(api_keys=KEYS) as gateway:
        run_id = (
            await start(
                gateway,
                KEY_A,
                agent_spec("count down from 50", ["countdown"], on_disconnect="continue"),
            )
        )["run_id"]
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            for _ in range(20):
                async with client.stream(
                    "GET", f"/v1/runs/{run_id}/events", headers={**auth(KEY_A), **SSE}
                ) as response:
                    async for _chunk in response.aiter_raw():
                        break
            await gateway.wait_run(run_id)

        # Every aborted stream gave its slot back once the server saw the disconnect.
        await eventually(slots_free(gateway, "alice"), timeout=5, what="alice's slots back")


@ON_BOTH_BACKENDS
async def test_a_streamed_start_refused_for_the_stream_limit_starts_no_run() -> None:
    spec = {"parallel": [{"tool": "countdown", "arguments": {"start": 1000, "interval": 0.01}}]}
    with running_gateway(max_streams_per_key=1) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as first:
                assert first.status_code == 200
                refused = await client.post("/v1/runs", json=spec, headers=SSE)
                chat = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "demo",
                        "messages": [{"role": "user", "content": "hi"}],
                        "stream": True,
                    },
                )
                active = (await client.get("/readyz")).json()["active_runs"]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert chat.status_code == 429
    assert active == 1  # only the first stream's run: the refused ones started nothing


@ON_BOTH_BACKENDS
async def test_a_websocket_over_the_key_s_stream_limit_is_closed_1013_not_4401() -> None:
    with running_gateway(api_keys=KEYS, max_streams_per_key=1) as gateway:
        url = gateway.ws_url
        async with websockets.connect(url, additional_headers=auth(KEY_A)) as first:
            await first.send(json.dumps({"type": "ping", "id": 1}))
            await first.recv()  # the first session holds the key's only slot
            async with websockets.connect(url, additional_headers=auth(KEY_A)) as second:
                error = json.loads(await second.recv())
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await second.recv()
    assert error["type"] == "error"
    assert error["code"] == "limit_exceeded"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
