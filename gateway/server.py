"""Running the gateway under uvicorn, with shutdown passed to the app as an event."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import resource
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.app import create_app
from gateway.settings import Settings
from gateway.telemetry.logs import configure_logging
from gateway.transport.connections import ConnectionPolicy, ConnectionStats, protocol_classes
from gateway.worker import Worker
from streams.models import ModelRegistry
from streams.tools import ToolRegistry

__all__ = [
    "RESERVED_FILES",
    "YOUNG_COLLECTION_THRESHOLD",
    "GatewayServer",
    "OpenFilesLimit",
    "event_loop_factory",
    "make_server",
    "raise_open_files_limit",
    "run",
    "serve",
    "settle_heap",
]

logger = logging.getLogger("gateway")


class GatewayServer(uvicorn.Server):
    """A uvicorn server that drains the gateway before it closes connections.

    On SIGTERM/SIGINT (or ``should_exit``) uvicorn's own shutdown would close every
    WebSocket at once and cut streams. First, the app is told (``shutdown``): it stops taking
    runs, gives running ones ``drain_timeout`` and cancels the rest, so every reader gets its
    run's terminal event (``drained``); the streams then get ``shutdown_grace`` to deliver it
    and close themselves (WebSockets with 1012). Only then does uvicorn's shutdown run.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        shutdown: asyncio.Event,
        drained: asyncio.Event,
        *,
        drain_timeout: float,
        grace: float,
    ) -> None:
        super().__init__(config)
        self.app_shutdown = shutdown
        self.app_drained = drained
        self.drain_timeout = drain_timeout
        self.grace = grace
        self.listening = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.app_shutdown.set)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app_shutdown.set()
        # Bounded: a drain that does not finish must not keep the process alive.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_timeout + 2):
                await self.app_drained.wait()
            await asyncio.sleep(self.grace)
        await super().shutdown(sockets)

    @property
    def bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("the server is not listening")


def make_server(
    settings: Settings,
    *,
    models: ModelRegistry | None = None,
    tools: ToolRegistry | None = None,
    span_exporter: SpanExporter | None = None,
    worker: Worker | None = None,
) -> GatewayServer:
    """A server for ``settings`` (not started); ``worker`` if it is one of several."""
    shutdown, drained = asyncio.Event(), asyncio.Event()
    connections = ConnectionStats()
    app = create_app(
        settings,
        models=models,
        tools=tools,
        shutdown=shutdown,
        drained=drained,
        span_exporter=span_exporter,
        connections=connections,
        worker=worker,
    )
    http, ws = protocol_classes(
        ConnectionPolicy(
            max_connections=settings.max_connections,
            first_byte_timeout=settings.first_byte_timeout,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
            close_linger=settings.close_linger,
            ws_close_timeout=settings.ws_close_timeout,
            stats=connections,
        )
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.access_log,
        # Ours: deadlines before a request is complete, a cap on connections, and closes
        # that reset a connection whose peer does not read (gateway.connections).
        http=http,
        ws=ws,
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout),
        # A hard cap well above the gateway's own limit, which answers with an error and
        # keeps the session; past this one uvicorn closes the socket (1009).
        ws_max_size=settings.ws_max_message_bytes * 4,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        # Draining (drain_timeout) and the streams' grace come first; this is the backstop.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout + settings.shutdown_grace) + 5,
        lifespan="on",
    )
    return GatewayServer(
        config,
        shutdown,
        drained,
        drain_timeout=settings.drain_timeout,
        grace=settings.shutdown_grace,
    )


# Descriptors the gateway needs besides its clients' connections: its listening socket,
# upstream and Redis pools, log files, the interpreter's own.
RESERVED_FILES = 256


@dataclass(frozen=True, slots=True)
class OpenFilesLimit:
    """The process's limit on open files (RLIMIT_NOFILE), as start-up left it."""

    soft: int
    hard: int
    needed: int  # max_connections + RESERVED_FILES

    @property
    def low(self) -> bool:
        return self.soft != resource.RLIM_INFINITY and self.soft < self.needed

    def describe(self) -> str:
        text = f"open files limit {self.soft} (hard {self.hard})"
        if self.low:
            text += (
                f": lower than the {self.needed} that max_connections needs; past "
                f"{max(self.soft - RESERVED_FILES, 0)} connections new clients may be refused "
                "by the kernel before the gateway can answer them. Raise it (ulimit -n, "
                "LimitNOFILE=, the container's nofile) or lower GATEWAY_MAX_CONNECTIONS"
            )
        return text


def raise_open_files_limit(max_connections: int) -> OpenFilesLimit:
    """Raise the soft limit on open files toward what ``max_connections`` needs (never past
    the hard limit, which only an administrator can raise), and say where it stands."""
    needed = max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return OpenFilesLimit(soft, hard, needed)


async def serve(
    settings: Settings,
    *,
    sockets: list[socket.socket] | None = None,
    worker: Worker | None = None,
    stop_when: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain. A worker of several serves ``sockets`` (bound
    by the supervisor) rather than binding ``settings.host``/``port``, and drains as on
    SIGTERM once ``stop_when()`` returns (its supervisor is gone)."""
    files = raise_open_files_limit(settings.max_connections)
    (logger.warning if files.low else logger.info)("%s", files.describe())
    server = make_server(settings, worker=worker)

    async def announce() -> None:
        await server.listening.wait()
        settle_heap()
        if worker is not None:
            logger.info(
                "worker %d (instance %s) serving on port %d",
                worker.index,
                worker.instance,
                server.bound_port,
            )
            return
        logger.info(
            "gateway listening on http://%s:%d (console at /, docs at /docs)%s",
            settings.host,
            server.bound_port,
            "" if settings.api_keys else "; open (no API keys), on loopback only",
        )

    async def stop_on_cue() -> None:
        assert stop_when is not None
        await stop_when()
        logger.warning("the supervisor is gone: draining")
        server.handle_exit(signal.SIGTERM, None)

    async with asyncio.TaskGroup() as tasks:
        helpers = [tasks.create_task(announce())]
        if stop_when is not None:
            helpers.append(tasks.create_task(stop_on_cue()))
        try:
            await server.serve(sockets)  # uvicorn raises SystemExit if it cannot bind
        finally:
            for helper in helpers:
                helper.cancel()


YOUNG_COLLECTION_THRESHOLD = 50_000


def settle_heap() -> None:
    """Tune the cyclic collector for a server of many long-lived connections.

    Start-up's objects (modules, FastAPI's routes, pydantic's validators: tens of thousands)
    are moved out of its sight, since a full collection walks every tracked object.
    Measured at 100 streams: full collections 0.44 s → 0.25 s per 5 s of CPU.

    Young collections run every 50,000 allocations instead of 700: objects that live for a
    heartbeat or a request (timers, pings, frames) then die young instead of being promoted,
    and promotion is what triggers full collections. With 9,500 idle WebSocket sessions
    (1.4 million objects) full collections of up to 1 s came every few seconds while idle,
    and heartbeats arrived late; with this threshold none ran, in the ramp-up or after, and
    the young collections took 14 ms on average.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (it is, with uvicorn[standard]), as ``uvicorn.run`` would
    choose: the gateway runs ``serve()`` in a loop of its own, so uvicorn cannot pick it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings))
