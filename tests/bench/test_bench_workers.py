"""The workers scenario's figures as the bench prints them, and the cluster's counts summed
over its nodes: pure functions of the measured numbers."""

from __future__ import annotations

import pytest

from bench.__main__ import flat_workers, workers_limit
from bench.redis import CommandCounts


def test_the_stream_split_is_flattened_to_one_number_per_worker() -> None:
    numbers = {
        "scaling_x100": 1.5,
        "cpus": 2,
        "streams_share_w2": {"worker_2": 0.75, "worker_1": 0.25},
    }
    assert flat_workers(numbers) == {
        "scaling_x100": 1.5,
        "cpus": 2.0,
        "streams_share_w2_worker_1": 0.25,
        "streams_share_w2_worker_2": 0.75,
    }


def _figures(gateway: float, rest: float, cost_w2: float = 10.0) -> dict[str, float]:
    return {
        "cpus": 2.0,
        "busy_cpus_w2_gateway": gateway,
        "busy_cpus_w2_upstream": rest / 2,
        "busy_cpus_w2_load": rest / 4,
        "busy_cpus_w2_redis": rest / 4,
        "gateway_cpu_us_per_chunk_w1": 10.0,
        "gateway_cpu_us_per_chunk_w2": cost_w2,
    }


@pytest.mark.parametrize(
    ("figures", "sentence"),
    [
        (
            _figures(1.2, 0.8, 12.5),
            "workers: the gateway's processes kept 1.20 CPUs busy with 2 workers; the upstream,"
            " load generator and Redis 0.80 (together 2.00 of 2): every CPU was busy, so the"
            " second worker got only what the rest left (1.20 CPUs for the gateway at"
            " most); a chunk cost the gateway 1.25x the CPU with 2 workers",
        ),
        (
            _figures(1.0, 0.4),
            "workers: the gateway's processes kept 1.00 CPUs busy with 2 workers; the upstream,"
            " load generator and Redis 0.40 (together 1.40 of 2): 0.60 CPUs stayed idle, so the"
            " CPUs are not the limit; a chunk cost the gateway 1.00x the CPU with 2 workers",
        ),
        (
            {**_figures(0.9, 0.2), "busy_cpus_w2_machine": 1.9},
            "workers: the gateway's processes kept 0.90 CPUs busy with 2 workers; the upstream,"
            " load generator and Redis 0.20; other processes on the machine 0.80 (together 1.90"
            " of 2): every CPU was busy, so the second worker got only what the rest left (1.00"
            " CPUs for the gateway at most); a chunk cost the gateway 1.00x the CPU with 2"
            " workers",
        ),
        ({"cpus": 2.0}, ""),
    ],
)
def test_what_limits_the_scaling_is_said_from_the_measured_busy_cpus(
    figures: dict[str, float], sentence: str
) -> None:
    assert workers_limit(figures) == sentence


def test_a_clusters_counts_are_the_sum_of_its_nodes() -> None:
    one = CommandCounts({"xadd": 3, "evalsha": 1}, 4)
    two = CommandCounts({"xadd": 2, "hset": 5}, 6)
    assert one + two == CommandCounts({"xadd": 5, "evalsha": 1, "hset": 5}, 10)
    assert (one + two) - two == CommandCounts({"xadd": 3, "evalsha": 1}, 4)
