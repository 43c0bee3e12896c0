"""The bench's own ``redis-server``: a free port on 127.0.0.1, no persistence, pinned with
the upstream and the load generator (the gateway being measured keeps its CPU to itself),
and the counts of the commands it has served, to tell round trips per run and per event."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis

from . import procs

__all__ = ["CommandCounts", "RedisProc", "start_redis"]

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class CommandCounts:
    """What a redis-server has served so far: its commands by name (``INFO commandstats``,
    where each command of a pipeline counts one) and its reads of client sockets
    (``total_reads_processed``: one per round trip a client makes, a pipeline being one)."""

    commands: dict[str, int]
    reads: int

    def __sub__(self, other: CommandCounts) -> CommandCounts:
        names = set(self.commands) | set(other.commands)
        delta = {n: self.commands.get(n, 0) - other.commands.get(n, 0) for n in names}
        return CommandCounts({n: c for n, c in delta.items() if c}, self.reads - other.reads)

    @property
    def total(self) -> int:
        return sum(self.commands.values())


class RedisProc:
    """A ``redis-server`` child process on ``port``."""

    def __init__(self, executable: str, cpus: set[int] | None) -> None:
        self.port = procs.free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._dir.name]
        command += ["--protected-mode", "no", "--loglevel", "warning"]
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


def start_redis() -> RedisProc:
    """Start the bench's redis-server on the load generator's CPUs; a clear error without
    one on PATH."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError(
            "redis-server is not on PATH: install Redis (>= 7) to bench the gateway on Redis,"
            " or leave out the redis scenario (--only ...)"
        )
    return RedisProc(executable, procs.LOAD_CPUS)
