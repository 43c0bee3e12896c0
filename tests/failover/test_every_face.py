"""A request's own failover policy reaches the model group from every face, and every attempt
is recorded in the step's spans.

The group's policy is ``fail``; each request asks for ``restart`` in its face's way. Route a
is cut after some output: a face whose answer is whole then gets route b's answer alone,
a streamed face that cannot take text back ends with ``output_retracted`` (had the option
not arrived, both would be the cut route's ``upstream_unavailable``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import anthropic
import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.failover.support import GROUP, group_gateway, no_request_left_open
from tests.support import SSE, RunningGateway, agent_spec, collect, running_gateway, sse_frames
from tests.upstream_server import RESET, Reply, UpstreamServer, chat_chunk, route, text_reply

PARTIAL = ("The", " answer")
ANSWER = ("Forty", "-two.")
TEXT = "".join(ANSWER)
RESTART = {"failover": "restart"}


def cut_reply() -> Reply:
    steps = [chat_chunk({"role": "assistant", "content": ""})]
    steps += [chat_chunk({"content": part}) for part in PARTIAL]
    return Reply(steps=[*steps, RESET])


def client_of(gateway: RunningGateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.base_url, timeout=10)


async def chat_completions(gateway: RunningGateway) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0)
    completion = await sdk.chat.completions.create(
        model=GROUP, messages=[{"role": "user", "content": "hi"}], extra_body=RESTART
    )
    assert completion.choices[0].message.content == TEXT


async def responses(gateway: RunningGateway) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0)
    response = await sdk.responses.create(model=GROUP, input="hi", extra_body=RESTART)
    assert response.output_text == TEXT


async def messages(gateway: RunningGateway) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key="x", max_retries=0)
    message = await sdk.messages.create(
        model=GROUP,
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_body=RESTART,
    )
    assert [block.text for block in message.content if block.type == "text"] == [TEXT]


async def native(gateway: RunningGateway) -> None:
    async with client_of(gateway) as client:
        spec = agent_spec("hi", model=GROUP, options=RESTART)
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            events = await collect(response)
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == TEXT


async def ai_sdk(gateway: RunningGateway) -> None:
    body = {
        "id": "chat-failover",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "model": GROUP,
        "options": RESTART,
    }
    async with client_of(gateway) as client:
        async with client.stream("POST", "/v1/ai-sdk/chat", json=body) as response:
            frames = [frame.data async for frame in sse_frames(response) if frame.data]
    chunks = [json.loads(data) for data in frames if data != "[DONE]"]
    (error,) = [chunk for chunk in chunks if chunk["type"] == "error"]
    assert error["errorText"].startswith("output_retracted:")
    assert frames[-1] == "[DONE]"


async def ag_ui(gateway: RunningGateway) -> None:
    body = {
        "threadId": "t",
        "runId": "r",
        "state": {},
        "messages": [{"id": "u1", "role": "user", "content": "hi"}],
        "tools": [],
        "context": [],
        "forwardedProps": {"model": GROUP, **RESTART},
    }
    async with client_of(gateway) as client:
        async with client.stream("POST", "/v1/ag-ui", json=body, headers=SSE) as response:
            events = [frame.event async for frame in sse_frames(response) if frame.data]
    assert events[-1]["type"] == "RUN_ERROR"
    assert events[-1]["code"] == "output_retracted"


FACES: dict[str, Callable[[RunningGateway], Awaitable[None]]] = {
    "native": native,
    "chat-completions": chat_completions,
    "responses": responses,
    "messages": messages,
    "ai-sdk": ai_sdk,
    "ag-ui": ag_ui,
}


@pytest.mark.parametrize("face", FACES)
async def test_a_requests_failover_option_overrides_the_groups_policy_on_every_face(
    a: UpstreamServer, b: UpstreamServer, face: str
) -> None:
    a.script(cut_reply())
    b.script(text_reply(*ANSWER))
    with group_gateway(route(a), route(b), policy="fail") as gateway:
        await FACES[face](gateway)
    await no_request_left_open(a, b)


async def test_every_attempt_is_a_span_and_every_switch_an_event_of_the_steps_span(
    a: UpstreamServer, b: UpstreamServer
) -> None:
    a.script(cut_reply())
    b.script(text_reply(*ANSWER))
    exporter = InMemorySpanExporter()
    groups = {GROUP: {"routes": ["a", "b"], "policy": "restart"}}
    routes = {"a": route(a), "b": route(b)}
    with running_gateway(routes=routes, groups=groups, span_exporter=exporter) as gateway:
        await native(gateway)

    spans = exporter.get_finished_spans()
    attempts = [span for span in spans if span.name == "chat up-model"]
    assert [(s.attributes or {}).get("gateway.route") for s in attempts] == ["a", "b"]
    failed, completed = ((s.attributes or {}) for s in attempts)
    assert failed["error.type"] == "upstream_unavailable"
    assert "error.type" not in completed
    assert completed["gen_ai.usage.output_tokens"] == 5
    (step,) = [span for span in spans if span.name == f"model {GROUP}"]
    switches = [dict(event.attributes or {}) for event in step.events]
    assert switches == [
        {
            "gateway.group": GROUP,
            "gateway.route.from": "a",
            "gateway.route.to": "b",
            "gateway.failover.reason": "unavailable",
        }
    ]
    assert {s.parent.span_id for s in attempts if s.parent} == {step.context.span_id}
