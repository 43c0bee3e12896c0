"""``uv run python -m bench [--quick] [--json PATH] [--repeats N] [--only a,b] [--skip c]``

Starts the upstream, the floor relay and the gateway, each in its own process on 127.0.0.1,
runs every scenario against them (floor and gateway interleaved, each repeat in the other
order), and prints medians over the repeats, the ratios gateway / floor (the median of the
ratios of floor and gateway runs made back to back) and the targets. The scenario ``redis``
runs the latency and throughput scenarios on the gateway in memory, on Redis (a
redis-server of the bench's own) and on Redis Cluster (three masters of its own), back to
back, and counts the round trips each store served. The scenario ``workers`` puts
``gateway --workers 1`` and ``--workers 2`` on a redis-server and says how far the second
worker scales the chat throughput, and what limits it.
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
from . import workers as w
from .procs import Proc, raise_fd_limit, start_floor, start_gateway, start_upstream
from .redis import Store, start_redis, start_redis_cluster


@dataclass(frozen=True)
class Sizes:
    repeats: int = 3
    latency_requests: int = 300
    stream_chunks: int = 20_000
    # Throughput rounds per repeat: a round takes seconds, and one reading of it can be a
    # third off on a busy machine, so it gets more pairs than the longer scenarios.
    throughput_rounds: int = 3
    concurrency: tuple[int, ...] = (10, 100)
    fanout_readers: tuple[int, ...] = (1, 100, 1000)
    fanout_events: int = 2000
    held: int = 10_000
    cancel_tries: int = 50
    ws_pings: int = 1000
    ws_runs: int = 10
    ws_chunks: int = 2000
    # The failover scenario's requests per target and model, sequential, then at once; a
    # plain failover waits out the primary's first-token timeout (0.5 s) each time.
    failover_requests: int = 8
    failover_concurrency: int = 8
    # The workers scenario: chunks per round at workers_streams streams, interleaved rounds.
    workers_streams: int = w.STREAMS
    # 50,000 chunks: rounds of seconds, so that opening the 100 runs is not most of one.
    workers_chunks: int = 50_000
    workers_rounds: int = 3


QUICK = Sizes(
    repeats=1,
    latency_requests=20,
    stream_chunks=400,
    throughput_rounds=1,
    concurrency=(10,),
    fanout_readers=(1, 10),
    fanout_events=50,
    held=50,
    cancel_tries=3,
    ws_pings=20,
    ws_runs=3,
    ws_chunks=50,
    failover_requests=3,
    failover_concurrency=3,
    workers_streams=10,
    workers_chunks=400,
    workers_rounds=1,
)

SCENARIOS = (
    "latency",
    "throughput",
    "fanout",
    "held",
    "cancel",
    "websocket",
    "responses",
    "messages",
    "ai_sdk",
    "failover",
    "redis",
    "workers",
)

# The gateway on each shared store, against the gateway in memory (the target "gateway" of
# the scenario "redis"): the store's target name and what the gateway is started with. A
# store is one more entry (its server started by :func:`_start_stores`).
STORES = ("gateway_redis", "gateway_cluster")
# Runs and chunks the round-trip counts are taken over (each store, once, after the repeats).
COUNT_RUNS = 50
COUNT_CHUNKS = 1000

# The rows of a face's scenario ("responses", "messages", "ai_sdk") and the Chat Completions
# rows they mirror: the same measurement through POST /v1/responses (or /v1/messages, or
# /v1/ai-sdk/chat), against the floor's relay of that face.
FACE_SCENARIOS = ("responses", "messages", "ai_sdk")
FACE_TITLES = {"responses": "Responses", "messages": "Messages", "ai_sdk": "AI SDK"}
# A disconnect is not a cancel for the AI SDK face (the turn goes on, to be resumed): no
# cancellation rows there.
NOT_CANCELLED_BY_DISCONNECT = frozenset({"ai_sdk"})
MIRRORS = {
    "ttft_p50_ms": ("latency", "ttft_p50_ms"),
    "ttft_p99_ms": ("latency", "ttft_p99_ms"),
    **{
        f"delta_events_per_s_x{n}": ("throughput", f"chat_chunks_per_s_x{n}")
        for n in (1, 10, 100, 1000)
    },
    "disconnect_p50_ms": ("cancel", "disconnect_p50_ms"),
    "disconnect_p99_ms": ("cancel", "disconnect_p99_ms"),
}

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
    stores: dict[str, tuple[Proc, Store]] = {}
    try:
        if "redis" in only:
            stores = _start_stores(upstream)
            log(", ".join(f"{t} on {r.url}" for t, (_, r) in stores.items()))
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
                rounds = sizes.throughput_rounds
                for streams in (1, *sizes.concurrency):
                    for round_ in range(rounds):
                        for target in ("direct", *_order(repeat * rounds + round_)):
                            rate = await s.throughput(ports[target], streams, sizes.stream_chunks)
                            metric = f"chat_chunks_per_s_x{streams}"
                            _put(results, "throughput", target, {metric: rate})
                        rate = await s.throughput(
                            gateway.port, streams, sizes.stream_chunks, native=True
                        )
                        metric = f"native_events_per_s_x{streams}"
                        _put(results, "throughput", "gateway", {metric: rate})
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
            for face in FACE_SCENARIOS:
                if face in only:
                    await _face(results, ports, upstream, sizes, repeat, face)
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
            if "failover" in only:
                await _failover(results, ports, upstream, sizes, repeat)
            if "redis" in only:
                await _stores(results, gateway, stores, sizes, repeat)
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
        for target, (proc, server) in stores.items():
            await _round_trips(results, target, proc, server)
        if "workers" in only:
            await _workers(results, upstream, sizes, log)
    finally:
        for proc, server in stores.values():
            proc.stop()
            server.stop()
        for proc in (gateway, floor, upstream):
            proc.stop()
    return results


def _start_stores(upstream: Proc) -> dict[str, tuple[Proc, Store]]:
    """Each store of :data:`STORES` with the gateway on it (a redis-server of the bench's
    own and a three-master Redis Cluster of its own, every node pinned with the upstream
    and the load generator)."""
    stores: dict[str, tuple[Proc, Store]] = {}
    try:
        for target, start in (
            ("gateway_redis", start_redis),
            ("gateway_cluster", start_redis_cluster),
        ):
            server: Store = start()
            try:
                stores[target] = (start_gateway(upstream, redis_url=server.url), server)
            except BaseException:
                server.stop()
                raise
    except BaseException:
        for proc, started in stores.values():
            proc.stop()
            started.stop()
        raise
    return stores


def _store_order(index: int) -> tuple[str, ...]:
    """The gateway in memory and on each store, rotated each time (each goes first in turn)."""
    targets = ("gateway", *STORES)
    shift = index % len(targets)
    return targets[shift:] + targets[:shift]


async def _stores(
    results: Results,
    gateway: Proc,
    stores: dict[str, tuple[Proc, Store]],
    sizes: Sizes,
    repeat: int,
) -> None:
    """The latency and chat throughput scenarios on the gateway in memory and on each shared
    store, back to back (the scenario ``redis``: its ``gateway`` is the gateway in memory)."""
    servers = {"gateway": gateway, **{t: proc for t, (proc, _) in stores.items()}}
    for target in _store_order(repeat):
        values = await s.latency(servers[target].port, sizes.latency_requests)
        _put(results, "redis", target, values)
    rounds = sizes.throughput_rounds
    for streams in (1, *sizes.concurrency):
        for round_ in range(rounds):
            for target in _store_order(repeat * rounds + round_):
                server = servers[target]
                cpu = server.cpu()
                rate = await s.throughput(server.port, streams, sizes.stream_chunks)
                # The gateway's own CPU per chunk: Redis shares the load generator's CPU, so
                # a rate alone could be the load generator's slowing down.
                spent = (server.cpu() - cpu) * 1e6 / sizes.stream_chunks
                values = {
                    f"chat_chunks_per_s_x{streams}": rate,
                    f"cpu_us_per_chunk_x{streams}": spent,
                }
                _put(results, "redis", target, values)


async def _round_trips(results: Results, target: str, gateway: Proc, server: Store) -> None:
    """What the gateway on ``server`` asks of it, counted on the server: per run (1-chunk
    chat completions, :data:`COUNT_RUNS` of them one after another) and per chunk (one run
    of :data:`COUNT_CHUNKS` chunks, less the cost of a run), by command and in round trips
    (the server's reads of client sockets; a pipeline is one)."""
    before = server.counts()
    await s.latency(gateway.port, COUNT_RUNS - 10)  # it makes 10 requests more, to warm up
    middle = server.counts()
    await s.throughput(gateway.port, 1, COUNT_CHUNKS)
    after = server.counts()
    per_run, one_run = middle - before, after - middle
    values: dict[str, float] = {
        "round_trips_per_run": per_run.reads / COUNT_RUNS,
        "commands_per_run": per_run.total / COUNT_RUNS,
        "round_trips_per_chunk": _per_chunk(one_run.reads, per_run.reads),
        "commands_per_chunk": _per_chunk(one_run.total, per_run.total),
    }
    for name in sorted(set(per_run.commands) | set(one_run.commands)):
        values[f"{name}_per_run"] = per_run.commands.get(name, 0) / COUNT_RUNS
        values[f"{name}_per_chunk"] = _per_chunk(
            one_run.commands.get(name, 0), per_run.commands.get(name, 0)
        )
    _put(results, "redis_round_trips", target, values)


async def _workers(results: Results, upstream: Proc, sizes: Sizes, log: Any) -> None:
    """``gateway --workers 1`` and ``--workers 2`` on a redis-server of their own
    (:func:`bench.workers.one_vs_two`), its figures under the scenario ``workers``."""
    server = start_redis()
    try:
        log(f"workers: 1 vs 2 on {server.url}")
        numbers = await w.one_vs_two(
            upstream,
            server.url,
            redis_pid=server.popen.pid,
            streams=sizes.workers_streams,
            chunks=sizes.workers_chunks,
            rounds=sizes.workers_rounds,
        )
    finally:
        server.stop()
    _put(results, "workers", "gateway", flat_workers(numbers))


def flat_workers(numbers: dict[str, Any]) -> dict[str, float]:
    """:func:`bench.workers.one_vs_two`'s figures, one number each (the stream split as
    ``streams_share_w2_worker_K``)."""
    flat: dict[str, float] = {}
    for name, value in numbers.items():
        if isinstance(value, dict):
            flat.update({f"{name}_{k}": float(v) for k, v in sorted(value.items())})
        else:
            flat[name] = float(value)
    return flat


def _workers_figures(results: Results) -> dict[str, float]:
    return {
        m: v
        for (sc, m), row in results.items()
        if sc == "workers"
        if (v := _median(row.get("gateway"))) is not None
    }


def workers_table(results: Results) -> str:
    """1 vs 2 workers: chunks per second, the scaling factor, the stream split, and the
    CPUs kept busy (CPU seconds / wall seconds) by each process during each one's rounds."""
    figures = _workers_figures(results)
    if not figures:
        return ""
    streams = next(m for m in figures if m.startswith("scaling_x")).removeprefix("scaling_x")
    lines = ["| metric | 1 worker | 2 workers |", "|---|---:|---:|"]
    lines.append(
        f"| chat_chunks_per_s_x{streams} | "
        f"{_fmt(figures.get(f'chat_chunks_per_s_x{streams}_w1'))} | "
        f"{_fmt(figures.get(f'chat_chunks_per_s_x{streams}_w2'))} |"
    )
    lines.append(f"| scaling (2 workers / 1) | | {_fmt(figures.get(f'scaling_x{streams}'))} |")
    shares = sorted(m for m in figures if m.startswith("streams_share_w2_"))
    split = " / ".join(f"{figures[m] * 100:.0f} %" for m in shares)
    lines.append(f"| streams per worker | 100 % | {split or '-'} |")
    for name in (*WORKER_PROCESSES, "machine"):
        one, two = figures.get(f"busy_cpus_w1_{name}"), figures.get(f"busy_cpus_w2_{name}")
        if one is not None or two is not None:
            label = "the whole machine" if name == "machine" else name
            lines.append(f"| busy CPUs: {label} | {_fmt(one)} | {_fmt(two)} |")
    lines.append(
        f"| gateway CPU per chunk (us) | {_fmt(figures.get('gateway_cpu_us_per_chunk_w1'))} | "
        f"{_fmt(figures.get('gateway_cpu_us_per_chunk_w2'))} |"
    )
    return "\n".join(lines)


# The processes the workers scenario measures, in the order its table lists them.
WORKER_PROCESSES = ("gateway", "upstream", "load", "redis")


def workers_limit(figures: dict[str, float]) -> str:
    """One sentence, from the measured busy CPUs, on what limits the scaling with 2 workers:
    the gateway's share of the machine's CPUs against the rest's (upstream, load generator,
    Redis), and whether a chunk cost the gateway more CPU with two workers than with one."""
    if "busy_cpus_w2_gateway" not in figures:
        return ""
    cpus = figures.get("cpus") or float(os.cpu_count() or 1)
    gateway = figures["busy_cpus_w2_gateway"]
    rest = sum(figures.get(f"busy_cpus_w2_{n}", 0.0) for n in WORKER_PROCESSES[1:])
    ours = gateway + rest
    # What the machine spent beyond the bench's own processes: other work on the machine.
    others = max(0.0, figures.get("busy_cpus_w2_machine", ours) - ours)
    busy = ours + others
    sentence = (
        f"workers: the gateway's processes kept {gateway:.2f} CPUs busy with 2 workers; "
        f"the upstream, load generator and Redis {rest:.2f}"
    )
    if "busy_cpus_w2_machine" in figures:
        sentence += f"; other processes on the machine {others:.2f}"
    sentence += f" (together {busy:.2f} of {cpus:.0f})"
    if busy >= 0.9 * cpus:
        sentence += (
            f": every CPU was busy, so the second worker got only what the rest left "
            f"({max(0.0, cpus - rest - others):.2f} CPUs for the gateway at most)"
        )
    else:
        sentence += f": {cpus - busy:.2f} CPUs stayed idle, so the CPUs are not the limit"
    one, two = (
        figures.get("gateway_cpu_us_per_chunk_w1"),
        figures.get("gateway_cpu_us_per_chunk_w2"),
    )
    if one and two:
        sentence += f"; a chunk cost the gateway {two / one:.2f}x the CPU with 2 workers"
    return sentence


def _per_chunk(one_run: int, runs: int) -> float:
    """Per chunk of the long run, less what a run costs anyway (``runs`` over COUNT_RUNS)."""
    return max(0.0, one_run - runs / COUNT_RUNS) / COUNT_CHUNKS


def counts_table(results: Results) -> str:
    """The shared stores' round trips and commands, per run and per chunk."""
    rows = [(m, row) for (sc, m), row in results.items() if sc == "redis_round_trips"]
    if not rows:
        return ""
    lines = [f"| metric | {' | '.join(STORES)} |", "|---|" + "---:|" * len(STORES)]
    for metric, row in rows:
        medians = [_median(row.get(t)) for t in STORES]
        if metric.endswith("_per_chunk") and not any(medians):
            continue  # a command a run makes, but not each chunk
        lines.append(f"| {metric} | {' | '.join(_fmt(m) for m in medians)} |")
    return "\n".join(lines)


def stores_table(results: Results) -> str:
    """The gateway on each shared store beside the gateway in memory, with the paired ratio
    store / memory (a TTFT row: the paired difference in ms)."""
    rows = [(m, row) for (sc, m), row in results.items() if sc == "redis"]
    if not rows:
        return ""
    heads = " | ".join(f"{t} | {t}/memory" for t in STORES)
    lines = [f"| metric | gateway (memory) | {heads} |", "|---|---:|" + "---:|---:|" * len(STORES)]
    for metric, row in rows:
        cells = [_fmt(_median(row.get("gateway")))]
        for target in STORES:
            cells.append(_fmt(_median(row.get(target))))
            if metric.startswith("ttft"):
                diff = paired_difference(row.get(target), row.get("gateway"))
                cells.append("-" if diff is None else f"{'+' if diff >= 0 else ''}{_fmt(diff)} ms")
            else:
                cells.append(_fmt(paired_ratio(row.get(target), row.get("gateway"))))
        lines.append(f"| {metric} | {' | '.join(cells)} |")
    return "\n".join(lines)


async def _face(
    results: Results,
    ports: dict[str, int],
    upstream: procs.Proc,
    sizes: Sizes,
    repeat: int,
    face: str,
) -> None:
    """The latency, throughput and cancellation scenarios through ``face``'s endpoint
    (``POST /v1/responses``, ``POST /v1/messages`` or ``POST /v1/ai-sdk/chat``), floor and gateway
    interleaved as theirs are; no direct column (the upstream speaks chat completions only)."""
    for target in _order(repeat):
        values = await s.latency(ports[target], sizes.latency_requests, face=face)
        _put(results, face, target, values)
    rounds = sizes.throughput_rounds
    for streams in (1, *sizes.concurrency):
        for round_ in range(rounds):
            for target in _order(repeat * rounds + round_):
                rate = await s.throughput(ports[target], streams, sizes.stream_chunks, face=face)
                _put(results, face, target, {f"delta_events_per_s_x{streams}": rate})
    if face in NOT_CANCELLED_BY_DISCONNECT:
        return
    for target in _order(repeat):
        values = await s.cancellation(ports[target], upstream, sizes.cancel_tries, face=face)
        _put(results, face, target, values)


# The failover scenario's gateway models: its route straight to the secondary, and the
# model groups of primary then secondary, hedged and not (bench.procs.gateway_env).
FAILOVER_MODELS = {"secondary": "secondary", "hedged": "hedged", "failover": "failover"}


async def _failover(
    results: Results, ports: dict[str, int], upstream: procs.Proc, sizes: Sizes, repeat: int
) -> None:
    """TTFT through the gateway's models (:data:`FAILOVER_MODELS`) against the floor and the
    upstream going straight to the secondary (the floor's and the direct figures are put on
    each model's rows, to pair with its gateway figures), and what became of the primary's
    requests: every one the gateway opened is closed by it before its 2 s first token."""
    args = (sizes.failover_requests, sizes.failover_concurrency)
    before = await s.route_requests(upstream, "primary", settle=0)
    for target in ("direct", *_order(repeat)):
        if target != "gateway":
            values = await s.first_tokens(ports[target], procs.SECONDARY_MODEL, *args)
            kinds = ("secondary",) if target == "direct" else tuple(FAILOVER_MODELS)
            for kind in kinds:
                _put(results, "failover", target, {f"{kind}_{k}": v for k, v in values.items()})
            continue
        for kind, model in FAILOVER_MODELS.items():
            values = await s.first_tokens(ports[target], model, *args)
            _put(results, "failover", target, {f"{kind}_{k}": v for k, v in values.items()})
    after = await s.route_requests(upstream, "primary")
    counts: dict[str, float] = {
        "primary_requests": after["started"] - before["started"],
        "primary_closed_early": after["left"] - before["left"],
        "primary_answered": after["finished"] - before["finished"],
        "primary_left_open": after["open"],
    }
    _put(results, "failover", "gateway", counts)


def parity(results: Results, face: str = "responses") -> dict[str, float | None]:
    """For each row of ``face``'s scenario, its gateway / floor ratio over that of the Chat
    Completions row it mirrors (1.0: the face costs, relative to its floor, what chat
    completions cost)."""
    paired = ratios(results)
    out: dict[str, float | None] = {}
    for metric, mirror in MIRRORS.items():
        if (face, metric) not in paired or mirror not in paired:
            continue
        ours, theirs = paired[face, metric], paired[mirror]
        out[metric] = ours / theirs if ours is not None and theirs else None
    return out


def gateway_parity(results: Results, face: str = "responses") -> dict[str, float | None]:
    """For each row of ``face``'s scenario, the gateway's figure over the gateway's figure
    of the Chat Completions row it mirrors, in the same run (1.0: the face is served as fast
    as chat completions are). The floors of the two differ (the Chat Completions floor relays
    the upstream's bytes as they are, a face's floor parses and re-encodes each chunk), so
    this says what the gateway/floor ratios cannot: what the face itself costs."""
    out: dict[str, float | None] = {}
    for metric, mirror in MIRRORS.items():
        ours = results.get((face, metric), {}).get("gateway")
        theirs = results.get(mirror, {}).get("gateway")
        if ours is None or theirs is None:
            continue
        out[metric] = paired_ratio(ours, theirs)
    return out


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def paired_ratio(values: list[float] | None, bases: list[float] | None) -> float | None:
    """``values`` over ``bases``: the median of the ratios of the pairs measured back to
    back (a slow spell of the machine then weighs on both sides of a pair), or, when the
    two were not measured in pairs, the ratio of their medians."""
    if not values or not bases or not all(bases):
        return None
    if len(values) == len(bases):
        return statistics.median(v / b for v, b in zip(values, bases, strict=True))
    return statistics.median(values) / statistics.median(bases)


def paired_difference(values: list[float] | None, bases: list[float] | None) -> float | None:
    """``values`` minus ``bases``, pair by pair as :func:`paired_ratio`; the median."""
    if not values or not bases:
        return None
    if len(values) == len(bases):
        return statistics.median(v - b for v, b in zip(values, bases, strict=True))
    return statistics.median(values) - statistics.median(bases)


def ratios(results: Results) -> dict[tuple[str, str], float | None]:
    """The table's gateway / floor column, paired (:func:`paired_ratio`)."""
    return {key: paired_ratio(row.get("gateway"), row.get("floor")) for key, row in results.items()}


def targets(results: Results, sizes: Sizes) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and pass / miss."""
    med = {key: {t: _median(v) for t, v in row.items()} for key, row in results.items()}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool | None, goal: str) -> None:
        out.append({"target": name, "goal": goal, "value": value, "met": ok})

    lat = results.get(("latency", "ttft_p50_ms"), {})
    added = paired_difference(lat.get("gateway"), lat.get("direct"))
    if added is not None:
        add("added TTFT p50 (ms)", added, added <= 1.5, "<= 1.5 ms")
    top = max(sizes.concurrency)
    for streams in (1, top):
        floor = results.get(("throughput", f"chat_chunks_per_s_x{streams}"), {}).get("floor")
        for kind in ("chat_chunks", "native_events"):
            row = results.get(("throughput", f"{kind}_per_s_x{streams}"), {})
            ratio = paired_ratio(row.get("gateway"), floor)
            if ratio is not None:
                add(f"{kind} x{streams} / floor", ratio, ratio >= 0.8, ">= 0.80")
    for store in STORES:
        lat = results.get(("redis", "ttft_p50_ms"), {})
        extra = paired_difference(lat.get(store), lat.get("gateway"))
        if extra is not None:
            add(f"{store} TTFT p50 over memory (ms)", extra, extra <= 0.5, "<= 0.5 ms")
        for streams in (1, top):
            row = results.get(("redis", f"chat_chunks_per_s_x{streams}"), {})
            ratio = paired_ratio(row.get(store), row.get("gateway"))
            if ratio is not None:
                add(f"{store} chat_chunks x{streams} / memory", ratio, ratio >= 0.85, ">= 0.85")
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
    left_open = results.get(("failover", "primary_left_open"), {}).get("gateway")
    if left_open is not None:
        most = max(left_open)
        add("failover: primary requests left open", most, most == 0, "0")
    return out


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# The scenarios printed in tables of their own, not in :func:`table`.
OWN_TABLES = ("redis", "workers")


def table(results: Results) -> str:
    """Medians per target, and the paired ratio gateway / floor."""
    if all(scenario.startswith(OWN_TABLES) for scenario, _ in results):
        return ""
    lines = [
        "| scenario | metric | direct | floor | gateway | gateway/floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    paired = ratios(results)
    for (scenario, metric), row in results.items():
        if scenario.startswith(OWN_TABLES):
            continue  # their own tables (stores_table, counts_table, workers_table)
        cells = [_fmt(_median(row.get(t))) for t in ("direct", "floor", "gateway")]
        ratio = _fmt(paired[scenario, metric])
        lines.append(f"| {scenario} | {metric} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (seconds, not minutes)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 3)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--skip", help="comma-separated scenarios to leave out")
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
    skip = set(args.skip.split(",")) if args.skip else set()
    if (only | skip) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted((only | skip) - set(SCENARIOS)))}")
    only -= skip
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
    paired = ratios(results)
    checks = targets(results, sizes)
    mirrored = {face: parity(results, face) for face in FACE_SCENARIOS}
    served = {face: gateway_parity(results, face) for face in FACE_SCENARIOS}
    for more in (
        table(results),
        stores_table(results),
        counts_table(results),
        workers_table(results),
        workers_limit(_workers_figures(results)),
    ):
        if more:
            print(more)
            print()
    for face, rows in mirrored.items():
        if not rows:
            continue
        title = FACE_TITLES[face]
        print(f"{title} gateway/floor over the Chat Completions row's (1.00: the same cost):")
        for metric, value in rows.items():
            sc, m = MIRRORS[metric]
            print(f"- {face} {metric} / {sc} {m}: {_fmt(value)}")
        print()
        print(f"{title} gateway over the Chat Completions gateway (same upstream, same run):")
        for metric, value in served[face].items():
            sc, m = MIRRORS[metric]
            print(f"- {face} {metric} / {sc} {m}: {_fmt(value)}")
        print()
    primary = {
        m: sum(results[sc, m]["gateway"])
        for sc, m in results
        if sc == "failover" and m.startswith("primary_")
    }
    for kind, waited in (("hedged", procs.HEDGE_AFTER), ("failover", procs.FIRST_TOKEN_TIMEOUT)):
        row = results.get(("failover", f"{kind}_ttft_p50_ms"), {})
        extra = paired_difference(row.get("gateway"), row.get("floor"))
        if extra is not None:
            print(
                f"failover: {kind} TTFT p50 over the floor's straight to the secondary: "
                f"{_fmt(extra)} ms (of which {waited * 1000:.0f} ms waited for the primary)"
            )
    if primary:
        print(
            f"failover: primary requests left open: {primary['primary_left_open']:.0f} "
            f"(of {primary['primary_requests']:.0f} the gateway opened: "
            f"{primary['primary_closed_early']:.0f} closed by it before their first token, "
            f"{primary['primary_answered']:.0f} answered)\n"
        )
    for check in checks:
        verdict = "met" if check["met"] else "MISSED"
        print(f"- {check['target']}: {_fmt(check['value'])} (target {check['goal']}): {verdict}")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores ({placement}), "
        f"Python {platform.python_version()}"
    )
    print(
        f"\n{sizes.repeats} repeat(s) ({sizes.throughput_rounds} throughput rounds each), "
        f"medians, ratios paired; {machine}; {time.monotonic() - started:.0f} s"
    )
    if args.json:
        document = {
            "machine": machine,
            "sizes": sizes.__dict__,
            "results": [
                {
                    "scenario": sc,
                    "metric": m,
                    "values": row,
                    "median": med[sc, m],
                    "gateway_over_floor": paired[sc, m],
                }
                for (sc, m), row in results.items()
            ],
            "targets": checks,
            **{f"{face}_parity": mirrored[face] for face in FACE_SCENARIOS},
            **{f"{face}_gateway_parity": served[face] for face in FACE_SCENARIOS},
            "workers": _workers_figures(results),
            "workers_limit": workers_limit(_workers_figures(results)),
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
