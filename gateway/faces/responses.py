"""The OpenAI Responses face: ``/v1/responses``, so the openai SDK's ``responses`` client (and
clients built on it) work unchanged.

A response is a run: an agent run whose function tools are the client's (returned to it, as
OpenAI does: the run ends after the step that calls them) and whose ``mcp`` tool with server
label ``gateway`` offers the gateway's own tools (run here, reported as ``mcp_call`` items).
Its stream is the run's log in the ``responses`` dialect (:mod:`streams.dialects.responses`),
so it resumes (``starting_after``) and stops (``cancel``) like any run.

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
from pydantic import BaseModel, ConfigDict, Field

from gateway.admission import start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.errors import UPSTREAM_RESPONSES
from gateway.responses import JSONResponse
from gateway.state import GatewayState
from gateway.streaming.run_stream import event_stream, start_streamed, wait_unless_disconnected
from streams.dialects.responses import METADATA_KEY, SERVER_LABEL, ResponsesEncoder, run_id_of
from streams.dialects.retraction import without_retracted
from streams.errors import InvalidRequestError, ModelNotFoundError, NotFoundError, RunFinishedError
from streams.reader import RunReader
from streams.spec import FAILOVER_OPTION, ChatMessage, ClientTool, OnDisconnect, RunSpec
from streams.view import RunView

__all__ = [
    "CANCEL_WAIT",
    "ResponsesRequest",
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


def _tools_of(
    tools: list[dict[str, Any]] | None, offered: list[str]
) -> tuple[list[ClientTool], list[str]]:
    """The request's function tools (the client runs them) and the gateway's tools it asks for
    (an ``mcp`` tool with server label ``gateway``); tools of other types are ignored."""
    functions: list[ClientTool] = []
    server: list[str] = []
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
    return functions, server


async def _previous_messages(
    state: GatewayState, response_id: str, owner: str | None
) -> list[ChatMessage]:
    """The conversation of an earlier response: its input and its output."""
    try:
        run = await state.find_run(run_id_of(response_id), owner)
    except NotFoundError:
        raise NotFoundError(f"Previous response with id '{response_id}' not found.") from None
    messages = list(run.spec.messages)
    for item in (await _final(run))["output"]:
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


async def _final(run: RunView) -> dict[str, Any]:
    """The response object of ``run`` as its log stands now (its last attempt's answer:
    what a retraction voided is left out)."""
    encoder = ResponsesEncoder.for_run(run.id, run.spec)
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
    functions, server_tools = _tools_of(body.tools, list(state.manager.tools.tools))
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
    """Create a response: streamed (`"stream": true`), in the background, or answered whole."""
    state = gateway(request)
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
    # A reader while the answer is made, so the ended log is read as it is, not packed.
    with RunReader(state.runs, run):
        if not await wait_unless_disconnected(request, run):
            await state.runs.cancel(run.id, "client disconnected", run.owner)
            return Response(status_code=499)
        return JSONResponse(await _final(run))


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
    run = await state.find_run(run_id_of(response_id), caller.owner)
    if not stream:
        return JSONResponse(await _final(run))
    encoder = ResponsesEncoder.for_run(run.id, run.spec)
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
    return JSONResponse(await _final(run))


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
