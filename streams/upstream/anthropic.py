"""Anthropic Messages streaming, pure: the request body (from the OpenAI-style conversation
the engine keeps) and stream events turned into model output (the ``"anthropic"``
provider: :class:`AnthropicMessages`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from streams.errors import UpstreamProtocolError, UpstreamStreamError
from streams.models import ModelOutput, TextDelta, ToolCallDelta, ToolCallStart, Usage
from streams.upstream.provider import Endpoint
from streams.upstream.route import Route
from streams.upstream.sse import SSEMessage

__all__ = ["ANTHROPIC_VERSION", "AnthropicMessages", "MessagesEventParser", "messages_request"]

ANTHROPIC_VERSION = "2023-06-01"


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

    ``message_stop`` is the end: it makes the parser both ``finished`` and ``done``.
    """

    def __init__(self) -> None:
        self._input_tokens = 0
        self._output_tokens = 0
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
            usage = (payload.get("message") or {}).get("usage") or {}
            self._input_tokens = int(usage.get("input_tokens") or 0)
            self._output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            index = int(payload.get("index", 0))
            if block.get("type") == "tool_use":
                self._tool_blocks.add(index)
                out: list[ModelOutput] = [
                    ToolCallStart(index=index, name=str(block.get("name")), call_id=block.get("id"))
                ]
                if block.get("input"):
                    out.append(ToolCallDelta(index, json.dumps(block["input"])))
                return out
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(block["text"])]
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            index = int(payload.get("index", 0))
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(delta["text"])]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                if index not in self._tool_blocks:
                    raise UpstreamProtocolError(f"tool input for unknown block {index}")
                return [ToolCallDelta(index, delta["partial_json"])]
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                self._output_tokens = int(usage["output_tokens"] or 0)
        elif kind == "message_stop":
            self.finished = True
            return [Usage(self._input_tokens, self._output_tokens)]
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
