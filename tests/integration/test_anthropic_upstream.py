"""The Chat Completions face (the official openai SDK) in front of an Anthropic upstream,
and model aliases: what the gateway sends upstream for any face, onto any provider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai

from tests.support import running_gateway
from tests.upstream_server import Reply, UpstreamServer, route, sse, text_reply

CLOCK_TOOL: Any = {
    "type": "function",
    "function": {"name": "clock", "description": "time", "parameters": {"type": "object"}},
}


def event(kind: str, **payload: Any) -> bytes:
    return sse({"type": kind, **payload}, event=kind)


def tool_use_reply() -> Reply:
    """Anthropic's stream of one tool_use, its input in input_json_delta fragments."""
    return Reply(
        steps=[
            event("message_start", message={"usage": {"input_tokens": 12, "output_tokens": 1}}),
            event(
                "content_block_start",
                index=0,
                content_block={"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}},
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": '{"utc_offset'},
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": '_hours": 2}'},
            ),
            event("content_block_stop", index=0),
            event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
            event("message_stop"),
        ]
    )


def text_answer(text: str) -> Reply:
    return Reply(
        steps=[
            event("message_start", message={"usage": {"input_tokens": 30, "output_tokens": 1}}),
            event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": text}),
            event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}),
            event("message_stop"),
        ]
    )


async def chunks_of(stream: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in stream]


async def test_chat_completions_tool_calls_round_trip_through_an_anthropic_route(
    upstream: UpstreamServer,
) -> None:
    upstream.script(tool_use_reply(), text_answer("It is noon."))
    settings = route(upstream, provider="anthropic", model="claude-x", max_attempts=1)
    with running_gateway(routes={"claude": settings}) as gateway:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
        ) as client:
            question: list[Any] = [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "time in UTC+2?"},
            ]
            first = await chunks_of(
                await client.chat.completions.create(
                    model="claude",
                    messages=question,
                    tools=[CLOCK_TOOL],
                    tool_choice="required",
                    parallel_tool_calls=False,
                    stream=True,
                )
            )
            calls = [
                call for c in first if c.choices for call in c.choices[0].delta.tool_calls or ()
            ]
            call_id = next(call.id for call in calls if call.id)
            name = next(call.function.name for call in calls if call.function.name)
            arguments = "".join(call.function.arguments or "" for call in calls)
            assert (call_id, name, json.loads(arguments)) == (
                "toolu_1",
                "clock",
                {"utc_offset_hours": 2},
            )
            finish = [c.choices[0].finish_reason for c in first if c.choices]
            assert "tool_calls" in finish

            follow_up: list[Any] = [
                *question,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": "12:00"},
            ]
            second = await chunks_of(
                await client.chat.completions.create(
                    model="claude", messages=follow_up, tools=[CLOCK_TOOL], stream=True
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in second if c.choices)
            assert text == "It is noon."

    asked, answered = upstream.wait_for_requests(2)
    assert asked.path == answered.path == "/v1/messages"
    assert asked.body["system"] == "Be brief."
    assert asked.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert answered.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "time in UTC+2?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "clock",
                    "input": {"utc_offset_hours": 2},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"}],
        },
    ]


async def test_a_model_alias_is_served_by_its_target(upstream: UpstreamServer) -> None:
    upstream.script(text_reply("aliased"))
    with running_gateway(
        routes={"up": route(upstream)}, model_aliases={"claude-*": "up"}
    ) as gateway:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
        ) as client:
            answer = await client.chat.completions.create(
                model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
            )
    assert answer.choices[0].message.content == "aliased"
    (request,) = upstream.wait_for_requests(1)
    assert request.body["model"] == "up-model"
