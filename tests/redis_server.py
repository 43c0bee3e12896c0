"""A real ``redis-server`` of the tests' own on 127.0.0.1: a free port, a temporary directory,
no persistence. A test may stop, kill, pause and restart it (on the same port) to see what
the gateway does when Redis goes away and comes back.

The process never outlives the test session: a finalizer (which also runs at interpreter
exit) kills whatever process the object still has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

import redis

START_TIMEOUT = 30.0  # a cluster's create and join, on a loaded machine too
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _reap(processes: list[subprocess.Popen[bytes]]) -> None:
    """Kill every process still running (the finalizer: it must not reference the server)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    processes.clear()


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``.

    ``start()`` picks a free port the first time and keeps it, so a server stopped or killed
    comes back where clients expect it.
    """

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shutil.which("redis-server") or "redis-server"
        self._port: int | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        # A list the finalizer shares: it holds the running process, if any, so the finalizer
        # can kill it without keeping this object alive.
        self._processes: list[subprocess.Popen[bytes]] = []
        self._finalizer = weakref.finalize(self, _reap, self._processes)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Redis server was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    @property
    def running(self) -> bool:
        return bool(self._processes) and self._processes[0].poll() is None

    def start(self) -> RedisServer:
        """Start the server (on the port of the last start, if any) and wait until it answers
        PING."""
        if self.running:
            raise RuntimeError(f"the Redis server on port {self.port} is already running")
        self._processes.clear()
        if self._port is not None:
            self._launch(self._port)
            return self
        # A port found free may be taken before redis-server binds it: try a few.
        for attempt in range(3):
            try:
                self._launch(free_port())
                break
            except _ExitedEarlyError:
                if attempt == 2:
                    raise
        return self

    def _launch(self, port: int) -> None:
        self._port = port
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        command = [self.executable]
        for name, value in self._options(port).items():
            command += [f"--{name}", value]
        # Before it opens its log file, redis-server reports bad options on stderr.
        with open(self._stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        self._processes.append(process)
        self._wait_for_ping(process)

    def _options(self, port: int) -> dict[str, str]:
        return {
            "port": str(port),
            "bind": "127.0.0.1",
            "protected-mode": "no",
            "save": "",  # no snapshots, no append-only file: nothing outlives the process
            "appendonly": "no",
            "dir": self._dir.name,
            "logfile": str(self.log_path),
            "daemonize": "no",
        }

    def _wait_for_ping(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    self._processes.clear()
                    raise _ExitedEarlyError(
                        f"redis-server exited with {process.returncode} before answering on "
                        f"port {self.port}:\n{self._log()}"
                    )
                with contextlib.suppress(redis.exceptions.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        _reap(self._processes)
        raise RuntimeError(
            f"redis-server did not answer PING on port {self.port} within {START_TIMEOUT:g}s:\n"
            f"{self._log()}"
        )

    @property
    def _stderr_path(self) -> Path:
        return Path(self._dir.name) / "redis.stderr"

    def _log(self) -> str:
        parts = []
        for path in (self._stderr_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts) or "(nothing logged)"

    def stop(self) -> None:
        """Shut the server down (SIGTERM) and wait until it has exited."""
        for process in self._processes:
            if process.poll() is None:
                # A paused process would hold SIGTERM pending until resumed.
                process.send_signal(signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()

    def kill(self) -> None:
        """Kill the server (SIGKILL): a crash, not a shutdown."""
        _reap(self._processes)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        if not self.running:
            raise RuntimeError("the Redis server is not running")
        os.kill(self._processes[0].pid, signum)

    def flushall(self) -> None:
        """Delete every key of every database."""
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5) as client:
            client.flushall()

    def close(self) -> None:
        """Stop the server and remove its directory; the object cannot start again."""
        self.stop()
        self._finalizer()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _ExitedEarlyError(RuntimeError):
    """redis-server exited before it answered (typically: its port was taken meanwhile)."""


class RedisClusterServers:
    """A real Redis Cluster of ``masters`` masters (no replicas) on 127.0.0.1: one
    ``redis-server --cluster-enabled yes`` per master on a free port, joined by
    ``redis-cli --cluster create``, ready once every node says ``cluster_state:ok``.

    ``url`` names two of the nodes as seeds (``redis+cluster://``): the client finds the
    third from them, as a client of a real cluster would.
    """

    def __init__(
        self,
        executable: str | None = None,
        cli: str | None = None,
        masters: int = 3,
    ) -> None:
        self.cli = cli or shutil.which("redis-cli") or "redis-cli"
        self.nodes = [_ClusterNode(executable) for _ in range(masters)]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])
        return f"redis+cluster://{seeds}/"

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(
            [self.cli, *create],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        self._wait_for_state_ok()
        return self

    def _wait_for_state_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.ports)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok on {pending}")
            with redis.Redis(host="127.0.0.1", port=pending[0], socket_timeout=1) as client:
                info = client.cluster("info")  # parsed by redis-py into a dict
                if info.get("cluster_state") == "ok" and self._knows_every_node(info):
                    pending.pop(0)
                    continue
            time.sleep(0.02)

    def _knows_every_node(self, info: dict[str, str]) -> bool:
        return int(info.get("cluster_known_nodes", 0)) == len(self.nodes)

    def flushall(self) -> None:
        """Delete every key on every master."""
        for node in self.nodes:
            node.flushall()

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _ClusterNode(RedisServer):
    """A ``redis-server`` that is one node of a cluster (its node table in its directory)."""

    def _options(self, port: int) -> dict[str, str]:
        return {
            **super()._options(port),
            "cluster-enabled": "yes",
            "cluster-config-file": str(Path(self._dir.name) / "nodes.conf"),
            "cluster-node-timeout": "2000",
            # The bus port defaults to the port + 10000, past 65535 for a high free port
            # (redis-server then exits at once): a free port of its own.
            "cluster-port": str(free_port()),
        }
