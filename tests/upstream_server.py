"""A small OpenAI- and Anthropic-compatible upstream of our own, on 127.0.0.1, scriptable per
request, that records what clients did (notably when they disconnected).

It speaks HTTP/1.1 by hand over asyncio streams so a test controls every byte: how a stream
is split, when it stalls, when the connection is reset. It runs in a thread of its own.

Each request takes the next :class:`Reply` queued with :meth:`UpstreamServer.script` (or the
default: a short text answer). A reply is a status, headers, and a list of steps: ``bytes``
to send as one chunk, a ``float`` to pause that many seconds, :data:`RESET` to abort the
connection (TCP RST), or :data:`STALL` to stop sending and wait for the client to leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RESET = object()
STALL = object()

Step = bytes | float | object


@dataclass
class Reply:
    status: int = 200
    steps: list[Step] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    # Before the status line: a pause (float), STALL (never answer) or RESET.
    before_headers: Step | None = None


@dataclass
class RequestRecord:
    """What the server saw of one request."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    chunks_sent: int = 0
    chunks_after_disconnect: int = 0
    disconnected_at: float | None = None
    # When the server sent the last byte of its answer, or reset the connection (RESET).
    finished_at: float | None = None
    disconnected: threading.Event = field(default_factory=threading.Event)


def sse(payload: dict[str, Any] | str, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def chat_chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": choices,
            **extra,
        }
    )


def text_reply(
    *parts: str, usage: tuple[int, int] | None = (3, 5), done: bool = True, pause: float = 0.0
) -> Reply:
    """An OpenAI stream of text ``parts``, a finish chunk, a usage chunk, ``[DONE]``."""
    steps: list[Step] = [chat_chunk({"role": "assistant", "content": ""})]
    for part in parts:
        if pause:
            steps.append(pause)
        steps.append(chat_chunk({"content": part}))
    steps.append(chat_chunk({}, "stop"))
    if usage:
        steps.append(
            chat_chunk(
                None,
                usage={
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
            )
        )
    if done:
        steps.append(b"data: [DONE]\n\n")
    return Reply(steps=steps)


def chat_tool_reply(call_id: str, name: str, arguments: str) -> Reply:
    """An OpenAI stream calling one tool ``name`` with ``arguments`` (JSON text)."""
    call = {"index": 0, "id": call_id, "type": "function"}
    return Reply(
        steps=[
            chat_chunk({"role": "assistant", "content": None}),
            chat_chunk({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]}),
            chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
            chat_chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )


def error_reply(
    status: int, message: str = "upstream says no", headers: dict[str, str] | None = None
) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    return Reply(
        status=status, steps=[body], headers={"content-type": "application/json", **(headers or {})}
    )


# -- an Anthropic-speaking upstream ----------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One content block of an Anthropic answer: its ``content_block_start`` payload and the
    ``delta`` payloads of its ``content_block_delta`` events, in order."""

    start: dict[str, Any]
    deltas: tuple[dict[str, Any], ...] = ()


def text_block(*parts: str) -> Block:
    """A text block streaming ``parts``."""
    return Block(
        {"type": "text", "text": ""}, tuple({"type": "text_delta", "text": p} for p in parts)
    )


def thinking_block(thinking: str, signature: str) -> Block:
    """A thinking block: its text in one ``thinking_delta``, then its ``signature_delta``."""
    return Block(
        {"type": "thinking", "thinking": "", "signature": ""},
        (
            {"type": "thinking_delta", "thinking": thinking},
            {"type": "signature_delta", "signature": signature},
        ),
    )


def redacted_thinking_block(data: str) -> Block:
    """A redacted_thinking block: all of it in its start, no delta."""
    return Block({"type": "redacted_thinking", "data": data})


def tool_use_block(call_id: str, name: str, arguments: str) -> Block:
    """A tool_use block whose input streams as ``arguments`` (JSON text), after the empty
    ``partial_json`` Anthropic sends first."""
    return Block(
        {"type": "tool_use", "id": call_id, "name": name, "input": {}},
        (
            {"type": "input_json_delta", "partial_json": ""},
            {"type": "input_json_delta", "partial_json": arguments},
        ),
    )


def anthropic_event(kind: str, **fields: Any) -> bytes:
    """One Anthropic stream event: its ``event:`` line is the ``type`` of its data."""
    return sse({"type": kind, **fields}, event=kind)


def messages_events(
    *blocks: Block,
    stop_reason: str | None = "end_turn",
    stop_sequence: str | None = None,
    usage: tuple[int, int] = (3, 5),
    cache: tuple[int, int] = (0, 0),
    model: str = "up-model",
    pause: float = 0.0,
) -> list[Step]:
    """The steps of a whole Anthropic Messages stream, as the API sends it: ``message_start``
    (with the input ``usage[0]``, and ``cache`` = (read, written) input tokens when not
    zero), a ``ping``, each block's start, deltas (``pause`` seconds before each) and stop,
    ``message_delta`` with ``stop_reason``/``stop_sequence`` and the output ``usage[1]``,
    ``message_stop``."""
    start_usage: dict[str, int] = {"input_tokens": usage[0], "output_tokens": 1}
    if cache[0]:
        start_usage["cache_read_input_tokens"] = cache[0]
    if cache[1]:
        start_usage["cache_creation_input_tokens"] = cache[1]
    message = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    steps: list[Step] = [anthropic_event("message_start", message=message), anthropic_event("ping")]
    for index, block in enumerate(blocks):
        steps.append(anthropic_event("content_block_start", index=index, content_block=block.start))
        for delta in block.deltas:
            if pause:
                steps.append(pause)
            steps.append(anthropic_event("content_block_delta", index=index, delta=delta))
        steps.append(anthropic_event("content_block_stop", index=index))
    steps.append(
        anthropic_event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            usage={"output_tokens": usage[1]},
        )
    )
    steps.append(anthropic_event("message_stop"))
    return steps


def anthropic_text_reply(
    *parts: str,
    stop_reason: str = "end_turn",
    usage: tuple[int, int] = (3, 5),
    pause: float = 0.0,
) -> Reply:
    """An Anthropic stream of one text block of ``parts``."""
    return Reply(
        steps=messages_events(text_block(*parts), stop_reason=stop_reason, usage=usage, pause=pause)
    )


def anthropic_tool_reply(calls: list[tuple[str, str, str]], text: str | None = None) -> Reply:
    """An Anthropic stream calling tools: ``calls`` are (id, name, arguments as JSON text),
    each a tool_use block, after a text block of ``text`` if given; ``stop_reason`` tool_use."""
    blocks = [text_block(text)] if text is not None else []
    blocks += [tool_use_block(*call) for call in calls]
    return Reply(steps=messages_events(*blocks, stop_reason="tool_use"))


def anthropic_thinking_reply(thinking: str, signature: str, text: str) -> Reply:
    """An Anthropic stream that thinks (a signed thinking block), then answers ``text``."""
    return Reply(steps=messages_events(thinking_block(thinking, signature), text_block(text)))


def anthropic_json_reply(payload: dict[str, Any], status: int = 200) -> Reply:
    """A JSON answer (not a stream), e.g. a whole non-streamed Message."""
    return Reply(
        status=status,
        steps=[json.dumps(payload).encode()],
        headers={"content-type": "application/json"},
    )


def count_tokens_reply(input_tokens: int) -> Reply:
    """What ``POST /v1/messages/count_tokens`` answers."""
    return anthropic_json_reply({"input_tokens": input_tokens})


def anthropic_error_reply(
    status: int, kind: str = "api_error", message: str = "upstream says no"
) -> Reply:
    """An error in Anthropic's shape, e.g. ``(529, "overloaded_error")``."""
    return anthropic_json_reply(
        {"type": "error", "error": {"type": kind, "message": message}}, status
    )


def anthropic_route(upstream: UpstreamServer, **overrides: Any) -> dict[str, Any]:
    """Settings of a gateway route to ``upstream`` speaking Anthropic's Messages API."""
    return route(upstream, **{"provider": "anthropic", "model": "claude-up", **overrides})


def route(upstream: UpstreamServer, **overrides: Any) -> dict[str, Any]:
    """Settings of a gateway route ``up`` to ``upstream`` (fast retries, for tests)."""
    return {
        "provider": "openai",
        "base_url": upstream.base_url,
        "model": "up-model",
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        **overrides,
    }


def ask(prompt: str = "hi", tools: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A run spec asking the route ``up``."""
    return {
        "model": "up",
        "messages": [{"role": "user", "content": prompt}],
        "tools": tools or [],
        **extra,
    }


def split_bytes(reply: Reply, size: int) -> Reply:
    """The same reply with its bytes re-split into chunks of ``size`` bytes."""
    data = b"".join(step for step in reply.steps if isinstance(step, bytes))
    return Reply(
        reply.status, [data[i : i + size] for i in range(0, len(data), size)], reply.headers
    )


class UpstreamServer:
    def __init__(self) -> None:
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        self.request_arrived = threading.Condition(self._lock)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="upstream", daemon=True)
        self.port = 0

    # -- test side ---------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for_requests(self, count: int, timeout: float = 10) -> list[RequestRecord]:
        with self.request_arrived:
            if not self.request_arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(
                    f"{count} upstream requests expected, saw {len(self.requests)}"
                )
            return list(self.requests)

    async def wait_disconnect(self, record: RequestRecord, timeout: float = 5) -> float:
        """Seconds from now until the client closed the request's connection."""
        if not await asyncio.to_thread(record.disconnected.wait, timeout):
            raise AssertionError("the upstream never saw the client disconnect")
        assert record.disconnected_at is not None
        return record.disconnected_at

    def __enter__(self) -> UpstreamServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the upstream server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # -- server side -------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as tasks:

            def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                task = tasks.create_task(self._connection(reader, writer))
                connections.add(task)
                task.add_done_callback(connections.discard)

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()
            for task in list(connections):
                task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                keep_going = await self._answer(request, reader, writer)
                if not keep_going:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> RequestRecord | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        record = RequestRecord(path, headers, json.loads(body or b"{}"), time.monotonic())
        with self.request_arrived:
            self.requests.append(record)
            self.request_arrived.notify_all()
        return record

    def _next_reply(self, record: RequestRecord) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return text_reply("Hello", " from", " upstream")

    async def _answer(
        self, record: RequestRecord, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        reply = self._next_reply(record)
        streaming = reply.headers.get("content-type", "").startswith("text/event-stream")

        async def watch_disconnect() -> None:
            # The client sends nothing more on this connection; EOF means it closed it, and
            # so does a reset (a client that closes with our bytes unread resets it).
            with contextlib.suppress(ConnectionError):
                await reader.read(1)
            record.disconnected_at = time.monotonic()
            record.disconnected.set()

        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch_disconnect())
            try:
                if isinstance(reply.before_headers, float):
                    await asyncio.sleep(reply.before_headers)
                elif reply.before_headers is STALL:
                    await watcher
                    return False
                elif reply.before_headers is RESET:
                    writer.transport.abort()
                    record.finished_at = time.monotonic()
                    return False
                status_line = f"HTTP/1.1 {reply.status} X\r\n"
                headers = dict(reply.headers)
                if streaming or RESET in reply.steps or STALL in reply.steps:
                    headers["transfer-encoding"] = "chunked"
                    headers["connection"] = "close"
                else:
                    body = b"".join(s for s in reply.steps if isinstance(s, bytes))
                    headers["content-length"] = str(len(body))
                head = status_line + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                if "content-length" in headers:
                    writer.write((head + "\r\n").encode() + body)
                    await writer.drain()
                    record.finished_at = time.monotonic()
                    watcher.cancel()
                    return True
                writer.write((head + "\r\n").encode())
                await writer.drain()
                for step in reply.steps:
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    elif step is RESET:
                        transport = writer.transport
                        transport.abort()  # RST, not FIN
                        record.finished_at = time.monotonic()
                        return False
                    elif step is STALL:
                        await watcher
                        return False
                    elif isinstance(step, bytes):
                        if record.disconnected.is_set():
                            record.chunks_after_disconnect += 1
                        writer.write(b"%x\r\n%s\r\n" % (len(step), step))
                        await writer.drain()
                        record.chunks_sent += 1
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                record.finished_at = time.monotonic()
                return False
            except ConnectionError:  # the client left (reset): the watcher may not have run yet
                if not record.disconnected.is_set():
                    record.disconnected_at = time.monotonic()
                    record.disconnected.set()
                return False
            finally:
                watcher.cancel()
