"""The Anthropic Messages face: ``POST /v1/messages`` (streamed and not) and
``POST /v1/messages/count_tokens``, so the anthropic SDKs and Claude Code, pointed at the
gateway with ``ANTHROPIC_BASE_URL``, work unchanged, onto any upstream.

A message is a run: an agent run whose ``tools`` are the client's (returned as ``tool_use``
blocks with ``stop_reason: "tool_use"``: the run ends after the step that calls them) and
whose MCP server named ``gateway`` (``mcp_servers``) offers the gateway's own tools (run
here, reported as ``mcp_tool_use`` / ``mcp_tool_result`` blocks). Its stream is the run's
log in the ``anthropic`` dialect (:mod:`streams.dialects.anthropic_messages`), so it is
readable as native events (``x-run-id``), resumable (``GET /v1/runs/{id}/events?
format=anthropic`` with ``Last-Event-ID``) and stoppable like any run; a client that leaves
cancels it, and with it the upstream request.

Streaming is decided by the body's ``stream``, never by ``Accept`` (Claude Code sends
``Accept: application/json`` with ``"stream": true``). Errors are Anthropic's shape, by
path (:func:`gateway.errors.error_shape_for`); ``x-api-key`` and ``Authorization: Bearer``
both authenticate; ``anthropic-version`` is accepted; ``anthropic-beta`` goes to Anthropic
upstreams.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from gateway.admission import check_spec_limits, start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.errors import anthropic_error_body, status_of_failed_run
from gateway.responses import JSONResponse
from gateway.state import GatewayState
from gateway.streaming.run_stream import event_stream, start_streamed, wait_unless_disconnected
from streams.dialects.anthropic_input import (
    MessagesRequest,
    betas_of,
    conversation_of,
    options_of,
    tools_of,
)
from streams.dialects.anthropic_messages import (
    METADATA_KEY,
    PING_FRAME,
    MessagesEncoder,
    error_frame,
)
from streams.dialects.retraction import without_retracted
from streams.errors import InvalidRequestError, ModelNotFoundError
from streams.events import EventType
from streams.reader import RunReader
from streams.runs.agent import model_input
from streams.spec import RunSpec
from streams.tokens import estimate_tokens

__all__ = ["count_tokens", "create_message", "messages_spec"]

router = APIRouter()

_BETA = Header(alias="anthropic-beta", description="Passed to Anthropic upstreams")


def _known_model(state: GatewayState, model: str) -> None:
    if model not in state.manager.models:
        known = ", ".join(state.manager.models.names())
        raise ModelNotFoundError(f"model: {model} (the gateway serves: {known})")


def _engine_request(
    state: GatewayState, body: MessagesRequest, beta: str | None
) -> tuple[RunSpec, list[dict[str, Any]], list[dict[str, Any]]]:
    """The run ``body`` asks for, and the conversation and tools its model is given."""
    _known_model(state, body.model)
    messages = conversation_of(body.system, body.messages)
    offered_names = list(state.manager.tools.tools)
    clients, server, extras = tools_of(body.tools, body.mcp_servers, offered_names)
    options = options_of(
        body, has_tools=bool(clients or server), betas=betas_of(beta), tool_extras=extras
    )
    spec = RunSpec(
        model=body.model,
        messages=messages,
        tools=server,
        client_tools=clients,
        client_tool_mode="return",
        options=options,
    )
    conversation, offered = model_input(state.manager.tools, spec)
    spec.metadata = {
        "api": "messages",
        METADATA_KEY: {
            "model": body.model,
            # message_start's input_tokens, before the upstream has counted them.
            "input_tokens": estimate_tokens(conversation, offered),
        },
    }
    return spec, conversation, offered


def messages_spec(state: GatewayState, body: MessagesRequest, beta: str | None) -> RunSpec:
    """The run a Messages request asks for."""
    if body.max_tokens is None:
        raise InvalidRequestError("max_tokens: Field required")
    return _engine_request(state, body, beta)[0]


@router.post(
    "/v1/messages",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def create_message(
    body: MessagesRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    anthropic_beta: Annotated[str | None, _BETA] = None,
) -> Response:
    """Create a message: streamed (`"stream": true`) or answered whole."""
    state = gateway(request)
    spec = messages_spec(state, body, anthropic_beta)
    start = functools.partial(
        start_run, state, spec, connection(request), caller, default_on_disconnect="cancel"
    )
    if body.stream:
        run, slot = await start_streamed(state, caller.owner, start)
        return event_stream(
            state,
            run,
            0,
            encode=MessagesEncoder.for_run(run.id, spec),
            slot=slot,
            ping=PING_FRAME,
            error_frame=error_frame,
        )
    run = await start()
    # A reader while the answer is made, so the ended log is read as it is, not packed.
    with RunReader(state.runs, run):
        if not await wait_unless_disconnected(request, run):
            await state.runs.cancel(run.id, "client disconnected", run.owner)
            return Response(status_code=499)
        batch = await run.log.read(0, limit=1_000_000, timeout=0)
    encoder = MessagesEncoder.for_run(run.id, spec)
    encoder.prime(without_retracted(batch.events))  # the last attempt's answer
    last = batch.events[-1] if batch.events else None
    if last is not None and last.type is not EventType.RUN_COMPLETED:
        error = last.data.get("error") or {}
        code = str(error.get("code", "cancelled" if last.type is EventType.RUN_CANCELLED else ""))
        status = status_of_failed_run(code)
        message = str(error.get("message") or last.data.get("reason") or code)
        return JSONResponse(
            anthropic_error_body(code, f"{code}: {message}", status=status),
            status_code=status,
            headers={"x-run-id": run.id},
        )
    return JSONResponse(encoder.message(), headers={"x-run-id": run.id})


@router.post("/v1/messages/count_tokens")
async def count_tokens(
    body: MessagesRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    anthropic_beta: Annotated[str | None, _BETA] = None,
) -> dict[str, int]:
    """The input tokens of a Messages request: exact from an Anthropic upstream (its own
    count), otherwise the gateway's estimate (:func:`streams.tokens.estimate_tokens`)."""
    state = gateway(request)
    spec, conversation, offered = _engine_request(state, body, anthropic_beta)
    check_spec_limits(spec, state)  # what a run of it would be refused for, a count is too
    model = state.manager.models.get(body.model)
    exact = await model.count_tokens(conversation, offered, spec.options)
    return {"input_tokens": exact if exact is not None else estimate_tokens(conversation, offered)}
