"""HTTP routes: runs (start, read, stream, cancel), the model and tool listings, health."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from streams.encoding import encode_sse_batch
from streams.errors import InvalidRequestError
from streams.events import Event
from streams.reader import RunReader
from streams.runs import Run
from streams.spec import RunSpec

from .responses import JSONResponse
from .sse import EventStreamResponse
from .state import GatewayState

router = APIRouter()

CANCEL_WAIT = 5.0  # seconds POST /cancel waits for the run to reach its terminal state


def gateway(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _links(run: Run) -> dict[str, str]:
    base = f"/v1/runs/{run.id}"
    return {"url": base, "events_url": f"{base}/events", "cancel_url": f"{base}/cancel"}


def event_stream(
    state: GatewayState,
    run: Run,
    after: int,
    encode: Callable[[list[Event]], bytes] = encode_sse_batch,
) -> EventStreamResponse:
    """The SSE response for ``run`` from cursor ``after``, in the dialect ``encode`` makes."""
    settings = state.settings
    return EventStreamResponse(
        RunReader(state.manager, run, after),
        heartbeat=settings.heartbeat_interval,
        send_timeout=settings.send_timeout,
        shutdown=state.shutdown,
        shutdown_grace=settings.shutdown_grace,
        headers={"x-run-id": run.id},
        on_close=functools.partial(state.record_close, "sse"),
        encode=encode,
    )


def _wants_stream(accept: str | None) -> bool:
    return accept is not None and "text/event-stream" in accept.lower()


@router.post(
    "/v1/runs",
    status_code=201,
    responses={
        201: {"description": "The run started (JSON answer)."},
        200: {
            "description": "With `Accept: text/event-stream`: the run's events as SSE.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def start_run(
    spec: RunSpec, request: Request, accept: Annotated[str | None, Header()] = None
) -> Response:
    """Start a run. With `Accept: text/event-stream` the answer is the run's event stream
    (and closing it cancels the run unless `on_disconnect` is `continue`)."""
    state = gateway(request)
    if spec.client_tools and spec.client_tool_mode == "await":
        raise InvalidRequestError(
            "client_tools with client_tool_mode 'await' need a channel back to the client: "
            "start the run on the WebSocket (/v1/ws), or use client_tool_mode 'return'"
        )
    client = request.client
    key = f"http:{client.host}:{client.port}" if client else "http:unknown"
    streaming = _wants_stream(accept)
    run = state.manager.start(
        spec,
        state.connection(key),
        default_on_disconnect="cancel" if streaming else "continue",
    )
    if streaming:
        return event_stream(state, run, 0)
    body = {"run_id": run.id, "status": run.status.value, **_links(run)}
    return JSONResponse(body, status_code=201, headers={"location": f"/v1/runs/{run.id}"})


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    """The run's current state: status, output, producers, usage, last seq."""
    run = gateway(request).manager.get(run_id)
    return {**run.snapshot(), **_links(run)}


def cursor_from(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None:  # EventSource's own reconnect: newer than ?after=
        try:
            return int(last_event_id.strip())
        except ValueError:
            raise InvalidRequestError(
                f"Last-Event-ID must be an event's seq (a whole number), not {last_event_id!r}"
            ) from None
    return after or 0


@router.get(
    "/v1/runs/{run_id}/events",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_events(
    run_id: str,
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="Resume after this seq")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    format: Annotated[
        Literal["native", "ag-ui"],
        Query(description="The dialect: native events, or AG-UI 1.0 events"),
    ] = "native",
) -> Response:
    """The run's events as SSE, from the start or after a cursor (`Last-Event-ID` or
    `?after=`). Events no longer retained are replaced by one `stream.gap` event.
    `format=ag-ui` streams them as AG-UI 1.0 events (with the same seqs as `id:`)."""
    state = gateway(request)
    run = state.manager.get(run_id)
    cursor = cursor_from(last_event_id, after)
    if format == "ag-ui":
        from .agui import agui_events  # here, not at the top: gateway.agui imports this module

        return await agui_events(state, run, cursor)
    return event_stream(state, run, cursor)


@router.post("/v1/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel the run: every producer is cancelled and the log ends with `run.cancelled`."""
    state = gateway(request)
    run = state.manager.cancel(run_id, "cancelled by client")
    try:
        async with asyncio.timeout(CANCEL_WAIT):
            await run.wait()
    except TimeoutError:
        pass
    return {**run.snapshot(), **_links(run)}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Models this gateway serves (OpenAI's list shape)."""
    manager = gateway(request).manager
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "gateway",
                "description": manager.models.get(name).description,
            }
            for name in manager.models.names()
        ],
    }


@router.get("/v1/tools")
async def list_tools(request: Request) -> dict[str, Any]:
    """Server-side tools a run may enable, with their JSON schemas."""
    return {"data": gateway(request).manager.tools.describe()}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to take work (false while draining)."""
    state = gateway(request)
    if state.shutdown.is_set() or state.manager.closing:
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ready", **state.manager.statistics()})
