"""``uv run python -m bench [--quick] [--json PATH] [--repeats N] [--only a,b]``

Starts the upstream, the floor relay and the gateway, each in its own process on 127.0.0.1,
runs every scenario against them (floor and gateway interleaved, each repeat in the other
order), and prints medians over the repeats, the ratios gateway / floor and the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from . import procs
from . import scenarios as s
from .procs import raise_fd_limit, start_floor, start_gateway, start_upstream


@dataclass(frozen=True)
class Sizes:
    repeats: int = 3
    latency_requests: int = 300
    stream_chunks: int = 20_000
    concurrency: tuple[int, ...] = (10, 100)
    fanout_readers: tuple[int, ...] = (1, 100, 1000)
    fanout_events: int = 2000
    held: int = 10_000
    cancel_tries: int = 50
    ws_pings: int = 1000
    ws_runs: int = 10
    ws_chunks: int = 2000


QUICK = Sizes(
    repeats=1,
    latency_requests=20,
    stream_chunks=400,
    concurrency=(10,),
    fanout_readers=(1, 10),
    fanout_events=50,
    held=50,
    cancel_tries=3,
    ws_pings=20,
    ws_runs=3,
    ws_chunks=50,
)

SCENARIOS = ("latency", "throughput", "fanout", "held", "cancel", "websocket")

# results[(scenario, metric)][target] = one value per repeat
Results = dict[tuple[str, str], dict[str, list[float]]]


def _put(results: Results, scenario: str, target: str, values: dict[str, float]) -> None:
    for metric, value in values.items():
        results[scenario, metric].setdefault(target, []).append(value)


def _order(repeat: int) -> tuple[str, str]:
    return ("floor", "gateway") if repeat % 2 == 0 else ("gateway", "floor")


async def run_all(sizes: Sizes, only: set[str], log: Any) -> Results:
    results: Results = defaultdict(dict)
    upstream = start_upstream()
    floor = start_floor(upstream)
    gateway = start_gateway(upstream)
    ports = {"direct": upstream.port, "floor": floor.port, "gateway": gateway.port}
    try:
        for repeat in range(sizes.repeats):
            log(f"repeat {repeat + 1}/{sizes.repeats}")
            order = _order(repeat)
            if "latency" in only:
                for target in ("direct", *order):
                    _put(
                        results,
                        "latency",
                        target,
                        await s.latency(ports[target], sizes.latency_requests),
                    )
            if "throughput" in only:
                for streams in (1, *sizes.concurrency):
                    for target in ("direct", *order):
                        rate = await s.throughput(ports[target], streams, sizes.stream_chunks)
                        _put(results, "throughput", target, {f"chat_chunks_per_s_x{streams}": rate})
                    rate = await s.throughput(
                        gateway.port, streams, sizes.stream_chunks, native=True
                    )
                    _put(
                        results, "throughput", "gateway", {f"native_events_per_s_x{streams}": rate}
                    )
            if "fanout" in only:
                for readers in sizes.fanout_readers:
                    values = await s.fanout(gateway, upstream, readers, sizes.fanout_events)
                    _put(
                        results,
                        "fanout",
                        "gateway",
                        {f"{k}_r{readers}": v for k, v in values.items()},
                    )
            if "cancel" in only:
                for target in order:
                    values = await s.cancellation(ports[target], upstream, sizes.cancel_tries)
                    _put(results, "cancel", target, values)
            if "websocket" in only:
                for target in order:
                    values = await s.websocket(
                        ports[target],
                        target == "floor",
                        sizes.ws_pings,
                        sizes.ws_runs,
                        sizes.ws_chunks,
                    )
                    _put(results, "websocket", target, values)
            if "held" in only:
                # A fresh process each time, so that its RSS growth is these connections'.
                for kind in ("sse", "ws"):
                    for target in order:
                        proc = (
                            start_floor(upstream) if target == "floor" else start_gateway(upstream)
                        )
                        try:
                            values = await s.held(proc, sizes.held, kind, target == "floor")
                        finally:
                            proc.stop()
                        _put(results, "held", target, {f"{kind}_{k}": v for k, v in values.items()})
                        log(f"  held {kind} {target}: {values}")
    finally:
        for proc in (gateway, floor, upstream):
            proc.stop()
    return results


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def targets(
    med: dict[tuple[str, str], dict[str, float | None]], sizes: Sizes
) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and pass / miss."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool | None, goal: str) -> None:
        out.append({"target": name, "goal": goal, "value": value, "met": ok})

    lat = med.get(("latency", "ttft_p50_ms"), {})
    if lat.get("gateway") is not None and lat.get("direct") is not None:
        added = lat["gateway"] - lat["direct"]  # type: ignore[operator]
        add("added TTFT p50 (ms)", added, added <= 1.5, "<= 1.5 ms")
    top = max(sizes.concurrency)
    for streams in (1, top):
        for kind in ("chat_chunks", "native_events"):
            row = med.get(("throughput", f"{kind}_per_s_x{streams}"), {})
            floor = med.get(("throughput", f"chat_chunks_per_s_x{streams}"), {}).get("floor")
            if row.get("gateway") and floor:
                ratio = row["gateway"] / floor  # type: ignore[operator]
                add(f"{kind} x{streams} / floor", ratio, ratio >= 0.8, ">= 0.80")
    readers = sizes.fanout_readers
    low = med.get(("fanout", f"cpu_us_per_delivery_r{readers[0]}"), {}).get("gateway")
    high = med.get(("fanout", f"cpu_us_per_delivery_r{readers[-1]}"), {}).get("gateway")
    if low and high is not None:
        add(
            f"fan-out CPU per delivery r{readers[-1]} / r{readers[0]}",
            high / low,
            high <= low,
            "<= 1 (encode once: cost per reader does not grow)",
        )
    for kind in ("sse", "ws"):
        kib = med.get(("held", f"{kind}_kib_per_connection"), {}).get("gateway")
        on_time = med.get(("held", f"{kind}_heartbeats_on_time_pct"), {}).get("gateway")
        if kib is not None:
            add(f"held {kind}: KiB per connection", kib, kib <= 30, "<= 30 KiB")
        if on_time is not None:
            add(f"held {kind}: heartbeats on time (%)", on_time, on_time >= 99, ">= 99 %")
    p99 = med.get(("cancel", "disconnect_p99_ms"), {}).get("gateway")
    after = med.get(("cancel", "chunks_after_disconnect"), {}).get("gateway")
    if p99 is not None:
        add("cancel: upstream sees disconnect p99 (ms)", p99, p99 <= 50, "<= 50 ms")
    if after is not None:
        add("cancel: chunks generated after disconnect", after, after == 0, "0")
    return out


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(med: dict[tuple[str, str], dict[str, float | None]]) -> str:
    lines = [
        "| scenario | metric | direct | floor | gateway | gateway/floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (scenario, metric), row in med.items():
        ratio = None
        if row.get("floor") and row.get("gateway") is not None:
            ratio = row["gateway"] / row["floor"]  # type: ignore[operator]
        cells = [_fmt(row.get(t)) for t in ("direct", "floor", "gateway")]
        lines.append(f"| {scenario} | {metric} | {' | '.join(cells)} | {_fmt(ratio)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (seconds, not minutes)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 3)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--no-pin", action="store_true", help="leave the processes wherever the OS puts them"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.quick:
        procs.HEARTBEAT = 0.5
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(only - set(SCENARIOS)))}")
    fds = raise_fd_limit()
    if "held" in only and fds < 2 * sizes.held + 1000:
        sizes = Sizes(**{**sizes.__dict__, "held": max(10, (fds - 1000) // 2)})
        print(f"open files limited to {fds}: holding {sizes.held} connections", file=sys.stderr)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    placement = "not pinned" if args.no_pin else procs.pin_cpus()
    log(placement)
    started = time.monotonic()
    import uvloop

    results = uvloop.run(run_all(sizes, only, log))
    med = {key: {t: _median(v) for t, v in row.items()} for key, row in results.items()}
    checks = targets(med, sizes)
    print(table(med))
    print()
    for check in checks:
        verdict = "met" if check["met"] else "MISSED"
        print(f"- {check['target']}: {_fmt(check['value'])} (target {check['goal']}): {verdict}")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores ({placement}), "
        f"Python {platform.python_version()}"
    )
    print(f"\n{sizes.repeats} repeat(s), medians; {machine}; {time.monotonic() - started:.0f} s")
    if args.json:
        document = {
            "machine": machine,
            "sizes": sizes.__dict__,
            "results": [
                {"scenario": sc, "metric": m, "values": row, "median": med[sc, m]}
                for (sc, m), row in results.items()
            ],
            "targets": checks,
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
