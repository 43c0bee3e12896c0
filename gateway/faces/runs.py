"""HTTP routes: runs (start, read, stream, cancel), the model and tool listings, health."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from gateway.admission import start_run as admit
from gateway.auth import Principal, key_from_headers
from gateway.deps import connection, gateway, principal, principal_of
from gateway.errors import RUN_FINISHED_RESPONSE
from gateway.responses import JSONResponse
from gateway.streaming.run_stream import (
    cursor_from,
    dialect_stream,
    event_stream,
    read_to_the_end,
    start_streamed,
)
from streams.approvals import MAX_REASON_LENGTH
from streams.dialects.registry import DEFAULT_DIALECT, DIALECTS, DialectName, describe_dialects
from streams.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
)
from streams.spec import RunSpec
from streams.view import RunView

__all__ = [
    "CANCEL_WAIT",
    "ApprovalBody",
    "answer_approval",
    "cancel_run",
    "get_model",
    "get_run",
    "healthz",
    "list_models",
    "list_tools",
    "metrics",
    "readyz",
    "run_events",
    "start_run",
]

router = APIRouter()

CANCEL_WAIT = 5.0  # seconds POST /cancel waits for the run to reach its terminal state


def _links(run: RunView) -> dict[str, str]:
    base = f"/v1/runs/{run.id}"
    return {"url": base, "events_url": f"{base}/events", "cancel_url": f"{base}/cancel"}


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
    spec: RunSpec,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Start a run. With `Accept: text/event-stream` the answer is the run's event stream
    (and closing it cancels the run unless `on_disconnect` is `continue`). The JSON answer
    carries a `token` that opens this run's `events_url` for a browser's EventSource."""
    state = gateway(request)
    if spec.client_tools and spec.client_tool_mode == "await":
        raise InvalidRequestError(
            "client_tools with client_tool_mode 'await' need a channel back to the client: "
            "start the run on the WebSocket (/v1/ws), or use client_tool_mode 'return'"
        )
    streaming = _wants_stream(accept)
    start = functools.partial(
        admit,
        state,
        spec,
        connection(request),
        caller,
        default_on_disconnect="cancel" if streaming else "continue",
    )
    if streaming:
        run, slot = await start_streamed(state, caller.owner, start)
        return event_stream(state, run, 0, slot=slot)
    run = await start()
    token = state.tokens.issue(run.id)
    body = {
        "run_id": run.id,
        "status": run.status.value,
        **_links(run),
        "token": token,
        "token_expires_in": state.tokens.ttl,
    }
    return JSONResponse(body, status_code=201, headers={"location": f"/v1/runs/{run.id}"})


@router.get("/v1/runs/{run_id}")
async def get_run(
    run_id: str, request: Request, caller: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    """The run's current state: status, output, producers, usage, last seq."""
    run = await gateway(request).find_run(run_id, caller.owner)
    return {**run.snapshot(), **_links(run)}


async def _run_for_stream(request: Request, run_id: str, token: str | None) -> RunView:
    """The run a stream request may read: by the caller's key, or by a stream token that
    names this run (what a browser's EventSource, which cannot set headers, sends)."""
    state = gateway(request)
    presented = key_from_headers(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    if token is not None and presented is None:
        run = await state.find_run_unchecked(run_id)
        if not state.tokens.verify(token, run.id):
            raise AuthenticationError("the stream token is not valid for this run, or expired")
        return run
    return await state.find_run(run_id, principal_of(request).owner)


@router.get(
    "/v1/runs/{run_id}/events",
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {
            "description": "The run has ended and the cursor is at (or past) its terminal "
            "event: nothing more will come. This ends a browser's EventSource."
        },
    },
)
async def run_events(
    run_id: str,
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="Resume after this seq")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    token: Annotated[
        str | None, Query(description="A stream token from the POST /v1/runs answer")
    ] = None,
    format: Annotated[DialectName, Query(description=describe_dialects())] = DEFAULT_DIALECT,
) -> Response:
    """The run's events as SSE, from the start or after a cursor (`Last-Event-ID` or
    `?after=`). Events no longer retained are replaced by one `stream.gap` event.
    `format=ag-ui` streams them as AG-UI 1.0 events (with the same seqs as `id:`).
    A resume at or past the terminal event of a run that has ended is a 204."""
    state = gateway(request)
    run = await _run_for_stream(request, run_id, token)
    cursor = cursor_from(last_event_id, after)
    if read_to_the_end(run, cursor):
        # EventSource takes the end of a stream for a dropped connection and reconnects,
        # with Last-Event-ID = the terminal seq, every few seconds; a 204 ends it for good
        # (WHATWG HTML, server-sent events), where a 200 with the end again would not.
        return Response(status_code=204, headers={"x-run-id": run.id, "cache-control": "no-store"})
    return await dialect_stream(state, run, cursor, DIALECTS[format])


