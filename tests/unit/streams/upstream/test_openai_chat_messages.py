"""Specification of how ``chat_request`` (``streams/upstream/openai_chat.py``) makes an
Anthropic-shaped conversation valid Chat Completions (``chat_message``), and leaves a plain
OpenAI one as it is."""

from __future__ import annotations

from typing import Any

import pytest

from streams.upstream.openai_chat import OpenAIChat, chat_message, chat_request
from streams.upstream.route import Route

CACHED = {"type": "ephemeral"}
THINKING = {"type": "thinking", "thinking": "hm", "signature": "sig"}
REDACTED = {"type": "redacted_thinking", "data": "opaque"}
CALLS = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "user", "content": "ab"},
            id="text-parts-become-a-string",
        ),
        pytest.param(
            {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": CACHED}]},
            {"role": "system", "content": "S"},
            id="cache-control-stripped",
        ),
        pytest.param(
            {"role": "user", "content": "hi", "cache_control": CACHED},
            {"role": "user", "content": "hi"},
            id="message-cache-control-stripped",
        ),
        pytest.param(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        "cache_control": CACHED,
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            id="base64-image-becomes-a-data-url",
        ),
        pytest.param(
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
            },
            id="url-image-becomes-its-url",
        ),
        pytest.param(
            {"role": "assistant", "content": [THINKING, REDACTED, {"type": "text", "text": "ok"}]},
            {"role": "assistant", "content": "ok"},
            id="thinking-dropped",
        ),
        pytest.param(
            {"role": "assistant", "content": [THINKING], "tool_calls": CALLS},
            {"role": "assistant", "content": None, "tool_calls": CALLS},
            id="empty-beside-tool-calls-is-null",
        ),
        pytest.param(
            {
                "role": "tool",
                "tool_call_id": "c",
                "content": [{"type": "text", "text": "1"}, {"type": "text", "text": "2"}],
                "is_error": True,
            },
            {"role": "tool", "tool_call_id": "c", "content": "12"},
            id="tool-result-blocks-become-their-text",
        ),
        pytest.param(
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    }
                ],
            },
            {"role": "user", "content": "notes"},
            id="text-document-becomes-text",
        ),
    ],
)
def test_anthropic_shapes_become_chat_completions(
    message: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert chat_message(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"role": "user", "content": "hi"}, id="string"),
        pytest.param({"role": "assistant", "content": None, "tool_calls": CALLS}, id="tool-calls"),
        pytest.param({"role": "tool", "tool_call_id": "c", "content": "1"}, id="tool"),
        pytest.param(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what"},
                    {"type": "image_url", "image_url": {"url": "data:x", "detail": "low"}},
                ],
            },
            id="text-and-image-url",
        ),
        pytest.param(
            {"role": "assistant", "content": "x", "reasoning_content": "r"}, id="extra-field"
        ),
    ],
)
def test_plain_openai_messages_are_passed_as_they_are(message: dict[str, Any]) -> None:
    assert chat_message(message) is message


def test_the_anthropic_option_never_reaches_an_openai_upstream() -> None:
    body = chat_request(
        "m",
        [{"role": "user", "content": "hi"}],
        [],
        options={"anthropic": {"beta": ["b"]}, "seed": 1},
    )

    assert "anthropic" not in body
    assert body["seed"] == 1


def test_openai_chat_has_no_option_headers_and_cannot_count() -> None:
    route = Route("up", "openai", "http://127.0.0.1:9/v1", "m")
    provider = OpenAIChat()

    assert provider.headers({"anthropic": {"beta": ["b"]}}) == {}
    assert provider.count_request(route, [{"role": "user", "content": "hi"}], [], {}) is None
