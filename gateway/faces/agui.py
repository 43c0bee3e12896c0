"""The AG-UI face: ``POST /v1/ag-ui`` takes AG-UI's ``RunAgentInput`` and answers with the
run as AG-UI 1.0 events (``GET /v1/runs/{id}/events?format=ag-ui`` reads any run so, by the
dialect registry).

An input with ``resume[]`` answers the approval interrupts the thread's last AG-UI run
finished with and starts no gateway run: the run that waits goes on, and its events from the
interrupt on are streamed as the new AG-UI run (its ``RUN_STARTED`` … ``RUN_FINISHED``). The
interrupt's id names the gateway run and the seq its stream stopped at, so this works on any
instance.

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
from gateway.state import GatewayState
from gateway.streaming.run_stream import event_stream, start_streamed
from streams.approvals import answered_by
from streams.dialects.agui import AGUIEncoder
from streams.dialects.agui_input import (
    AGUIResume,
    AGUIRunInput,
    resume_answers,
    run_spec_from_agui,
)
from streams.dialects.registry import DIALECTS
from streams.errors import NotFoundError
from streams.events import EventType

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
    `forwardedProps` may name the `model` (default `demo`), server `tools`, `maxSteps` and
    `approval` (`"all"` or tool names: those calls wait for a person). A call that waits
    finishes the AG-UI run with an interrupt (`outcome: {type: "interrupt"}`); the input
    whose `resume[]` answers it (`status: "resolved"`, `payload: {approved, reason?,
    arguments?}`, or `status: "cancelled"` to deny) continues the same gateway run, streamed
    as the new AG-UI run. Closing the stream cancels the run (not while a call waits)."""
    state = gateway(request)
    check_json_input(body, "the AG-UI input")  # its ids go out in events as they came in
    resume = resume_answers(body, by=answered_by(caller.owner))
    if resume is not None:
        return await _resumed(state, body, caller, resume)
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


async def _resumed(
    state: GatewayState, body: AGUIRunInput, caller: Principal, resume: AGUIResume
) -> Response:
    """Answer the approvals ``resume`` names, then stream their run from the interrupt on as
    the AG-UI run ``body`` names (its ``messages`` and ``tools`` are the thread's history,
    which the waiting run has already)."""
    run = await state.approvable_run(resume.run_id, caller.owner)
    # The encoder in the state the client's stream left it in: primed with the events up to
    # the interrupt, the last of which must be the request of an answered call (else the id
    # was made up). Events aged out of the log: the stream starts fresh from there.
    dialect = DIALECTS["ag-ui"]
    encoder = AGUIEncoder.for_spec(run.id, run.spec)
    if resume.after > run.log.last_seq:
        raise NotFoundError(f"run {run.id} has no interrupt at event {resume.after}")
    batch = await run.log.read(0, limit=resume.after, timeout=0)
    if batch.gap is None and batch.last_seq == resume.after:
        last = batch.events[-1]
        answered = {call_id for call_id, _ in resume.answers}
        if last.type is not EventType.TOOL_APPROVAL_REQUESTED or last.data["call_id"] not in (
            answered
        ):
            raise NotFoundError(f"run {run.id} has no interrupt at event {resume.after}")
        encoder.prime(batch.events)
    for call_id, answer in resume.answers:
        await state.runs.answer_approval(run.id, call_id, answer)
    encoder.resume(thread_id=body.thread_id, run_id=body.run_id)
    return event_stream(
        state,
        run,
        resume.after,
        encode=encoder,
        ping=dialect.ping,
        error_frame=dialect.error_frame,
        headers=dialect.headers,
    )
