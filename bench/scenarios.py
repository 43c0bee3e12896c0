"""The scenarios. Each measures one target (direct upstream, floor relay or gateway) once
and returns its numbers; :mod:`bench.__main__` repeats them, interleaved, and takes medians."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from . import client as c
from . import procs
from .procs import Proc

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
AI_SDK = "/v1/ai-sdk/chat"
# Once per Responses text delta (its data repeats the type, without the "event: ").
DELTA = b"event: response.output_text.delta"
# Once per Messages content delta: only text blocks here (no tools, no thinking asked for).
BLOCK_DELTA = b"event: content_block_delta"
# Once per UI message stream text delta (the dialect's JSON is compact).
TEXT_DELTA = b'"type":"text-delta"'
_tags = itertools.count(1)


def tag() -> str:
    return f"t{time.monotonic_ns()}x{next(_tags)}"


def pct(values: list[float], q: float) -> float:
    """The ``q`` percentile (0-100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- 1. added latency -----------------------------------------------------------------------


def _request(content: str, face: str) -> tuple[str, dict[str, Any], bytes]:
    """Path, body and marker of a streamed request through ``face`` asking for ``content``:
    a chat completion, a Responses request (``POST /v1/responses``) or a Messages request
    (``POST /v1/messages``), each with ``"stream": true``, or an AI SDK turn
    (``POST /v1/ai-sdk/chat``, which always streams; a new chat id per call)."""
    if face == "ai_sdk":
        return AI_SDK, c.ai_sdk_body(content, tag()), TEXT_DELTA
    if face == "responses":
        return RESPONSES, c.responses_body(content), DELTA
    if face == "messages":
        return MESSAGES, c.messages_body(content), BLOCK_DELTA
    assert face == "chat", face
    return CHAT, c.chat_body(content), b"ZQX"


async def latency(port: int, requests: int, face: str = "chat") -> dict[str, float]:
    """Time to first token of 1-chunk streams, sequential on one keep-alive connection."""
    path, _, marker = _request("n=1", face)
    client = await c.connect(port, marker)
    ttfts: list[float] = []
    try:
        for i in range(requests + 10):
            started = client.send("POST", path, _request("n=1", face)[1])
            await client.done
            assert client.first is not None, client.status
            assert client.count == 1, client.count
            if i >= 10:  # warm-up
                ttfts.append((client.first - started) * 1000)
    finally:
        client.close()
    return {"ttft_p50_ms": statistics.median(ttfts), "ttft_p99_ms": pct(ttfts, 99)}


# -- 2. stream throughput -------------------------------------------------------------------


async def throughput(
    port: int, streams: int, total: int, native: bool = False, face: str = "chat"
) -> float:
    """Content chunks (or native ``message.delta`` events, or the text delta events of the
    Responses, Messages or AI SDK ``face``) per second, ``total`` of them split over ``streams``
    concurrent streams."""
    each = max(1, total // streams)
    content = f"n={each}"
    if native:
        body: Any = {"model": "up", "messages": [{"role": "user", "content": content}]}
        path, marker, headers = "/v1/runs", b"message.delta", c.SSE
    else:
        path, body, marker = _request(content, face)
        headers = ""
    # A body per stream: an AI SDK chat takes one turn at a time (the others' are the same).
    results = await asyncio.gather(
        *(
            c.stream_once(
                port, path, _request(content, face)[1] if not native else body, marker, headers
            )
            for _ in range(streams)
        )
    )
    started = min(r[0] for r in results)
    ended = max(r[1] for r in results)
    count = sum(r[2] for r in results)
    assert count == each * streams, (count, each * streams)
    return count / (ended - started)


# -- 3. fan-out -----------------------------------------------------------------------------


async def fanout(gateway: Proc, upstream: Proc, readers: int, events: int) -> dict[str, float]:
    """One run, ``readers`` readers of its events: deliveries per second, the p99 delay from
    append (the event's ``ts``) to receipt, and the gateway's CPU time per delivery."""
    name = tag()
    spec = {
        "model": "up",
        "messages": [{"role": "user", "content": f"n={events} hold=1 id={name}"}],
        "on_disconnect": "continue",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"http://127.0.0.1:{gateway.port}/v1/runs", json=spec)
        answer.raise_for_status()
        run_id = answer.json()["run_id"]
        delays: list[float] = []

        def sample(piece: bytes) -> None:
            at = piece.find(b'"ts":')
            if at >= 0:
                end = piece.find(b",", at)
                delays.append((time.time() - float(piece[at + 5 : end])) * 1000)

        clients: list[c.StreamClient] = []
        for start in range(0, readers, 200):
            batch = await asyncio.gather(
                *(
                    c.connect(gateway.port, b"message.delta")
                    for _ in range(min(200, readers - start))
                )
            )
            for client in batch:
                client.send("GET", f"/v1/runs/{run_id}/events")
            clients += batch
        # Every reader attached (they answer with headers once attached); polled, as the
        # protocol has no event for it.
        while not all(client.headers_done for client in clients):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        for client in clients:
            client.on_body = sample
        delays.clear()
        cpu = gateway.cpu()
        started = c.now()
        (await http.post(f"http://127.0.0.1:{upstream.port}/go/{name}")).raise_for_status()
        await asyncio.gather(*(client.done for client in clients))
        elapsed = c.now() - started
        cpu = gateway.cpu() - cpu
        for client in clients:
            client.close()
    deliveries = sum(client.count for client in clients)
    assert deliveries == readers * events, (deliveries, readers * events)
    return {
        "events_per_s": deliveries / elapsed,
        "delay_p99_ms": pct(delays, 99),
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
    }


# -- 4. held connections --------------------------------------------------------------------


async def _open_many(count: int, opener: Callable[[], Any]) -> list[Any]:
    opened: list[Any] = []
    for start in range(0, count, 250):
        opened += await asyncio.gather(*(opener() for _ in range(min(250, count - start))))
    return opened


def _on_time(ping_lists: list[list[float]], since: float) -> tuple[float, float]:
    """Share of connections whose heartbeats all came on time after ``since`` (no gap over
    the interval + 0.5 s, at least two of them), and the p99 of the largest gaps (s)."""
    good, worst = 0, []
    for pings in ping_lists:
        times = [t for t in pings if t >= since]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        largest = max(gaps) if gaps else float("inf")
        worst.append(largest)
        good += len(times) >= 2 and largest <= procs.HEARTBEAT + 0.5
    return good / len(ping_lists), pct(worst, 99)


async def held(proc: Proc, count: int, kind: str, floor: bool) -> dict[str, float]:
    """``count`` idle streams (``sse``) or sessions (``ws``) held by one process: RSS growth
    per connection and whether heartbeats stay on time."""
    run_id = None
    if not floor:
        spec = {
            "parallel": [{"tool": "sleep", "arguments": {"seconds": 3600}}],
            "on_disconnect": "continue",
        }
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(f"http://127.0.0.1:{proc.port}/v1/runs", json=spec)
            answer.raise_for_status()
            run_id = answer.json()["run_id"]
    pings: list[list[float]] = []

    async def open_sse() -> c.StreamClient:
        client = await c.connect(proc.port, b"\x00never")
        times: list[float] = []
        pings.append(times)

        def on_body(piece: bytes, times: list[float] = times) -> None:
            times.extend([c.now()] * piece.count(b": ping"))

        client.on_body = on_body
        path = f"/idle?interval={procs.HEARTBEAT}" if floor else f"/v1/runs/{run_id}/events"
        client.send("GET", path)
        return client

    async def open_ws() -> c.WSClient:
        session = await c.ws_connect(proc.port, "/ws" if floor else "/v1/ws")
        pings.append(session.pings)
        if not floor:
            session.send_json({"type": "subscribe", "id": 1, "run_id": run_id})
        return session

    opener = open_sse if kind == "sse" else open_ws
    for connection in await _open_many(20, opener):  # warm-up
        connection.transport.close()
    pings.clear()
    await asyncio.sleep(0.5)
    before = proc.rss()
    connections = await _open_many(count, opener)
    await asyncio.sleep(1.0)
    since = c.now()
    await asyncio.sleep(procs.HEARTBEAT * 3 + 0.3)
    after = proc.rss()
    alive = sum(
        not getattr(x, "closed", False) and not x.transport.is_closing() for x in connections
    )
    on_time, worst = _on_time(pings, since)
    for connection in connections:
        connection.transport.close()
    return {
        "kib_per_connection": (after - before) / count / 1024,
        "heartbeats_on_time_pct": on_time * 100,
        "heartbeat_gap_p99_s": worst,
        "alive_pct": alive / count * 100,
    }


# -- 5. cancellation ------------------------------------------------------------------------


async def cancellation(
    port: int, upstream: Proc, tries: int, face: str = "chat"
) -> dict[str, float]:
    """A slow stream (a chunk every 10 ms); the client leaves after the first chunk (text
    delta): how long until the upstream sees the disconnect, and the chunks generated after
    the client left."""
    delays: list[float] = []
    after = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream.port}") as http:
        for _ in range(tries):
            name = tag()
            path, body, marker = _request(f"n=500 delay=0.01 id={name}", face)
            client = await c.connect(port, marker)
            got_first = asyncio.get_running_loop().create_future()
            client.on_body = lambda _piece, f=got_first, cl=client: (
                cl.count and not f.done() and f.set_result(None)
            )
            client.send("POST", path, body)
            await asyncio.wait_for(got_first, 10)
            left_at = time.monotonic()
            assert client.transport is not None
            client.transport.close()
            record: dict[str, Any] = {}
            for _ in range(400):
                record = (await http.get(f"/stats/{name}")).json()
                if record["disconnected_at"] is not None:
                    break
                await asyncio.sleep(0.005)
            seen = record["disconnected_at"]
            delays.append((seen - left_at) * 1000 if seen else 2000.0)
            after += sum(t > left_at for t in record["chunk_times"])
    return {
        "disconnect_p50_ms": statistics.median(delays),
        "disconnect_p99_ms": pct(delays, 99),
        "chunks_after_disconnect": after,
    }


# -- 6. WebSocket ---------------------------------------------------------------------------


async def websocket(port: int, floor: bool, pings: int, runs: int, chunks: int) -> dict[str, float]:
    """Command → ack round trips; events per second on one socket with ``runs`` runs."""
    url = f"ws://127.0.0.1:{port}" + ("/ws" if floor else "/v1/ws")
    async with websockets.connect(url, max_size=None) as ws:
        rtts: list[float] = []
        for i in range(pings + 10):
            started = c.now()
            await ws.send(json.dumps({"type": "ping", "id": i}))
            answer = await ws.recv()
            if i >= 10:
                rtts.append((c.now() - started) * 1000)
            assert '"ack"' in answer, answer
        run = {"model": "up", "messages": [{"role": "user", "content": f"n={chunks}"}]}
        started = c.now()
        for i in range(runs):
            await ws.send(json.dumps({"type": "run.start", "id": f"r{i}", "run": run}))
        finished = tokens = 0
        while finished < runs:
            message = await ws.recv()
            assert isinstance(message, str)
            if "run.completed" in message:
                finished += 1
            elif "ZQX" in message:
                tokens += 1
        elapsed = c.now() - started
    assert tokens >= runs * chunks, tokens
    return {
        "ack_rtt_p50_ms": statistics.median(rtts),
        "ack_rtt_p99_ms": pct(rtts, 99),
        "events_per_s": tokens / elapsed,
    }


# -- 7. failover ----------------------------------------------------------------------------


async def first_tokens(port: int, model: str, requests: int, concurrency: int) -> dict[str, float]:
    """Time to first token of 1-chunk streams of ``model``: ``requests`` of them one after
    the other (after one to warm up), then ``concurrency`` at once; each on a connection of
    its own (the upstream closes a watched answer's connection)."""

    async def one() -> float:
        started, _, count, first = await c.stream_once(port, CHAT, c.chat_body("n=1", model))
        assert count == 1, (model, count)
        assert first is not None
        return (first - started) * 1000

    await one()
    ttfts = [await one() for _ in range(requests)]
    together = await asyncio.gather(*(one() for _ in range(concurrency)))
    return {
        "ttft_p50_ms": statistics.median(ttfts),
        "ttft_p99_ms": pct(ttfts, 99),
        f"ttft_p50_ms_x{concurrency}": statistics.median(together),
    }


async def route_requests(upstream: Proc, route: str, settle: float = 1.0) -> dict[str, int]:
    """What the bench upstream counted for ``route``: requests started, answered to the end,
    left by the client early and still open, once none is open or ``settle`` seconds have
    passed (polled: the upstream has no event for it)."""
    deadline = time.monotonic() + settle
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream.port}") as http:
        while True:
            answer = await http.get(f"/routes/{route}")
            answer.raise_for_status()
            counts: dict[str, int] = answer.json()
            if not counts["open"] or time.monotonic() >= deadline:
                return counts
            await asyncio.sleep(0.01)
