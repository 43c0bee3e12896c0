"""The OpenAI Responses face: ``/v1/responses``, so the openai SDK's ``responses`` client (and
clients built on it) work unchanged.

A response is a run: an agent run whose function tools are the client's (returned to it, as
OpenAI does: the run ends after the step that calls them) and whose ``mcp`` tool with server
label ``gateway`` offers the gateway's own tools (run here, reported as ``mcp_call`` items).
Its stream is the run's log in the ``responses`` dialect (:mod:`streams.dialects.responses`),
so it resumes (``starting_after``) and stops (``cancel``) like any run.

A run whose calls wait for a person's approval (the ``mcp`` tool's ``require_approval``, the
body's ``approval``, or the gateway's config) is several responses, as OpenAI's are: one ends
with an ``mcp_approval_request`` item while the run waits; the client answers with a new
request, ``previous_response_id`` and ``mcp_approval_response`` items, which answers the
run's approvals (only its owner or an approver key may) and is the next response of the same
run, from after the request on (:mod:`streams.dialects.responses`).

Streaming is decided by the body's ``stream``, never by ``Accept``: the SDK and Codex send
either whatever they ask for. A non-background response is cancelled when its client leaves;
a background one runs on, and is polled, re-attached or cancelled by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.admission import start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.errors import UPSTREAM_RESPONSES
from gateway.responses import JSONResponse
from gateway.state import GatewayState
from gateway.streaming.run_stream import event_stream, start_streamed, wait_unless_disconnected
from streams.approvals import ApprovalAnswer, answered_by
from streams.dialects.responses import (
    METADATA_KEY,
    SERVER_LABEL,
    ResponsesEncoder,
    call_id_of,
    response_start,
    run_id_of,
)
from streams.dialects.retraction import without_retracted
from streams.errors import InvalidRequestError, ModelNotFoundError, NotFoundError, RunFinishedError
from streams.events import EventType
from streams.reader import RunReader
from streams.spec import (
    FAILOVER_OPTION,
    ApprovalAsked,
    ChatMessage,
    ClientTool,
    OnDisconnect,
    RunSpec,
)
from streams.view import RunView

__all__ = [
    "CANCEL_WAIT",
    "MAX_APPROVAL_ANSWERS",
    "ResponsesRequest",
    "answer_approvals",
    "approval_answers",
    "cancel_response",
    "create_response",
    "delete_response",
    "get_response",
    "input_items",
    "list_input_items",
    "messages_of",
    "spec_of",
]

router = APIRouter()

CANCEL_WAIT = 5.0  # seconds a cancel waits for the run to end before answering
MAX_APPROVAL_ANSWERS = 128  # mcp_approval_response items in one request
# Seconds one read of a run's log waits while a whole response is awaited (then it reads on).
_READ_WAIT = 30.0
_MAX_ID_LENGTH = 200  # characters of an approval_request_id
_APPROVAL = TypeAdapter(Literal["all"] | ApprovalAsked | None)
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class ResponsesRequest(BaseModel):
    """OpenAI's request body. Fields the gateway has no use for (``include``, ``reasoning``
    for a model without it, ``prompt_cache_key``, ``client_metadata`` …) are accepted and
    ignored, as OpenAI's server does."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    store: bool = True
    stream: bool = False
    background: bool = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None