@router.post("/v1/runs/{run_id}/cancel", responses=RUN_FINISHED_RESPONSE)
async def cancel_run(
    run_id: str, request: Request, caller: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    """Cancel the run: every producer is cancelled and the log ends with `run.cancelled`."""
    state = gateway(request)
    run = await state.cancel_run(run_id, "cancelled by client", caller.owner)
    try:
        async with asyncio.timeout(CANCEL_WAIT):
            await run.wait()
    except TimeoutError:
        pass
    return {**run.snapshot(), **_links(run)}


class ApprovalBody(BaseModel):
    """A person's answer to a tool call waiting for approval."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    arguments: dict[str, Any] | None = Field(
        default=None,
        description="With approve: the arguments the tool runs with instead (checked "
        "against its schema)",
    )


@router.post("/v1/runs/{run_id}/approvals/{call_id}", responses=RUN_FINISHED_RESPONSE)
async def answer_approval(
    run_id: str,
    call_id: str,
    body: ApprovalBody,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> dict[str, Any]:
    """Approve or deny the run's tool call `call_id` that waits for a person
    (`tool.approval_requested`): the log gets `tool.approved` or `tool.denied`. Only the
    run's owner or an approver key may answer; a second answer is a 409."""
    await gateway(request).answer_approval(
        run_id, call_id, caller.owner, body.decision, body.reason, body.arguments
    )
    return {"run_id": run_id, "call_id": call_id, "decision": body.decision}


def _model_entry(name: str, description: str) -> dict[str, Any]:
    """A served model as both OpenAI's and Anthropic's model objects (each SDK reads its
    own fields and ignores the other's)."""
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "gateway",
        "description": description,
        "type": "model",
        "display_name": name,
        "created_at": "1970-01-01T00:00:00Z",
    }


@router.get("/v1/models", dependencies=[Depends(principal)])
async def list_models(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 1000
) -> dict[str, Any]:
    """Models this gateway serves, in OpenAI's list shape and Anthropic's at once
    (``data``, ``has_more``, ``first_id``, ``last_id``; Claude Code asks with
    ``?limit=1000``)."""
    models = gateway(request).manager.models
    names = models.names()
    data = [_model_entry(name, models.get(name).description) for name in names[:limit]]
    return {
        "object": "list",
        "data": data,
        "has_more": len(names) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/v1/models/{model_id}", dependencies=[Depends(principal)])
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """One served model (``models.retrieve`` of either SDK)."""
    models = gateway(request).manager.models
    if model_id not in models.names():
        raise ModelNotFoundError(f"model: {model_id}")
    return _model_entry(model_id, models.get(model_id).description)


@router.get("/v1/tools", dependencies=[Depends(principal)])
async def list_tools(request: Request) -> dict[str, Any]:
    """Server-side tools a run may enable, with their JSON schemas."""
    return {"data": gateway(request).manager.tools.describe()}


@router.get("/metrics", response_class=Response, include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: streams, runs, events, upstream latency, errors, breakers."""
    body = gateway(request).metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "Draining: no new work (the same body, `status` `draining`).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Ready to take work (false while draining)."""
    state = gateway(request)
    if state.shutdown.is_set() or state.manager.closing:
        return JSONResponse({"status": "draining"}, status_code=503)
    store = state.runs.statistics().to_dict()
    if not state.ready:
        return JSONResponse({"status": "store_unavailable", **store}, status_code=503)
    worker = {} if state.worker is None else {"worker": state.worker.index}
    return JSONResponse(
        {"status": "ready", **worker, **state.manager.statistics().to_dict(), **store}
    )
