"""No connection is held before its request: deadlines for the first byte, the head and the
body, an idle timeout between requests, and a cap on open connections with a clear refusal
(slowloris, and a careless client). Checked from the kernel's side too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from tests.sockets import connect, eventually, http_request, receive_all, server_side
from tests.support import running_gateway


def assert_answered_408_and_closed(received: bytes, ended: str) -> None:
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert ended == "closed"


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def test_a_connection_that_sends_nothing_is_closed_by_the_first_byte_deadline() -> None:
    with running_gateway(first_byte_timeout=0.3) as gateway:
        sock = await connect(gateway.port)
        try:
            received, ended = await receive_all(sock)
            local_port = sock.getsockname()[1]
        finally:
            sock.close()
        assert local_port not in server_side(gateway.port)
    assert (received, ended) == (b"", "closed")
    assert gateway.state.connections.closed["first_byte"] == 1


async def test_a_request_head_that_trickles_is_answered_408_and_closed() -> None:
    with running_gateway(header_timeout=0.5) as gateway:
        sock = await connect(gateway.port)
        try:
            await send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

            async def trickle() -> None:
                with contextlib.suppress(OSError):
                    for byte in b"X-Slow: " + b"a" * 1000:
                        await send(sock, bytes([byte]))
                        await asyncio.sleep(0.05)

            async with asyncio.TaskGroup() as group:
                trickling = group.create_task(trickle())
                received, ended = await receive_all(sock)
                trickling.cancel()
        finally:
            sock.close()
    assert_answered_408_and_closed(received, ended)
    assert gateway.state.connections.closed["header"] == 1


async def test_a_body_that_does_not_arrive_is_answered_408_and_closed() -> None:
    with running_gateway(body_timeout=0.3) as gateway:
        sock = await connect(gateway.port)
        try:
            request = http_request("POST", "/v1/runs", b"x" * 100)
            await send(sock, request[:-90])  # the head and 10 bytes of the body, no more
            received, ended = await receive_all(sock)
        finally:
            sock.close()
    assert_answered_408_and_closed(received, ended)
    assert gateway.state.connections.closed["body"] == 1


async def test_an_idle_connection_that_only_sends_blank_lines_is_closed() -> None:
    """uvicorn's keep-alive timer stops at any byte; a CRLF every so often kept the
    connection forever."""
    with running_gateway(keep_alive_timeout=0.4) as gateway:
        sock = await connect(gateway.port)
        try:
            await send(sock, http_request("GET", "/healthz"))

            async def blank_lines() -> None:
                with contextlib.suppress(OSError):
                    while True:
                        await send(sock, b"\r\n")
                        await asyncio.sleep(0.05)

            async with asyncio.TaskGroup() as group:
                sending = group.create_task(blank_lines())
                received, _ = await receive_all(sock)
                sending.cancel()
        finally:
            sock.close()
    assert received.startswith(b"HTTP/1.1 200 ")  # the one answer, then the close
    assert received.count(b"HTTP/1.1") == 1
    assert gateway.state.connections.closed["first_byte"] == 1


@contextlib.asynccontextmanager
async def trickling(port: int, count: int) -> AsyncIterator[list[socket.socket]]:
    """``count`` connections, each sending its request head one byte at a time."""
    socks = [await connect(port) for _ in range(count)]

    async def trickle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            await send(sock, b"GET /healthz HTTP/1.1\r\n")
            for byte in b"X-Slow: " + b"a" * 10_000:
                await send(sock, bytes([byte]))
                await asyncio.sleep(0.1)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(trickle(sock)) for sock in socks]
            try:
                yield socks
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        for sock in socks:
            sock.close()


async def test_hundreds_of_trickling_connections_are_closed_while_new_clients_are_served() -> None:
    count = 300
    with running_gateway(header_timeout=1.5) as gateway:
        async with trickling(gateway.port, count) as socks:
            await eventually(lambda: len(server_side(gateway.port)) >= count)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
                statuses = []
                while len(server_side(gateway.port)) >= count:  # all of them still held
                    statuses.append((await client.get("/healthz")).status_code)
                    await asyncio.sleep(0.05)
            ends = [await receive_all(sock) for sock in socks]
        await eventually(lambda: not server_side(gateway.port))
    assert statuses and set(statuses) == {200}
    assert all(received.startswith(b"HTTP/1.1 408 ") for received, _ in ends)
    assert gateway.state.connections.closed["header"] == count


async def test_past_max_connections_a_new_one_is_answered_503_in_the_error_shape() -> None:
    with running_gateway(max_connections=3, first_byte_timeout=30) as gateway:
        held = [await connect(gateway.port) for _ in range(3)]
        try:
            await eventually(lambda: gateway.state.connections.open == 3)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
                refused = await client.get("/healthz")
                for sock in held:
                    sock.close()
                await eventually(lambda: gateway.state.connections.open == 0)
                served = await client.get("/healthz")
        finally:
            for sock in held:
                sock.close()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "over_capacity"
    assert served.status_code == 200
    assert gateway.state.connections.closed["over_capacity"] == 1


@pytest.mark.usefixtures("backend")
async def test_streams_and_websockets_are_not_cut_by_the_deadlines() -> None:
    """The deadlines are for reading requests: a stream that lasts longer is untouched."""
    settings = {"first_byte_timeout": 0.2, "header_timeout": 0.2, "keep_alive_timeout": 0.2}
    spec = {
        "parallel": [{"tool": "countdown", "arguments": {"start": 6, "interval": 0.1}}],
    }
    with running_gateway(**settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
            async with client.stream(
                "POST", "/v1/runs", json=spec, headers={"accept": "text/event-stream"}
            ) as response:
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
        async with websockets.connect(gateway.ws_url) as ws:
            await asyncio.sleep(0.5)  # idle past every deadline
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert b"run.completed" in body
    assert ack == {"type": "ack", "id": 1, "command": "ping"}


@pytest.mark.asyncio(loop_factories=["uvloop"])  # a process of its own: one loop is enough
async def test_a_gateway_started_with_a_low_open_files_limit_warns_at_start_up() -> None:
    def low_limit() -> None:  # in the child, before it runs the gateway
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    env = {**os.environ, "GATEWAY_PORT": "0", "GATEWAY_MAX_CONNECTIONS": "1000"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=low_limit,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any("listening on" in line for line in lines):
                line = await process.stderr.readline()
                assert line, "the gateway exited: " + "".join(lines)
                lines.append(line.decode())
    finally:
        process.kill()  # what is checked is its start; a graceful stop waits its grace
        await process.wait()
    warning = next(line for line in lines if "open files limit" in line)
    assert "open files limit 512 (hard 512): lower than the 1256" in warning
    assert "warning" in warning.lower()
