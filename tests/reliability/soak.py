"""A soak driver: mixed traffic at a steady rate against a gateway started in-process.

    uv run python -m tests.reliability.soak --minutes 5

SSE runs, WebSocket runs, the OpenAI face, cancels and resumes, for as long as asked. It
reports errors, p99 time to first event, and RSS over time, and checks that no event was lost
(every stream reassembled exactly) and that memory stayed flat (the last minute's RSS within a
bound of the first). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from gateway.telemetry.logs import configure_logging
from tests.support import SSE, RunningGateway, agent_spec, running_gateway, sse_events

MiB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class SoakReport:
    seconds: float
    scenarios: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # streams not reassembled exactly
    first_event: list[float] = field(default_factory=list)  # seconds, per stream
    rss: list[tuple[float, int]] = field(default_factory=list)  # (elapsed s, bytes)

    def p99(self) -> float:
        if not self.first_event:
            return 0.0
        ordered = sorted(self.first_event)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def rss_growth(self, window: float = 60.0) -> int:
        """Mean RSS of the last ``window`` seconds minus that of the first (each window at
        most a third of the run, so short soaks compare their first and last thirds)."""
        if len(self.rss) < 2:
            return 0
        window = min(window, self.seconds / 3)
        end = self.rss[-1][0]
        first = [b for t, b in self.rss if t <= self.rss[0][0] + window] or [self.rss[0][1]]
        last = [b for t, b in self.rss if t >= end - window] or [self.rss[-1][1]]
        return int(sum(last) / len(last) - sum(first) / len(first))

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "scenarios": dict(self.scenarios),
            "errors": len(self.errors),
            "first_errors": self.errors[:10],
            "lost_streams": len(self.lost),
            "first_lost": self.lost[:10],
            "p99_first_event_s": round(self.p99(), 4),
            "rss_mib_at_s": {
                f"{t:.0f}": round(b / MiB, 1) for t, b in self.rss[:: max(1, len(self.rss) // 20)]
            },
            "rss_growth_mib": round(self.rss_growth() / MiB, 1),
        }


def run_spec(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        start = rng.randint(3, 20)
        return {
            "parallel": [{"tool": "countdown", "arguments": {"start": start, "interval": 0.005}}]
        }
    prompt = rng.choice(["count down from 5", "what is 6 * 7", "what time is it"])
    tools = ["countdown", "calculator", "clock"]
    return agent_spec(prompt, tools)


def check_exact(name: str, events: list[dict[str, Any]], report: SoakReport) -> None:
    seqs = [e["seq"] for e in events]
    terminal = events[-1]["type"] if events else None
    if seqs != list(range(1, len(seqs) + 1)) or terminal not in (
        "run.completed",
        "run.cancelled",
        "run.failed",
    ):
        report.lost.append(f"{name}: seqs {seqs[:5]}…{seqs[-5:]} ending {terminal}")


class Traffic:
    def __init__(self, gateway: RunningGateway, client: httpx.AsyncClient, seed: int) -> None:
        self.gateway = gateway
        self.client = client
        self.rng = random.Random(seed)

    async def sse(self, report: SoakReport) -> None:
        started = time.monotonic()
        events: list[dict[str, Any]] = []
        spec = run_spec(self.rng)
        async with self.client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            response.raise_for_status()
            async for event in sse_events(response):
                if not events:
                    report.first_event.append(time.monotonic() - started)
                events.append(event)
        check_exact("sse", events, report)

    async def ws(self, report: SoakReport) -> None:
        started = time.monotonic()
        events: list[dict[str, Any]] = []
        async with websockets.connect(self.gateway.ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": run_spec(self.rng)}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "error":
                    raise RuntimeError(f"ws error: {message}")
                if "seq" not in message:
                    continue
                if not events:
                    report.first_event.append(time.monotonic() - started)
                events.append(message)
                if message["type"] in ("run.completed", "run.cancelled", "run.failed"):
                    break
        check_exact("ws", events, report)

    async def openai(self, report: SoakReport) -> None:
        started = time.monotonic()
        body = {
            "model": "demo",
            "stream": True,
            "messages": [{"role": "user", "content": "hello there"}],
        }
        chunks = 0
        done = False
        async with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if not chunks:
                    report.first_event.append(time.monotonic() - started)
                chunks += 1
                if line == "data: [DONE]":
                    done = True
        if not done:
            report.lost.append(f"openai: stream ended after {chunks} chunks without [DONE]")

    async def cancel(self, report: SoakReport) -> None:
        spec = {"parallel": [{"tool": "countdown", "arguments": {"start": 500, "interval": 0.01}}]}
        run_id = (await self.client.post("/v1/runs", json=spec)).json()["run_id"]
        answer = await self.client.post(f"/v1/runs/{run_id}/cancel")
        if answer.status_code != 200:
            raise RuntimeError(f"cancel answered {answer.status_code}: {answer.text}")
        async with self.client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            events = [event async for event in sse_events(response)]
        check_exact("cancel", events, report)
        if events[-1]["type"] != "run.cancelled":
            report.lost.append(f"cancel: ended with {events[-1]['type']}")

    async def resume(self, report: SoakReport) -> None:
        spec = {**run_spec(self.rng), "on_disconnect": "continue"}
        run_id = (await self.client.post("/v1/runs", json=spec)).json()["run_id"]
        events: list[dict[str, Any]] = []
        for limit in (self.rng.randint(1, 10), self.rng.randint(1, 10), None):
            headers = {"last-event-id": str(events[-1]["seq"])} if events else {}
            url = f"/v1/runs/{run_id}/events"
            async with self.client.stream("GET", url, headers=headers) as response:
                read = 0
                async for event in sse_events(response):
                    events.append(event)
                    read += 1
                    if limit is not None and read >= limit:
                        break
            if events and events[-1]["type"] in ("run.completed", "run.cancelled", "run.failed"):
                break
        async with self.client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            full = [event async for event in sse_events(response)]
        check_exact("resume", events, report)
        if events != full:
            report.lost.append(f"resume: {len(events)} events reassembled, the log has {len(full)}")

    def scenarios(self) -> dict[str, Callable[[SoakReport], Awaitable[None]]]:
        return {
            "sse": self.sse,
            "ws": self.ws,
            "openai": self.openai,
            "cancel": self.cancel,
            "resume": self.resume,
        }


async def soak(seconds: float, rate: float = 20.0, seed: int = 1) -> SoakReport:
    """Run mixed traffic for ``seconds`` at ``rate`` scenarios per second."""
    report = SoakReport(seconds)
    settings = {
        "runs_per_key_per_minute": 1_000_000,
        "max_streams_per_key": 10_000,
        "max_active_runs_per_key": 10_000,
        "retention_ttl": 30.0,  # finished runs do not pile up over a long soak
    }
    with running_gateway(**settings) as gateway:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        async with httpx.AsyncClient(
            base_url=gateway.base_url, timeout=30, limits=limits
        ) as client:
            traffic = Traffic(gateway, client, seed)
            scenarios = traffic.scenarios()
            names = list(scenarios)
            pending: set[asyncio.Task[None]] = set()

            async def one(name: str) -> None:
                try:
                    await scenarios[name](report)
                except Exception as exc:
                    report.errors.append(f"{name}: {type(exc).__name__}: {exc}")

            begin = time.monotonic()
            next_sample = begin
            for tick in range(int(seconds * rate)):
                now = time.monotonic()
                if now >= next_sample:
                    gc.collect()
                    report.rss.append((now - begin, rss_bytes()))
                    next_sample = now + 1.0
                name = names[tick % len(names)]
                report.scenarios[name] += 1
                task = asyncio.create_task(one(name))
                pending.add(task)
                task.add_done_callback(pending.discard)
                # A steady rate: wait for the next tick's time, not a fixed pause.
                await asyncio.sleep(max(0.0, begin + (tick + 1) / rate - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=60)
            gc.collect()
            report.rss.append((time.monotonic() - begin, rss_bytes()))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="scenarios started per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument(
        "--log-level",
        default="warning",
        help="the gateway's log level (info logs a line per request and per run)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    seconds = args.minutes * 60 if args.minutes is not None else args.seconds
    report = asyncio.run(soak(seconds, args.rate, args.seed))
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    ok = not report.errors and not report.lost and report.rss_growth() < args.max_growth_mib * MiB
    print("soak:", "OK" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
