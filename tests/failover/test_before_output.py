"""Failover before any output: a model group's first route fails before its first token, in
every way an upstream can, and the second answers. Each scenario runs on every face; the
client reads the second route's whole answer exactly once (the native log says why the
route changed, no face shows a retraction), and no upstream request outlives the run."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.failover.support import (
    GROUP,
    closed_port_url,
    deltas,
    group_gateway,
    no_request_left_open,
    of_type,
)
from tests.support import SSE, RunningGateway, agent_spec, collect, sse_frames
from tests.upstream_server import (
    RESET,
    STALL,
    Reply,
    UpstreamServer,
    anthropic_route,
    anthropic_text_reply,
    chat_chunk,
    error_reply,
    route,
    text_reply,
)

# The route b's answer, in every scenario.
ANSWER = ("Hello", " from", " b")
TEXT = "".join(ANSWER)
# A whole-body answer (an error's) ends its connection: a connection kept alive in the
# gateway's pool would be an idle connection, not an open request, and would blur the check
# that no connection outlives its request.
CLOSE = {"connection": "close"}
FIRST_TOKEN_TIMEOUT = 0.3
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Scenario:
    """Route a's failure before output: its ``reply`` (``None``: its port is closed), the
    ``reason`` the switch gives, and a's route settings beyond the defaults."""

    name: str
    reply: Reply | None
    reason: str
    settings: dict[str, Any] = field(default_factory=dict)


SCENARIOS = [
    Scenario("refused-connection", None, "unavailable"),
    Scenario("reset-before-headers", Reply(before_headers=RESET), "unavailable"),
    Scenario("status-500", error_reply(500, "kaboom", CLOSE), "http_500"),
    Scenario(
        "status-503-with-retry-after",
        error_reply(503, "overloaded", {"retry-after": "30", **CLOSE}),
        "http_503",
    ),
    Scenario("status-429", error_reply(429, "slow down", CLOSE), "http_429"),
    Scenario(
        "hang-before-headers",
        Reply(before_headers=STALL),
        "first_token_timeout",
        {"first_token_timeout": FIRST_TOKEN_TIMEOUT},
    ),
    Scenario(
        "first-token-slower-than-its-budget",
        # Headers at once, the first content chunk well past the budget.
        Reply(steps=[chat_chunk({"role": "assistant"}), 3.0, *text_reply("late").steps]),
        "first_token_timeout",
        {"first_token_timeout": FIRST_TOKEN_TIMEOUT},
    ),
    Scenario(
        "html-instead-of-sse",
        Reply(steps=[b"<html>oops</html>"], headers={"content-type": "text/html", **CLOSE}),
        "protocol",
    ),
    Scenario("json-error-with-200", error_reply(200, "quota exceeded", CLOSE), "protocol"),
    Scenario(
        "empty-stream",
        Reply(steps=[chat_chunk(), b"data: [DONE]\n\n"]),  # no choices, only [DONE]
        "stream_broken",
    ),
]


@dataclass(frozen=True)
class Run:
    """One scenario's gateway and upstreams, as a face's check gets them."""

    gateway: RunningGateway
    a: UpstreamServer
    b: UpstreamServer
    reason: str


