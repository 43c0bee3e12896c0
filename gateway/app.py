"""The app factory: ``create_app(settings)`` builds a FastAPI app whose lifespan owns every
long-lived resource (the run manager and its task group)."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.types import ASGIApp

from gateway.auth import KeyRing, StreamTokens
from gateway.errors import install_error_handlers
from gateway.faces import console
from gateway.faces.registry import FACES
from gateway.limits.body_size import BodySizeLimit
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.stores import stores_for
from gateway.streaming.disconnect import FOREIGN_HOST
from gateway.streaming.handoff import HandoffLayer
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.request_context import RequestContext
from gateway.telemetry.tracing import Telemetry
from gateway.transport.connections import ConnectionStats
from gateway.transport.hosts import AllowedHosts, HostCheck
from gateway.worker import Worker
from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.log import Retention
from streams.models import ModelRegistry
from streams.runs.limits import RunLimits
from streams.runs.manager import RunManager
from streams.tools import ToolRegistry
from streams.upstream.client import UpstreamModel, UpstreamObserver
from streams.upstream.group import GroupModel, GroupObserver
from streams.upstream.http import UpstreamHTTP
from streams.upstream.route import Route

__all__ = ["GatewayApp", "build_models", "create_app"]


def build_models(
    settings: Settings,
    routes: list[Route],
    http: UpstreamHTTP,
    extra: ModelRegistry | None,
    *,
    observer: UpstreamObserver | None = None,
    group_observer: GroupObserver | None = None,
    tracer: trace.Tracer | None = None,
) -> ModelRegistry:
    """``demo``, one upstream model per configured route, any ``extra`` models, the model
    groups of them, and the settings' model aliases of them all."""
    registry = ModelRegistry()
    registry.register(DemoModel("demo", token_delay=settings.demo_token_delay))
    for route in routes:
        transport = http.transport_for(route.base_url)
        registry.register(UpstreamModel(route, transport, observer=observer, tracer=tracer))
    for model in extra.models.values() if extra else ():
        registry.register(model)
    for group in settings.model_groups():
        registry.register(GroupModel(group, registry.models, observer=group_observer))
    for pattern, target in settings.model_aliases.items():
        registry.alias(pattern, target)
    return registry


