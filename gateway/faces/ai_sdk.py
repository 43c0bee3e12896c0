"""The Vercel AI SDK face: the UI message stream protocol, so ``useChat`` (and the ``ai``
package's ``AbstractChat`` with ``DefaultChatTransport``, majors 5 to 7) work against the
gateway unchanged, with a resume that replays and a stop that stops.

A chat turn is a run: an agent run over the chat's UIMessages, with the gateway tools the
app names and the client tools it declares (streamed to the client to run: the run ends
after the step that calls them). Its stream is the run's log in the ``ai-sdk`` dialect
(:mod:`streams.dialects.ai_sdk`), so it is readable as native events (``x-run-id``).

A chat id maps to its latest turn's run (:mod:`streams.chats`, memory or Redis), which is
what makes the three routes work together:

- ``POST /v1/ai-sdk/chat`` starts a turn. **A disconnect is not a cancel** here: the turn
  goes on, to be resumed. A new turn while one is active is a 409 (``chat_busy``) unless the
  body says ``cancel_active``. A body whose last message answers approvals
  (``addToolApprovalResponse``: tool parts in ``approval-responded``) starts no turn: the
  answers go to the calls waiting in the chat's latest turn, and the stream is that turn's
  from where it paused for them (see the ``tool-approval`` feature of the dialect). An
  answer that another client (or the timeout) gave first is no error there: the stream
  shows the answer that stands.
- ``GET /v1/ai-sdk/chat/{chat_id}/stream`` (what ``useChat({resume: true})`` calls on
  mount) replays the active turn from its start and follows it live, or after
  ``Last-Event-ID`` for a client that sends one; ``204`` when no turn is active. A turn
  waiting for approvals ends there again (the client answers in its next request); a pause
  whose calls the log has the answers of already is replayed through.
- ``POST /v1/ai-sdk/chat/{chat_id}/stop`` cancels the active turn (its upstream request is
  closed at once) and answers once it has ended; the open stream ends with ``abort`` and
  ``[DONE]``. A chat whose turn ended already answers that turn's status (200); a chat the
  caller has no turn of is a 404.

Chat ids are per key: another key's chat is a 404 on every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response

from gateway.admission import start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.responses import JSONResponse
from gateway.state import GatewayState
from gateway.streaming.run_stream import cursor_from, dialect_stream, event_stream, start_streamed
from streams.approvals import ApprovalAnswer, answered_by
from streams.chats import chat_not_found
from streams.dialects.ai_sdk import METADATA_KEY, STREAM_HEADERS, UIStreamEncoder, error_frame
from streams.dialects.ai_sdk_input import (
    ApprovalResponse,
    ChatRequest,
    approval_responses,
    conversation_of,
    tools_of,
)
from streams.dialects.registry import DIALECTS
from streams.errors import (
    ApprovalAnsweredError,
    ChatBusyError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    RunFinishedError,
)
from streams.events import Event, EventType
from streams.spec import RunSpec
from streams.view import RunView

__all__ = [
    "CANCEL_WAIT",
    "MAX_CHAT_ID",
    "chat_spec",
    "resume_chat",
    "start_chat",
    "stop_chat",
]

router = APIRouter()

CANCEL_WAIT = 5.0  # seconds a stop (or a cancel_active) waits for the turn to end
MAX_CHAT_ID = 256  # characters of a chat id (the body's ``id`` has the same bound)

_CHAT_ID = Path(min_length=1, max_length=MAX_CHAT_ID, description="The chat's id (useChat's)")
_LAST_EVENT_ID = Header(
    alias="last-event-id", max_length=32, description="Resume after this event (its seq)"
)
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A UI message stream"}
}
_NO_TURN: dict[int | str, dict[str, Any]] = {204: {"description": "No turn of the chat is active"}}


def chat_spec(state: GatewayState, body: ChatRequest) -> RunSpec:
    """The run a chat turn asks for."""
    if body.model not in state.manager.models:
        known = ", ".join(state.manager.models.names())
        raise ModelNotFoundError(f"The model '{body.model}' does not exist (known: {known})")
    clients, server = tools_of(body.tools, list(state.manager.tools.tools))
    regenerate = body.trigger == "regenerate-message" and body.messageId
    message_id = body.messageId if regenerate else f"msg_{secrets.token_hex(12)}"
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": conversation_of(body.messages),
        "tools": server,
        "client_tools": clients,
        "client_tool_mode": "return",
        "on_disconnect": "continue",  # a disconnect is not a cancel: the turn is resumed
        "metadata": {
            **(body.metadata or {}),
            "api": "ai-sdk",
            METADATA_KEY: {"message_id": message_id, "features": list(body.features)},
            "chat_id": body.id,
        },
    }
    if body.approval is not None:
        fields["approval"] = body.approval
    if body.max_steps is not None:
        fields["max_steps"] = body.max_steps
    if body.options is not None:
        fields["options"] = body.options
    try:
        return RunSpec.model_validate(fields)
    except pydantic.ValidationError as exc:
        # Checked here rather than by the body's schema (the run's own rules: max_steps'
        # range, a conversation with no message): the same 400 either way.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise InvalidRequestError(problems) from None


async def _latest_turn(state: GatewayState, chat_id: str, owner: str | None) -> RunView | None:
    """The run of the caller's latest turn of ``chat_id``; None if nobody has the chat (or
    its run is no longer retained); raises NotFoundError for another owner's chat."""
    run_id = await state.chats.get(chat_id, owner)
    if run_id is None:
        return None
    try:
        return await state.find_run(run_id, owner)
    except NotFoundError:
        await state.chats.clear(chat_id, run_id)  # its run expired: so does the entry
        return None


