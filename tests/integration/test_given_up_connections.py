"""A connection the gateway gives up on is really gone: reset once its close cannot drain,
seen from the kernel's side, on SSE in every face and on the WebSocket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.integration.test_slow_readers import BIG_RUN, StalledWebSocket
from tests.sockets import connect, eventually, http_request, receive_all, server_side
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import Reply, UpstreamServer, chat_chunk

pytestmark = pytest.mark.usefixtures("backend")

GIVE_UP = {
    "send_timeout": 0.5,
    "close_linger": 0.3,
    "ws_close_timeout": 0.3,
    "retention_max_events": 100_000,
    "countdown_interval": 0,
}
WORDS = 20_000  # chunks of the upstream's answer: megabytes for a reader that never reads


def long_reply() -> Reply:
    chunks = b"".join(chat_chunk({"content": f"word{i} "}) for i in range(WORDS))
    return Reply(steps=[chat_chunk({"role": "assistant", "content": ""}), chunks])


async def native_events(gateway: RunningGateway, client: httpx.AsyncClient) -> bytes:
    started = await client.post("/v1/runs", json={**BIG_RUN, "on_disconnect": "continue"})
    return http_request("GET", started.json()["events_url"])


async def native_stream(gateway: RunningGateway, client: httpx.AsyncClient) -> bytes:
    return http_request(
        "POST", "/v1/runs", json.dumps(BIG_RUN).encode(), accept="text/event-stream"
    )


async def chat_completions(gateway: RunningGateway, client: httpx.AsyncClient) -> bytes:
    body = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return http_request("POST", "/v1/chat/completions", json.dumps(body).encode())


async def agui(gateway: RunningGateway, client: httpx.AsyncClient) -> bytes:
    body = {
        "threadId": "t",
        "runId": "r",
        "state": {},
        "messages": [{"id": "u1", "role": "user", "content": "count down from 40000"}],
        "tools": [],
        "context": [],
        "forwardedProps": {"tools": ["countdown"]},
    }
    return http_request("POST", "/v1/ag-ui", json.dumps(body).encode(), accept="text/event-stream")


FACES: dict[str, Callable[[RunningGateway, httpx.AsyncClient], Awaitable[bytes]]] = {
    "events": native_events,
    "runs-sse": native_stream,
    "chat-completions": chat_completions,
    "ag-ui": agui,
}


def gateway_for(upstream: UpstreamServer, **settings: Any) -> Any:
    upstream.script(long_reply())
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    return running_gateway(routes={"up": route}, **{**GIVE_UP, **settings})


def peer_port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("face", FACES)
async def test_a_stalled_sse_reader_is_reset_and_its_socket_is_gone(
    upstream: UpstreamServer, face: str
) -> None:
    with gateway_for(upstream) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            request = await FACES[face](gateway, client)
        stalled = await connect(gateway.port, receive_buffer=4096)
        try:
            await stalled_send(stalled, request)
            await eventually(lambda: gateway.state.reader_closes["sse", "slow"] == 1)
            # The kernel's word: the server's side of that connection is gone, not left
            # ESTABLISHED (or FIN_WAIT1) with what its peer never read.
            await eventually(lambda: peer_port(stalled) not in server_side(gateway.port))
            received, ended = await receive_all(stalled)
        finally:
            stalled.close()
        await eventually(lambda: gateway.state.connections.open == 0)
    assert received.startswith(b"HTTP/1.1 200")
    assert ended == "reset"
    assert gateway.state.connections.closed["reset"] == 1


async def test_a_stalled_websocket_peer_is_reset_once_its_close_cannot_be_delivered() -> None:
    with running_gateway(**GIVE_UP) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=BIG_RUN)).json()["run_id"]
        stalled = await StalledWebSocket.connect(gateway.port)
        try:
            await stalled.send({"type": "subscribe", "id": 1, "run_id": run_id})
            await eventually(lambda: gateway.state.reader_closes["ws", "slow"] == 1)
            await eventually(lambda: peer_port(stalled.sock) not in server_side(gateway.port))
            _, ended = await receive_all(stalled.sock)
        finally:
            stalled.sock.close()
        await eventually(lambda: gateway.state.connections.open == 0)
    assert ended == "reset"
    assert gateway.state.connections.closed["reset"] == 1


async def test_a_stalled_reader_does_not_outlive_a_gateway_that_stops() -> None:
    gateway = running_gateway(**{**GIVE_UP, "send_timeout": 60, "shutdown_grace": 0.1})
    with gateway as running:
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as client:
            request = await native_events(running, client)
        stalled = await connect(running.port, receive_buffer=4096)
        await stalled_send(stalled, request)
        await eventually(lambda: bool(server_side(running.port)))
        port = running.port
    try:
        # Stopped past its grace with the reader's data still queued: reset, not orphaned.
        await eventually(lambda: peer_port(stalled) not in server_side(port))
        _, ended = await receive_all(stalled)
    finally:
        stalled.close()
    assert ended == "reset"


async def stalled_send(sock: socket.socket, request: bytes) -> None:
    """Send the request, then never read."""
    await asyncio.get_running_loop().sock_sendall(sock, request)
