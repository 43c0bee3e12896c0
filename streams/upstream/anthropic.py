"""Anthropic Messages streaming, pure: the request body (from the OpenAI-style conversation
the engine keeps) and stream events turned into model output (the ``"anthropic"``
provider: :class:`AnthropicMessages`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from streams.errors import UpstreamProtocolError, UpstreamStreamError
from streams.models import (
    Finish,
    ModelOutput,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.upstream.provider import Endpoint
from streams.upstream.route import Route
from streams.upstream.sse import SSEMessage

__all__ = [
    "ANTHROPIC_VERSION",
    "COUNT_FIELDS",
    "STOP_REASONS",
    "AnthropicMessages",
    "MessagesEventParser",
    "messages_request",
]

ANTHROPIC_VERSION = "2023-06-01"

# Anthropic's stop reasons in the engine's canonical finish reasons (the others pass as they
# are). pause_turn (a server tool's long turn paused) ends the step as a stop: the client
# continues it by sending the turn back.
STOP_REASONS = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _plain_text(part: Any) -> bool:
    """A text part with nothing but its text (no ``cache_control``, no citations): such
    parts next to each other are one block to Anthropic, as the engine always sent them."""
    return isinstance(part, dict) and part.get("type") == "text" and set(part) <= {"type", "text"}


def _image_from_url(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """An OpenAI ``image_url`` part as an Anthropic image block: a ``data:`` URL as a base64
    source, an http(s) URL as a url source; ``None`` for anything else (Anthropic could not
    read it)."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        return None
    if url.startswith("data:"):
        head, comma, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if not comma or encoding != "base64" or not media_type:
            return None
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


# What a message's content parts may be, per role (others are dropped: Anthropic would
# refuse them in that place).
_USER_BLOCKS = frozenset({"text", "image", "document"})
_ASSISTANT_BLOCKS = frozenset({"text", "thinking", "redacted_thinking"})


def _blocks(content: Any, kinds: frozenset[str]) -> list[dict[str, Any]]:
    """Content as Anthropic blocks: a string as one text block; parts in order, blocks of
    ``kinds`` kept as they are (a thinking block's signature byte for byte, a text block's
    ``cache_control``), ``image_url`` parts converted, empty text left out."""
    if not isinstance(content, list):
        return [{"type": "text", "text": content}] if isinstance(content, str) and content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if _plain_text(part):
            if part.get("text"):  # an empty text block is refused by Anthropic, says nothing
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and "image" in kinds:
            image = _image_from_url(part)
            if image is not None:
                blocks.append(image)
        elif kind in kinds:
            blocks.append(part)
    return blocks


def _system(parts: list[Any]) -> str | list[dict[str, Any]]:
    """The ``system`` field from the system messages' contents, in order: one string when
    they are only text (joined by blank lines, as always), else a list of text blocks with
    their fields (``cache_control``)."""
    if all(isinstance(c, str) or (isinstance(c, list) and all(map(_plain_text, c))) for c in parts):
        return "\n\n".join(_text(content) for content in parts)
    blocks: list[dict[str, Any]] = []
    for content in parts:
        if isinstance(content, str):
            if content:
                blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks.extend(
                p
                for p in content
                if isinstance(p, dict) and p.get("type") == "text" and p.get("text")
            )
    return blocks


def _tool_result(message: Mapping[str, Any]) -> dict[str, Any]:
    """A ``tool`` message as a ``tool_result`` block: its content a string (text parts
    joined, as always) or its blocks as the client gave them; ``is_error`` and
    ``cache_control`` kept."""
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if isinstance(content, list) and not all(map(_plain_text, content)):
        result["content"] = [part for part in content if isinstance(part, dict)]
    else:
        result["content"] = _text(content)
    if message.get("is_error") is True:
        result["is_error"] = True
    if isinstance(message.get("cache_control"), dict):
        result["cache_control"] = message["cache_control"]
    return result


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function", {})
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = {}
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments if isinstance(arguments, dict) else {},
    }


def _tool_choice(value: Any) -> dict[str, Any] | None:
    """Chat Completions' ``tool_choice`` in Anthropic's terms (one already in them is kept);
    ``None`` for what has no equivalent."""
    if value == "auto":
        return {"type": "auto"}
    if value == "required":
        return {"type": "any"}
    if value == "none":
        return {"type": "none"}
    if isinstance(value, dict):
        function = value.get("function")
        if value.get("type") == "function" and isinstance(function, dict):
            return {"type": "tool", "name": function.get("name")}
        if value.get("type") in ("auto", "any", "tool", "none"):
            return dict(value)
    return None


