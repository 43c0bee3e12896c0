"""Reasoning, finish reasons and cache usage from a real (loopback) upstream into a run's
events: an Anthropic route's signed thinking and stop reasons, an OpenAI-compatible route's
``reasoning_content``, ``finish_reason`` and cached prompt tokens."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import SSE, RunningGateway, collect, running_gateway
from tests.upstream_server import Reply, UpstreamServer, chat_chunk, route, sse


async def stream_run(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


def event(kind: str, **payload: Any) -> bytes:
    return sse({"type": kind, **payload}, event=kind)


def delta(index: int, **fields: Any) -> bytes:
    return event("content_block_delta", index=index, delta=fields)


def payloads(events: list[dict[str, Any]], *kinds: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of ``kinds`` without their envelope, in order."""
    envelope = {"seq", "run_id", "type", "ts", "producer"}
    return [
        (e["type"], {k: v for k, v in e.items() if k not in envelope})
        for e in events
        if e["type"] in kinds
    ]


async def test_an_anthropic_routes_signed_thinking_and_stop_reasons_reach_the_log(
    upstream: UpstreamServer,
) -> None:
    usage = {"input_tokens": 4, "cache_read_input_tokens": 100, "output_tokens": 1}
    upstream.script(
        Reply(
            steps=[
                event("message_start", message={"usage": usage}),
                event(
                    "content_block_start",
                    index=0,
                    content_block={"type": "thinking", "thinking": "", "signature": ""},
                ),
                delta(0, type="thinking_delta", thinking="The clock "),
                delta(0, type="thinking_delta", thinking="knows."),
                delta(0, type="signature_delta", signature="EqQBCgIYAhIM=="),
                event("content_block_stop", index=0),
                event(
                    "content_block_start",
                    index=1,
                    content_block={"type": "redacted_thinking", "data": "EmwKAhgB=="},
                ),
                event("content_block_stop", index=1),
                event(
                    "content_block_start",
                    index=2,
                    content_block={
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "clock",
                        "input": {},
                    },
                ),
                delta(2, type="input_json_delta", partial_json="{}"),
                event("content_block_stop", index=2),
                event(
                    "message_delta",
                    delta={"stop_reason": "tool_use", "stop_sequence": None},
                    usage={"output_tokens": 9},
                ),
                event("message_stop"),
            ]
        ),
        Reply(
            steps=[
                event("message_start", message={"usage": {"input_tokens": 30}}),
                event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                delta(0, type="text_delta", text="It is noon"),
                event(
                    "message_delta",
                    delta={"stop_reason": "stop_sequence", "stop_sequence": "."},
                    usage={"output_tokens": 2},
                ),
                event("message_stop"),
            ]
        ),
    )
    settings = route(upstream, provider="anthropic", model="claude-x")
    with running_gateway(routes={"up": settings}) as gateway:
        events = await stream_run(
            gateway,
            {"model": "up", "tools": ["clock"], "messages": [{"role": "user", "content": "time?"}]},
        )

    first, second = (e["message_id"] for e in events if e["type"] == "message.started")
    thinking = {"type": "thinking", "thinking": "The clock knows.", "signature": "EqQBCgIYAhIM=="}
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgB=="}
    assert payloads(
        events, "reasoning.delta", "reasoning.signature", "reasoning.redacted", "message.completed"
    ) == [
        ("reasoning.delta", {"message_id": first, "delta": "The clock "}),
        ("reasoning.delta", {"message_id": first, "delta": "knows."}),
        ("reasoning.signature", {"message_id": first, "signature": "EqQBCgIYAhIM=="}),
        ("reasoning.redacted", {"message_id": first, "data": "EmwKAhgB=="}),
        (
            "message.completed",
            {
                "message_id": first,
                "text": "",
                "usage": {"input_tokens": 4, "output_tokens": 9, "cache_read_input_tokens": 100},
                "finish_reason": "tool_calls",
                "reasoning": [thinking, redacted],
            },
        ),
        (
            "message.completed",
            {
                "message_id": second,
                "text": "It is noon",
                "usage": {"input_tokens": 30, "output_tokens": 2},
                "finish_reason": "stop_sequence",
                "stop_sequence": ".",
            },
        ),
    ]
    assert payloads(events, "run.completed") == [
        (
            "run.completed",
            {
                "output": "It is noon",
                "steps": 2,
                "stop_reason": "answer",
                "finish_reason": "stop_sequence",
                "stop_sequence": ".",
                "usage": {"input_tokens": 34, "output_tokens": 11, "cache_read_input_tokens": 100},
            },
        )
    ]


async def test_an_openai_routes_reasoning_content_length_and_cached_tokens_reach_the_log(
    upstream: UpstreamServer,
) -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 1536},
    }
    upstream.script(
        Reply(
            steps=[
                chat_chunk({"role": "assistant", "content": None, "reasoning_content": "Hmm, "}),
                chat_chunk({"reasoning_content": "a long one."}),
                chat_chunk({"content": "Once upon"}),
                chat_chunk({}, finish="length"),
                chat_chunk(None, usage=usage),
                b"data: [DONE]\n\n",
            ]
        )
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(
            gateway, {"model": "up", "messages": [{"role": "user", "content": "a story"}]}
        )

    (message,) = (e["message_id"] for e in events if e["type"] == "message.started")
    assert payloads(events, "reasoning.delta", "message.completed", "run.completed") == [
        ("reasoning.delta", {"message_id": message, "delta": "Hmm, "}),
        ("reasoning.delta", {"message_id": message, "delta": "a long one."}),
        (
            "message.completed",
            {
                "message_id": message,
                "text": "Once upon",
                "usage": {
                    "input_tokens": 2000,
                    "output_tokens": 16,
                    "cache_read_input_tokens": 1536,
                },
                "finish_reason": "length",
                "reasoning": [
                    {"type": "thinking", "thinking": "Hmm, a long one.", "signature": ""}
                ],
            },
        ),
        (
            "run.completed",
            {
                "output": "Once upon",
                "steps": 1,
                "stop_reason": "answer",
                "finish_reason": "length",
                "usage": {
                    "input_tokens": 2000,
                    "output_tokens": 16,
                    "cache_read_input_tokens": 1536,
                },
            },
        ),
    ]
