"""The official openai SDK's ``responses`` client, pointed at the gateway, works unchanged."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from streams.dialects.responses import response_id, run_id_of
from tests.gateway_process import api_keys
from tests.support import RunningGateway, agent_spec, running_gateway
from tests.upstream_server import UpstreamServer, chat_chunk, text_reply

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


async def test_a_client_that_leaves_mid_stream_cancels_the_upstream_request(
    client: openai.AsyncOpenAI, upstream: UpstreamServer
) -> None:
    # A token every 50 ms (the bench's bound on a cancel reaching upstream): no token may
    # be made after the client left. At 10 ms a loaded 2-CPU machine missed it now and then.
    upstream.script(text_reply(*(["tok"] * 500), pause=0.05))
    stream = await client.responses.create(model="up", input="hello", stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            break
    await stream.close()
    left_at = time.monotonic()
    record = upstream.requests[0]
    disconnected_at = await upstream.wait_disconnect(record)
    assert disconnected_at - left_at < 1.0
    assert record.chunks_after_disconnect == 0


async def test_a_background_response_goes_on_without_its_client_and_is_read_whole(
    client: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    started = await client.responses.create(model="demo", input="hello", background=True)
    await gateway.wait_run(run_id_of(started.id), timeout=5)
    done = await client.responses.retrieve(started.id)
    assert done.status == "completed"
    assert done.output_text
    assert done.background is True


async def test_streaming_is_chosen_by_the_body_never_by_accept(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        whole = await http.post(
            "/v1/responses",
            json={"model": "demo", "input": "hi"},
            headers={"accept": "text/event-stream"},
        )
        streamed = await http.post(
            "/v1/responses",
            json={"model": "demo", "input": "hi", "stream": True},
            headers={"accept": "application/json"},
        )
    assert whole.headers["content-type"].startswith("application/json")
    assert whole.json()["object"] == "response"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert b"event: response.completed" in streamed.content


async def test_what_the_gateway_does_not_use_is_ignored_and_invalid_input_is_a_400(
    client: openai.AsyncOpenAI,
) -> None:
    response = await client.responses.create(
        model="demo",
        input=[
            {"type": "message", "role": "developer", "content": "Be brief."},
            {"type": "reasoning", "summary": []},
            {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        ],
        tools=[{"type": "web_search"}],
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
        extra_body={"prompt_cache_key": "k", "client_metadata": {"a": "b"}},
    )
    assert response.status == "completed"
    with pytest.raises(openai.BadRequestError) as raised:
        await client.responses.create(model="demo", input="hi", temperature=9)
    assert raised.value.status_code == 400
    assert raised.value.body["code"] == "invalid_request"  # type: ignore[index]


async def test_a_response_is_deleted_and_its_input_items_listed(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="demo", input=[{"role": "user", "content": "hello"}], instructions="Be brief."
    )
    items = await client.responses.input_items.list(response.id, order="asc")
    assert [(item.type, item.role) for item in items.data] == [("message", "user")]  # type: ignore[union-attr]
    deleted = await client.responses.with_raw_response.delete(response.id)
    assert deleted.status_code == 200
    assert deleted.http_response.json() == {
        "id": response.id,
        "object": "response.deleted",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_a_response_is_a_run_readable_as_native_events(
    client: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    response = await client.responses.create(model="demo", input="hello")
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        native = await http.get(f"/v1/runs/{run_id_of(response.id)}/events")
        as_responses = await http.get(f"/v1/runs/{run_id_of(response.id)}/events?format=responses")
    assert b'"type":"run.completed"' in native.content
    assert b"event: response.completed" in as_responses.content


async def test_a_native_run_reads_as_a_response(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        started = await http.post("/v1/runs", json=agent_spec("what is 6 * 7", ["calculator"]))
        run_id = started.json()["run_id"]
        await gateway.wait_run(run_id, timeout=5)
        answer = await http.get(f"/v1/responses/{response_id(run_id)}")
    body = answer.json()
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["message", "mcp_call", "message"]


def test_another_key_s_response_is_not_found() -> None:
    with running_gateway(api_keys=api_keys("alice", "bob")) as gateway:
        alice = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="bob", max_retries=0)
        response = alice.responses.create(model="demo", input="hello")
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.cancel(response.id)
        assert alice.responses.retrieve(response.id).status == "completed"


async def test_an_image_part_reaches_the_model_as_a_chat_image_part(
    client: openai.AsyncOpenAI, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply("a cat"))
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
    text = {"type": "input_text", "text": "what is this"}
    response = await client.responses.create(
        model="up", input=[{"role": "user", "content": [text, image]}]
    )
    assert response.output_text == "a cat"
    (message,) = [m for m in upstream.requests[0].body["messages"] if m["role"] == "user"]
    assert message["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]


async def test_tool_choice_and_parallel_tool_calls_reach_the_upstream_in_its_terms(
    client: openai.AsyncOpenAI, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply("ok"))
    await client.responses.create(
        model="up",
        input="hi",
        tools=[CLOCK],
        tool_choice={"type": "function", "name": "clock"},
        parallel_tool_calls=False,
    )
    body = upstream.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "clock"}}
    assert body["parallel_tool_calls"] is False


async def test_an_answer_cut_by_the_token_budget_is_an_incomplete_response(
    client: openai.AsyncOpenAI, upstream: UpstreamServer
) -> None:
    reply = text_reply("a", "b")
    reply.steps[-3] = chat_chunk({}, "length")
    upstream.script(reply)
    response = await client.responses.create(model="up", input="hello", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "ab"
