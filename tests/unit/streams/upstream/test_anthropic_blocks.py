"""Specification of what ``messages_request`` (``streams/upstream/anthropic.py``) sends for
the Anthropic blocks the engine's conversation may carry (issue 17's shared interface):
system blocks with ``cache_control``, images and documents, thinking blocks, tool results
as blocks or errors; and the options only the Anthropic provider reads (``tool_choice``,
``parallel_tool_calls``, ``user``, the ``"anthropic"`` option); its headers and its token
count request."""

from __future__ import annotations

from typing import Any

import pytest

from streams.upstream.anthropic import AnthropicMessages, messages_request
from streams.upstream.route import Route

USER = {"role": "user", "content": "hi"}
CACHED = {"type": "ephemeral"}
THINKING = {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln+/=="}
REDACTED = {"type": "redacted_thinking", "data": "opaque=="}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
DOCUMENT = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
    "title": "Notes",
}
TOOL = {"name": "clock", "description": "The time", "parameters": {"type": "object"}}
ROUTE = Route("claude", "anthropic", "https://api.anthropic.test/v1/", "claude-x")


def call(call_id: str, name: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def request(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    return messages_request("claude-x", messages, tools or [], options=options)


# -- system ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "system"),
    [
        pytest.param(
            [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "S", "cache_control": CACHED}],
                }
            ],
            [{"type": "text", "text": "S", "cache_control": CACHED}],
            id="one-cached-block",
        ),
        pytest.param(
            [
                {"role": "system", "content": "One."},
                USER,
                {"role": "system", "content": [{"type": "text", "text": "Two."}]},
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "3", "cache_control": CACHED}],
                },
            ],
            [
                {"type": "text", "text": "One."},
                {"type": "text", "text": "Two."},
                {"type": "text", "text": "3", "cache_control": CACHED},
            ],
            id="several-in-order-wherever-they-are",
        ),
        pytest.param(
            [{"role": "system", "content": "One."}, {"role": "system", "content": "Two."}],
            "One.\n\nTwo.",
            id="strings-stay-one-string",
        ),
    ],
)
def test_system_messages_with_blocks_become_system_blocks(
    messages: list[dict[str, Any]], system: Any
) -> None:
    assert request([*messages, USER])["system"] == system


# -- user content ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "blocks"),
    [
        pytest.param(
            [{"type": "text", "text": "a", "cache_control": CACHED}],
            [{"type": "text", "text": "a", "cache_control": CACHED}],
            id="text-with-cache-control-kept",
        ),
        pytest.param(
            [{"type": "text", "text": "look"}, IMAGE, DOCUMENT],
            [{"type": "text", "text": "look"}, IMAGE, DOCUMENT],
            id="image-and-document-blocks-as-given",
        ),
        pytest.param(
            [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}],
            [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                }
            ],
            id="data-url-becomes-base64-source",
        ),
        pytest.param(
            [{"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}],
            [{"type": "image", "source": {"type": "url", "url": "https://example.test/cat.png"}}],
            id="https-url-becomes-url-source",
        ),
        pytest.param(
            [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, IMAGE],
            [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, IMAGE],
            id="adjacent-text-blocks-kept",
        ),
        pytest.param(
            [THINKING, {"type": "text", "text": "x"}],
            [{"type": "text", "text": "x"}],
            id="thinking-has-no-place-in-a-user-turn",
        ),
    ],
)
def test_user_content_blocks(content: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    assert request([{"role": "user", "content": content}])["messages"] == [
        {"role": "user", "content": blocks}
    ]


# -- assistant content ----------------------------------------------------------------------


def test_assistant_thinking_text_and_tool_calls_come_in_order_signature_untouched() -> None:
    assistant = {
        "role": "assistant",
        "content": [THINKING, REDACTED, {"type": "text", "text": "Checking."}],
        "tool_calls": [call("toolu_1", "clock")],
    }

    body = request([USER, assistant])

    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln+/=="},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}},
        ],
    }


def test_assistant_thinking_alone_before_tool_calls_has_no_empty_text_block() -> None:
    assistant = {
        "role": "assistant",
        "content": [THINKING, {"type": "text", "text": ""}],
        "tool_calls": [call("t", "clock")],
    }

    assert request([USER, assistant])["messages"][1]["content"] == [
        THINKING,
        {"type": "tool_use", "id": "t", "name": "clock", "input": {}},
    ]


