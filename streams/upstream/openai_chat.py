"""OpenAI-compatible chat completions, pure: the request body, and streamed chunks turned
into :data:`~streams.models.ModelOutput` items (the ``"openai"`` provider:
:class:`OpenAIChat`).

Tool-call deltas are assembled the way real upstreams send them: the id (and name) only on a
call's first chunk, a whole call in one chunk, empty argument deltas, several calls
interleaved by ``index``, a last chunk with empty ``choices`` that carries ``usage``.
Argument fragments are passed on as they come, never held back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.errors import UpstreamProtocolError, UpstreamStreamError
from streams.models import (
    Finish,
    ModelOutput,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.upstream.provider import Endpoint
from streams.upstream.route import Route
from streams.upstream.sse import SSEMessage

__all__ = [
    "FINISH_REASONS",
    "MAX_CALLS",
    "MAX_UNNAMED_ARGUMENTS",
    "ChatChunkParser",
    "OpenAIChat",
    "chat_message",
    "chat_request",
]


# Fields of Anthropic's that OpenAI-compatible servers refuse (or misread) in a message or
# a content part; the option only the Anthropic provider reads.
_ANTHROPIC_FIELDS = ("cache_control", "is_error")
_REASONING_PARTS = frozenset({"thinking", "redacted_thinking"})


def _chat_part(part: Any) -> Any:
    """A content part as Chat Completions has it; ``None`` for one that has no place there
    (thinking, a block of an unknown source)."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind in _REASONING_PARTS:
        return None
    if kind in ("image", "document"):
        source = part.get("source")
        if not isinstance(source, dict):
            return None
        url: Any
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = source.get("url")
        elif kind == "document" and source.get("type") == "text":
            return {"type": "text", "text": source.get("data", "")}
        else:
            return None
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        if source.get("type") == "url":
            return None  # OpenAI takes a file's data, not its address
        return {
            "type": "file",
            "file": {"filename": part.get("title") or "document", "file_data": url},
        }
    if kind == "text" and set(part) > {"type", "text"}:
        return {"type": "text", "text": part.get("text", "")}  # no cache_control, citations
    if any(name in part for name in _ANTHROPIC_FIELDS):
        return {name: value for name, value in part.items() if name not in _ANTHROPIC_FIELDS}
    return part


def _text_only(parts: list[Any]) -> bool:
    return all(isinstance(part, dict) and part.get("type") == "text" for part in parts)


def chat_message(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """One message of the engine's conversation as Chat Completions takes it: thinking
    parts dropped, Anthropic's fields (``cache_control``, ``is_error``) stripped, image
    blocks as ``image_url`` parts, a list of text parts (a tool result's blocks: their
    text) as one string (many servers, Ollama and older vLLM among them, take only
    strings), an assistant's content that is left empty beside tool calls as null. A
    message that needs none of it is returned as it is."""
    content = message.get("content")
    changed = any(name in message for name in _ANTHROPIC_FIELDS)
    if isinstance(content, list):
        parts = [converted for part in content if (converted := _chat_part(part)) is not None]
        role = message.get("role")
        if role == "tool":
            parts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if _text_only(parts):
            text = "".join(str(part.get("text", "")) for part in parts)
            if role == "assistant" and not text and message.get("tool_calls"):
                content = None
            else:
                content = text
            changed = True
        elif parts != content:
            content, changed = parts, True
    if not changed:
        return message
    out = {name: value for name, value in message.items() if name not in _ANTHROPIC_FIELDS}
    out["content"] = content
    return out


def chat_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a streamed ``POST /chat/completions``: the conversation made valid
    Chat Completions (:func:`chat_message`), sampling ``options`` as the client gave them
    (but ``"anthropic"``, which is the Anthropic provider's), then the route's ``extra``
    body fields."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [chat_message(message) for message in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                },
            }
            for tool in tools
        ]
    if options:
        body.update(options)
        body.pop("anthropic", None)
    if extra:
        body.update(extra)
    return body


_INVALID = object()


def _lenient_loads(data: str) -> Any:
    """What orjson refuses but the standard library reads (NaN, integers past 64 bits)."""
    try:
        return json.loads(data)
    except ValueError:
        return _INVALID


# A real upstream names a call in its first chunk; arguments that come before the name are
# held until it does. At most this many bytes of them in one stream, and at most this many
# calls (the engine's own bound, max_tool_calls_per_step, is at most 1024): an upstream that
# never names its calls cannot grow either without bound.
MAX_UNNAMED_ARGUMENTS = 64 * 1024
MAX_CALLS = 1024

# OpenAI's finish reasons are the engine's canonical ones; the deprecated function_call is
# a tool call. Others (a server's own) pass as they are.
FINISH_REASONS = {"function_call": "tool_calls"}


