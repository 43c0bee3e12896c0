"""``gateway --workers N``: N worker processes serving one port, and the supervisor that keeps
them.

The supervisor (the process the user started) binds the listening socket once and starts the
workers with multiprocessing's ``spawn``: each is a fresh interpreter running a full gateway
(its own app, run manager and stores) on that socket, and they share runs through Redis
(:func:`gateway.worker.shared_store_problem` refuses the settings otherwise). The kernel
hands each new connection to whichever worker accepts it first.

Why ``spawn`` rather than re-executing ``python -m gateway``: the settings are validated once,
here, and every worker, a restarted one too, gets that same object (a config file edited
meanwhile cannot make one worker differ from the others); the socket travels as a passed
file descriptor; and ``multiprocessing.parent_process().sentinel`` is a ready-made
parent-death pipe (it reads end-of-file once the supervisor is gone, however it went), where
``prctl(PR_SET_PDEATHSIG)`` is Linux-only and races a parent that dies before it is set.

The supervisor runs a small event loop that serves no client: it waits on its workers'
sentinels and on SIGTERM/SIGINT. A signal drains every worker (each gets SIGTERM and runs the
gateway's own drain, :class:`gateway.server.GatewayServer`); what has not exited within
``drain_timeout + shutdown_grace + STOP_MARGIN`` is killed, and the log says so. A worker that
exits while the supervisor is not stopping is started again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import structlog

from gateway.server import event_loop_factory, serve
from gateway.settings import Settings
from gateway.telemetry.logs import configure_logging
from gateway.worker import Worker

__all__ = [
    "BACKLOG",
    "FIRST_BACKOFF",
    "HEALTHY_AFTER",
    "MAX_BACKOFF",
    "STOP_MARGIN",
    "Supervisor",
    "WorkerMain",
    "bind_socket",
    "describe_exit",
    "run_worker",
    "supervise",
]

logger = logging.getLogger("gateway.supervisor")

BACKLOG = 2048  # uvicorn's default: connections the kernel queues before a worker accepts
FIRST_BACKOFF = 0.5  # seconds before a worker that died is started again; doubled each time
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0  # a worker that ran this long before dying starts over at FIRST_BACKOFF
# Seconds the workers get past drain_timeout + shutdown_grace before they are killed: the
# server's own backstops (GatewayServer.shutdown, uvicorn's graceful timeout) come first.
STOP_MARGIN = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def describe_exit(code: int | None) -> str:
    """A process's exit status as a log line says it: ``exit code 3``, ``signal SIGKILL``."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


def run_worker(settings: Settings, sock: socket.socket, index: int) -> None:
    """A worker process's main: the gateway on ``sock`` as worker ``index``, until SIGTERM or
    until its supervisor is gone (then it drains as on SIGTERM: no orphan keeps serving)."""
    worker = Worker.of(settings, index)
    configure_logging(settings.log_level)
    # Every line of this process, the gateway's and uvicorn's, says which worker wrote it.
    structlog.contextvars.bind_contextvars(worker=index)
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None

    async def orphaned() -> None:
        assert sentinel is not None
        await _readable(sentinel)

    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=event_loop_factory()) as runner,
    ):
        runner.run(
            serve(
                worker.settings(settings),
                sockets=[sock],
                worker=worker,
                stop_when=orphaned if sentinel is not None else None,
            )
        )


