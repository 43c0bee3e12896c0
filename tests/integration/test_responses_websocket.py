"""The Responses API's WebSocket mode, through the openai SDK's ``client.responses.connect()``:
the same events as over SSE, lanes, errors that leave the socket open, and a socket that
closes cancelling its response."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from streams.dialects.responses import run_id_of
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import UpstreamServer, text_reply

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def gateway(upstream: UpstreamServer) -> Iterator[RunningGateway]:
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    with running_gateway(routes={"up": route}) as running:
        yield running


def sdk(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    )


async def until_done(connection: Any) -> list[Any]:
    events = []
    async for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.failed", "error"):
            return events
    return events


async def test_a_response_over_the_socket_is_the_same_events_as_over_sse(
    gateway: RunningGateway,
) -> None:
    client = sdk(gateway)
    async with client.responses.connect() as connection:
        await connection.send({"type": "response.create", "model": "demo", "input": "hello"})
        events = await until_done(connection)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    response_id = events[-1].response.id
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        over_sse = await http.get(f"/v1/responses/{response_id}?stream=true")
    sse_types = [
        line.removeprefix(b"event: ").decode()
        for line in over_sse.content.split(b"\n")
        if line.startswith(b"event: ")
    ]
    assert sse_types == [e.type for e in events]


async def test_a_bad_message_gets_an_error_and_the_socket_goes_on(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    async with client.responses.connect() as connection:
        await connection.send({"type": "response.create", "model": "no-such-model", "input": "hi"})
        (error,) = await until_done(connection)
        await connection.send({"type": "response.create", "model": "demo", "input": "hello"})
        events = await until_done(connection)
    assert error.type == "error"
    assert events[-1].type == "response.completed"


async def test_each_lane_echoes_its_stream_id(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    async with client.responses.connect() as connection:
        for lane in ("a", "b"):
            await connection.send(
                {"type": "response.create", "model": "demo", "input": "hello", "stream_id": lane}
            )
        finished: dict[str, str] = {}
        async for event in connection:
            if event.type == "response.completed":
                finished[event.stream_id] = event.response.id  # type: ignore[union-attr]
                if len(finished) == 2:
                    break
    assert set(finished) == {"a", "b"}
    assert finished["a"] != finished["b"]


async def test_a_socket_that_closes_cancels_its_response_and_the_upstream_request(
    gateway: RunningGateway, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply(*(["tok"] * 500), pause=0.01))
    client = sdk(gateway)
    async with client.responses.connect() as connection:
        await connection.send({"type": "response.create", "model": "up", "input": "hello"})
        async for event in connection:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                break
    left_at = time.monotonic()
    disconnected_at = await upstream.wait_disconnect(upstream.requests[0])
    assert disconnected_at - left_at < 1.0
    snapshot = await gateway.wait_run(run_id_of(response_id), timeout=5)
    assert snapshot["status"] == "cancelled"
