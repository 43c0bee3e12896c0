"""The bench's own ``redis-server``: a free port on 127.0.0.1, no persistence, pinned with
the upstream and the load generator (the gateway being measured keeps its CPU to itself),
and the counts of the commands it has served, to tell round trips per run and per event."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

from . import procs

__all__ = [
    "CLUSTER_MASTERS",
    "CommandCounts",
    "RedisClusterProc",
    "RedisProc",
    "Store",
    "start_redis",
    "start_redis_cluster",
]

START_TIMEOUT = 10.0
CLUSTER_MASTERS = 3


@dataclass(frozen=True)
class CommandCounts:
    """What a redis-server has served so far: its commands by name (``INFO commandstats``,
    where each command of a pipeline counts one) and its reads of client sockets
    (``total_reads_processed``: one per round trip a client makes, a pipeline being one)."""

    commands: dict[str, int]
    reads: int

    def __add__(self, other: CommandCounts) -> CommandCounts:
        names = set(self.commands) | set(other.commands)
        summed = {n: self.commands.get(n, 0) + other.commands.get(n, 0) for n in names}
        return CommandCounts(summed, self.reads + other.reads)

    def __sub__(self, other: CommandCounts) -> CommandCounts:
        names = set(self.commands) | set(other.commands)
        delta = {n: self.commands.get(n, 0) - other.commands.get(n, 0) for n in names}
        return CommandCounts({n: c for n, c in delta.items() if c}, self.reads - other.reads)

    @property
    def total(self) -> int:
        return sum(self.commands.values())


class Store(Protocol):
    """What the bench needs of a shared store it started: a ``GATEWAY_REDIS_URL``, the
    commands served so far, a way to empty it and to stop it."""

    @property
    def url(self) -> str: ...

    def counts(self) -> CommandCounts: ...

    def flushall(self) -> None: ...

    def stop(self) -> None: ...


class RedisProc:
    """A ``redis-server`` child process on ``port``."""

    def __init__(self, executable: str, cpus: set[int] | None, extra: Sequence[str] = ()) -> None:
        self.port = procs.free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._dir.name]
        command += ["--protected-mode", "no", "--loglevel", "warning", *extra]
        self.popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if cpus:
            os.sched_setaffinity(self.popen.pid, cpus)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        self._infos = 0  # counts() calls so far (each makes two round trips of its own)
        self._wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                err = self.popen.stderr.read().decode() if self.popen.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.popen.returncode}: {err}")
            try:
                if self.client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def counts(self) -> CommandCounts:
        """The commands served so far, by name, and the reads of the server's loop."""
        stats = self.client.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
        }
        reads = int(self.client.info("stats")["total_reads_processed"])
        # These INFO commands (and their reads) are the bench's, not the gateway's.
        commands.pop("info", None)
        return CommandCounts(commands, reads - 2 * self._infos_before())

    def _infos_before(self) -> int:
        self._infos += 1
        return self._infos

    def flushall(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._dir.cleanup()


class RedisClusterProc:
    """A Redis Cluster of ``masters`` masters and no replicas: a ``redis-server
    --cluster-enabled yes`` per master (each a :class:`RedisProc`, pinned alike), joined by
    ``redis-cli --cluster create``, ready once every node says ``cluster_state:ok`` and
    knows every other. Its :meth:`counts` are the sum over the nodes: a pipeline the
    gateway sends over two nodes is two round trips, as it is on the wire."""

    def __init__(
        self, executable: str, cli: str, cpus: set[int] | None, masters: int = CLUSTER_MASTERS
    ) -> None:
        self.nodes: list[RedisProc] = []
        try:
            for _ in range(masters):
                self.nodes.append(RedisProc(executable, cpus, self._cluster_options()))
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
            subprocess.run(
                [cli, *create],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=START_TIMEOUT,
            )
            self._wait_for_state_ok()
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _cluster_options() -> list[str]:
        # Each node keeps its node table in its own directory (its --dir). The bus port is
        # a free port of its own: the default, port + 10000, overflows from an ephemeral
        # port above 55535, and redis-server then exits at once.
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        options += ["--cluster-port", str(procs.free_port())]
        return [*options, "--cluster-node-timeout", "2000"]

    @property
    def url(self) -> str:
        """Two of the nodes as seeds: the gateway finds the third from them."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])
        return f"redis+cluster://{seeds}/"

    @property
    def pids(self) -> list[int]:
        return [node.popen.pid for node in self.nodes]

    def _wait_for_state_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.nodes)
        while pending:
            if time.monotonic() > deadline:
                ports = [node.port for node in pending]
                raise RuntimeError(f"the cluster did not reach cluster_state:ok on {ports}")
            info = pending[0].client.cluster("info")  # parsed by redis-py into a dict
            known = int(info.get("cluster_known_nodes", 0))
            if info.get("cluster_state") == "ok" and known == len(self.nodes):
                pending.pop(0)
                continue
            time.sleep(0.02)

    def counts(self) -> CommandCounts:
        """The commands and reads of every node, summed."""
        total = CommandCounts({}, 0)
        for node in self.nodes:
            total += node.counts()
        return total

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _executable(name: str, what: str) -> str:
    executable = shutil.which(name)
    if executable is None:
        raise RuntimeError(
            f"{name} is not on PATH: install Redis (>= 7) to bench the gateway on {what},"
            " or leave out the redis and workers scenarios (--only ...)"
        )
    return executable


def start_redis() -> RedisProc:
    """Start the bench's redis-server on the load generator's CPUs; a clear error without
    one on PATH."""
    return RedisProc(_executable("redis-server", "Redis"), procs.LOAD_CPUS)


def start_redis_cluster() -> RedisClusterProc:
    """Start the bench's three-master Redis Cluster, every node on the load generator's
    CPUs (as :func:`start_redis`); a clear error without redis-server or redis-cli."""
    server = _executable("redis-server", "Redis Cluster")
    cli = _executable("redis-cli", "Redis Cluster")
    return RedisClusterProc(server, cli, procs.LOAD_CPUS)
