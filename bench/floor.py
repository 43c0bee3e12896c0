"""The floor: the least a Python relay of the same upstream can do, with the same stack as
the gateway (Starlette, uvicorn with uvloop and httptools, and the gateway's own upstream
transport: httpx's connection pool, used without a client, with its pass made linear). No
runs, no logs, no limits, no auth, no events: bytes in, bytes out. A Responses relay (the
upstream's chat chunks parsed and re-encoded as ``response.output_text.delta`` events, with
``response.created`` before and ``response.completed`` after), as the floor of the
Responses face, a Messages relay (the same chunks as Anthropic's ``message_start``,
``content_block_delta`` … ``message_stop`` events), as the floor of the Messages face, and a
UI message stream relay (the same chunks as the AI SDK's ``start`` … ``text-delta`` …
``finish`` chunks and ``[DONE]``), as the floor of the AI SDK face. Also
an idle SSE stream (pings only) and a WebSocket that acks pings and relays chat streams, as
floors for those scenarios.

    BENCH_UPSTREAM=http://127.0.0.1:PORT python -m bench.floor PORT
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from streams.upstream.http import UpstreamHTTP

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9")
URL = f"{UPSTREAM}/v1/chat/completions"
transport = UpstreamHTTP(trust_env=False).transport_for(URL)


async def _open(body: bytes) -> httpx.Response:
    request = httpx.Request("POST", URL, content=body, headers={"content-type": "application/json"})
    return await transport.handle_async_request(request)


async def chat(request: Request) -> StreamingResponse:
    response = await _open(await request.body())

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream")


def _event(kind: bytes, sequence_number: int, fields: bytes) -> bytes:
    return b'event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n' % (
        kind,
        kind,
        sequence_number,
        fields,
    )


async def _texts(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The content of the upstream's chat chunks, a list per piece of the body read."""
    buffer = b""
    async for chunk in response.aiter_raw():
        *frames, buffer = (buffer + chunk).split(b"\n\n")
        texts = []
        for frame in frames:
            if not frame.startswith(b"data: {"):
                continue
            choices = orjson.loads(frame[6:])["choices"]
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                texts.append(text)
        yield texts


async def _open_chat(model: str, content: object) -> httpx.Response:
    chat_body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    return await _open(orjson.dumps(chat_body))


async def responses(request: Request) -> StreamingResponse:
    """The upstream's chat chunks as the Responses API's minimal stream: ``response.created``,
    an ``output_text.delta`` per content chunk, ``response.completed``."""
    ask = orjson.loads(await request.body())
    response = await _open_chat(ask["model"], ask["input"])
    head = b'"response":{"id":"resp_floor","object":"response","status":"%s","output":[]}'

    async def relay() -> AsyncIterator[bytes]:
        sequence_number = 0
        try:
            yield _event(b"response.created", 0, head % b"in_progress")
            async for texts in _texts(response):
                out = []
                for text in texts:
                    sequence_number += 1
                    delta = {
                        "item_id": "msg_floor",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": text,
                        "logprobs": [],
                    }
                    fields = orjson.dumps(delta)[1:-1]
                    out.append(_event(b"response.output_text.delta", sequence_number, fields))
                if out:
                    yield b"".join(out)
            sequence_number += 1
            yield _event(b"response.completed", sequence_number, head % b"completed")
        finally:
            await response.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream")


def _anthropic(kind: bytes, payload: dict[str, object]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind, orjson.dumps({"type": kind.decode(), **payload}))


async def messages(request: Request) -> StreamingResponse:
    """The upstream's chat chunks as an Anthropic Messages stream: ``message_start``, one text
    block (a ``content_block_delta`` per content chunk), ``message_delta``, ``message_stop``."""
    ask = orjson.loads(await request.body())
    (message,) = ask["messages"]
    response = await _open_chat(ask["model"], message["content"])
    start = {
        "id": "msg_floor",
        "type": "message",
        "role": "assistant",
        "model": ask["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }

    async def relay() -> AsyncIterator[bytes]:
        deltas = 0
        try:
            yield _anthropic(b"message_start", {"message": start}) + _anthropic(
                b"content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            async for texts in _texts(response):
                if texts:
                    deltas += len(texts)
                    yield b"".join(
                        _anthropic(
                            b"content_block_delta",
                            {"index": 0, "delta": {"type": "text_delta", "text": text}},
                        )
                        for text in texts
                    )
            end = {"delta": {"stop_reason": "end_turn", "stop_sequence": None}}
            yield (
                _anthropic(b"content_block_stop", {"index": 0})
                + _anthropic(b"message_delta", {**end, "usage": {"output_tokens": deltas}})
                + _anthropic(b"message_stop", {})
            )
        finally:
            await response.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream")


def _ui(chunk: dict[str, object]) -> bytes:
    return b"data: %s\n\n" % orjson.dumps(chunk)


async def ai_sdk(request: Request) -> StreamingResponse:
    """The upstream's chat chunks as the AI SDK's UI message stream: ``start``, one step with
    one text part (a ``text-delta`` per content chunk), ``finish``, ``[DONE]``."""
    ask = orjson.loads(await request.body())
    text = " ".join(
        part["text"] for part in ask["messages"][-1]["parts"] if part.get("type") == "text"
    )
    response = await _open_chat(ask["model"], text)

    async def relay() -> AsyncIterator[bytes]:
        try:
            yield (
                _ui({"type": "start", "messageId": "msg_floor"})
                + _ui({"type": "start-step"})
                + _ui({"type": "text-start", "id": "t0"})
            )
            async for texts in _texts(response):
                if texts:
                    yield b"".join(
                        _ui({"type": "text-delta", "id": "t0", "delta": text}) for text in texts
                    )
            yield (
                _ui({"type": "text-end", "id": "t0"})
                + _ui({"type": "finish-step"})
                + _ui({"type": "finish"})
                + b"data: [DONE]\n\n"
            )
        finally:
            await response.aclose()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"x-vercel-ai-ui-message-stream": "v1"},
    )


async def idle(request: Request) -> StreamingResponse:
    interval = float(request.query_params.get("interval", "15"))

    async def pings() -> AsyncIterator[bytes]:
        while True:
            yield b": ping\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(pings(), media_type="text/event-stream")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    lock = asyncio.Lock()

    async def relay(command_id: object, body: bytes) -> None:
        response = await _open(body)
        buffer = b""
        try:
            async for chunk in response.aiter_raw():
                buffer += chunk
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    async with lock:
                        await websocket.send_text(frame.decode())
        finally:
            await response.aclose()
        async with lock:
            await websocket.send_text(json.dumps({"type": "run.completed", "id": command_id}))

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            command = json.loads(await websocket.receive_text())
            if command.get("type") == "run.start":
                body = json.dumps({**command["run"], "stream": True}).encode()
                task = asyncio.create_task(relay(command.get("id"), body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            async with lock:
                await websocket.send_text(json.dumps({"type": "ack", "id": command.get("id")}))
    except WebSocketDisconnect:
        for task in tasks:
            task.cancel()


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/ai-sdk/chat", ai_sdk, methods=["POST"]),
        Route("/idle", idle),
        WebSocketRoute("/ws", ws),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
        ws_ping_interval=float(os.environ.get("BENCH_WS_PING", "20")),
        backlog=4096,
    )