async def _end_turn(state: GatewayState, run: RunView, reason: str) -> RunView:
    """Cancel ``run`` (if it still runs) and wait, bounded by :data:`CANCEL_WAIT`, until it
    has ended; the run as it stands then (still running only if the wait ran out)."""
    with contextlib.suppress(RunFinishedError):
        run = await state.runs.cancel(run.id, reason, run.owner)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CANCEL_WAIT):
            await run.wait()
    return run


@router.post("/v1/ai-sdk/chat", responses=_STREAM)
async def start_chat(
    body: ChatRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> Response:
    """Start a chat turn and stream it (a UI message stream); 409 while another turn of the
    chat is active, unless ``cancel_active``."""
    state = gateway(request)
    answers = approval_responses(body.messages)
    if answers:
        return await _answer_and_continue(state, body.id, caller, answers)
    spec = chat_spec(state, body)
    active = await _latest_turn(state, body.id, caller.owner)
    if active is not None and not active.done:
        if not body.cancel_active:
            raise ChatBusyError(
                f"Chat '{body.id}' has a turn in progress ({active.id}): stop it, resume it, "
                'or send "cancel_active": true to replace it'
            )
        if not (await _end_turn(state, active, "replaced by a new turn")).done:
            raise ChatBusyError(
                f"Chat '{body.id}' has a turn that did not end within {CANCEL_WAIT} seconds"
            ) from None
    start = functools.partial(
        start_run, state, spec, connection(request), caller, default_on_disconnect="continue"
    )
    run, slot = await start_streamed(state, caller.owner, start)
    try:
        await state.chats.set(body.id, caller.owner, run.id)
    except BaseException:
        # No client will hear of this turn: it must not run on unseen.
        await slot.release()
        with contextlib.suppress(RunFinishedError):
            await state.runs.cancel(run.id, "chat unavailable", run.owner)
        raise
    encoder = UIStreamEncoder.for_run(run.id, spec)
    return event_stream(
        state,
        run,
        0,
        encode=encoder,
        slot=slot,
        error_frame=error_frame,
        headers=STREAM_HEADERS,
    )


async def _retained(run: RunView) -> AsyncIterator[Event]:
    """``run``'s events from its first, as its log has them now (bounded by its retention;
    they stop at a gap)."""
    cursor, end = 0, run.log.last_seq
    while cursor < end:
        batch = await run.log.read(cursor, timeout=0)
        if batch.gap is not None or not batch.events:
            return
        for event in batch.events:
            if event.seq > end:
                return
            yield event
        cursor = batch.events[-1].seq


async def _pause_for(run: RunView, encoder: UIStreamEncoder, calls: frozenset[str]) -> int:
    """Prime ``encoder`` with ``run``'s events up to the pause of the stream for ``calls``
    (the first where one of them waits); the seq of the event that paused it."""
    async for event in _retained(run):
        encoder.prime([event])
        if encoder.paused and encoder.awaiting & calls:
            return event.seq
    raise InvalidRequestError(
        f"run {run.id} has no stream paused for the approval of {', '.join(sorted(calls))} "
        "(or its events are no longer retained)"
    )


async def _resumed_stream(state: GatewayState, run: RunView, after: int) -> Response:
    """The turn's stream after cursor ``after`` for a client that takes approvals: a pause
    the log has the answers of already is no pause (the turn went on without this client),
    and one still waiting ends the stream as it did for the first reader."""
    encoder = UIStreamEncoder.for_run(run.id, run.spec)
    seen: list[Event] = []
    answered: list[str] = []
    requested: list[str] = []
    async for event in _retained(run):
        if event.type in (EventType.TOOL_APPROVED, EventType.TOOL_DENIED):
            answered.append(str(event.data.get("call_id")))
        elif event.type is EventType.TOOL_APPROVAL_REQUESTED:
            requested.append(str(event.data.get("call_id")))
        if event.seq <= after:
            seen.append(event)
    # Answered, but perhaps not in the log yet (its event is the producer's to append, a
    # moment later; with Redis, once written): no longer among the run's waiting calls
    # (asked after the log was read, so that a call asked meanwhile is not taken for one).
    waiting = {str(p.get("call_id")) for p in run.snapshot().get("pending_approvals", [])}
    encoder.known_answers([*answered, *(call for call in requested if call not in waiting)])
    if seen and seen[-1].seq == after:
        encoder.prime(seen)
    return event_stream(
        state, run, after, encode=encoder, error_frame=error_frame, headers=STREAM_HEADERS
    )


async def _answer_and_continue(
    state: GatewayState, chat_id: str, caller: Principal, answers: list[ApprovalResponse]
) -> Response:
    """Give the chat's latest turn the answers of the last message, and stream the turn on
    from where it paused for them."""
    run = await _latest_turn(state, chat_id, caller.owner)
    if run is None or not state.may_answer(caller.owner, run):
        raise chat_not_found(chat_id)
    encoder = UIStreamEncoder.for_run(run.id, run.spec)
    if any(answer.message_id != encoder.message_id for answer in answers):
        raise InvalidRequestError(
            f"messages: the approvals answered are not those of chat '{chat_id}''s latest "
            f"turn (its message {encoder.message_id})"
        )
    for answer in answers:
        given = ApprovalAnswer(
            "approve" if answer.approved else "deny",
            by=answered_by(caller.owner),
            reason=answer.reason,
        )
        # Answered first by another client or the timeout: the stream shows that answer.
        with contextlib.suppress(ApprovalAnsweredError):
            await state.runs.answer_approval(run.id, answer.call_id, given)
    after = await _pause_for(run, encoder, frozenset(answer.call_id for answer in answers))
    encoder.go_on()  # not ended: the answer's events may take a moment to arrive
    return event_stream(
        state, run, after, encode=encoder, error_frame=error_frame, headers=STREAM_HEADERS
    )


@router.get("/v1/ai-sdk/chat/{chat_id}/stream", responses={**_STREAM, **_NO_TURN})
async def resume_chat(
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    chat_id: Annotated[str, _CHAT_ID],
    last_event_id: Annotated[str | None, _LAST_EVENT_ID] = None,
) -> Response:
    """The chat's active turn, replayed from its start (or after ``Last-Event-ID``) and then
    followed live; 204 when no turn is active."""
    state = gateway(request)
    run = await _latest_turn(state, chat_id, caller.owner)
    if run is None or run.done:
        return Response(status_code=204)
    after = cursor_from(last_event_id, None)
    if "tool-approval" in UIStreamEncoder.for_run(run.id, run.spec).features:
        return await _resumed_stream(state, run, after)
    return await dialect_stream(state, run, after, DIALECTS["ai-sdk"])


@router.post("/v1/ai-sdk/chat/{chat_id}/stop")
async def stop_chat(
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    chat_id: Annotated[str, _CHAT_ID],
) -> Response:
    """Stop the chat's active turn (its upstream request is closed at once) and answer once
    it has ended (at most :data:`CANCEL_WAIT` seconds): ``{"chat_id", "run_id", "status"}``.
    A turn that has ended already is answered as it ended; a chat the caller has no turn of
    is a 404."""
    state = gateway(request)
    run = await _latest_turn(state, chat_id, caller.owner)
    if run is None:
        raise chat_not_found(chat_id)
    run = await _end_turn(state, run, "stopped by client")
    return JSONResponse({"chat_id": chat_id, "run_id": run.id, "status": run.status.value})
