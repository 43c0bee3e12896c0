"""The processes a benchmark measures, each on 127.0.0.1 in a process of its own: the
upstream, the floor relay, and the gateway (``python -m gateway`` with ``GATEWAY_*``)."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

HEARTBEAT = 2.0  # seconds between SSE pings / WS pings while connections are held

# Which CPUs the processes run on (see pin_cpus); None: wherever the OS puts them.
SERVER_CPUS: set[int] | None = None  # the floor and the gateway, measured one at a time
LOAD_CPUS: set[int] | None = None  # the upstream and this process, the load generator


def pin_cpus() -> str:
    """Give the measured server a CPU of its own: the floor and the gateway (only one of
    them is under load at any time) on the last CPU, the upstream and the load generator
    (this process) on the others. Left to the OS, the three busy processes of a scenario
    land on the CPUs differently from run to run, and a 2-CPU machine gave the same
    relay anywhere from 11,000 to 36,000 chunks per second. Returns what it did, to print."""
    global SERVER_CPUS, LOAD_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "not pinned (1 CPU)"
    SERVER_CPUS, LOAD_CPUS = {cpus[-1]}, set(cpus[:-1])
    os.sched_setaffinity(0, LOAD_CPUS)
    load = ",".join(map(str, sorted(LOAD_CPUS)))
    return f"floor and gateway pinned to CPU {cpus[-1]}, upstream and load to CPU {load}"


def raise_fd_limit() -> int:
    """Soft limit on open files up to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


class Proc:
    """A child process serving on ``port``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        port: int,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")  # noqa: SIM115
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE if port == 0 else self.log,
            stderr=self.log,
        )
        if cpus:
            os.sched_setaffinity(self.popen.pid, cpus)
        if port == 0:  # the child prints "port N"
            assert self.popen.stdout is not None
            line = self.popen.stdout.readline().decode()
            if not line.startswith("port "):
                raise RuntimeError(f"{name} did not start: {line!r}")
            self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> int:
        """Resident memory in bytes (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        """CPU seconds used so far (user + system)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_upstream() -> Proc:
    return Proc("upstream", ["-m", "bench.upstream"], {}, 0, LOAD_CPUS)


def start_floor(upstream: Proc) -> Proc:
    port = free_port()
    proc = Proc(
        "floor",
        ["-m", "bench.floor", str(port)],
        {"BENCH_UPSTREAM": f"http://127.0.0.1:{upstream.port}", "BENCH_WS_PING": str(HEARTBEAT)},
        port,
        SERVER_CPUS,
    )
    wait_http(f"http://127.0.0.1:{port}/nothing")
    return proc


# The failover scenario's two routes, both played by the bench upstream (its words in the
# model id): a primary whose first token takes 2 s and a secondary whose takes 50 ms.
PRIMARY_MODEL = "bench route=primary first=2"
SECONDARY_MODEL = "bench route=secondary first=0.05"
HEDGE_AFTER = 0.1  # the "hedged" group starts the secondary beside a primary this silent
FIRST_TOKEN_TIMEOUT = 0.5  # the primary's: the "failover" group moves on after this long


def gateway_env(upstream: Proc, port: int, **extra: Any) -> dict[str, str]:
    """Settings loosened for load: no per-key or per-connection caps in the way, a short
    heartbeat, idle runs that last; the route ``up`` points at the bench upstream, and so do
    the routes ``primary`` and ``secondary`` of the model groups ``hedged`` (hedging after
    :data:`HEDGE_AFTER`) and ``failover`` (no hedging: the primary's first token times out
    after :data:`FIRST_TOKEN_TIMEOUT`)."""
    route = {
        "base_url": f"http://127.0.0.1:{upstream.port}/v1",
        "model": "bench",
        "max_in_flight": 100_000,
        "max_attempts": 1,
        "failure_threshold": 1_000_000,
    }
    routes = {
        "up": route,
        "primary": {**route, "model": PRIMARY_MODEL, "first_token_timeout": FIRST_TOKEN_TIMEOUT},
        "secondary": {**route, "model": SECONDARY_MODEL},
    }
    groups = {
        "hedged": {"routes": ["primary", "secondary"], "hedge_after": HEDGE_AFTER},
        "failover": {"routes": ["primary", "secondary"]},
    }
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_ROUTES": json.dumps(routes),
        "GATEWAY_MODELS": json.dumps(groups),
        "GATEWAY_MAX_RUNS_PER_CONNECTION": "100000",
        "GATEWAY_MAX_PRODUCERS_PER_CONNECTION": "100000",
        "GATEWAY_MAX_ACTIVE_RUNS": "100000",
        "GATEWAY_MAX_ACTIVE_RUNS_PER_KEY": "100000",
        "GATEWAY_RUNS_PER_KEY_PER_MINUTE": "100000000",
        "GATEWAY_MAX_STREAMS_PER_KEY": "1000000",
        "GATEWAY_WS_MESSAGES_PER_SECOND": "1000000",
        "GATEWAY_WS_MESSAGE_BURST": "1000000",
        "GATEWAY_RETENTION_TTL": "30",
        "GATEWAY_RETENTION_MAX_EVENTS": "100000",
        "GATEWAY_RETENTION_MAX_BYTES": str(256 * 1024 * 1024),
        "GATEWAY_TOOL_TIMEOUT": "3600",
        "GATEWAY_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "GATEWAY_WS_PING_INTERVAL": str(HEARTBEAT),
        "GATEWAY_SEND_TIMEOUT": "60",
        "GATEWAY_DRAIN_TIMEOUT": "0",
        "GATEWAY_SHUTDOWN_GRACE": "0",
    }
    env.update({f"GATEWAY_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def start_gateway(upstream: Proc, **extra: Any) -> Proc:
    port = free_port()
    proc = Proc(
        "gateway", ["-m", "gateway"], gateway_env(upstream, port, **extra), port, SERVER_CPUS
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc
