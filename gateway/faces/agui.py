"""The AG-UI face: ``POST /v1/ag-ui`` takes AG-UI's ``RunAgentInput`` and answers with the
run as AG-UI 1.0 events; :func:`agui_events` serves ``GET /v1/runs/{id}/events?format=ag-ui``.

The translation itself (both ways) is pure and lives in :mod:`streams.agui`.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway.admission import check_json_input, start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.state import GatewayState
from gateway.streaming.run_stream import event_stream, start_streamed
from gateway.streaming.sse import EventStreamResponse
from streams.dialects.agui import AGUIEncoder, AGUIRunInput, run_spec_from_agui
from streams.view import RunView

router = APIRouter()


@router.post(
    "/v1/ag-ui",
    response_class=Response,
    responses={
        200: {
            "description": "The run's events in the AG-UI 1.0 dialect, as SSE (the native "
            "event's `seq` is the `id:` of its last AG-UI event).",
            "content": {"text/event-stream": {}},
        }
    },
)
async def agui_run(
    body: AGUIRunInput, request: Request, caller: Annotated[Principal, Depends(principal)]
) -> Response:
    """Start an agent run from AG-UI's `RunAgentInput` and stream it as AG-UI events.

    The input's `tools` are the frontend's: a run that calls one ends (`RUN_FINISHED` with
    the call pending) and the frontend starts a new run with the result in its messages.
    `forwardedProps` may name the `model` (default `demo`), server `tools` and `maxSteps`.
    Closing the stream cancels the run."""
    state = gateway(request)
    check_json_input(body, "the AG-UI input")  # its ids go out in events as they came in
    spec = run_spec_from_agui(body)
    run, slot = await start_streamed(
        state,
        caller.owner,
        functools.partial(
            start_run, state, spec, connection(request), caller, default_on_disconnect="cancel"
        ),
    )
    # The client's own ids in RUN_STARTED / RUN_FINISHED; URLs and seqs keep the gateway's.
    encoder = AGUIEncoder(thread_id=body.thread_id, run_id=body.run_id)
    return event_stream(state, run, 0, encode=encoder, slot=slot)


async def agui_events(state: GatewayState, run: RunView, after: int) -> EventStreamResponse:
    """The run's events in the AG-UI dialect after cursor ``after``.

    AG-UI's events depend on what came before (which message is open, which tool call was
    announced), so a resumed stream's encoder is first primed with the events the client
    already has. If they are no longer retained, it starts fresh: the reader sends a
    ``stream.gap`` (a ``CUSTOM`` event) and what follows is encoded from there.
    """
    encoder = AGUIEncoder.for_run(run.id, run.spec.metadata)
    # A cursor out of range is left for the reader to refuse, with the usual 400.
    if 0 < after <= run.log.last_seq:
        batch = await run.log.read(0, limit=after, timeout=0)
        if batch.gap is None and batch.last_seq == after:
            encoder.prime(batch.events)
    return event_stream(state, run, after, encode=encoder)
