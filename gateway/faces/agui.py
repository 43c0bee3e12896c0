"""The AG-UI face: ``POST /v1/ag-ui`` takes AG-UI's ``RunAgentInput`` and answers with the
run as AG-UI 1.0 events (``GET /v1/runs/{id}/events?format=ag-ui`` reads any run so, by the
dialect registry).

The translation itself is pure: :mod:`streams.dialects.agui_input` (the way in) and
:mod:`streams.dialects.agui` (the events out).
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway.admission import check_json_input, start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.streaming.run_stream import event_stream, start_streamed
from streams.dialects.agui_input import AGUIRunInput, run_spec_from_agui
from streams.dialects.registry import DIALECTS

__all__ = ["agui_run"]

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
    # The client's own ids in RUN_STARTED / RUN_FINISHED (the spec's metadata holds them);
    # URLs and seqs keep the gateway's.
    encoder = DIALECTS["ag-ui"].encoder_for(run.id, spec)
    return event_stream(state, run, 0, encode=encoder, slot=slot)
