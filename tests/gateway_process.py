"""Real gateway processes (``python -m gateway``) for tests that need several instances, a
SIGKILL or a restart: each on a free port of 127.0.0.1, its stderr (the log) drained all
along so the pipe never fills, and every process killed when the test ends, however it ends.

    async with gateway_processes(2, redis_url=url, lease_ttl=1.5) as (a, b):
        async with a.client() as client:
            ...
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from gateway.auth import hash_key

T = TypeVar("T")

START_TIMEOUT = 20.0  # seconds a process may take to say where it listens
STOP_TIMEOUT = 5.0  # seconds a SIGTERM may take before the process is killed

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

# Settings every test process gets unless it says otherwise: fast demo producers, a short
# drain so that stopping a process with runs still going takes no time.
DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "demo_token_delay": 0.001,
    "countdown_interval": 0.01,
    "drain_timeout": 0.2,
    "shutdown_grace": 0.1,
    "log_level": "info",
}

# Pids of the processes started here and not yet reaped: killed at interpreter exit should a
# test's own cleanup never run (the process aborted). A pid leaves the set once reaped, so
# no other process that reuses the number is ever signalled.
_alive: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_alive):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _alive.clear()


def env_value(value: Any) -> str:
    """A setting as pydantic-settings reads it from the environment (JSON for dicts, lists
    and booleans)."""
    if isinstance(value, dict | list | bool):
        return json.dumps(value)
    return str(value)


def api_keys(*keys: str) -> dict[str, str]:
    """The ``api_keys`` setting for keys named after themselves: ``{key: "sha256:..."}``."""
    return {key: hash_key(key) for key in keys}


class GatewayProcess:
    """One ``python -m gateway`` process: its port, its log lines, and how to end it."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.env = dict(env)
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log: deque[str] = deque(maxlen=2000)  # the latest log lines
        self._drain: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[int] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def client(self, key: str | None = None, timeout: float = 10) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listening = loop.create_future()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _alive.add(self.process.pid)
        self._drain = asyncio.create_task(self._read_log(), name=f"gateway-{self.name}-log")
        try:
            async with asyncio.timeout(START_TIMEOUT):
                self.port = await asyncio.shield(self._listening)
        except TimeoutError:
            raise RuntimeError(
                f"gateway {self.name} did not listen within {START_TIMEOUT:g}s:\n{self.tail()}"
            ) from None

    async def _read_log(self) -> None:
        """Read the process's stderr to its end (always: a full pipe would block it)."""
        assert self.process is not None and self.process.stderr is not None
        assert self._listening is not None
        # This process's own: once it is killed and started again, the new process has a
        # future of its own, which this one's end must not fail (on uvloop a process's exit
        # can be seen before the end of its stderr).
        listening = self._listening
        stream = self.process.stderr
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line beyond the reader's limit: take what there is
                raw = await stream.read(64 * 1024)
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            if not listening.done() and (found := _LISTENING.search(line)):
                listening.set_result(int(found.group(1)))
        if not listening.done():
            listening.set_exception(
                RuntimeError(f"gateway {self.name} exited before listening:\n{self.tail()}")
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.log)[-lines:]) or "(nothing logged)"

    def kill(self) -> None:
        """SIGKILL: the instance dies without a word (no lease deleted, nothing flushed)."""
        if self.running:
            assert self.process is not None
            self.process.kill()

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
        _alive.discard(self.process.pid)
        return code

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process is still there after ``STOP_TIMEOUT``; wait
        for it, and for its log to be read to the end."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await self.wait(STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        with contextlib.suppress(TimeoutError):
            await self.wait(STOP_TIMEOUT)
        if self._drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2):
                    await self._drain
            self._drain.cancel()


def gateway_env(name: str, redis_url: str | None, settings: Mapping[str, Any]) -> dict[str, str]:
    """The environment of one process: ours without any ``GATEWAY_*`` variable, then the
    defaults, the Redis URL and instance id, and ``settings`` (names as in Settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    values: dict[str, Any] = {**DEFAULTS, "instance_id": name}
    if redis_url is not None:
        values["redis_url"] = redis_url
    values.update(settings)
    for setting, value in values.items():
        if value is not None:
            env[f"GATEWAY_{setting.upper()}"] = env_value(value)
    return env


@contextlib.asynccontextmanager
async def gateway_processes(
    count: int,
    *,
    redis_url: str | None,
    names: tuple[str, ...] = ("a", "b", "c", "d"),
    **settings: Any,
) -> AsyncIterator[list[GatewayProcess]]:
    """``count`` gateway processes sharing ``redis_url`` (instances ``a``, ``b``, ...),
    started at once; every one is stopped on the way out, whatever happened. Their log tails
    are printed then (pytest shows them for a failed test)."""
    gateways = [
        GatewayProcess(names[i], gateway_env(names[i], redis_url, settings)) for i in range(count)
    ]
    try:
        await asyncio.gather(*(gateway.start() for gateway in gateways))
        yield gateways
    finally:
        # Shielded: a test cancelled (timed out) must still not leave a process behind.
        await asyncio.shield(asyncio.gather(*(g.stop() for g in gateways), return_exceptions=True))
        for gateway in gateways:
            print(f"--- gateway {gateway.name} log (tail) ---\n{gateway.tail(200)}")


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``check`` until it returns a truthy value (returned) or ``timeout`` passes (an
    AssertionError naming ``what`` and the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g}s (last: {last!r})")
        await asyncio.sleep(interval)
