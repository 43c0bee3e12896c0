"""DNS rebinding, against a real gateway: a page whose domain is re-pointed to 127.0.0.1 is
same-origin with an open gateway, so the gateway answers only requests that name it in
``Host`` (loopback's name, an IP address, or one of ``allowed_hosts``). Raw ``Host``
headers from httpx and the ``websockets`` client; the browser's view is in
``tests/browser/test_host_rebinding.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from gateway.auth import hash_key
from tests.support import RunningGateway, agent_spec, running_gateway

REBOUND = "rebound.example"  # a name an attacker points at 127.0.0.1
LONG = agent_spec("sleep 30 seconds", ["sleep"], on_disconnect="continue")
KEY = "key-for-alice"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    """An open gateway: no API keys, on loopback."""
    with running_gateway() as running:
        yield running


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


async def start(gateway: RunningGateway, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        return await client.post("/v1/runs", json=LONG, headers=headers)


# -- HTTP -----------------------------------------------------------------------------------


async def test_an_open_gateway_answers_a_foreign_host_400_host_not_allowed_and_starts_nothing(
    gateway: RunningGateway,
) -> None:
    before = gateway.state.manager.statistics().retained_runs
    answer = await start(gateway, host=f"{REBOUND}:{gateway.port}")
    error = error_of(answer, 400)
    assert error["code"] == "host_not_allowed"
    assert error["type"] == "invalid_request_error"
    assert f"'{REBOUND}'" in error["message"]
    assert "GATEWAY_ALLOWED_HOSTS" in error["message"]
    assert answer.headers["x-request-id"]  # refused inside the request context: logged
    assert gateway.state.manager.statistics().retained_runs == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs/{run_id}"),
        ("GET", "/v1/runs/{run_id}/events"),
        ("POST", "/v1/runs/{run_id}/cancel"),
        ("GET", "/v1/models"),
        ("GET", "/"),
        ("GET", "/web/app.js"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ],
)
async def test_every_endpoint_refuses_a_foreign_host(
    gateway: RunningGateway, method: str, path: str
) -> None:
    run_id = (await start(gateway)).json()["run_id"]
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answer = await client.request(
            method, path.format(run_id=run_id), headers={"host": REBOUND}, json={}
        )
        still = await client.get(f"/v1/runs/{run_id}")
        await client.post(f"/v1/runs/{run_id}/cancel")
    assert error_of(answer, 400)["code"] == "host_not_allowed"
    assert still.json()["status"] == "running"  # not cancelled by the refused request


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}", "localhost"],
)
async def test_loopback_names_reach_the_open_gateway(gateway: RunningGateway, host: str) -> None:
    answer = await start(gateway, host=host.format(port=gateway.port))
    assert answer.status_code == 201, answer.text
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        await client.post(f"/v1/runs/{answer.json()['run_id']}/cancel")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_a_probe_by_the_pod_s_ip_address_is_answered(
    gateway: RunningGateway, path: str
) -> None:
    """An orchestrator's probes and scrapers name the pod's IP: no DNS answer can rebind
    an IP address, so an IP literal is always a name of this gateway."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answer = await client.get(path, headers={"host": "10.1.2.3:8000"})
    assert answer.status_code == 200


async def raw_request(gateway: RunningGateway, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            return await reader.read()  # HTTP/1.0: the server closes after the answer
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_http_1_0_request_without_host_is_served(gateway: RunningGateway) -> None:
    """Browsers always send Host; a client that sends none is no page of a rebound name."""
    answer = await raw_request(gateway, b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_request_with_two_host_headers_is_refused(gateway: RunningGateway) -> None:
    head = b"GET /v1/models HTTP/1.0\r\nHost: localhost\r\nHost: " + REBOUND.encode() + b"\r\n\r\n"
    answer = await raw_request(gateway, head)
    assert answer.startswith(b"HTTP/1.1 400 ")


# -- the WebSocket handshake ------------------------------------------------------------------


async def ws_closes(gateway: RunningGateway) -> int:
    async def count() -> int:
        return gateway.state.reader_closes["ws", "forbidden"]

    return await gateway.call(count())


def connect(gateway: RunningGateway, host: str, **kwargs: Any) -> Any:
    """A WebSocket to the gateway whose handshake says ``Host: host`` (and the page's
    ``Origin`` a browser would send for it)."""
    return websockets.connect(
        f"ws://{host}/v1/ws",
        host="127.0.0.1",
        port=gateway.port,
        origin=f"http://{host}",
        open_timeout=5,
        proxy=None,
        **kwargs,
    )


async def test_a_websocket_handshake_for_a_foreign_host_is_refused_403_and_counted(
    gateway: RunningGateway,
) -> None:
    before = await ws_closes(gateway)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(gateway, f"{REBOUND}:{gateway.port}"):
            pass
    assert refused.value.response.status_code == 403
    assert await ws_closes(gateway) == before + 1


async def test_a_websocket_for_a_foreign_host_is_refused_without_an_origin_too(
    gateway: RunningGateway,
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://{REBOUND}:{gateway.port}/v1/ws",
            host="127.0.0.1",
            port=gateway.port,
            open_timeout=5,
            proxy=None,
        ):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_a_websocket_of_a_loopback_page_is_accepted(
    gateway: RunningGateway, name: str
) -> None:
    async with connect(gateway, f"{name}:{gateway.port}") as ws:
        await ws.send('{"type": "ping", "id": 1}')
        assert '"command":"ping"' in (await ws.recv()).replace(" ", "")


# -- configured hosts, and keys -------------------------------------------------------------


async def test_configured_hosts_are_answered_and_others_still_refused() -> None:
    with running_gateway(allowed_hosts=["gw.example.com", "*.apps.example"]) as gateway:
        exact = await start(gateway, host=f"gw.example.com:{gateway.port}")
        wildcard = await start(gateway, host="x.apps.example")
        other = await start(gateway, host=REBOUND)
        async with connect(gateway, f"a.apps.example:{gateway.port}") as ws:
            await ws.send('{"type": "ping", "id": 1}')
            await ws.recv()
        with pytest.raises(websockets.InvalidStatus):
            async with connect(gateway, f"{REBOUND}:{gateway.port}"):
                pass
    assert exact.status_code == wildcard.status_code == 201
    assert error_of(other, 400)["code"] == "host_not_allowed"


async def test_allowed_hosts_star_answers_any_host() -> None:
    with running_gateway(allowed_hosts=["*"]) as gateway:
        answer = await start(gateway, host=REBOUND)
    assert answer.status_code == 201


async def test_with_api_keys_and_no_allowed_hosts_any_host_is_answered() -> None:
    """The keys protect the gateway: a rebound page has none to send."""
    with running_gateway(api_keys={"alice": hash_key(KEY)}) as gateway:
        anonymous = await start(gateway, host=REBOUND)
        with_key = await start(gateway, host=REBOUND, authorization=f"Bearer {KEY}")
    assert anonymous.status_code == 401
    assert with_key.status_code == 201


async def test_with_api_keys_and_allowed_hosts_a_foreign_host_is_refused_even_with_a_key() -> None:
    keys = {"alice": hash_key(KEY)}
    with running_gateway(api_keys=keys, allowed_hosts=["gw.example.com"]) as gateway:
        foreign = await start(gateway, host=REBOUND, authorization=f"Bearer {KEY}")
        listed = await start(gateway, host="gw.example.com", authorization=f"Bearer {KEY}")
    assert error_of(foreign, 400)["code"] == "host_not_allowed"
    assert listed.status_code == 201
