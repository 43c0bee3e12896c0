"""Specification of the AG-UI 1.0 dialect's input (``streams/dialects/agui_input.py``): AG-UI's
``RunAgentInput`` to a run spec."""

from __future__ import annotations

from typing import Any

import pytest
from ag_ui.core import RunAgentInput

from streams.dialects.agui_input import run_spec_from_agui
from streams.errors import InvalidRequestError


def agui_input(**fields: Any) -> dict[str, Any]:
    return {
        "threadId": "thread_1",
        "runId": "run_a",
        "messages": [{"id": "u1", "role": "user", "content": "count down from 3"}],
        **fields,
    }


def test_a_minimal_input_makes_a_demo_run_with_the_agui_ids_in_its_metadata() -> None:
    spec = run_spec_from_agui(agui_input())

    assert spec.model == "demo"
    assert spec.tools == []
    assert spec.client_tools == []
    assert spec.client_tool_mode == "return"
    assert spec.on_disconnect is None
    assert spec.metadata == {"ag_ui": {"thread_id": "thread_1", "run_id": "run_a"}}
    assert [m.model_dump(exclude_none=True) for m in spec.messages] == [
        {"role": "user", "content": "count down from 3"}
    ]


def test_forwarded_props_choose_the_model_server_tools_and_max_steps() -> None:
    spec = run_spec_from_agui(
        agui_input(forwardedProps={"model": "gpt", "tools": ["countdown"], "maxSteps": 3})
    )

    assert (spec.model, spec.tools, spec.max_steps) == ("gpt", ["countdown"], 3)


def test_forwarded_props_may_choose_a_model_groups_failover_policy() -> None:
    spec = run_spec_from_agui(agui_input(forwardedProps={"model": "smart", "failover": "restart"}))

    assert spec.options == {"failover": "restart"}


def test_the_inputs_tools_become_client_tools_handed_back_to_the_frontend() -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    spec = run_spec_from_agui(
        agui_input(
            tools=[
                {"name": "get_location", "description": "Where the user is"},
                {"name": "lookup", "description": "Look up", "parameters": parameters},
            ]
        )
    )

    assert [t.model_dump() for t in spec.client_tools] == [
        {
            "name": "get_location",
            "description": "Where the user is",
            "parameters": {"type": "object", "properties": {}},
        },
        {"name": "lookup", "description": "Look up", "parameters": parameters},
    ]
    assert spec.client_tool_mode == "return"


def test_every_message_role_converts_to_an_openai_style_message() -> None:
    messages = [
        {"id": "s", "role": "system", "content": "Be brief."},
        {"id": "d", "role": "developer", "content": "Use tools.", "name": "dev"},
        {"id": "u", "role": "user", "content": [{"type": "text", "text": "Where am I?"}]},
        {
            "id": "a",
            "role": "assistant",
            "content": "Let me check.",
            "toolCalls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_location", "arguments": "{}"},
                }
            ],
        },
        {"id": "t", "role": "tool", "toolCallId": "c1", "content": '{"city": "Paris"}'},
        {"id": "f", "role": "tool", "toolCallId": "c2", "content": "", "error": "denied"},
        {"id": "x", "role": "activity", "activityType": "tool_execution", "content": {"a": 1}},
        {"id": "r", "role": "reasoning", "content": "thinking"},
        {"id": "a2", "role": "assistant"},
    ]

    spec = run_spec_from_agui(agui_input(messages=messages))

    assert [m.model_dump(exclude_none=True) for m in spec.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use tools.", "name": "dev"},
        {"role": "user", "content": "Where am I?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_location", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "content": '{"city": "Paris"}', "tool_call_id": "c1"},
        {"role": "tool", "content": '{"error": "denied"}', "tool_call_id": "c2"},
        {"role": "assistant", "content": ""},
    ]


def test_user_images_become_image_url_parts_and_context_a_leading_system_message() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "value": "https://x/y.png"}},
        {"type": "image", "source": {"type": "data", "value": "AAAA", "mimeType": "image/png"}},
    ]
    spec = run_spec_from_agui(
        agui_input(
            messages=[{"id": "u", "role": "user", "content": content}],
            context=[{"description": "city", "value": "Paris"}],
        )
    )

    assert [m.model_dump(exclude_none=True) for m in spec.messages] == [
        {"role": "system", "content": "Context:\n- city: Paris"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]


def test_an_input_made_with_the_agui_sdk_is_accepted() -> None:
    sdk_input = RunAgentInput.model_validate(
        {
            "threadId": "t",
            "runId": "r",
            "state": {},
            "messages": [{"id": "u", "role": "user", "content": "hi"}],
            "tools": [{"name": "get_location", "description": "d", "parameters": {}}],
            "context": [],
            "forwardedProps": {},
        }
    )

    spec = run_spec_from_agui(sdk_input.model_dump(by_alias=True, mode="json"))

    assert spec.metadata["ag_ui"] == {"thread_id": "t", "run_id": "r"}
    assert [t.name for t in spec.client_tools] == ["get_location"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"threadId": None}, "threadId"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"id": "m", "role": "wizard", "content": "x"}]}, "role"),
        ({"messages": [{"id": "m", "role": "tool", "content": "x"}]}, "toolCallId"),
        ({"messages": [{"id": "m", "role": "user"}]}, "content"),
        (
            {
                "messages": [
                    {"id": "m", "role": "user", "content": [{"type": "audio", "source": {}}]}
                ]
            },
            "unsupported content part",
        ),
        ({"forwardedProps": {"tools": "countdown"}}, "forwardedProps.tools"),
        ({"forwardedProps": {"model": 3}}, "forwardedProps.model"),
        ({"forwardedProps": {"maxSteps": 0}}, "max_steps"),
        ({"forwardedProps": {"failover": "retry"}}, "forwardedProps.failover"),
        ({"tools": [{"name": "bad name!", "description": ""}]}, "client_tools"),
        (
            {
                "tools": [{"name": "clock", "description": ""}],
                "forwardedProps": {"tools": ["clock"]},
            },
            "both a server tool and a client tool",
        ),
    ],
)
def test_input_that_does_not_make_a_run_is_an_invalid_request(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        run_spec_from_agui(agui_input(**fields))
