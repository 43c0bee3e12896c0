"""The load generator's clients: HTTP/1.1 over raw asyncio protocols (much cheaper than an
HTTP library per connection, so that 10,000 streams fit in one process), and a minimal
WebSocket client for held sessions.

A response body is de-chunked as it arrives and a *marker* counted in it (``b"ZQX"`` for the
upstream's content chunks, ``b"message.delta"`` for native events,
``b"event: response.output_text.delta"`` for Responses text deltas,
``b"event: content_block_delta"`` for Messages ones), with the time of the
first one seen: that is the time to first token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from collections.abc import Callable
from typing import Any

now = time.perf_counter


class StreamClient(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` sends one request and reads its streamed
    answer to the end (or until :meth:`close`)."""

    def __init__(self, marker: bytes = b"ZQX") -> None:
        self.marker = marker
        self.on_body: Callable[[bytes], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self._reset()

    def _reset(self) -> None:
        self.raw = bytearray()
        self.pos = 0
        self.headers_done = False
        self.status = 0
        self.chunk_left = -1  # -1: expecting a size line; -2: expecting the CRLF after data
        self.count = 0
        self.first: float | None = None
        self.tail = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))
            self.done.exception()  # retrieved: a held stream we closed ourselves is no error
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        if not self.headers_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(raw[9:12])
            self.headers_done = True
            self.pos = end + 4
        while True:
            if self.chunk_left == -1:
                eol = raw.find(b"\r\n", self.pos)
                if eol < 0:
                    break
                size = int(raw[self.pos : eol].split(b";")[0], 16)
                self.pos = eol + 2
                if size == 0:
                    if not self.done.done():
                        self.done.set_result(None)
                    break
                self.chunk_left = size
            elif self.chunk_left == -2:
                if len(raw) - self.pos < 2:
                    break
                self.pos += 2
                self.chunk_left = -1
            else:
                take = min(self.chunk_left, len(raw) - self.pos)
                if take <= 0:
                    break
                self._body(bytes(raw[self.pos : self.pos + take]))
                self.pos += take
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -2
        if self.pos > 65536:
            del raw[: self.pos]
            self.pos = 0

    def _body(self, piece: bytes) -> None:
        text = self.tail + piece
        found = text.count(self.marker)
        if found:
            if self.first is None:
                self.first = now()
            self.count += found
        self.tail = text[-(len(self.marker) - 1) :]
        if self.on_body is not None:
            self.on_body(piece)

    # -- use --------------------------------------------------------------------------------

    def send(self, method: str, path: str, body: Any = None, headers: str = "") -> float:
        """Send a request (resetting the reader); the send time."""
        self._reset()
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{headers}"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        ).encode()
        assert self.transport is not None
        started = now()
        self.transport.write(head + payload)
        return started

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, marker: bytes = b"ZQX") -> StreamClient:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: StreamClient(marker), "127.0.0.1", port)
    return protocol


SSE = "accept: text/event-stream\r\n"


async def stream_once(
    port: int, path: str, body: Any, marker: bytes = b"ZQX", headers: str = ""
) -> tuple[float, float, int, float | None]:
    """One streamed request on a new connection: (sent, ended, markers, first marker)."""
    client = await connect(port, marker)
    try:
        started = client.send("POST", path, body, headers)
        await client.done
        return started, now(), client.count, client.first
    finally:
        client.close()


def chat_body(content: str, model: str = "up") -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}


def responses_body(content: str, model: str = "up") -> dict[str, Any]:
    return {"model": model, "stream": True, "input": content}


def ai_sdk_body(content: str, chat_id: str, model: str = "up") -> dict[str, Any]:
    """A turn as the AI SDK's ``DefaultChatTransport`` posts it (a new chat each time: a chat
    takes one turn at a time)."""
    return {
        "id": chat_id,
        "messages": [
            {"id": f"u{chat_id}", "role": "user", "parts": [{"type": "text", "text": content}]}
        ],
        "trigger": "submit-message",
        "model": model,
    }


def messages_body(content: str, model: str = "up") -> dict[str, Any]:
    """A streamed Anthropic Messages request (``max_tokens`` is required there)."""
    return {
        "model": model,
        "stream": True,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": content}],
    }


# -- a minimal WebSocket client (held sessions) ---------------------------------------------


class WSClient(asyncio.Protocol):
    """Handshake, masked text frames out, pings answered (and counted with their times)."""

    def __init__(self, path: str = "/v1/ws") -> None:
        loop = asyncio.get_running_loop()
        self.path = path
        self.open = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.pings: list[float] = []
        self.messages = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n"
                f"connection: Upgrade\r\nsec-websocket-key: {key}\r\n"
                "sec-websocket-version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed before the upgrade"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if buffer[9:12] != b"101":
                self.open.set_exception(ConnectionError(bytes(buffer[:end]).decode()))
                return
            self.upgraded = True
            del buffer[: end + 4]
            self.open.set_result(None)
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x9:
                self.pings.append(now())
                self.send(payload, opcode=0xA)
            elif opcode in (0x1, 0x2):
                self.messages += 1

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        else:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value).encode())


async def ws_connect(port: int, path: str = "/v1/ws") -> WSClient:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: WSClient(path), "127.0.0.1", port)
    await protocol.open
    return protocol
