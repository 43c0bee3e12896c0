"""The benchmark suite as a smoke test: tiny sizes, no thresholds. Every scenario must
produce numbers (the numbers themselves belong in the bench output and the README)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HEAVY

pytestmark = HEAVY

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m bench --quick`` with ``args``, at a low priority: its processes load every
    CPU, and the suite's other test process must not starve meanwhile (its numbers are not
    what this checks)."""
    nice = shutil.which("nice")
    command = [sys.executable, "-m", "bench", "--quick", *args]
    return subprocess.run(
        [nice, "-n", "15", *command] if nice else command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(240)
def test_every_scenario_produces_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_bench("--skip", "redis,workers", "--json", str(out), timeout=230)
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    scenarios = {row["scenario"] for row in document["results"]}
    assert scenarios == {
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
    }
    # A face's rows mirror the Chat Completions ones; the AI SDK face has no cancellation rows
    # (a disconnect is not a cancel there).
    for face in ("responses", "messages", "ai_sdk"):
        rows = {
            row["metric"]: row["median"] for row in document["results"] if row["scenario"] == face
        }
        cancellation = {"disconnect_p50_ms", "disconnect_p99_ms", "chunks_after_disconnect"}
        assert set(rows) == {
            "ttft_p50_ms",
            "ttft_p99_ms",
            "delta_events_per_s_x1",
            "delta_events_per_s_x10",
            *(cancellation if face != "ai_sdk" else ()),
        }, face
        for metric, medians in rows.items():
            assert set(medians) == {"floor", "gateway"}, (face, metric, medians)
        assert document[f"{face}_parity"]["delta_events_per_s_x1"] is not None, face
        assert document[f"{face}_gateway_parity"]["delta_events_per_s_x1"] is not None, face
    # The failover scenario: each gateway model against the floor straight to the secondary,
    # and every request the gateway opened to the slow primary closed by it.
    failover = {
        row["metric"]: row["median"] for row in document["results"] if row["scenario"] == "failover"
    }
    for kind in ("secondary", "hedged", "failover"):
        assert set(failover[f"{kind}_ttft_p50_ms"]) >= {"floor", "gateway"}, kind
    assert failover["primary_requests"]["gateway"] > 0
    assert failover["primary_left_open"]["gateway"] == 0
    assert failover["primary_answered"]["gateway"] == 0
    for row in document["results"]:
        for target, value in row["median"].items():
            assert value is not None and math.isfinite(value), (row["metric"], target, value)
    assert document["targets"], "no target was evaluated"
    assert "| scenario | metric |" in done.stdout


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli (the cluster)")
def test_the_redis_rows_put_the_gateway_on_redis_beside_the_gateway_in_memory(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    done = run_bench("--only", "redis", "--json", str(out), timeout=110)
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    rows = {(row["scenario"], row["metric"]): row["median"] for row in document["results"]}
    for metric in ("ttft_p50_ms", "ttft_p99_ms", "chat_chunks_per_s_x1", "chat_chunks_per_s_x10"):
        assert set(rows["redis", metric]) == {"gateway", "gateway_redis", "gateway_cluster"}, metric
    for store in ("gateway_redis", "gateway_cluster"):
        # A command only one store was asked (a cluster's node discovery, say) has no row
        # for the other.
        counts = {
            m: v[store] for (sc, m), v in rows.items() if sc == "redis_round_trips" and store in v
        }
        assert counts["round_trips_per_run"] > 0, store
        assert counts["evalsha_per_run"] > 0, store
        assert counts["xadd_per_chunk"] > 0, store
    for (_, metric), medians in rows.items():
        for target, value in medians.items():
            assert value is not None and math.isfinite(value), (metric, target, value)
    names = {check["target"] for check in document["targets"]}
    assert names == {
        "gateway_redis TTFT p50 over memory (ms)",
        "gateway_redis chat_chunks x1 / memory",
        "gateway_redis chat_chunks x10 / memory",
        "gateway_cluster TTFT p50 over memory (ms)",
        "gateway_cluster chat_chunks x1 / memory",
        "gateway_cluster chat_chunks x10 / memory",
    }
    assert "| metric | gateway (memory) | gateway_redis | gateway_redis/memory |" in done.stdout
    assert "| gateway_cluster | gateway_cluster/memory |" in done.stdout
    assert "| metric | gateway_redis | gateway_cluster |" in done.stdout
    assert "| round_trips_per_run |" in done.stdout


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_workers_rows_put_one_worker_beside_two_on_redis(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_bench("--only", "workers", "--json", str(out), timeout=110)
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    assert {row["scenario"] for row in document["results"]} == {"workers"}
    figures = document["workers"]
    for name in ("chat_chunks_per_s_x10_w1", "chat_chunks_per_s_x10_w2", "scaling_x10"):
        assert figures[name] > 0, name
    # Both workers answered /readyz; the chat requests they served add up to every stream.
    shares = [v for m, v in figures.items() if m.startswith("streams_share_w2_worker_")]
    assert shares and sum(shares) == pytest.approx(1.0)
    for n in (1, 2):
        for name in ("gateway", "upstream", "load", "redis", "machine"):
            assert math.isfinite(figures[f"busy_cpus_w{n}_{name}"]), (n, name)
    assert document["workers_limit"].startswith("workers: the gateway's processes kept ")
    assert "| metric | 1 worker | 2 workers |" in done.stdout
    assert "| scaling (2 workers / 1) |" in done.stdout
    assert document["workers_limit"] in done.stdout