# -- tool results ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "result"),
    [
        pytest.param(
            {"role": "tool", "tool_call_id": "t", "content": "12:00"},
            {"type": "tool_result", "tool_use_id": "t", "content": "12:00"},
            id="string",
        ),
        pytest.param(
            {
                "role": "tool",
                "tool_call_id": "t",
                "content": [{"type": "text", "text": "a"}, IMAGE],
            },
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [{"type": "text", "text": "a"}, IMAGE],
            },
            id="blocks-as-given",
        ),
        pytest.param(
            {"role": "tool", "tool_call_id": "t", "content": "no such file", "is_error": True},
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": "no such file",
                "is_error": True,
            },
            id="is-error",
        ),
        pytest.param(
            {"role": "tool", "tool_call_id": "t", "content": "ok", "cache_control": CACHED},
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": "ok",
                "cache_control": CACHED,
            },
            id="cache-control",
        ),
    ],
)
def test_tool_messages_become_tool_result_blocks(
    message: dict[str, Any], result: dict[str, Any]
) -> None:
    assistant = {"role": "assistant", "tool_calls": [call("t", "clock")]}

    assert request([USER, assistant, message])["messages"][2] == {
        "role": "user",
        "content": [result],
    }


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "choice"),
    [
        pytest.param({"tool_choice": "auto"}, {"type": "auto"}, id="auto"),
        pytest.param({"tool_choice": "required"}, {"type": "any"}, id="required"),
        pytest.param({"tool_choice": "none"}, {"type": "none"}, id="none"),
        pytest.param(
            {"tool_choice": {"type": "function", "function": {"name": "clock"}}},
            {"type": "tool", "name": "clock"},
            id="function",
        ),
        pytest.param(
            {"parallel_tool_calls": False},
            {"type": "auto", "disable_parallel_tool_use": True},
            id="no-parallel-alone",
        ),
        pytest.param(
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
            id="no-parallel-with-a-choice",
        ),
        pytest.param(
            {"tool_choice": "none", "parallel_tool_calls": False},
            {"type": "none"},
            id="none-no-parallel",
        ),
    ],
)
def test_tool_choice_in_anthropic_terms(options: dict[str, Any], choice: dict[str, Any]) -> None:
    assert request([USER], [TOOL], **options)["tool_choice"] == choice


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"tool_choice": "auto"}, id="choice"),
        pytest.param({"parallel_tool_calls": False}, id="no-parallel"),
        pytest.param({"parallel_tool_calls": True}, id="parallel"),
    ],
)
def test_tool_choice_is_sent_only_with_tools(options: dict[str, Any]) -> None:
    assert "tool_choice" not in request([USER], [], **options)
    assert "tool_choice" not in request([USER], [TOOL], parallel_tool_calls=True)


def test_user_becomes_metadata_user_id() -> None:
    assert request([USER], user="u-42")["metadata"] == {"user_id": "u-42"}


def test_anthropic_body_fields_are_merged_and_the_route_extra_body_wins() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    body = messages_request(
        "claude-x",
        [USER],
        [],
        options={"anthropic": {"body": {"thinking": thinking, "top_k": 5}}, "temperature": 1},
        extra={"top_k": 7},
    )

    assert body["thinking"] == thinking
    assert body["top_k"] == 7
    assert "anthropic" not in body


def test_anthropic_tool_extras_are_merged_into_the_named_tool() -> None:
    other = {"name": "now", "parameters": {"type": "object"}}
    extras = {"clock": {"cache_control": CACHED, "defer_loading": True}, "absent": {"x": 1}}

    body = request([USER], [TOOL, other], anthropic={"tools": extras})

    assert body["tools"] == [
        {
            "name": "clock",
            "description": "The time",
            "input_schema": {"type": "object"},
            "cache_control": CACHED,
            "defer_loading": True,
        },
        {"name": "now", "description": "", "input_schema": {"type": "object"}},
    ]


# -- headers and count_tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "headers"),
    [
        pytest.param({}, {}, id="no-option"),
        pytest.param({"anthropic": {"beta": []}}, {}, id="no-beta"),
        pytest.param(
            {"anthropic": {"beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]}},
            {"anthropic-beta": "interleaved-thinking-2025-05-14,context-1m-2025-08-07"},
            id="betas-joined",
        ),
    ],
)
def test_headers_carry_the_betas(options: dict[str, Any], headers: dict[str, str]) -> None:
    assert AnthropicMessages().headers(options) == headers


def test_count_request_is_the_body_without_stream_max_tokens_or_sampling() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    options = {
        "temperature": 0.5,
        "stop": "END",
        "user": "u",
        "tool_choice": "auto",
        "anthropic": {"body": {"thinking": thinking, "top_k": 3}},
    }

    url, body = AnthropicMessages().count_request(
        ROUTE, [{"role": "system", "content": "S"}, USER], [TOOL], options
    )

    assert url == "https://api.anthropic.test/v1/messages/count_tokens"
    assert body == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": "S",
        "tools": [{"name": "clock", "description": "The time", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "thinking": thinking,
    }