def messages_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int = 4096,
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a streamed ``POST /messages``.

    System messages become ``system`` (a string, or text blocks when one carries more than
    its text: ``cache_control``); user content keeps its text, ``image`` and ``document``
    blocks (OpenAI ``image_url`` parts become image blocks); an assistant's thinking,
    redacted thinking and text blocks come in order, then its tool calls as ``tool_use``
    blocks; tool results become ``tool_result`` blocks of one user turn (Anthropic wants
    user and assistant turns to alternate).

    ``options`` are in OpenAI's names (``tool_choice`` in Chat Completions' form,
    ``parallel_tool_calls``, ``user``, …), plus ``"anthropic"``: ``{"body": fields merged
    into the body, "tools": {tool name: fields merged into its definition}}`` (its
    ``"beta"`` is a header: :meth:`AnthropicMessages.headers`). ``extra`` (the route's
    ``extra_body``) is merged last.
    """
    system: list[Any] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(content)
        elif role == "user":
            add("user", _blocks(content, _USER_BLOCKS) or [{"type": "text", "text": ""}])
        elif role == "assistant":
            blocks = _blocks(content, _ASSISTANT_BLOCKS)
            blocks.extend(_tool_use(call) for call in message.get("tool_calls") or ())
            if blocks:
                add("assistant", blocks)
        elif role == "tool":
            add("user", [_tool_result(message)])
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = _system(system)
    options = options or {}
    anthropic = options.get("anthropic") or {}
    if tools:
        tool_extras = anthropic.get("tools") or {}
        body["tools"] = [
            {
                "name": t["name"],
                "description": t.get("description", ""),
                "input_schema": t.get("parameters") or {"type": "object", "properties": {}},
                **(tool_extras.get(t["name"]) or {}),
            }
            for t in tools
        ]
    for name, value in options.items():
        # OpenAI's names for what Anthropic also has; the rest has no Anthropic equivalent.
        if value is None:  # OpenAI's null: the default, which Anthropic gets by its absence
            continue
        if name in ("max_tokens", "max_completion_tokens"):
            body["max_tokens"] = value
        elif name in ("temperature", "top_p"):
            body[name] = value
        elif name == "stop":
            body["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif name == "user" and isinstance(value, str):
            body["metadata"] = {"user_id": value}
    if tools:
        choice = _tool_choice(options.get("tool_choice"))
        if options.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":  # Anthropic's "none" takes no other field
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            body["tool_choice"] = choice
    body.update(anthropic.get("body") or {})
    if extra:
        body.update(extra)
    return body


# The fields of a Messages body that POST /messages/count_tokens takes.
COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "mcp_servers",
        "context_management",
        "output_config",
        "cache_control",
    }
)


class MessagesEventParser:
    """Turns Anthropic stream events (``message_start``, ``content_block_*``,
    ``message_delta``, ``message_stop``, ``ping``, ``error``) into model output.

    Text, thinking (its deltas, then its signature), redacted thinking and tool calls are
    passed on as they come; ``message_delta``'s stop reason becomes a :class:`Finish`, and
    the usage (``message_start``'s, updated by ``message_delta``'s) one :class:`Usage` at
    ``message_stop``, which is the end: it makes the parser both ``finished`` and ``done``.
    """

    def __init__(self) -> None:
        self._usage = {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        self._tool_blocks: set[int] = set()
        self.finished = False

    @property
    def done(self) -> bool:
        return self.finished

    def feed(self, message: SSEMessage) -> list[ModelOutput]:
        data = message.data
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamProtocolError(
                f"the upstream sent an event that is not JSON: {data[:200]!r}"
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamProtocolError("the upstream sent an event that is not a JSON object")
        kind = payload.get("type", message.event)
        if kind == "message_start":
            self._take_usage((payload.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            return self._block_start(payload)
        elif kind == "content_block_delta":
            return self._block_delta(payload)
        elif kind == "message_delta":
            # Its usage is cumulative (newer APIs repeat input_tokens and the cache counts
            # in it): the last value of each count wins, none is added twice.
            self._take_usage(payload.get("usage"))
            delta = payload.get("delta") or {}
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str) and reason:
                sequence = delta.get("stop_sequence")
                return [
                    Finish(
                        STOP_REASONS.get(reason, reason),
                        sequence if isinstance(sequence, str) else None,
                    )
                ]
        elif kind == "message_stop":
            self.finished = True
            usage = self._usage
            return [
                Usage(
                    usage["input_tokens"],
                    usage["output_tokens"],
                    cache_read_tokens=usage["cache_read_input_tokens"],
                    cache_write_tokens=usage["cache_creation_input_tokens"],
                )
            ]
        elif kind == "error":
            error = payload.get("error") or {}
            failure = UpstreamStreamError(
                f"the upstream reported an error: {error.get('type', 'error')}: "
                f"{error.get('message', '')}".rstrip(": ")
            )
            # Overload is transient: worth another try if no output has been sent yet.
            failure.retryable = error.get("type") in ("overloaded_error", "api_error")
            raise failure
        return []

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in self._usage:
            if name in usage:
                self._usage[name] = _count(usage[name])

    def _block_start(self, payload: dict[str, Any]) -> list[ModelOutput]:
        block = payload.get("content_block") or {}
        index = int(payload.get("index", 0))
        kind = block.get("type")
        if kind == "tool_use":
            self._tool_blocks.add(index)
            out: list[ModelOutput] = [
                ToolCallStart(index=index, name=str(block.get("name")), call_id=block.get("id"))
            ]
            # The input comes as input_json_delta after an empty {} here; a proxy that
            # sends it whole sends it here.
            if block.get("input"):
                out.append(ToolCallDelta(index, json.dumps(block["input"])))
            return out
        if kind == "text" and _string(block.get("text")):
            return [TextDelta(block["text"])]
        if kind == "thinking":
            out = []
            if _string(block.get("thinking")):
                out.append(ReasoningDelta(block["thinking"]))
            if _string(block.get("signature")):  # a block sent whole: signed already
                out.append(ReasoningSignature(block["signature"]))
            return out
        if kind == "redacted_thinking" and _string(block.get("data")):
            return [RedactedReasoning(block["data"])]
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[ModelOutput]:
        delta = payload.get("delta") or {}
        index = int(payload.get("index", 0))
        kind = delta.get("type")
        if kind == "text_delta" and _string(delta.get("text")):
            return [TextDelta(delta["text"])]
        if kind == "input_json_delta" and _string(delta.get("partial_json")):
            if index not in self._tool_blocks:
                raise UpstreamProtocolError(f"tool input for unknown block {index}")
            return [ToolCallDelta(index, delta["partial_json"])]
        if kind == "thinking_delta" and _string(delta.get("thinking")):
            return [ReasoningDelta(delta["thinking"])]
        if kind == "signature_delta" and _string(delta.get("signature")):
            return [ReasoningSignature(delta["signature"])]
        return []


def _string(value: Any) -> bool:
    """Whether ``value`` is a string with something in it (what an output may carry)."""
    return isinstance(value, str) and value != ""


def _count(value: Any) -> int:
    """A token count as the upstream gave it; what is not a count is none (0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 0


class AnthropicMessages:
    """The :class:`~streams.upstream.provider.Provider` of Anthropic's Messages API:
    ``POST {base_url}/messages``, the key in ``x-api-key``."""

    continuations: tuple[str, ...] = ("prefill",)
    default_continuation: str | None = "prefill"

    def endpoint(self, route: Route) -> Endpoint:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if route.api_key:
            headers["x-api-key"] = route.api_key
        return Endpoint(f"{route.base_url.rstrip('/')}/messages", headers)

    def body(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        return messages_request(
            route.upstream_model,
            messages,
            tools,
            max_tokens=route.max_tokens,
            options=options,
            extra=route.extra_body,
        )

    def headers(self, options: Mapping[str, Any]) -> dict[str, str]:
        """``anthropic-beta`` when the ``"anthropic"`` option names betas."""
        beta = (options.get("anthropic") or {}).get("beta")
        return {"anthropic-beta": ",".join(beta)} if beta else {}

    def count_request(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        """``POST {base_url}/messages/count_tokens``: the streamed request's body without
        what that endpoint refuses (``stream``, ``max_tokens``, sampling)."""
        body = self.body(route, messages, tools, options)
        url = f"{route.base_url.rstrip('/')}/messages/count_tokens"
        return url, {name: value for name, value in body.items() if name in COUNT_FIELDS}

    def parser(self) -> MessagesEventParser:
        return MessagesEventParser()
