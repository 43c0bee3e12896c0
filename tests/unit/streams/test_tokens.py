"""Specification of ``estimate_tokens`` (``streams/tokens.py``): about one token per four
UTF-8 bytes of what the model reads, a fixed count per image, never less than one."""

from __future__ import annotations

from typing import Any

import pytest

from streams.tokens import IMAGE_TOKENS, estimate_tokens

IMAGE = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": "A" * 999},
}


@pytest.mark.parametrize(
    ("messages", "tools", "tokens"),
    [
        pytest.param([], [], 1, id="nothing-is-still-one"),
        pytest.param([{"role": "user", "content": "abcd"}], [], 1, id="four-bytes"),
        pytest.param([{"role": "user", "content": "abcde"}], [], 2, id="rounded-up"),
        pytest.param([{"role": "user", "content": "éé"}], [], 1, id="utf8-bytes"),
        pytest.param(
            [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "x" * 8, "cache_control": {}}],
                }
            ],
            [],
            2,
            id="text-parts",
        ),
        pytest.param([{"role": "user", "content": [IMAGE]}], [], IMAGE_TOKENS, id="image-fixed"),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}],
            [],
            IMAGE_TOKENS,
            id="image-url-fixed",
        ),
        pytest.param(
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c", "function": {"name": "abcd", "arguments": "{}"}}],
                }
            ],
            [],
            2,
            id="tool-call-name-and-arguments",
        ),
        pytest.param(
            [
                {
                    "role": "tool",
                    "tool_call_id": "c",
                    "content": [{"type": "text", "text": "12345678"}],
                }
            ],
            [],
            2,
            id="tool-result-blocks",
        ),
        pytest.param(
            [],
            [{"name": "abcd", "description": "abcd", "parameters": {"a": 1}}],
            4,  # 4 + 4 + len('{"a":1}') = 15 bytes
            id="tools-name-description-schema",
        ),
        pytest.param(
            [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "abcdabcd", "signature": "s" * 400}
                    ],
                }
            ],
            [],
            2,
            id="thinking-text-not-its-signature",
        ),
    ],
)
def test_estimate(messages: list[dict[str, Any]], tools: list[dict[str, Any]], tokens: int) -> None:
    assert estimate_tokens(messages, tools) == tokens