def _text_of(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content as a chat message's: text parts joined into one string, or, with
    an image among them, the parts as Chat Completions writes them."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequestError(
                f"{where}.content[{index}] must be a text part or an image given by image_url"
            )
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def messages_of(items: str | list[dict[str, Any]]) -> list[ChatMessage]:
    """A request's ``input`` as the engine's chat messages: messages by role (``developer``
    is ``system``), function calls as an assistant message's tool calls, their outputs as
    tool messages; other items (reasoning, …) are left out."""
    if isinstance(items, str):
        return [ChatMessage(role="user", content=items)]
    messages: list[ChatMessage] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role", ""))
            if role is None:
                raise InvalidRequestError(
                    f"{where}.role must be user, assistant, system or developer"
                )
            messages.append(ChatMessage(role=role, content=_text_of(item.get("content"), where)))
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {
                    "name": str(item.get("name", "")),
                    "arguments": str(item.get("arguments", "")),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls is not None:
                last.tool_calls.append(call)
            else:
                messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else _text_of(output, where)
            messages.append(
                ChatMessage(role="tool", tool_call_id=str(item.get("call_id", "")), content=text)
            )
    return messages


def _approval_of(require: Any, names: list[str], where: str) -> list[str]:
    """Which of an ``mcp`` tool's ``names`` its ``require_approval`` gates: ``"always"`` all
    of them, ``{"always": {"tool_names": [...]}}`` those; ``"never"`` (and a ``never``
    filter) none. OpenAI's setting is per server: the request's function tools are not
    gated by it."""
    if require is None or require == "never":
        return []
    if require == "always":
        return list(names)
    always = require.get("always") if isinstance(require, dict) else None
    if isinstance(require, dict) and always is None:
        return []  # only a "never" filter
    gated = always.get("tool_names") if isinstance(always, dict) else None
    if not isinstance(gated, list) or not all(isinstance(name, str) for name in gated):
        raise InvalidRequestError(
            f"{where} must be 'always', 'never' or {{'always': {{'tool_names': [names]}}}}"
        )
    return [name for name in names if name in gated]


def _approval_checked(value: Any, where: str) -> Literal["all"] | ApprovalAsked | None:
    """``value`` as a run's ``approval`` ("all" or {"tools": [names]}), or a 400 naming
    ``where``."""
    try:
        return _APPROVAL.validate_python(value)
    except ValidationError:
        raise InvalidRequestError(
            f"{where} must be 'all' or {{'tools': [names]}} (at most 256 tool names)"
        ) from None


def _tools_of(
    tools: list[dict[str, Any]] | None, offered: list[str]
) -> tuple[list[ClientTool], list[str], Literal["all"] | ApprovalAsked | None]:
    """The request's function tools (the client runs them), the gateway's tools it asks for
    (an ``mcp`` tool with server label ``gateway``) and those whose calls wait for approval
    (its ``require_approval``); tools of other types are ignored."""
    functions: list[ClientTool] = []
    server: list[str] = []
    gated: list[str] = []
    for index, tool in enumerate(tools or ()):
        kind = tool.get("type")
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str):
                raise InvalidRequestError(f"tools[{index}].name is required for a function tool")
            functions.append(
                ClientTool(
                    name=name,
                    description=str(tool.get("description") or ""),
                    parameters=tool.get("parameters") or {"type": "object", "properties": {}},
                )
            )
        elif kind == "mcp" and tool.get("server_label") == SERVER_LABEL:
            allowed = tool.get("allowed_tools")
            names = offered if allowed is None else list(allowed)
            server += [name for name in names if name not in server]
            where = f"tools[{index}].require_approval"
            asked = _approval_of(tool.get("require_approval"), names, where)
            gated += [name for name in asked if name not in gated]
    approval = _approval_checked({"tools": gated}, "require_approval") if gated else None
    return functions, server, approval


async def _previous_messages(
    state: GatewayState, response_id: str, owner: str | None
) -> list[ChatMessage]:
    """The conversation of an earlier response: its input and its output (with the outputs
    of the run's responses before it, when approvals made it several)."""
    missing = NotFoundError(f"Previous response with id '{response_id}' not found.")
    try:
        run = await state.find_run(run_id_of(response_id), owner)
    except NotFoundError:
        raise missing from None
    last = response_start(response_id)
    if not await _is_response(run, last):
        raise missing
    output: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        output += (await _final(run, start))["output"]
        start = None if start == last else await _approval_cut(run, start)
    messages = list(run.spec.messages)
    for item in output:
        if item["type"] == "message":
            text = "".join(part.get("text", "") for part in item["content"])
            messages.append(ChatMessage(role="assistant", content=text))
        elif item["type"] == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
    return messages


async def _final(run: RunView, after: int = 0) -> dict[str, Any]:
    """The response object of ``run`` (its response after native event ``after``) as its log
    stands now (its last attempt's answer: what a retraction voided is left out)."""
    encoder = ResponsesEncoder.for_run(run.id, run.spec, after)
    batch = await run.log.read(0, limit=1_000_000, timeout=0)
    encoder.prime(without_retracted(batch.events))
    response = encoder.response()
    if run.status.value == "queued":
        response["status"] = "queued"
    return response