async def native(run: Run) -> None:
    """POST /v1/runs over SSE: one message.rerouted a → b with the scenario's reason, no
    retraction, the answer once (deltas = message.completed = run.completed)."""
    spec = agent_spec("hi", model=GROUP)
    async with httpx.AsyncClient(base_url=run.gateway.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            events = await collect(response)
    (started,) = of_type(events, "message.started")
    rerouted = of_type(events, "message.rerouted")
    assert [(e["message_id"], e["from"], e["to"], e["reason"]) for e in rerouted] == [
        (started["message_id"], "a", "b", run.reason)
    ]
    # Before output: the note comes after message.started, before the first delta.
    kinds = [e["type"] for e in events]
    assert kinds.index("message.started") < kinds.index("message.rerouted")
    assert kinds.index("message.rerouted") < kinds.index("message.delta")
    assert of_type(events, "message.retracted") == []
    assert deltas(events) == TEXT
    assert [e["text"] for e in of_type(events, "message.completed")] == [TEXT]
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == TEXT


def sdk(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    )


async def chat_streamed(run: Run) -> None:
    """Chat Completions streamed, with the openai SDK: the chunks join to the answer."""
    async with sdk(run.gateway) as client:
        stream = await client.chat.completions.create(model=GROUP, messages=USER, stream=True)
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(parts) == TEXT


async def chat_json(run: Run) -> None:
    """Chat Completions not streamed: the message is the answer."""
    async with sdk(run.gateway) as client:
        completion = await client.chat.completions.create(model=GROUP, messages=USER)
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"


def agui_body(model: str) -> dict[str, Any]:
    return {
        "threadId": "thread_1",
        "runId": "agui_run_1",
        "state": {},
        "messages": [{"id": "u1", "role": "user", "content": "hi"}],
        "tools": [],
        "context": [],
        "forwardedProps": {"model": model},
    }


async def agui_events(gateway: RunningGateway) -> list[dict[str, Any]]:
    """POST /v1/ag-ui with the group as its model; the AG-UI events, read to the end."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/ag-ui", json=agui_body(GROUP), headers=SSE
        ) as response:
            assert response.status_code == 200
            return [frame.event async for frame in sse_frames(response) if frame.data]


async def agui(run: Run) -> None:
    """AG-UI: the switch as one CUSTOM "message.rerouted" event before the text, one text
    message, its content the answer once, then RUN_FINISHED."""
    events = await agui_events(run.gateway)
    kinds = [e["type"] for e in events]
    custom = [e for e in events if e["type"] == "CUSTOM" and e["name"] == "message.rerouted"]
    assert [e["value"] for e in custom] == [{"from": "a", "to": "b", "reason": run.reason}]
    assert events.index(custom[0]) < kinds.index("TEXT_MESSAGE_CONTENT")
    assert kinds.count("TEXT_MESSAGE_START") == 1
    content = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert content == TEXT
    assert kinds[-1] == "RUN_FINISHED"
    assert "RUN_ERROR" not in kinds


FACES: dict[str, Callable[[Run], Awaitable[None]]] = {
    "native": native,
    "chat-streamed": chat_streamed,
    "chat-json": chat_json,
    "ag-ui": agui,
}


def route_a(a: UpstreamServer, scenario: Scenario) -> dict[str, Any]:
    settings = route(a, **scenario.settings)
    if scenario.reply is None:
        settings["base_url"] = closed_port_url()
    else:
        a.script(scenario.reply)
    return settings


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_a_failure_before_output_switches_to_the_next_route_unseen(
    a: UpstreamServer, b: UpstreamServer, scenario: Scenario, face: str
) -> None:
    settings = route_a(a, scenario)
    b.script(text_reply(*ANSWER))
    with group_gateway(settings, route(b)) as gateway:
        await FACES[face](Run(gateway, a, b, scenario.reason))
        await no_request_left_open(a, b)
    assert len(a.requests) == (0 if scenario.reply is None else 1)  # no retry inside a group
    assert len(b.requests) == 1


# -- every route failing --------------------------------------------------------------------


def says_each_attempt(message: str) -> None:
    """The error names each route, in order, with what it did."""
    assert f"every route of model group {GROUP!r} failed: a: " in message
    a_said, b_said = message.split("; b: ")
    assert "500" in a_said and "kaboom" in a_said
    assert "503" in b_said and "overloaded" in b_said


async def exhausted_native(gateway: RunningGateway) -> None:
    spec = agent_spec("hi", model=GROUP)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            events = await collect(response)
    (failed,) = of_type(events, "message.failed")
    assert failed["error"]["code"] == "upstream_exhausted"
    says_each_attempt(failed["error"]["message"])
    assert [(e["from"], e["to"], e["reason"]) for e in of_type(events, "message.rerouted")] == [
        ("a", "b", "http_500")
    ]
    assert of_type(events, "message.delta") == []
    assert events[-1]["type"] == "run.failed"
    assert events[-1]["error"]["code"] == "upstream_exhausted"


async def exhausted_chat_streamed(gateway: RunningGateway) -> None:
    async with sdk(gateway) as client:
        stream = await client.chat.completions.create(model=GROUP, messages=USER, stream=True)
        texts: list[str] = []

        async def read_all() -> None:
            async for chunk in stream:
                texts.extend(c.delta.content for c in chunk.choices if c.delta.content)

        with pytest.raises(openai.APIError) as failure:
            await read_all()
    assert texts == []
    assert failure.value.code == "upstream_exhausted"
    says_each_attempt(failure.value.message)


async def exhausted_chat_json(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        body = {"model": GROUP, "messages": USER}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502
    error = response.json()["error"]  # OpenAI's shape
    assert error["code"] == "upstream_exhausted"
    assert set(error) >= {"message", "type", "param", "code"}
    says_each_attempt(error["message"])


async def exhausted_agui(gateway: RunningGateway) -> None:
    events = await agui_events(gateway)
    assert [e["type"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT"] == []
    assert events[-1]["type"] == "RUN_ERROR"
    says_each_attempt(events[-1]["message"])


EXHAUSTED: dict[str, Callable[[RunningGateway], Awaitable[None]]] = {
    "native": exhausted_native,
    "chat-streamed": exhausted_chat_streamed,
    "chat-json": exhausted_chat_json,
    "ag-ui": exhausted_agui,
}


@pytest.mark.parametrize("face", EXHAUSTED)
async def test_every_route_failing_is_one_clear_error_naming_each_attempt(
    a: UpstreamServer, b: UpstreamServer, face: str
) -> None:
    a.script(error_reply(500, "kaboom", CLOSE))
    b.script(error_reply(503, "overloaded", CLOSE))
    with group_gateway(route(a), route(b)) as gateway:
        await EXHAUSTED[face](gateway)
        await no_request_left_open(a, b)
    assert (len(a.requests), len(b.requests)) == (1, 1)


# -- hedging ----------------------------------------------------------------------------------


HEDGE_AFTER = 0.05


@pytest.mark.parametrize("face", FACES)
async def test_a_slow_primary_with_hedging_on_loses_to_the_secondary_and_is_let_go_at_once(
    a: UpstreamServer, b: UpstreamServer, face: str
) -> None:
    # a's headers come at once, its first token only after 3 s (within its budget).
    a.script(Reply(steps=[chat_chunk({"role": "assistant"}), 3.0, *text_reply("late").steps]))
    b.script(text_reply(*ANSWER))
    with group_gateway(route(a), route(b), hedge_after=HEDGE_AFTER) as gateway:
        started = time.monotonic()
        await FACES[face](Run(gateway, a, b, "hedge"))
        (slow,) = a.requests
        left_at = await a.wait_disconnect(slow)
        (fast,) = b.requests
        # b was started once a had been silent for hedge_after (counted from when the
        # gateway sent a's request, a little before a read it), and a let go as b spoke,
        # not once its own first token came (3 s): the bounds are that one's, loosely.
        assert fast.received_at - slow.received_at >= HEDGE_AFTER - 0.02
        assert left_at - fast.received_at < 1.5
        assert left_at - started < 2.5
        assert slow.chunks_after_disconnect == 0
        await no_request_left_open(a, b)


# -- what the gateway says of the switches ------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        error_reply(503, "overloaded", {"retry-after": "30", **CLOSE}),
        error_reply(429, "slow down", {"retry-after": "30", **CLOSE}),
    ],
    ids=["503", "429"],
)
async def test_a_route_that_says_retry_after_rests_and_the_next_request_starts_elsewhere(
    a: UpstreamServer, b: UpstreamServer, reply: Reply
) -> None:
    a.script(reply)
    b.script(text_reply(*ANSWER), text_reply("again"))
    with group_gateway(route(a), route(b)) as gateway:
        async with sdk(gateway) as client:
            first = await client.chat.completions.create(model=GROUP, messages=USER)
            second = await client.chat.completions.create(model=GROUP, messages=USER)
        await no_request_left_open(a, b)
    assert first.choices[0].message.content == TEXT
    assert second.choices[0].message.content == "again"
    assert len(a.requests) == 1  # resting: the second request never reached it
    assert len(b.requests) == 2


async def test_the_runs_state_lists_its_attempts_and_metrics_count_the_switch(
    a: UpstreamServer, b: UpstreamServer
) -> None:
    a.script(error_reply(500, "kaboom", CLOSE))
    b.script(text_reply(*ANSWER))
    with group_gateway(route(a), route(b)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            spec = agent_spec("hi", model=GROUP)
            run_id = (await client.post("/v1/runs", json=spec)).json()["run_id"]
            await gateway.wait_run(run_id)
            state = (await client.get(f"/v1/runs/{run_id}")).json()
            metrics = (await client.get("/metrics")).text
            models = (await client.get("/v1/models")).json()
        await no_request_left_open(a, b)
    assert state["status"] == "completed"
    (producer,) = [p for p in state["producers"] if "attempts" in p]
    failed, completed = producer["attempts"]
    assert {k: failed[k] for k in ("route", "outcome", "reason", "ttft")} == {
        "route": "a",
        "outcome": "failed",
        "reason": "http_500",
        "ttft": None,
    }
    assert "kaboom" in failed["error"]
    assert {k: completed[k] for k in ("route", "outcome", "reason", "error")} == {
        "route": "b",
        "outcome": "completed",
        "reason": None,
        "error": None,
    }
    assert 0 < completed["ttft"] <= completed["duration"]
    assert (completed["input_tokens"], completed["output_tokens"]) == (3, 5)
    line = 'gateway_failover_switches_total{group="smart",reason="http_500",route="a"} 1.0'
    assert line in metrics.splitlines()
    assert GROUP in [model["id"] for model in models["data"]]


async def test_no_switch_on_a_status_that_says_the_request_is_wrong(
    a: UpstreamServer, b: UpstreamServer
) -> None:
    a.script(error_reply(400, "bad tool schema", CLOSE))
    with group_gateway(route(a), route(b)) as gateway:
        async with sdk(gateway) as client:
            with pytest.raises(openai.APIError) as failure:
                await client.chat.completions.create(model=GROUP, messages=USER)
        await no_request_left_open(a, b)
    assert "bad tool schema" in failure.value.message
    assert b.requests == []


async def test_a_route_whose_circuit_is_open_is_passed_over_without_a_request(
    a: UpstreamServer, b: UpstreamServer
) -> None:
    a.script(error_reply(500, "kaboom", CLOSE))
    b.script(text_reply("first"), text_reply(*ANSWER))
    settings = route(a, failure_threshold=1, reset_timeout=30)
    with group_gateway(settings, route(b)) as gateway:
        async with sdk(gateway) as client:
            opened = await client.chat.completions.create(model=GROUP, messages=USER)
        assert opened.choices[0].message.content == "first"
        # The breaker is open now: the next step leaves a at once, reason circuit_open.
        await native(Run(gateway, a, b, "circuit_open"))
        await no_request_left_open(a, b)
    assert len(a.requests) == 1
    assert len(b.requests) == 2


@pytest.mark.parametrize("face", FACES)
async def test_a_switch_to_a_route_of_another_provider_gives_its_answer_unchanged(
    a: UpstreamServer, b: UpstreamServer, face: str
) -> None:
    # b speaks Anthropic's Messages API: its usage comes before its first token.
    a.script(error_reply(503, "overloaded", CLOSE))
    b.script(anthropic_text_reply(*ANSWER))
    with group_gateway(route(a), anthropic_route(b)) as gateway:
        await FACES[face](Run(gateway, a, b, "http_503"))
        await no_request_left_open(a, b)
    assert b.requests[0].path == "/v1/messages"
