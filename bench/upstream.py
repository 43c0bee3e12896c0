"""A fast OpenAI-compatible upstream for the benchmarks, in a process of its own.

HTTP/1.1 by hand over asyncio (uvloop), keep-alive, so that it costs as little as possible
and the floor and the gateway are measured against the same thing. What a request gets is
read from its last message's content, ``key=value`` words:

- ``n=<chunks>``: content chunks (each ``"ZQX"``), then a finish chunk, usage and ``[DONE]``;
- ``delay=<seconds>``: a pause before each content chunk (then the connection is watched
  for the client leaving, and closed after the answer);
- ``hold=1``: wait for ``POST /go/<id>`` before the first chunk (fan-out: readers attach);
- ``id=<tag>``: record the request under ``tag`` (``GET /stats/<tag>``: when the client
  disconnected, the monotonic times each chunk was generated);
- ``first=<seconds>``: a pause before the first content chunk (after the head and the role
  chunk: a model slow to start; the connection is watched, and the pause ends early when the
  client leaves);
- ``route=<name>``: count the request under ``name`` (``GET /routes/<name>``: how many were
  started, answered to the end, left by the client before the end, and are still open).

The body's ``model`` may carry words too, read before the content's: one upstream then plays
several routes, each a model id such as ``"bench route=primary first=2"``.

Times are ``time.monotonic()``: CLOCK_MONOTONIC, shared by every process of the machine.

    python -m bench.upstream   # prints "port <N>" on stdout
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

CHUNK = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"ZQX"},"finish_reason":null}]}'
)
ROLE = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
)
FINISH = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
)
USAGE = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


def _frame(payload: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    data = b"data: %s\n\n" % payload
    return b"%x\r\n%s\r\n" % (len(data), data)


ROLE_F, CHUNK_F, FINISH_F, USAGE_F = map(_frame, (ROLE, CHUNK, FINISH, USAGE))
DONE_F = _frame(b"[DONE]") + b"0\r\n\r\n"
BATCH = 64  # content chunks per write when there is no delay


class Record:
    __slots__ = ("chunk_times", "disconnected_at", "go")

    def __init__(self) -> None:
        self.disconnected_at: float | None = None
        self.chunk_times: list[float] = []
        self.go = asyncio.Event()


class RouteCount:
    """The requests one ``route=<name>`` got: started, answered to the end, left early."""

    __slots__ = ("finished", "left", "started")

    def __init__(self) -> None:
        self.started = self.finished = self.left = 0

    def to_dict(self) -> dict[str, int]:
        still_open = self.started - self.finished - self.left
        return {
            "started": self.started,
            "finished": self.finished,
            "left": self.left,
            "open": still_open,
        }


RECORDS: dict[str, Record] = {}
ROUTES: dict[str, RouteCount] = {}


def _words(text: object) -> dict[str, str]:
    if not isinstance(text, str):
        return {}
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def _params(body: dict[str, Any]) -> dict[str, str]:
    messages = body.get("messages") or [{}]
    return {**_words(body.get("model")), **_words(messages[-1].get("content"))}


def _record(tag: str | None) -> Record | None:
    if not tag:
        return None
    record = RECORDS.get(tag)
    if record is None:
        record = RECORDS[tag] = Record()
    return record


async def _json(writer: asyncio.StreamWriter, status: int, value: object) -> None:
    body = json.dumps(value).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, len(body), body)
    )
    await writer.drain()


async def _stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any]
) -> bool:
    """Answer a chat completion; whether the connection can be kept."""
    params = _params(body)
    n = int(params.get("n", "1"))
    delay = float(params.get("delay", "0"))
    first = float(params.get("first", "0"))
    record = _record(params.get("id"))
    count = ROUTES.setdefault(params["route"], RouteCount()) if "route" in params else None
    watched = delay > 0 or first > 0 or "hold" in params or count is not None
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    writer.write(head + (b"connection: close\r\n\r\n" if watched else b"\r\n"))
    writer.write(ROLE_F)
    if not watched:
        left = n
        while left:
            k = min(left, BATCH)
            writer.write(CHUNK_F * k)
            left -= k
            await writer.drain()
        writer.write(FINISH_F + USAGE_F + DONE_F)
        await writer.drain()
        return True
    gone = asyncio.Event()

    async def watch() -> None:
        # The client sends nothing more on this connection: EOF means it left.
        await reader.read(1)
        if record is not None:
            record.disconnected_at = time.monotonic()
        gone.set()

    watcher = asyncio.create_task(watch())
    finished = False
    if count is not None:
        count.started += 1
    try:
        await writer.drain()
        if "hold" in params and record is not None:
            await record.go.wait()
        if first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), first)
        for _ in range(n):
            if delay:
                await asyncio.sleep(delay)
            if gone.is_set():
                return False
            writer.write(CHUNK_F)
            if record is not None:
                record.chunk_times.append(time.monotonic())
            await writer.drain()
        writer.write(FINISH_F + USAGE_F + DONE_F)
        await writer.drain()
        finished = True
    except ConnectionError:
        pass
    finally:
        watcher.cancel()
        if count is not None:
            if finished:
                count.finished += 1
            else:
                count.left += 1
    return False


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            raw = await reader.readexactly(length) if length else b""
            if method == b"POST" and path.endswith(b"/chat/completions"):
                if not await _stream(reader, writer, json.loads(raw)):
                    return
            elif path.startswith(b"/stats/"):
                record = RECORDS.get(path[7:].decode())
                value = (
                    {"disconnected_at": record.disconnected_at, "chunk_times": record.chunk_times}
                    if record
                    else None
                )
                await _json(writer, 200 if record else 404, value)
            elif path.startswith(b"/routes/"):
                found_count = ROUTES.get(path[8:].decode())
                await _json(writer, 200, (found_count or RouteCount()).to_dict())
            elif path.startswith(b"/go/"):
                found = _record(path[4:].decode())
                assert found is not None
                found.go.set()
                await _json(writer, 200, {"ok": True})
            elif path == b"/reset":
                RECORDS.clear()
                ROUTES.clear()
                await _json(writer, 200, {"ok": True})
            else:
                await _json(writer, 404, {"error": "not found"})
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=4096)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
    sys.exit(0)