@dataclass
class _Call:
    name: str | None = None
    id: str | None = None
    started: bool = False
    pending: list[str] = field(default_factory=list)  # arguments before the name arrived


def _reasoning(delta: Mapping[str, Any]) -> str:
    """The thinking in a delta: ``reasoning_content`` (DeepSeek, vLLM before 0.10) or
    ``reasoning`` (vLLM since, Ollama, OpenRouter). Some servers send the same text under
    both names: the first is read, never both."""
    for name in ("reasoning_content", "reasoning"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


class ChatChunkParser:
    """Turns the ``data:`` payloads of a chat completions stream into model output.

    ``finished`` becomes true at ``[DONE]`` or at a choice's ``finish_reason``, so a stream
    that ends early can be told from one that ended properly.
    """

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._unnamed_bytes = 0  # arguments held for calls with no name yet
        self.finish_reason: str | None = None
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done or self.finish_reason is not None

    def feed(self, message: SSEMessage) -> list[ModelOutput]:
        data = message.data
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = _lenient_loads(data)
        if chunk is _INVALID:
            raise UpstreamProtocolError(
                f"the upstream sent a chunk that is not JSON: {data[:200]!r}"
            )
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("the upstream sent a chunk that is not a JSON object")
        if chunk.get("error"):
            error = chunk["error"]
            said = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamStreamError(f"the upstream reported an error: {said}")
        out: list[ModelOutput] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            # (A look-up of the two names before the call: a text chunk has neither.)
            if "reasoning_content" in delta or "reasoning" in delta:
                reasoning = _reasoning(delta)
                if reasoning:
                    out.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(TextDelta(content))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool_call(call))
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
                out.append(Finish(FINISH_REASONS.get(reason, reason)))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            out.append(
                Usage(
                    input_tokens=int(usage.get("prompt_tokens") or 0),
                    output_tokens=int(usage.get("completion_tokens") or 0),
                    cache_read_tokens=(
                        cached if isinstance(cached, int) and not isinstance(cached, bool) else 0
                    ),
                )
            )
        return out

    def _tool_call(self, delta: Any) -> list[ModelOutput]:
        if not isinstance(delta, dict):
            raise UpstreamProtocolError("a tool call delta is not a JSON object")
        index = delta.get("index", 0)
        if not isinstance(index, int):
            raise UpstreamProtocolError("a tool call delta has no integer index")
        call = self._calls.get(index)
        if call is None:
            if len(self._calls) >= MAX_CALLS:
                raise UpstreamProtocolError(f"the upstream sent more than {MAX_CALLS} tool calls")
            call = self._calls[index] = _Call()
        function = delta.get("function") or {}
        if delta.get("id") and call.id is None:
            call.id = str(delta["id"])
        if function.get("name") and call.name is None:
            call.name = str(function["name"])
        arguments = function.get("arguments")
        out: list[ModelOutput] = []
        if not call.started and call.name is not None:
            call.started = True
            out.append(ToolCallStart(index=index, name=call.name, call_id=call.id))
            out.extend(ToolCallDelta(index, fragment) for fragment in call.pending)
            self._unnamed_bytes -= sum(map(len, call.pending))
            call.pending.clear()
        if isinstance(arguments, str) and arguments:
            if call.started:
                out.append(ToolCallDelta(index, arguments))
            else:
                self._unnamed_bytes += len(arguments)
                if self._unnamed_bytes > MAX_UNNAMED_ARGUMENTS:
                    raise UpstreamProtocolError(
                        f"the upstream sent more than {MAX_UNNAMED_ARGUMENTS} characters of "
                        "arguments for tool calls it has not named"
                    )
                call.pending.append(arguments)
        return out


class OpenAIChat:
    """The :class:`~streams.upstream.provider.Provider` of OpenAI-compatible upstreams:
    ``POST {base_url}/chat/completions``, the key as a bearer token."""

    # OpenAI's own API has no way to continue; vLLM and others take continue_final_message.
    continuations: tuple[str, ...] = ("continue_final_message",)
    default_continuation: str | None = None

    def endpoint(self, route: Route) -> Endpoint:
        headers = {"authorization": f"Bearer {route.api_key}"} if route.api_key else {}
        return Endpoint(f"{route.base_url.rstrip('/')}/chat/completions", headers)

    def body(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        return chat_request(
            route.upstream_model, messages, tools, options=options, extra=route.extra_body
        )

    def headers(self, options: Mapping[str, Any]) -> dict[str, str]:
        """None: every header of an OpenAI-compatible request is the route's."""
        return {}

    def count_request(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> None:
        """None: Chat Completions has no way to count a request's tokens."""
        return None

    def parser(self) -> ChatChunkParser:
        return ChatChunkParser()
