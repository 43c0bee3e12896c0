"""A reader that stops reading is cut off; nobody else notices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.support import collect, running_gateway

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")

BIG_RUN = {"parallel": [{"tool": "countdown", "arguments": {"start": 40000, "interval": 0}}]}


async def open_stalled_sse_reader(port: int, run_id: str) -> socket.socket:
    """A raw HTTP client with a tiny receive buffer that reads nothing after its request."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    await loop.sock_sendall(sock, request)
    return sock


async def drain(sock: socket.socket) -> bytes:
    """What the socket receives until the connection ends (closed, or reset by a server
    that gave up waiting for it to read)."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            received += chunk
    return bytes(received)


async def test_a_stalled_sse_reader_is_disconnected_while_another_reader_gets_every_event() -> None:
    with running_gateway(send_timeout=0.5, retention_max_events=100_000) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            run_id = (await client.post("/v1/runs", json=BIG_RUN)).json()["run_id"]
            stalled = await open_stalled_sse_reader(gateway.port, run_id)
            try:
                async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                    events = await collect(response)
                snapshot = await gateway.wait_run(run_id)
                received = await drain(stalled)  # what it gets before the server cut it off
            finally:
                stalled.close()
    assert [e["seq"] for e in events] == list(range(1, snapshot["last_seq"] + 1))
    assert events[-1]["type"] == "run.completed"
    assert b"HTTP/1.1 200" in received
    assert b"run.completed" not in received  # cut off, not finished
    assert gateway.state.reader_closes["sse", "slow"] == 1


async def test_a_stalled_websocket_reader_is_closed_with_1013() -> None:
    with running_gateway(send_timeout=0.5, retention_max_events=100_000) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            run_id = (await client.post("/v1/runs", json=BIG_RUN)).json()["run_id"]
            stalled = await StalledWebSocket.connect(gateway.port)
            try:
                await stalled.send({"type": "subscribe", "id": 1, "run_id": run_id})
                async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                    events = await collect(response)
                await gateway.wait_run(run_id)
                await wait_until(lambda: gateway.state.reader_closes["ws", "slow"] == 1)
                # Reading again now, the peer gets what was buffered and then the close frame.
                close = await stalled.read_until_close()
            finally:
                stalled.sock.close()
    assert events[-1]["type"] == "run.completed"
    assert close.code == 1013
    assert "slow reader" in close.reason


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a counter on the server's thread)
            await asyncio.sleep(0.01)


class StalledWebSocket:
    """A WebSocket client (websockets' sans-I/O protocol on a raw socket with a tiny receive
    buffer) that reads only when asked to."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol

    @classmethod
    async def connect(cls, port: int) -> StalledWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/v1/ws"), max_size=None)
        protocol.send_request(protocol.connect())
        self = cls(sock, protocol)
        await self._flush()
        while not protocol.handshake_exc and protocol.state is State.CONNECTING:
            protocol.receive_data(await loop.sock_recv(sock, 4096))
        assert protocol.state is State.OPEN
        protocol.events_received()
        return self

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    async def send(self, command: dict[str, object]) -> None:
        self.protocol.send_text(json.dumps(command).encode())
        await self._flush()

    async def read_until_close(self) -> Close:
        loop = asyncio.get_running_loop()
        while True:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20), 10)
            if not data:
                raise AssertionError("the connection ended without a close frame")
            self.protocol.receive_data(data)
            for frame in self.protocol.events_received():
                if frame.opcode is Opcode.CLOSE:
                    return Close.parse(frame.data)
            await self._flush()  # answer pings
