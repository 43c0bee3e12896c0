"""Test support: a real gateway on 127.0.0.1 in its own thread and event loop, and small
clients that read SSE the way a browser or curl would."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import io
import json
import logging
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import structlog
import uvloop
import websockets
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.server import make_server
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.telemetry.logs import configure_logging
from streams.events import Event
from streams.models import Model, ModelOutput, ModelRegistry
from streams.runs.manager import RunManager
from streams.spec import RunSpec
from streams.tools import ToolRegistry

# The tests that load the machine (the bench's smoke runs, the soak, a thousand clients,
# the workers' supervisors): run one after another in one test process (pytest-xdist's
# ``--dist loadgroup``), so none of them runs beside another and skews its timings.
HEAVY = pytest.mark.xdist_group("heavy")

T = TypeVar("T")

FAST = {
    "port": 0,
    "demo_token_delay": 0.001,
    "countdown_interval": 0.01,
    "heartbeat_interval": 15.0,
    "shutdown_grace": 0.05,
    "drain_timeout": 0.5,  # a test that stops its gateway mid-run does not wait for it
}


def server_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a server thread, of the kind the calling test runs on; uvloop (the
    gateway's own) outside a test's loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return uvloop.new_event_loop()
    if isinstance(running, uvloop.Loop):
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class RunningGateway:
    """A gateway served by uvicorn on a free port of 127.0.0.1, in a thread of its own, so
    the test's event loop and the server's never block each other."""

    def __init__(
        self,
        settings: Settings,
        *,
        tools: ToolRegistry | None = None,
        models: ModelRegistry | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.server = make_server(settings, tools=tools, models=models, span_exporter=span_exporter)
        self.app = self.server.config.app
        self.shutdown = self.server.app_shutdown
        self.loop = server_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="gateway", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(self.server.serve())
            listening = tasks.create_task(self.server.listening.wait())
            await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            self._started.set()

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(timeout=15) or not self.server.started:
            raise RuntimeError("the gateway did not start")
        self.port = self.server.bound_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.shutdown.set)
            self.server.should_exit = True
        self._thread.join(timeout=15)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()

    @property
    def state(self) -> GatewayState:
        state: GatewayState = self.app.state.gateway
        return state

    async def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the server's loop and await its result from the test's loop."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    async def wait_run(self, run_id: str, timeout: float = 10) -> dict[str, Any]:
        """Wait (on the server) until the run is terminal; return its snapshot."""

        async def wait() -> dict[str, Any]:
            run = self.state.manager.get_unchecked(run_id)
            await run.wait()
            return run.snapshot()

        return await self.call(wait(), timeout)

    async def open_streams(self, owner: str | None) -> int:
        """How many of ``owner``'s stream slots are held (in Redis, with a shared store)."""

        return await self.call(self.state.quotas.open_streams(owner))

    async def active_runs(self, owner: str | None) -> int:
        """How many of ``owner``'s active-run slots are held (in Redis, with a shared store)."""

        return await self.call(self.state.quotas.active_runs(owner))

    async def wait_on_server(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        """Poll ``condition`` on the server's loop (state that has no event to wait on)."""

        async def poll() -> None:
            async with asyncio.timeout(timeout):
                while not condition():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

        await self.call(poll(), timeout + 1)

    async def task_count(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks()) - 1  # not counting this one

        return await self.call(count())

    async def wait_task_count(self, expected: int, timeout: float = 10) -> int:
        """Wait until the server's loop has ``expected`` tasks (or fewer); return the count."""

        async def wait() -> int:
            async with asyncio.timeout(timeout):
                # Tasks end without a signal to wait on; poll the count.
                while len(asyncio.all_tasks()) - 1 > expected:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            return len(asyncio.all_tasks()) - 1

        return await self.call(wait(), timeout + 1)


# The Redis URL every running_gateway of the current test uses (the `backend` fixture sets
# it for the core suite's second pass); empty: the in-memory default.
SHARED_STORE: contextvars.ContextVar[str] = contextvars.ContextVar("SHARED_STORE", default="")


@contextlib.contextmanager
def running_gateway(
    tools: ToolRegistry | None = None,
    models: ModelRegistry | None = None,
    span_exporter: SpanExporter | None = None,
    groups: dict[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[RunningGateway]:
    """A gateway on 127.0.0.1 with these settings (``groups``: its ``models`` setting, the
    model groups; ``models`` is a registry of extra models)."""
    backend = {"redis_url": SHARED_STORE.get()} if SHARED_STORE.get() else {}
    if groups is not None:
        overrides["models"] = groups
    settings = Settings(**{**FAST, **backend, **overrides})
    gateway = RunningGateway(settings, tools=tools, models=models, span_exporter=span_exporter)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@dataclass
class SSEFrame:
    id: int | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def event(self) -> dict[str, Any]:
        assert self.data is not None
        value: dict[str, Any] = json.loads(self.data)
        return value


def parse_frame(raw: bytes) -> SSEFrame:
    frame = SSEFrame()
    for line in raw.decode().split("\n"):
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
        elif line.startswith("id: "):
            frame.id = int(line[4:])
        elif line.startswith("data: "):
            frame.data = line[6:]
        elif line:
            raise AssertionError(f"unexpected SSE line {line!r}")
    return frame


async def sse_frames(response: httpx.Response) -> AsyncIterator[SSEFrame]:
    """Frames of an SSE response as they arrive (LF-delimited, as the gateway sends them)."""
    buffer = b""
    async for chunk in response.aiter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            yield parse_frame(raw)
    assert buffer == b"", f"stream ended inside a frame: {buffer!r}"


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Only the events (not comments), checking that ``id:`` equals the event's seq."""
    async for frame in sse_frames(response):
        if frame.data is None:
            continue
        event = frame.event
        assert frame.id == event["seq"]
        yield event


async def collect(response: httpx.Response) -> list[dict[str, Any]]:
    return [event async for event in sse_events(response)]


SSE = {"accept": "text/event-stream"}


async def run_events(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Start a run with ``POST /v1/runs`` as an SSE stream and read it to the end."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


async def wait_for(awaitable: Awaitable[T], timeout: float = 10) -> T:
    return await asyncio.wait_for(awaitable, timeout)


def agent_spec(
    prompt: str, tools: list[str] | None = None, *, model: str = "demo", **extra: Any
) -> dict[str, Any]:
    """The spec of an agent run on ``model`` (the demo model) with one user message, the
    server ``tools`` and any ``extra`` field, as a client sends it (see :func:`run_spec`)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "tools": tools or [],
        **extra,
    }


def run_spec(
    prompt: str, tools: list[str] | None = None, *, model: str = "demo", **extra: Any
) -> RunSpec:
    """:func:`agent_spec` as the engine takes it, for tests without a server."""
    return RunSpec.model_validate(agent_spec(prompt, tools, model=model, **extra))


@contextlib.contextmanager
def captured_logs(level: str = "info") -> Iterator[io.StringIO]:
    """The gateway's real logging configuration, writing into a buffer; the root logger,
    the loggers it quiets and structlog are put back as they were afterwards."""
    root = logging.getLogger()
    quieted = [logging.getLogger(name) for name in ("uvicorn.error", "httpx")]
    handlers, root_level, levels = root.handlers[:], root.level, [q.level for q in quieted]
    was_configured, config = structlog.is_configured(), structlog.get_config()
    output = io.StringIO()
    try:
        configure_logging(level, stream=output)
        yield output
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for logger, logger_level in zip(quieted, levels, strict=True):
            logger.setLevel(logger_level)
        if was_configured:
            structlog.configure(**config)
        else:
            structlog.reset_defaults()


async def all_events(manager: RunManager, run_id: str) -> list[Event]:
    """Every event of the run ``run_id`` of ``manager`` (a run of the engine, no server)."""
    run = manager.get_unchecked(run_id)
    batch = await run.log.read(0, limit=10_000, timeout=0)
    return batch.events


class ScriptedModel(Model):
    """A model whose n-th turn yields ``turns[n]`` (the last turn again past the end; no
    turn: nothing), keeping a copy of the conversation each turn was given."""

    def __init__(self, name: str, *turns: Sequence[ModelOutput]) -> None:
        self.name = name
        self.turns = [list(turn) for turn in turns] or [[]]
        self.conversations: list[list[dict[str, Any]]] = []

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        self.conversations.append(copy.deepcopy([dict(m) for m in messages]))
        for item in self.turns[min(len(self.conversations), len(self.turns)) - 1]:
            yield item


async def ws_recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    """The next WebSocket message, parsed."""
    value: dict[str, Any] = json.loads(await ws.recv(decode=True))
    return value


async def ws_until(ws: websockets.ClientConnection, kind: str) -> list[dict[str, Any]]:
    """WebSocket messages up to and including the first of type ``kind``."""
    messages = [await ws_recv(ws)]
    while messages[-1]["type"] != kind:
        messages.append(await ws_recv(ws))
    return messages
