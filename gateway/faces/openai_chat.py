"""The OpenAI-compatible face: ``POST /v1/chat/completions`` (streaming and not), so the
official openai SDKs, pointed at the gateway, work unchanged.

A chat completion is a run with one model step whose tools are returned, not executed (the
client runs them, as with OpenAI). Closing a stream, or leaving before a non-streaming
answer, cancels the run and with it the upstream request.
"""

from __future__ import annotations

import functools
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.admission import start_run
from gateway.auth import Principal
from gateway.deps import connection, gateway, principal
from gateway.errors import UPSTREAM_RESPONSES, error_body, status_of_failed_run
from gateway.responses import JSONResponse
from gateway.streaming.run_stream import event_stream, start_streamed, wait_unless_disconnected
from streams.dialects.openai_chat import ChatChunkEncoder, chat_completion
from streams.errors import ModelNotFoundError
from streams.reader import RunReader
from streams.spec import (
    SAMPLING_OPTIONS,
    ChatMessage,
    ParallelModelCall,
    RunSpec,
    check_stop,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatTool",
    "FunctionDefinition",
    "StreamOptions",
    "chat_completions",
]

router = APIRouter()


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] | None = None


class ChatTool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body. Sampling options (temperature, top_p, max_tokens, stop, …)
    go to the upstream; fields the gateway has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ChatTool] | None = None
    n: Literal[1] | None = None
    stop: str | list[str] | None = None  # a field, so that its type is checked at admission

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        check_stop(value)  # one message for a wrong stop, not one per type it could have
        return value


@router.post(
    "/v1/chat/completions",
    responses={
        200: {"content": {"application/json": {}, "text/event-stream": {}}},
        **UPSTREAM_RESPONSES,
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> Response:
    """Chat Completions, streamed (`"stream": true`) or not."""
    state = gateway(request)
    if body.model not in state.manager.models:
        known = ", ".join(state.manager.models.names())
        raise ModelNotFoundError(f"the model {body.model!r} does not exist (known: {known})")
    extra = body.model_extra or {}
    options = {name: value for name, value in extra.items() if name in SAMPLING_OPTIONS}
    if body.stop is not None:
        options["stop"] = body.stop
    spec = RunSpec(
        parallel=[
            ParallelModelCall(
                model=body.model,
                messages=body.messages,
                tools=[tool.function.model_dump() for tool in body.tools or ()],
                options=options,
            )
        ],
        metadata={"api": "chat.completions"},
    )
    start = functools.partial(
        start_run, state, spec, connection(request), caller, default_on_disconnect="cancel"
    )
    created = int(time.time())
    if body.stream:
        run, slot = await start_streamed(state, caller.owner, start)
        completion_id = "chatcmpl-" + run.id.removeprefix("run_")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        encoder = ChatChunkEncoder(completion_id, body.model, created, include_usage)
        return event_stream(state, run, 0, encode=encoder, slot=slot)
    run = await start()
    completion_id = "chatcmpl-" + run.id.removeprefix("run_")

    # A reader while the answer is made, so the ended log is read as it is, not packed.
    with RunReader(state.runs, run):
        if not await wait_unless_disconnected(request, run):
            await state.runs.cancel(run.id, "client disconnected", run.owner)
            return Response(status_code=499)
        batch = await run.log.read(0, limit=1_000_000, timeout=0)
    answer = chat_completion(batch.events, completion_id, body.model, created)
    if isinstance(answer, tuple):
        code, message = answer
        status = status_of_failed_run(code)
        return JSONResponse(error_body(code, message, status=status), status_code=status)
    return JSONResponse(answer)
