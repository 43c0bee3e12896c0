"""An estimate of a request's input tokens, for when the model cannot count them exactly
(``Model.count_tokens`` answered ``None``): the Messages API's ``message_start`` and
``count_tokens`` need a number before any upstream has said one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BYTES_PER_TOKEN", "IMAGE_TOKENS", "estimate_tokens"]

# Tokenizers of current models average about 4 bytes of English text or code per token.
BYTES_PER_TOKEN = 4
# An image costs what its size makes it (Anthropic: width * height / 750, at most about
# 1600 for the largest it does not scale down); the size is not read here, so every image
# counts as a large one.
IMAGE_TOKENS = 1600

_IMAGES = frozenset({"image", "image_url", "input_image"})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _content(content: Any) -> tuple[int, int]:
    """UTF-8 bytes of the text, and the images, of a message's content."""
    if isinstance(content, str):
        return len(content.encode()), 0
    if not isinstance(content, list):
        return 0, 0
    size = images = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _IMAGES:
            images += 1
        elif kind in ("text", "input_text", "output_text"):
            size += len(str(part.get("text", "")).encode())
        elif kind == "thinking":
            size += len(str(part.get("thinking", "")).encode())
        elif kind == "redacted_thinking":
            continue  # opaque to the client, not text the model reads as such
        elif kind == "tool_result":
            inner = part.get("content")
            # One level: a tool result's blocks hold no further tool results.
            if isinstance(inner, list):
                inner = [p for p in inner if isinstance(p, dict) and p.get("type") != "tool_result"]
            more, more_images = _content(inner)
            size, images = size + more, images + more_images
        elif kind == "tool_use":
            size += len((str(part.get("name", "")) + _json(part.get("input"))).encode())
        elif kind == "document":
            source = part.get("source")
            data = source.get("data", "") if isinstance(source, dict) else ""
            size += len(str(data).encode())
        else:
            size += len(_json(part).encode())
    return size, images


def estimate_tokens(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> int:
    """About how many input tokens a model reads for ``messages`` and ``tools``: one per
    :data:`BYTES_PER_TOKEN` UTF-8 bytes of the text it reads (the messages' text parts,
    system text, thinking, tool calls' names and arguments, tool results; each tool's name,
    description and JSON schema), plus :data:`IMAGE_TOKENS` per image; never less than 1.

    Only an estimate: the exact count is the upstream's (``Model.count_tokens``)."""
    size = images = 0
    for message in messages:
        more, more_images = _content(message.get("content"))
        size, images = size + more, images + more_images
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                size += len(str(function.get("name", "")).encode())
                size += len(str(function.get("arguments", "")).encode())
    for tool in tools:
        size += len(str(tool.get("name", "")).encode())
        size += len(str(tool.get("description", "")).encode())
        size += len(_json(tool.get("parameters") or {}).encode())
    return max(1, -(-size // BYTES_PER_TOKEN) + images * IMAGE_TOKENS)
