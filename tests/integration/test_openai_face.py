"""The official openai SDK, pointed at the gateway, works unchanged."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from tests.support import RunningGateway, running_gateway
from tests.upstream_server import (
    STALL,
    Reply,
    UpstreamServer,
    chat_chunk,
    error_reply,
    text_reply,
)

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(gateway) as sdk_client:
        yield sdk_client


@pytest.fixture
def gateway(upstream: UpstreamServer) -> Iterator[RunningGateway]:
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    with running_gateway(routes={"up": route}) as running:
        yield running


def sdk(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    )


USER = [{"role": "user", "content": "hello"}]
CLOCK_TOOL: Any = {
    "type": "function",
    "function": {"name": "clock", "description": "time", "parameters": {"type": "object"}},
}


async def test_streaming_text_with_usage(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(text_reply("Hel", "lo", "!", usage=(7, 3)))
    stream = await client.chat.completions.create(
        model="up",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.2,
        max_tokens=50,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert text == "Hello!"
    assert finish == ["stop"]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)
    assert chunks[0].choices[0].delta.role == "assistant"
    sent = upstream.requests[0].body
    assert (sent["temperature"], sent["max_tokens"], sent["model"]) == (0.2, 50, "up-model")


async def test_streaming_tool_calls(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(
        Reply(
            steps=[
                chat_chunk({"role": "assistant"}),
                chat_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "clock", "arguments": ""},
                            }
                        ]
                    }
                ),
                chat_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "clock", "arguments": '{"utc_'},
                            }
                        ]
                    }
                ),
                chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                chat_chunk(
                    {"tool_calls": [{"index": 1, "function": {"arguments": 'offset_hours": 1}'}}]}
                ),
                chat_chunk({}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        )
    )
    stream = await client.chat.completions.create(
        model="up", messages=USER, tools=[CLOCK_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += (call.function and call.function.name) or ""
            entry["arguments"] += (call.function and call.function.arguments) or ""
    assert finish == "tool_calls"
    assert calls == {
        0: {"id": "call_a", "name": "clock", "arguments": "{}"},
        1: {"id": "call_b", "name": "clock", "arguments": '{"utc_offset_hours": 1}'},
    }
    assert upstream.requests[0].body["tools"][0]["function"]["name"] == "clock"


async def test_non_streaming_answer(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(text_reply("All ", "good.", usage=(4, 2)))
    completion = await client.chat.completions.create(model="up", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "All good."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 6


async def test_the_demo_model_answers_through_the_sdk(
    client: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    completion = await client.chat.completions.create(model="demo", messages=USER)
    assert "demo model" in (completion.choices[0].message.content or "")
    models = await client.models.list()
    assert {m.id for m in models.data} == {"demo", "up"}


async def test_errors_come_in_openai_shape(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nope", messages=USER)
    assert missing.value.code == "model_not_found"
    assert missing.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.chat.completions.create(model="up", messages=[])
    assert invalid.value.status_code == 400
    assert invalid.value.param == "messages"
    upstream.script(error_reply(500, "kaboom"))
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(model="up", messages=USER)
    assert failed.value.status_code == 502
    assert failed.value.code == "upstream_status"
    assert "kaboom" in failed.value.message


async def test_a_mid_stream_failure_is_an_error_chunk_not_a_truncated_stream(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(Reply(steps=[chat_chunk({"content": "par"}), b"data: {bad\n\n"]))
    stream = await client.chat.completions.create(model="up", messages=USER, stream=True)
    received: list[Any] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError) as failure:
        await read_all()
    assert "not JSON" in failure.value.message
    assert [c.choices[0].delta.content for c in received if c.choices] == ["", "par"]


async def test_an_upstream_line_past_the_limit_is_an_error_chunk(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    endless = [b"x" * (64 * 1024)] * 17  # 1 MiB and more, and no line end
    upstream.script(Reply(steps=[chat_chunk({"content": "par"}), b"data: ", *endless, STALL]))
    stream = await client.chat.completions.create(model="up", messages=USER, stream=True)
    received: list[Any] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError) as failure:
        await read_all()
    assert failure.value.code == "upstream_protocol"
    assert "line longer than 1048576 bytes" in failure.value.message
    assert [c.choices[0].delta.content for c in received if c.choices] == ["", "par"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_upstream_error_said_in_json_with_a_200_keeps_its_message(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway, stream: bool
) -> None:
    upstream.script(error_reply(200, "you exceeded your current quota"))

    async def ask() -> None:
        if not stream:
            await client.chat.completions.create(model="up", messages=USER)
            return
        async for _ in await client.chat.completions.create(model="up", messages=USER, stream=True):
            pass

    with pytest.raises(openai.APIError) as failure:
        await ask()
    assert failure.value.code == "upstream_protocol"
    assert failure.value.message.endswith("server_error: you exceeded your current quota")


async def test_a_client_that_disconnects_mid_stream_cancels_the_upstream_request(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    # A token every 50 ms (the bench's bound on a cancel reaching upstream): no token may
    # be made after the client left. At 10 ms a loaded 2-CPU machine missed it now and then.
    upstream.script(text_reply(*(["tok"] * 500), pause=0.05))
    stream = await client.chat.completions.create(model="up", messages=USER, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content == "tok":
            break
    await stream.close()
    left_at = time.monotonic()
    record = upstream.requests[0]
    disconnected_at = await upstream.wait_disconnect(record)
    assert disconnected_at - left_at < 1.0
    assert record.chunks_after_disconnect == 0


async def test_a_client_that_leaves_before_a_non_streaming_answer_cancels_the_upstream(
    client: openai.AsyncOpenAI, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(Reply(before_headers=STALL))
    client = openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=0.5
    )
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="up", messages=USER)
    await upstream.wait_disconnect(upstream.requests[0])
