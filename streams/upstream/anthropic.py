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

    System messages become ``system``; an assistant's tool calls become ``tool_use``
    blocks; tool results become ``tool_result`` blocks of one user turn (Anthropic wants
    user and assistant turns to alternate).
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
        elif role == "user":
            add("user", [{"type": "text", "text": _text(message.get("content"))}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = _text(message.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for call in message.get("tool_calls") or ():
                function = call.get("function", {})
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": arguments if isinstance(arguments, dict) else {},
                    }
                )
            if blocks:
                add("assistant", blocks)
        elif role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id"),
                        "content": _text(message.get("content")),
                    }
                ],
            )
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if tools:
        body["tools"] = [
            {
                "name": t["name"],
                "description": t.get("description", ""),
                "input_schema": t.get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
        ]
    for name, value in (options or {}).items():
        # OpenAI's names for what Anthropic also has; the rest has no Anthropic equivalent.
        if value is None:  # OpenAI's null: the default, which Anthropic gets by its absence
            continue
        if name in ("max_tokens", "max_completion_tokens"):
            body["max_tokens"] = value
        elif name in ("temperature", "top_p"):
            body[name] = value
        elif name == "stop":
            body["stop_sequences"] = [value] if isinstance(value, str) else list(value)
    if extra:
        body.update(extra)
    return body


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

    def parser(self) -> MessagesEventParser:
        return MessagesEventParser()