async def _readable(fd: int) -> None:
    """Return once ``fd`` is readable (for a sentinel: once the process at its other end is
    gone)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


WorkerMain = Callable[[Settings, socket.socket, int], None]


class Supervisor:
    """Keeps ``settings.workers`` workers serving ``sock`` until it is told to stop.

    A worker process runs ``target(settings, sock, index)`` (:func:`run_worker`; a test's
    stand-in must be importable by name, as ``spawn`` imports it anew)."""

    def __init__(
        self, settings: Settings, sock: socket.socket, *, target: WorkerMain = run_worker
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.target = target
        self.deadline = settings.drain_timeout + settings.shutdown_grace + STOP_MARGIN
        self.restarts = 0  # workers started again after an unexpected exit
        self.killed = 0  # workers killed for not draining within the deadline
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._stopping = asyncio.Event()
        self._all_exited = asyncio.Event()

    @property
    def pids(self) -> dict[int, int | None]:
        """Worker number → pid of the workers running now."""
        return {index: process.pid for index, process in self._processes.items()}

    @property
    def stopping(self) -> bool:
        """Whether the workers are being drained (no worker is started from then on)."""
        return self._stopping.is_set()

    async def run(self) -> int:
        """Start the workers and keep them until SIGTERM/SIGINT (or :meth:`stop`) and their
        drain are over. The exit status: 0, or 1 if a worker had to be killed."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for signum in signals:
            loop.add_signal_handler(signum, self.stop, signum)
        try:
            async with asyncio.TaskGroup() as tasks:
                for index in range(1, self.settings.workers + 1):
                    tasks.create_task(self._keep(index), name=f"worker-{index}")
                tasks.create_task(self._enforce_deadline(), name="stop-deadline")
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
        return 1 if self.killed else 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Drain every worker (SIGTERM to each), once."""
        if self._stopping.is_set():
            return
        logger.info(
            "%s: draining %d worker(s) (at most %.0fs)",
            signal.Signals(signum).name,
            len(self._processes),
            self.deadline,
        )
        self._stopping.set()
        for process in self._processes.values():
            # SIGTERM, never SIGINT: a worker that got the terminal's SIGINT already would
            # take a second SIGINT as uvicorn's "exit now, without draining".
            process.terminate()
        self._note_exits()

    def _note_exits(self) -> None:
        if self._stopping.is_set() and not self._processes:
            self._all_exited.set()

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        backoff = FIRST_BACKOFF
        while not self._stopping.is_set():
            process = self._context.Process(
                target=self.target,
                args=(self.settings, self.sock, index),
                name=f"gateway-worker-{index}",
            )
            try:
                # A fork-exec and the settings written to a pipe: milliseconds, on a loop
                # that serves no client.
                process.start()
            except OSError as exc:  # out of processes or files: try again, later
                logger.error("worker %d could not start: %s", index, exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            pid = process.pid
            self._processes[index] = process
            started = loop.time()
            logger.info("worker %d started (pid %s)", index, pid)
            code = await _exit_of(process)
            del self._processes[index]
            if self._stopping.is_set():
                logger.info("worker %d (pid %s) exited (%s)", index, pid, code)
                break
            if loop.time() - started >= HEALTHY_AFTER:
                backoff = FIRST_BACKOFF
            logger.warning(
                "worker %d (pid %s) exited unexpectedly (%s): starting it again in %.1fs",
                index,
                pid,
                code,
                backoff,
            )
            self.restarts += 1
            await self._pause(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        self._note_exits()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the supervisor is told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _enforce_deadline(self) -> None:
        await self._stopping.wait()
        try:
            async with asyncio.timeout(self.deadline):
                await self._all_exited.wait()
        except TimeoutError:
            for index, process in self._processes.items():
                logger.error(
                    "worker %d (pid %s) did not drain within %.0fs: killed (SIGKILL)",
                    index,
                    process.pid,
                    self.deadline,
                )
                process.kill()
                self.killed += 1


async def _exit_of(process: BaseProcess) -> str:
    """Wait for ``process`` to exit (its sentinel becomes readable), reap it, and say how it
    ended."""
    await _readable(process.sentinel)
    process.join()  # it has exited: this only reaps it
    code = process.exitcode
    process.close()
    return describe_exit(code)


def supervise(settings: Settings) -> int:
    """``gateway --workers N``: bind, serve with ``settings.workers`` workers until
    SIGTERM/SIGINT, drain them. The exit status."""
    configure_logging(settings.log_level)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    with sock:
        logger.info(
            "gateway listening on http://%s:%d with %d workers (console at /, docs at /docs)%s",
            settings.host,
            sock.getsockname()[1],
            settings.workers,
            "" if settings.api_keys else "; open (no API keys), on loopback only",
        )
        # The loop the workers run on (uvloop), though this one serves no client: one loop
        # in production, the one the tests hold.
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(Supervisor(settings, sock).run())