def create_app(
    settings: Settings | None = None,
    *,
    models: ModelRegistry | None = None,
    tools: ToolRegistry | None = None,
    shutdown: asyncio.Event | None = None,
    drained: asyncio.Event | None = None,
    span_exporter: SpanExporter | None = None,
    connections: ConnectionStats | None = None,
    worker: Worker | None = None,
) -> FastAPI:
    """Build the gateway app.

    The models are ``demo``, the configured routes, and ``models`` if given; ``tools``
    default to the built-in tools. ``shutdown`` is set by the server when it starts
    draining, and the app sets ``drained`` once every run has ended, so open streams
    finish with their last events. Spans go to ``span_exporter``
    if given (tests), else to OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
    ``connections`` are the statistics of the server's connections (for ``/metrics``);
    ``worker`` says which worker of several this app is (``/readyz``, ``/metrics``).
    """
    settings = settings or Settings()
    # Resolved now, so a route whose API key is missing stops the start with a clear message.
    upstream_routes = settings.upstream_routes(os.environ)
    if tools is None:
        tools = builtin_tools(countdown_interval=settings.countdown_interval)
        if settings.tools is not None:
            tools = tools.subset(settings.tools)
    shutdown_event = shutdown or asyncio.Event()
    drained_event = drained or asyncio.Event()
    metrics = GatewayMetrics()
    telemetry = Telemetry(exporter=span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = RunLimits(
            max_active_runs=settings.max_active_runs,
            tool_timeout=settings.tool_timeout,
            client_tool_timeout=settings.client_tool_timeout,
            approvals=settings.approval_policy(),
            max_tool_calls_per_step=settings.max_tool_calls_per_step,
            max_step_text_bytes=settings.max_step_text_bytes,
            max_tool_arguments_bytes=settings.max_tool_arguments_bytes,
            retention=Retention(
                max_events=settings.retention_max_events,
                max_bytes=settings.retention_max_bytes,
                ttl=settings.retention_ttl,
            ),
        )
        keys = KeyRing(settings.api_keys)
        secret = settings.stream_token_secret or secrets.token_hex(32)
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(UpstreamHTTP())
            stores = await stack.enter_async_context(stores_for(settings, limits.retention))
            manager = await stack.enter_async_context(
                RunManager(
                    models=build_models(
                        settings,
                        upstream_routes,
                        http,
                        models,
                        observer=metrics,
                        group_observer=metrics,
                        tracer=telemetry.tracer,
                    ),
                    tools=tools,
                    limits=limits,
                    tracer=telemetry.tracer,
                    on_run_end=metrics.run_ended,
                    approval_observer=metrics,
                    log_factory=stores.log_factory,
                )
            )
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            directory = stores.directory(manager)
            quotas = stores.quotas()
            # Entered after the task group, so left before it: at shutdown the slots go
            # back (and stop being renewed) while the runs drain, as soon as draining starts.
            await stack.enter_async_context(quotas)
            state = GatewayState(
                settings=settings,
                manager=manager,
                runs=directory,
                keys=keys,
                tokens=StreamTokens(secret.encode(), settings.stream_token_ttl),
                quotas=quotas,
                chats=stores.chats,
                shutdown=shutdown_event,
                drained=drained_event,
                metrics=metrics,
                connections=connections or ConnectionStats(),
                worker=worker,
            )
            metrics.bind(state)
            app.state.gateway = state
            tasks.create_task(_drain_on_shutdown(state), name="drain-on-shutdown")
            try:
                yield
            finally:
                shutdown_event.set()
        telemetry.shutdown()

    app = GatewayApp(
        title="Agent gateway",
        version="0.1.0",
        summary="Runs of concurrent producers (models, tools, client tools) streamed as "
        "sequence-numbered events over SSE and WebSocket.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for face in FACES:
        app.include_router(face.router, responses=face.error_responses)
    console.mount_console(app)
    _document_errors_as_answered(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.checks_hosts:
        # Inside the request context, so a refused request is logged like any other.
        app.add_middleware(
            HostCheck,
            hosts=AllowedHosts(settings.allowed_hosts),
            on_websocket_refused=functools.partial(_count_refused_websocket, app),
        )
    # Outermost but CORS: every request, also a refused one, gets its id, span and log line.
    app.add_middleware(RequestContext, tracer=telemetry.tracer)
    if settings.cors_origins:
        # Starlette's CORS middleware is pure ASGI: it never buffers a stream.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "authorization",
                "x-api-key",
                "content-type",
                "last-event-id",
                "x-request-id",
                "traceparent",
                "tracestate",
            ],
            expose_headers=["x-run-id", "x-request-id", "retry-after"],
        )
    return app


class GatewayApp(FastAPI):
    """FastAPI with a :class:`~gateway.handoff.HandoffLayer` outside its whole middleware
    stack, so that streams run their bodies after the stack has unwound."""

    def build_middleware_stack(self) -> ASGIApp:
        return HandoffLayer(super().build_middleware_stack())


def _document_errors_as_answered(app: FastAPI) -> None:
    """FastAPI documents a 422 with its own body on every route that validates input; the
    gateway answers invalid input with a 400 and its error body (``ERROR_RESPONSES``), so
    the schema drops the 422s it never sends."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _count_refused_websocket(app: FastAPI) -> None:
    """A handshake refused for its ``Host`` counts as the origin check's refusals do."""
    state: GatewayState | None = getattr(app.state, "gateway", None)
    if state is not None:
        state.record_close("ws", FOREIGN_HOST.label)


async def _drain_on_shutdown(state: GatewayState) -> None:
    """When the server starts draining: no new runs (readiness goes false), running runs get
    ``drain_timeout`` to finish and are then cancelled (reason ``shutdown``), so every reader
    gets its run's terminal event; then open streams are told to close."""
    await state.shutdown.wait()
    await state.manager.drain(state.settings.drain_timeout, "shutdown")
    state.drained.set()
    # Give the streams time to deliver the runs' last events, then stop those still open.
    await asyncio.sleep(state.settings.shutdown_grace)
    state.sse_streams.close_all()
    state.ws_sessions.close_all()
