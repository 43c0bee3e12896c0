"""1 vs 2 workers: chat chunks per second at 100 streams through ``gateway --workers 1`` and
``--workers 2``, both on the same Redis and the bench's upstream, measured in interleaved
rounds; and where the CPU went meanwhile (the gateway's processes, the upstream, Redis,
this process: the load generator), which says what limits the scaling.

The gateways are not pinned (``procs.pin_cpus`` gives the measured server one CPU, which
would leave a second worker nothing to run on): both run wherever the OS puts them, beside
the upstream and the load generator on the same CPUs.

    from bench import workers
    numbers = await workers.one_vs_two(upstream, redis_url)
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from . import procs
from . import scenarios as s
from .procs import Proc

__all__ = ["STREAMS", "machine_cpu", "one_vs_two", "start_workers", "tree_cpu"]

STREAMS = 100
READY_TIMEOUT = 60.0  # seconds for every worker to answer (they import and start at once)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def machine_cpu() -> float:
    """CPU seconds every CPU of the machine has spent busy so far (not idle, not waiting on
    I/O), from /proc/stat: whoever spent them, this bench's processes or others'."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / ticks


def _process_cpu(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def start_workers(upstream: Proc, redis_url: str, workers: int) -> Proc:
    """``gateway --workers N`` on the bench's settings and ``redis_url``, once every worker
    answers ``/readyz`` (new connections until each worker has taken one)."""
    port = procs.free_port()
    env = procs.gateway_env(upstream, port, REDIS_URL=redis_url, WORKERS=workers)
    # Every CPU: a child inherits the bench's own affinity (the load generator's CPUs once
    # procs.pin_cpus has run), which would put both workers on the load's CPU.
    every = (procs.SERVER_CPUS or set()) | (procs.LOAD_CPUS or set())
    proc = Proc(f"gateway-w{workers}", ["-m", "gateway"], env, port, every or None)
    seen: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT
    while len(seen) < workers:
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{workers} workers did not all answer (saw {sorted(seen)})")
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=READY_TIMEOUT)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if answer.status_code == 200:
            seen.add(answer.json().get("worker", 1))  # one process: no worker number
    return proc


async def one_vs_two(
    upstream: Proc,
    redis_url: str,
    *,
    redis_pid: int | None = None,
    streams: int = STREAMS,
    chunks: int = 20_000,
    rounds: int = 3,
) -> dict[str, Any]:
    """Chunks per second at ``streams`` streams through 1 worker and 2 workers (the median of
    ``rounds`` interleaved rounds each), their ratio, and per configuration the CPUs kept
    busy during its rounds (CPU seconds / wall seconds) by the gateway, the upstream, this
    process (the load generator), given ``redis_pid`` Redis, and the whole machine
    (``machine``: with whatever else runs on it)."""
    gateways = {n: start_workers(upstream, redis_url, n) for n in (1, 2)}
    rates: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, dict[str, float]] = {1: {}, 2: {}}
    walls: dict[int, float] = {1: 0.0, 2: 0.0}
    try:
        for round_ in range(rounds + 1):  # round 0 warms both up, unmeasured
            for n in (1, 2) if round_ % 2 else (2, 1):
                gateway = gateways[n]
                before = _cpus(gateway, upstream, redis_pid)
                started = time.monotonic()
                rate = await s.throughput(gateway.port, streams, chunks)
                wall = time.monotonic() - started
                if round_ == 0:
                    continue
                rates[n].append(rate)
                walls[n] += wall
                for name, value in _cpus(gateway, upstream, redis_pid).items():
                    busy[n][name] = busy[n].get(name, 0.0) + value - before[name]
        split = _streams_by_worker(gateways[2])
    finally:
        for gateway in gateways.values():
            gateway.stop()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    result: dict[str, Any] = {
        f"chat_chunks_per_s_x{streams}_w1": one,
        f"chat_chunks_per_s_x{streams}_w2": two,
        f"scaling_x{streams}": two / one,
        "cpus": os.cpu_count(),
        # How the kernel spread the streams over the two workers (one accept queue).
        "streams_share_w2": {f"worker_{k}": v / sum(split.values()) for k, v in split.items()},
    }
    for n in (1, 2):
        for name, seconds in busy[n].items():
            result[f"busy_cpus_w{n}_{name}"] = seconds / walls[n]
        # The gateway's CPU per chunk: a second worker should not make a chunk dearer.
        chunks_sent = chunks // streams * streams * len(rates[n])
        result[f"gateway_cpu_us_per_chunk_w{n}"] = busy[n]["gateway"] / chunks_sent * 1e6
    return result


def _streams_by_worker(gateway: Proc) -> dict[int, int]:
    """Chat requests each worker served, from the gateway's log (its request lines)."""
    counts: dict[int, int] = {}
    with open(gateway.log.name, "rb") as log:
        for line in log:
            if b'"path":"/v1/chat/completions"' in line and line.startswith(b"{"):
                worker = int(json.loads(line).get("worker", 1))
                counts[worker] = counts.get(worker, 0) + 1
    return counts


def _cpus(gateway: Proc, upstream: Proc, redis_pid: int | None) -> dict[str, float]:
    values = {
        "gateway": tree_cpu(gateway.pid),
        "upstream": upstream.cpu(),
        "load": time.process_time(),
    }
    if redis_pid is not None:
        values["redis"] = _process_cpu(redis_pid)
    # Last: the whole machine, so that others' share is what the figures above leave.
    values["machine"] = machine_cpu()
    return values
