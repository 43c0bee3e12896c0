"""The official openai SDK's ``responses`` client, pointed at the gateway, works unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from tests.support import RunningGateway, running_gateway
from tests.upstream_server import UpstreamServer, text_reply

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def gateway(upstream: UpstreamServer) -> Iterator[RunningGateway]:
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    with running_gateway(routes={"up": route}) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    ) as sdk:
        yield sdk


CLOCK: Any = {
    "type": "function",
    "name": "clock",
    "description": "time",
    "parameters": {"type": "object"},
}
GATEWAY_TOOLS: Any = {
    "type": "mcp",
    "server_label": "gateway",
    "server_url": "gateway:",
    "allowed_tools": ["calculator"],
}


async def test_a_streamed_text_response_is_read_by_the_sdk_helper(
    client: openai.AsyncOpenAI, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply("Hel", "lo", "!", usage=(7, 3)))
    async with client.responses.stream(model="up", input="hello") as stream:
        texts = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert texts == ["Hel", "lo", "!"]
    assert final.output_text == "Hello!"
    assert final.status == "completed"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)


async def test_stream_events_are_numbered_from_zero_by_one(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model="demo", input="hello", stream=True)
    events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"


async def test_a_response_answered_whole(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="demo", input="hello", instructions="Be brief.")
    assert response.status == "completed"
    assert response.output_text
    assert response.instructions == "Be brief."
    assert response.id.startswith("resp_")


async def test_a_function_call_is_returned_and_its_output_continues_the_conversation(
    client: openai.AsyncOpenAI,
) -> None:
    first = await client.responses.create(model="demo", input="what time is it", tools=[CLOCK])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["clock"]
    second = await client.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '"noon"'}],
        tools=[CLOCK],
    )
    assert second.status == "completed"
    assert second.output_text


async def test_the_gateway_s_tools_run_here_as_mcp_calls(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="demo", input="what is 6 * 7", tools=[GATEWAY_TOOLS]
    )
    (call,) = [item for item in response.output if item.type == "mcp_call"]
    assert call.name == "calculator"
    assert call.output is not None and "42" in call.output
    assert "42" in response.output_text


async def test_a_streamed_response_is_re_attached_after_any_sequence_number(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.responses.create(
        model="demo", input="what is 6 * 7", tools=[GATEWAY_TOOLS], stream=True
    )
    events = [event async for event in stream]
    response_id = events[0].response.id  # type: ignore[union-attr]
    for after in (0, 5, len(events) - 2):
        resumed = await client.responses.retrieve(response_id, stream=True, starting_after=after)
        rest = [event async for event in resumed]
        assert [e.sequence_number for e in rest] == [e.sequence_number for e in events[after + 1 :]]
        assert [e.type for e in rest] == [e.type for e in events[after + 1 :]]


async def test_a_background_response_is_polled_and_cancelled(client: openai.AsyncOpenAI) -> None:
    started = await client.responses.create(
        model="demo",
        input="sleep 30 seconds",
        background=True,
        tools=[{"type": "mcp", "server_label": "gateway", "server_url": "gateway:"}],
    )
    assert started.status in ("queued", "in_progress")
    polled = await client.responses.retrieve(started.id)
    assert polled.id == started.id
    cancelled = await client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    again = await client.responses.cancel(started.id)
    assert again.status == "cancelled"


async def test_an_unknown_previous_response_is_a_404_in_openai_s_shape(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client.responses.create(
            model="demo", input="hi", previous_response_id="resp_0000000000000000"
        )
    assert "not found" in str(raised.value)