async def spec_of(state: GatewayState, body: ResponsesRequest, owner: str | None) -> RunSpec:
    """The run a request asks for (``owner``'s, for its ``previous_response_id``)."""
    if body.model not in state.manager.models:
        known = ", ".join(state.manager.models.names())
        raise ModelNotFoundError(f"The model '{body.model}' does not exist (known: {known})")
    messages: list[ChatMessage] = []
    if body.instructions:
        messages.append(ChatMessage(role="system", content=body.instructions))
    if body.previous_response_id:
        earlier = await _previous_messages(state, body.previous_response_id, owner)
        messages += [m for m in earlier if m.role != "system" or not body.instructions]
    input_from = len(messages)  # this request's own input starts here (input_items)
    messages += messages_of(body.input)
    if not messages:
        raise InvalidRequestError("input must hold at least one message")
    functions, server_tools, approval = _tools_of(body.tools, list(state.manager.tools.tools))
    if "approval" in (body.model_extra or {}):  # the gateway's own field, as in a run spec
        approval = _approval_checked((body.model_extra or {})["approval"], "approval")
    options: dict[str, Any] = {}
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        options["top_p"] = body.top_p
    if body.max_output_tokens is not None:
        options["max_tokens"] = body.max_output_tokens
    if functions or server_tools:
        # To the upstream in Chat Completions' terms (an upstream without them drops them).
        choice = body.tool_choice
        if choice in ("none", "auto", "required"):
            options["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
            options["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        if not body.parallel_tool_calls:
            options["parallel_tool_calls"] = False
    effort = (body.reasoning or {}).get("effort")
    if isinstance(effort, str):  # to upstreams that take it (Chat Completions' name for it)
        options["reasoning_effort"] = effort
    failover = (body.model_extra or {}).get(FAILOVER_OPTION)
    if failover is not None:  # a model group's policy for this request (checked by RunSpec)
        options[FAILOVER_OPTION] = failover
    echo = {
        "model": body.model,
        "has_instructions": bool(body.instructions),
        "tool_choice": body.tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "metadata": body.metadata or {},
        "store": body.store,
        "background": body.background,
        "previous_response_id": body.previous_response_id,
        "input_from": input_from,
    }
    spec = RunSpec(
        model=body.model,
        messages=messages,
        tools=server_tools,
        client_tools=functions,
        client_tool_mode="return",
        approval=approval,
        options=options,
        metadata={"api": "responses", METADATA_KEY: echo},
    )
    return spec


@router.post(
    "/v1/responses",
    responses={
        200: {"content": {"application/json": {}, "text/event-stream": {}}},
        **UPSTREAM_RESPONSES,
    },
)
async def create_response(
    body: ResponsesRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> Response:
    """Create a response: streamed (`"stream": true`), in the background, or answered whole;
    with `mcp_approval_response` items (and `previous_response_id`), the next response of the
    run whose approvals they answer."""
    state = gateway(request)
    answers = approval_answers(body.input, by=answered_by(caller.owner))
    if answers is not None:
        return await _answer_approvals(state, request, body, caller, answers)
    spec = await spec_of(state, body, caller.owner)
    on_disconnect: OnDisconnect = "continue" if body.background else "cancel"
    start = functools.partial(
        start_run, state, spec, connection(request), caller, default_on_disconnect=on_disconnect
    )
    if body.stream:
        run, slot = await start_streamed(state, caller.owner, start)
        return event_stream(state, run, 0, encode=ResponsesEncoder.for_run(run.id, spec), slot=slot)
    run = await start()
    if body.background:
        return JSONResponse(await _final(run))
    return await _whole(state, request, run, 0)


async def _whole(state: GatewayState, request: Request, run: RunView, after: int) -> Response:
    """The run's response after native event ``after``, answered once it has ended (the run
    ended, or it waits for an approval)."""
    # A reader while the answer is made, so the ended log is read as it is, not packed.
    with RunReader(state.runs, run):
        ended = functools.partial(_response_ended, run, after)
        if not await wait_unless_disconnected(request, run, until=ended):
            await state.runs.cancel(run.id, "client disconnected", run.owner)
            return Response(status_code=499)
        return JSONResponse(await _final(run, after))


async def _response_ended(run: RunView, after: int) -> None:
    """Return once the run's response after native event ``after`` has ended: an approval
    request after it, or the run's end."""
    cursor = after
    while True:
        batch = await run.log.read(cursor, timeout=_READ_WAIT)
        for event in batch.events:
            if event.type is EventType.TOOL_APPROVAL_REQUESTED or event.is_terminal:
                return
        if batch.closed:
            return
        if batch.events:
            cursor = batch.events[-1].seq
        elif batch.gap is not None:
            cursor = batch.gap.next_seq - 1


async def _approval_cut(run: RunView, after: int) -> int | None:
    """The seq of the approval request that ended the run's response after native event
    ``after`` (None: that response has not asked for one)."""
    cursor = after
    while True:
        batch = await run.log.read(cursor, timeout=0)
        for event in batch.events:
            if event.type is EventType.TOOL_APPROVAL_REQUESTED:
                return event.seq
            if event.is_terminal:
                return None
        if batch.events:
            cursor = batch.events[-1].seq
        elif batch.gap is not None:
            cursor = batch.gap.next_seq - 1
        else:
            return None


async def _is_response(run: RunView, after: int) -> bool:
    """Whether the run has a response after native event ``after``: its first (0), or one
    after an approval request."""
    if after <= 0:
        return after == 0
    batch = await run.log.read(after - 1, limit=1, timeout=0)
    return bool(batch.events) and (
        batch.events[0].seq == after and batch.events[0].type is EventType.TOOL_APPROVAL_REQUESTED
    )


async def _find_response(state: GatewayState, response_id: str, owner: str | None) -> RunView:
    """``owner``'s run whose response ``response_id`` is (404 if it has no such response)."""
    run = await state.find_run(run_id_of(response_id), owner)
    if not await _is_response(run, response_start(response_id)):
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return run


def approval_answers(
    items: str | list[dict[str, Any]], by: str
) -> list[tuple[str, ApprovalAnswer]] | None:
    """A request's ``mcp_approval_response`` items as (call id, answer by ``by``) pairs; None
    when it has none. A request that answers approvals holds nothing else."""
    if isinstance(items, str):
        return None
    kinds = [item.get("type") for item in items]
    if "mcp_approval_response" not in kinds:
        return None
    if any(kind != "mcp_approval_response" for kind in kinds):
        raise InvalidRequestError(
            "input: a request that answers approvals holds only mcp_approval_response items"
        )
    if len(items) > MAX_APPROVAL_ANSWERS:
        raise InvalidRequestError(
            f"input: at most {MAX_APPROVAL_ANSWERS} mcp_approval_response items"
        )
    answers: list[tuple[str, ApprovalAnswer]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        request_id = item.get("approval_request_id")
        call_id = (
            call_id_of(request_id)
            if isinstance(request_id, str) and len(request_id) <= _MAX_ID_LENGTH
            else None
        )
        if call_id is None:
            raise InvalidRequestError(
                f"{where}.approval_request_id must be the id of an mcp_approval_request item"
            )
        if any(call_id == earlier for earlier, _ in answers):
            raise InvalidRequestError(f"{where}: {request_id} is answered twice")
        approve, reason = item.get("approve"), item.get("reason")
        if not isinstance(approve, bool):
            raise InvalidRequestError(f"{where}.approve must be true or false")
        if reason is not None and not isinstance(reason, str):
            raise InvalidRequestError(f"{where}.reason must be a string")
        decision: Literal["approve", "deny"] = "approve" if approve else "deny"
        answers.append((call_id, ApprovalAnswer(decision, by=by, reason=reason)))
    return answers


async def answer_approvals(
    state: GatewayState,
    previous: str | None,
    owner: str | None,
    answers: list[tuple[str, ApprovalAnswer]],
) -> tuple[RunView, int]:
    """Answer the approvals of response ``previous``'s run (the caller with API key
    ``owner`` must be its owner or an approver); the run, and the seq of the approval
    request that ended ``previous``: the next response goes on after it."""
    if previous is None:
        raise InvalidRequestError(
            "previous_response_id is required with mcp_approval_response items: the "
            "response whose approval requests they answer"
        )
    missing = NotFoundError(f"Previous response with id '{previous}' not found.")
    try:
        run = await state.find_run_unchecked(run_id_of(previous))
    except NotFoundError:
        raise missing from None
    start = response_start(previous)
    if not state.may_answer(owner, run) or not (await _is_response(run, start)):
        raise missing
    cut = await _approval_cut(run, start)
    if cut is None:
        raise InvalidRequestError(f"response {previous} asks for no approval")
    for call_id, answer in answers:
        await state.runs.answer_approval(run.id, call_id, answer)
    return run, cut


async def _answer_approvals(
    state: GatewayState,
    request: Request,
    body: ResponsesRequest,
    caller: Principal,
    answers: list[tuple[str, ApprovalAnswer]],
) -> Response:
    """Answer the approvals, and stream (or answer) the run's next response: what comes
    after the approval request that ended ``previous_response_id``."""
    run, cut = await answer_approvals(state, body.previous_response_id, caller.owner, answers)
    if body.stream:
        return event_stream(state, run, 0, encode=ResponsesEncoder.for_run(run.id, run.spec, cut))
    return await _whole(state, request, run, cut)


@router.get(
    "/v1/responses/{response_id}",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def get_response(
    response_id: str,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1)] = None,
) -> Response:
    """A response as it stands, or (``stream=true``) its events after ``starting_after``."""
    state = gateway(request)
    run = await _find_response(state, response_id, caller.owner)
    after = response_start(response_id)
    if not stream:
        return JSONResponse(await _final(run, after))
    encoder = ResponsesEncoder.for_run(run.id, run.spec, after)
    if starting_after is not None:
        encoder.skip_through(starting_after)
    return event_stream(state, run, 0, encode=encoder)


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(
    response_id: str,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> Response:
    """Cancel a response (its upstream request is closed at once); a response that has ended
    already is answered as it is."""
    state = gateway(request)
    run_id = run_id_of(response_id)
    try:
        run = await state.runs.cancel(run_id, "cancelled by client", caller.owner)
    except RunFinishedError:
        run = await state.find_run(run_id, caller.owner)
    async with asyncio.timeout(CANCEL_WAIT):
        await run.wait()
    return JSONResponse(await _final(run, response_start(response_id)))


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> Response:
    """Delete a response (one still running is cancelled first)."""
    state = gateway(request)
    run_id = run_id_of(response_id)
    with contextlib.suppress(RunFinishedError):
        run = await state.runs.cancel(run_id, "deleted by client", caller.owner)
        async with asyncio.timeout(CANCEL_WAIT):
            await run.wait()
    await state.runs.delete(run_id, caller.owner)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> Response:
    """The items of a response's own input, as OpenAI lists them."""
    state = gateway(request)
    run = await state.find_run(run_id_of(response_id), caller.owner)
    echo = run.spec.metadata.get(METADATA_KEY)
    start = echo.get("input_from", 0) if isinstance(echo, dict) else 0
    items = input_items(run.spec.messages[start:], response_id)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


def input_items(messages: list[ChatMessage], response_id: str) -> list[dict[str, Any]]:
    """Chat messages as the Responses API's input items (ids made from the response's)."""
    base = response_id.removeprefix("resp_")
    items: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == "tool":
            items.append(
                {
                    "id": f"fco_{base}_{index}",
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": message.content if isinstance(message.content, str) else "",
                    "status": "completed",
                }
            )
            continue
        for call_index, call in enumerate(message.tool_calls or ()):
            function = call.get("function", {})
            items.append(
                {
                    "id": f"fc_{base}_{index}_{call_index}",
                    "type": "function_call",
                    "call_id": call.get("id", ""),
                    "name": function.get("name", ""),
                    "arguments": function.get("arguments", ""),
                    "status": "completed",
                }
            )
        if message.content:
            text = message.content if isinstance(message.content, str) else ""
            kind = "output_text" if message.role == "assistant" else "input_text"
            items.append(
                {
                    "id": f"msg_{base}_{index}",
                    "type": "message",
                    "role": message.role,
                    "content": [{"type": kind, "text": text}],
                    "status": "completed",
                }
            )
    return items
