"""A Messages request as a run: its conversation, tools and options (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.dialects.anthropic_input import (
    MessagesRequest,
    betas_of,
    conversation_of,
    options_of,
    tools_of,
)
from streams.errors import InvalidRequestError
from streams.spec import MAX_BETAS

SIGNED = {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCgIYAhIM+/sig=="}


def conversation(messages: list[dict[str, Any]], system: Any = None) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in conversation_of(system, messages)]


def request(**fields: Any) -> MessagesRequest:
    return MessagesRequest.model_validate(
        {"model": "demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        | fields
    )


def test_a_string_system_is_a_system_message_first() -> None:
    assert conversation([{"role": "user", "content": "hi"}], "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_system_blocks_keep_their_cache_control() -> None:
    blocks = [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
    ]
    assert conversation([{"role": "user", "content": "hi"}], blocks)[0] == {
        "role": "system",
        "content": blocks,
    }


def test_a_system_message_among_the_messages_stays_where_it_is() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "again"},
    ]
    assert [m["role"] for m in conversation(messages)] == ["user", "system", "user"]


def test_user_blocks_are_kept_as_the_client_sent_them() -> None:
    blocks = [
        {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
    ]
    assert conversation([{"role": "user", "content": blocks}]) == [
        {"role": "user", "content": blocks}
    ]


def test_tool_results_become_tool_messages_before_the_users_other_blocks() -> None:
    content = [
        {"type": "text", "text": "and then?"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [{"type": "text", "text": "no such file"}],
            "is_error": True,
        },
    ]
    assert conversation([{"role": "user", "content": content}]) == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
        {
            "role": "tool",
            "tool_call_id": "toolu_2",
            "content": [{"type": "text", "text": "no such file"}],
            "is_error": True,
        },
        {"role": "user", "content": [{"type": "text", "text": "and then?"}]},
    ]


def test_a_tool_results_cache_breakpoint_is_kept() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "ok",
        "is_error": False,
        "cache_control": {"type": "ephemeral"},
    }
    assert conversation([{"role": "user", "content": [result]}]) == [
        {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": "ok",
            "cache_control": {"type": "ephemeral"},
        }
    ]


def test_an_assistant_turn_of_plain_text_blocks_is_one_string() -> None:
    content = [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]
    assert conversation([{"role": "assistant", "content": content}]) == [
        {"role": "assistant", "content": "Hello there"}
    ]


def test_signed_thinking_is_kept_first_and_byte_for_byte() -> None:
    content = [SIGNED, {"type": "text", "text": "Done."}]
    assert conversation([{"role": "assistant", "content": content}]) == [
        {"role": "assistant", "content": content}
    ]


def test_tool_use_blocks_are_the_assistants_tool_calls() -> None:
    content = [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}},
        {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}},
    ]
    assert conversation([{"role": "assistant", "content": content}]) == [
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"path": "a.py"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": "{}"},
                },
            ],
        }
    ]


def test_the_gateways_mcp_blocks_are_a_call_and_its_result() -> None:
    content = [
        {
            "type": "mcp_tool_use",
            "id": "c1",
            "name": "clock",
            "server_name": "gateway",
            "input": {},
        },
        {
            "type": "mcp_tool_result",
            "tool_use_id": "c1",
            "content": [{"type": "text", "text": "12:00"}],
        },
        {"type": "text", "text": "It is noon."},
    ]
    assert conversation([{"role": "assistant", "content": content}]) == [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "assistant", "content": "It is noon."},
    ]


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([{"role": "tool", "content": "x"}], "messages.0.role"),
        ([{"role": "user", "content": 7}], "messages.0.content"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages.0.content.0"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages.0.content.0.text"),
        ([{"role": "user", "content": [{"type": "video"}]}], "messages.0.content.0.type"),
        ([{"role": "user", "content": [{"type": "image"}]}], "messages.0.content.0.source"),
        (
            [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}],
            "messages.0.content.0.tool_use_id",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                }
            ],
            "messages.0.content.0.input",
        ),
        ([{"role": "assistant", "content": [{"type": "audio"}]}], "messages.0.content.0.type"),
        ([{"role": "system", "content": "only a system message"}], "messages"),
    ],
)
def test_an_invalid_message_is_refused_naming_where(
    messages: list[dict[str, Any]], where: str
) -> None:
    with pytest.raises(InvalidRequestError, match=f"^{where}:"):
        conversation_of(None, messages)


def test_client_tools_keep_their_anthropic_fields_apart() -> None:
    tools = [
        {
            "name": "Read",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
            "defer_loading": True,
        }
    ]
    clients, server, extras = tools_of(tools, None, ["clock"])
    assert [(t.name, t.description, t.parameters) for t in clients] == [
        ("Read", "Read a file", tools[0]["input_schema"])
    ]
    assert server == []
    assert extras == {"Read": {"cache_control": {"type": "ephemeral"}, "defer_loading": True}}


def test_tools_anthropic_runs_itself_are_dropped() -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    assert tools_of(tools, None, []) == ([], [], {})


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ([{"type": "url", "url": "gateway:", "name": "gateway"}], ["clock", "countdown"]),
        (
            [{"name": "gateway", "tool_configuration": {"allowed_tools": ["clock"]}}],
            ["clock"],
        ),
        ([{"type": "url", "url": "https://example.com/mcp", "name": "other"}], []),
    ],
)
def test_the_gateway_mcp_server_offers_the_gateways_tools(
    servers: list[dict[str, Any]], expected: list[str]
) -> None:
    assert tools_of(None, servers, ["clock", "countdown"])[1] == expected


def test_a_tool_without_a_schema_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"^tools\.0\.input_schema:"):
        tools_of([{"name": "f"}], None, [])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Read"},
            {"tool_choice": {"type": "function", "function": {"name": "Read"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice_in_chat_completions_terms(
    choice: dict[str, Any], expected: dict[str, Any]
) -> None:
    options = options_of(request(tool_choice=choice), has_tools=True)
    assert {k: options[k] for k in expected} == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in options_of(request(tool_choice={"type": "any"}), has_tools=False)


def test_sampling_parameters_in_openai_names() -> None:
    body = request(
        temperature=0.5, top_p=0.9, stop_sequences=["\n\nHuman:"], metadata={"user_id": "u1"}
    )
    assert options_of(body, has_tools=False) == {
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "user": "u1",
        "anthropic": {"body": {"metadata": {"user_id": "u1"}}},
    }


def test_a_model_groups_failover_policy_is_an_option_of_the_gateways() -> None:
    options = options_of(request(failover="continue"), has_tools=False)

    assert options == {"max_tokens": 64, "failover": "continue"}


def test_anthropic_only_fields_betas_and_tool_fields_travel_together() -> None:
    body = request(
        thinking={"type": "adaptive"},
        top_k=5,
        context_management={"edits": []},
        output_config={"effort": "high"},
        speed="fast",
    )
    options = options_of(
        body, has_tools=True, betas=["b1"], tool_extras={"Read": {"defer_loading": True}}
    )
    assert options["anthropic"] == {
        "body": {
            "thinking": {"type": "adaptive"},
            "top_k": 5,
            "context_management": {"edits": []},
            "output_config": {"effort": "high"},
        },
        "beta": ["b1"],
        "tools": {"Read": {"defer_loading": True}},
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("claude-code-20250219", ["claude-code-20250219"]),
        (" a , b,,c ", ["a", "b", "c"]),
    ],
)
def test_beta_header_values(header: str | None, expected: list[str]) -> None:
    assert betas_of(header) == expected


@pytest.mark.parametrize("header", [",".join(["b"] * (MAX_BETAS + 1)), "x" * 129, "a\r\nX: y"])
def test_beta_header_is_bounded(header: str) -> None:
    with pytest.raises(InvalidRequestError, match="anthropic-beta"):
        betas_of(header)
