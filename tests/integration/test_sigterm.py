"""SIGTERM to a real gateway process: readers get their terminal events, WebSockets close
with 1012, and the process exits within the drain deadline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from typing import Any

import httpx
import websockets

from tests.support import SSE, agent_spec, sse_events

DRAIN, GRACE = 0.5, 0.3


async def start_gateway() -> tuple[asyncio.subprocess.Process, int]:
    env = {
        **os.environ,
        "GATEWAY_PORT": "0",
        "GATEWAY_DRAIN_TIMEOUT": str(DRAIN),
        "GATEWAY_SHUTDOWN_GRACE": str(GRACE),
        "GATEWAY_DEMO_TOKEN_DELAY": "0.001",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, "the gateway exited before listening"
            if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                return process, int(found.group(1))


async def test_sigterm_cancels_what_runs_past_the_drain_and_closes_sockets_with_1012() -> None:
    process, port = await start_gateway()
    base = f"http://127.0.0.1:{port}"
    try:
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as client,
            websockets.connect(f"ws://127.0.0.1:{port}/v1/ws") as ws,
        ):
            await ws.send(
                json.dumps(
                    {"type": "run.start", "id": 1, "run": agent_spec("sleep 60 seconds", ["sleep"])}
                )
            )
            ws_messages: list[dict[str, Any]] = []
            while not ws_messages or ws_messages[-1].get("type") != "tool.started":
                ws_messages.append(json.loads(await ws.recv()))
            async with client.stream(
                "POST", "/v1/runs", headers=SSE, json=agent_spec("sleep 60 seconds", ["sleep"])
            ) as response:
                sse: list[dict[str, Any]] = []
                async for event in sse_events(response):
                    sse.append(event)
                    if event["type"] == "tool.started":
                        signalled_at = time.monotonic()
                        process.send_signal(signal.SIGTERM)
            try:
                while True:
                    ws_messages.append(json.loads(await ws.recv()))
            except websockets.ConnectionClosed as closed:
                close = closed.rcvd
        async with asyncio.timeout(10):
            code = await process.wait()
        exited_after = time.monotonic() - signalled_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert sse[-1] == {**sse[-1], "type": "run.cancelled", "reason": "shutdown"}
    assert ws_messages[-1] == {**ws_messages[-1], "type": "run.cancelled", "reason": "shutdown"}
    assert close is not None
    assert close.code == 1012
    assert code in (0, -signal.SIGTERM)
    assert exited_after < DRAIN + GRACE + 3
