"""The official anthropic SDK, pointed at the gateway, works unchanged: onto the demo model,
an OpenAI-compatible upstream and an Anthropic-speaking one."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from streams.dialects.anthropic_messages import run_id_of
from tests.gateway_process import api_keys
from tests.sockets import eventually, server_side
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import (
    Reply,
    UpstreamServer,
    anthropic_route,
    anthropic_text_reply,
    anthropic_tool_reply,
    chat_chunk,
    count_tokens_reply,
    messages_events,
    route,
    text_block,
    text_reply,
    thinking_block,
)

pytestmark = pytest.mark.usefixtures("backend")

SIGNATURE = "EqQBCkgIARABGAIiQL+/sig+with/every=byte=="


def frames_of(text: str) -> list[str]:
    """The SSE messages of a body (comments left out)."""
    return [raw for raw in text.split("\n\n") if raw.strip() and not raw.startswith(":")]


def event_of(raw: str) -> tuple[str, dict[str, Any]]:
    """An SSE message's ``event:`` name and JSON data (every message has both)."""
    lines = dict(line.split(": ", 1) for line in raw.split("\n") if not line.startswith("id: "))
    return lines["event"], json.loads(lines["data"])


@pytest.fixture
def gateway(upstream: UpstreamServer) -> Iterator[RunningGateway]:
    routes = {
        "up": route(upstream, max_attempts=1),
        "claude": anthropic_route(upstream, max_attempts=1),
    }
    # Claude Code's own model ids reach the Anthropic route.
    with running_gateway(routes=routes, model_aliases={"claude-*": "claude"}) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=10
    ) as sdk:
        yield sdk


WEATHER: Any = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
HELLO: Any = [{"role": "user", "content": "hello"}]


async def test_a_streamed_message_is_read_by_the_sdk_helper(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply("Hel", "lo", "!", usage=(7, 3)))
    async with client.messages.stream(model="up", max_tokens=64, messages=HELLO) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == ["Hel", "lo", "!"]
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "Hello!"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)


async def test_a_message_answered_whole(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="demo", max_tokens=64, system="Be brief.", messages=HELLO
    )
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "demo"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"


async def test_streaming_is_decided_by_the_body_not_accept(gateway: RunningGateway) -> None:
    body = {"model": "demo", "max_tokens": 64, "messages": HELLO, "stream": True}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post(
            "/v1/messages?beta=true", json=body, headers={"accept": "application/json"}
        )
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [event_of(raw) for raw in frames_of(answer.text)]
    assert events[0][0] == "message_start"
    assert events[0][1]["message"]["usage"]["input_tokens"] >= 1
    assert events[-1] == ("message_stop", {"type": "message_stop"})
    assert all(kind == data["type"] for kind, data in events)


async def test_a_tool_round_trip_through_an_openai_upstream_keeps_its_calls(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    call = {"index": 0, "id": "call_a", "type": "function"}
    other = {"index": 1, "id": "call_b", "type": "function"}
    upstream.script(
        Reply(
            steps=[
                chat_chunk({"role": "assistant", "content": "Checking."}),
                chat_chunk(
                    {"tool_calls": [call | {"function": {"name": "weather", "arguments": ""}}]}
                ),
                chat_chunk(
                    {"tool_calls": [other | {"function": {"name": "weather", "arguments": '{"ci'}}]}
                ),
                chat_chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}
                ),
                chat_chunk(
                    {"tool_calls": [{"index": 1, "function": {"arguments": 'ty": "Oslo"}'}}]}
                ),
                chat_chunk({}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        ),
        text_reply("Paris is sunny, Oslo is not."),
    )
    async with client.messages.stream(
        model="up",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],
    ) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [
        ("call_a", "weather", {"city": "Paris"}),
        ("call_b", "weather", {"city": "Oslo"}),
    ]
    results = [
        {"type": "tool_result", "tool_use_id": u.id, "content": f"{u.input['city']}: ok"}  # type: ignore[index]
        for u in uses
    ]
    second = await client.messages.create(
        model="up",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": results},  # type: ignore[typeddict-item]
        ],
    )
    assert second.content[0].text == "Paris is sunny, Oslo is not."  # type: ignore[union-attr]
    sent = upstream.requests[1].body["messages"]
    assert sent[1]["role"] == "assistant"
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        ("tool", "call_a", "Paris: ok"),
        ("tool", "call_b", "Oslo: ok"),
    ]


async def test_thinking_from_an_anthropic_upstream_passes_through_byte_for_byte(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    upstream.script(
        Reply(
            steps=messages_events(thinking_block("Two and two.", SIGNATURE), text_block("Four."))
        ),
        anthropic_text_reply("Yes."),
    )
    async with client.messages.stream(
        model="claude",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "2+2?"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    ) as stream:
        final = await stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Two and two.", SIGNATURE)
    assert text.type == "text" and text.text == "Four."
    first = upstream.requests[0]
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert first.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"

    await client.messages.create(
        model="claude",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": "Sure?"},
        ],
    )
    replayed = upstream.requests[1].body["messages"][1]
    assert replayed == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Two and two.", "signature": SIGNATURE},
            {"type": "text", "text": "Four."},
        ],
    }


async def test_a_tool_use_from_an_anthropic_upstream_is_returned_with_its_input(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    upstream.script(anthropic_tool_reply([("toolu_1", "weather", '{"city": "Rome"}')]))
    message = await client.messages.create(
        model="claude", max_tokens=64, messages=HELLO, tools=[WEATHER]
    )
    (use,) = message.content
    assert use.type == "tool_use"
    assert (use.id, use.name, use.input) == ("toolu_1", "weather", {"city": "Rome"})
    assert message.stop_reason == "tool_use"


async def test_max_tokens_is_the_stop_reason_of_a_cut_answer(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    reply = text_reply("a", "b")
    reply.steps[-3] = chat_chunk({}, "length")
    upstream.script(reply)
    message = await client.messages.create(model="up", max_tokens=2, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert upstream.requests[0].body["max_tokens"] == 2


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ({"model": "nope", "max_tokens": 5, "messages": HELLO}, anthropic.NotFoundError),
        ({"model": "demo", "max_tokens": 0, "messages": HELLO}, anthropic.BadRequestError),
        ({"model": "demo", "max_tokens": 5, "messages": []}, anthropic.BadRequestError),
        (
            {"model": "demo", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
            anthropic.BadRequestError,
        ),
    ],
)
async def test_bad_requests_raise_the_sdk_s_typed_errors(
    client: anthropic.AsyncAnthropic, call: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        await client.messages.create(**call)
    body = raised.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error"
    assert body["error"]["type"] in ("not_found_error", "invalid_request_error")
    assert body["error"]["message"]


def test_a_wrong_key_is_an_authentication_error_and_both_headers_authenticate() -> None:
    with running_gateway(api_keys=api_keys("alice")) as gateway:
        wrong = anthropic.Anthropic(base_url=gateway.base_url, api_key="mallory", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as raised:
            wrong.messages.create(model="demo", max_tokens=5, messages=HELLO)
        assert raised.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        by_key = anthropic.Anthropic(base_url=gateway.base_url, api_key="alice", max_retries=0)
        by_token = anthropic.Anthropic(base_url=gateway.base_url, auth_token="alice", max_retries=0)
        for sdk in (by_key, by_token):
            assert sdk.messages.create(model="demo", max_tokens=5, messages=HELLO).content


async def test_max_tokens_is_required(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post("/v1/messages", json={"model": "demo", "messages": HELLO})
    assert answer.status_code == 400
    assert answer.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required",
            "code": "invalid_request",
        },
    }


async def test_a_body_too_large_is_request_too_large(gateway: RunningGateway) -> None:
    limit = gateway.state.settings.max_body_bytes
    body = {
        "model": "demo",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * limit}],
    }
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post("/v1/messages", json=body)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"


async def test_a_failure_mid_stream_is_an_error_event_not_a_truncated_answer(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(Reply(steps=[chat_chunk({"content": "partial"}), b"data: {not json\n\n"]))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        body = {"model": "up", "max_tokens": 64, "messages": HELLO, "stream": True}
        answer = await http.post("/v1/messages", json=body)
    frames = [raw for raw in answer.text.split("\n\n") if raw.strip() and not raw.startswith(":")]
    assert "event: error" in frames[-1]
    error = json.loads(frames[-1].split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert not any("message_stop" in raw for raw in frames)

    upstream.script(Reply(steps=[chat_chunk({"content": "partial"}), b"data: {not json\n\n"]))
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model="up", max_tokens=64, messages=HELLO) as stream:
            await stream.get_final_message()


async def test_a_client_that_leaves_mid_stream_cancels_the_upstream_request(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer, gateway: RunningGateway
) -> None:
    upstream.script(text_reply(*(["tok"] * 500), pause=0.01))
    async with client.messages.stream(model="up", max_tokens=64, messages=HELLO) as stream:
        async for text in stream.text_stream:
            assert text == "tok"
            break
    left_at = time.monotonic()
    record = upstream.requests[0]
    disconnected_at = await upstream.wait_disconnect(record)
    assert disconnected_at - left_at < 1.0
    port = int(gateway.base_url.rsplit(":", 1)[1])
    await eventually(lambda: not server_side(port))


async def test_pings_keep_the_stream_alive_while_the_first_token_is_slow(
    upstream: UpstreamServer,
) -> None:
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    upstream.script(Reply(steps=[0.5, *text_reply("late").steps]))
    with running_gateway(routes={"up": route}, heartbeat_interval=0.1) as gateway:
        body = {"model": "up", "max_tokens": 64, "messages": HELLO, "stream": True}
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            answer = await http.post("/v1/messages", json=body)
    kinds = [
        raw.split("event: ", 1)[1].split("\n", 1)[0]
        for raw in answer.text.split("\n\n")
        if "event: " in raw
    ]
    assert kinds[0] == "message_start"
    assert "ping" in kinds[1 : kinds.index("content_block_start")]
    assert kinds[-1] == "message_stop"


async def test_a_message_is_a_run_readable_as_native_events_and_resumable(
    gateway: RunningGateway,
) -> None:
    body = {"model": "demo", "max_tokens": 64, "messages": HELLO, "stream": True}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post("/v1/messages", json=body)
        run_id = answer.headers["x-run-id"]
        whole = frames_of(answer.text)
        message_id = json.loads(whole[0].split("data: ", 1)[1])["message"]["id"]
        assert run_id_of(message_id) == run_id
        native = await http.get(f"/v1/runs/{run_id}/events")
        seqs = [json.loads(raw.split("data: ", 1)[1])["seq"] for raw in frames_of(native.text)]
        assert seqs == list(range(1, len(seqs) + 1))
        with_ids = [i for i, raw in enumerate(whole) if "id: " in raw]
        for cut in with_ids[:-1]:
            seq = whole[cut].split("id: ", 1)[1].split("\n", 1)[0]
            resumed = await http.get(
                f"/v1/runs/{run_id}/events?format=anthropic", headers={"last-event-id": seq}
            )
            assert frames_of(resumed.text) == whole[cut + 1 :]


async def test_count_tokens_is_an_estimate_for_the_demo_and_exact_from_anthropic(
    client: anthropic.AsyncAnthropic, upstream: UpstreamServer
) -> None:
    estimate = await client.messages.count_tokens(model="demo", messages=HELLO)
    assert estimate.input_tokens >= 1
    upstream.script(count_tokens_reply(1234))
    exact = await client.messages.count_tokens(model="claude", messages=HELLO, tools=[WEATHER])
    assert exact.input_tokens == 1234
    sent = upstream.requests[0]
    assert sent.path.endswith("/messages/count_tokens")
    assert sent.body["tools"][0]["name"] == "weather"
    assert "stream" not in sent.body


async def test_models_list_in_anthropic_s_shape(client: anthropic.AsyncAnthropic) -> None:
    page = await client.models.list(limit=1000)
    ids = [model.id for model in page.data]
    assert "demo" in ids and "claude" in ids
    assert (await client.models.retrieve("demo")).id == "demo"


def claude_code(name: str) -> dict[str, Any]:
    """A request Claude Code sent (captured, trimmed: tests/fixtures)."""
    path = Path(__file__).parent.parent / "fixtures" / name
    captured: dict[str, Any] = json.loads(path.read_text())
    return captured


FORWARDED = ("anthropic-beta", "anthropic-version", "x-api-key", "accept")


@pytest.mark.parametrize(
    "name", ["claude_code_request.json", "claude_code_tool_result_request.json"]
)
async def test_claude_code_s_requests_reach_an_anthropic_upstream_with_what_it_understands(
    gateway: RunningGateway, upstream: UpstreamServer, name: str
) -> None:
    captured = claude_code(name)
    upstream.script(anthropic_text_reply("Hello from upstream."))
    headers = {k: v for k, v in captured["headers"].items() if k.lower() in FORWARDED}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post(captured["path"], json=captured["body"], headers=headers)
    assert answer.status_code == 200
    events = [event_of(raw) for raw in frames_of(answer.text)]
    assert events[0][1]["message"]["model"] == "claude-opus-5-5"
    texts = [data["delta"]["text"] for kind, data in events if kind == "content_block_delta"]
    assert "".join(texts) == "Hello from upstream."
    sent = upstream.requests[0]
    body = captured["body"]
    assert sent.headers["anthropic-beta"] == captured["headers"]["anthropic-beta"]
    for field in ("thinking", "context_management", "output_config", "metadata", "max_tokens"):
        assert sent.body[field] == body[field], field
    # System blocks keep their cache breakpoints; the system message among the messages
    # joins them (Anthropic takes system text only there).
    assert sent.body["system"][: len(body["system"])] == body["system"]
    assert [m["role"] for m in sent.body["messages"]] == [
        m["role"] for m in body["messages"] if m["role"] != "system"
    ]
    deferred = [t for t in sent.body["tools"] if t.get("defer_loading")]
    assert [t["name"] for t in deferred] == ["DeferredToolPlaceholder"]
    # The last user turn's blocks as Claude Code sent them (its cache breakpoint included).
    (last,) = [m for m in body["messages"] if m["role"] == "user"][-1:]
    sent_last = sent.body["messages"][-1]["content"]
    assert [{k: v for k, v in b.items() if v is not False} for b in last["content"]] == sent_last


async def test_claude_code_s_non_streamed_fallback_is_answered_whole(
    gateway: RunningGateway,
) -> None:
    # Claude Code sends the same request with "stream": false when a stream fails.
    captured = claude_code("claude_code_request.json")
    body = {**captured["body"], "model": "demo", "stream": False}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        answer = await http.post(captured["path"], json=body)
    assert answer.status_code == 200
    message = answer.json()
    assert message["type"] == "message" and message["content"][0]["text"]


async def test_a_message_makes_the_span_tree_and_metrics_of_a_run(upstream: UpstreamServer) -> None:
    upstream.script(anthropic_text_reply("fine", usage=(4, 2)))
    exporter = InMemorySpanExporter()
    with running_gateway(
        routes={"claude": anthropic_route(upstream)}, span_exporter=exporter
    ) as gw:
        async with anthropic.AsyncAnthropic(
            base_url=gw.base_url, api_key="k", max_retries=0
        ) as sdk:
            await sdk.messages.create(model="claude", max_tokens=16, messages=HELLO)
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as http:
            metrics = (await http.get("/metrics")).text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, run = spans["POST /v1/messages"], spans["run"]
    producer, call = spans["model claude"], spans["chat claude-up"]
    assert run.parent is not None and run.parent.span_id == request.context.span_id
    assert producer.parent is not None and producer.parent.span_id == run.context.span_id
    assert call.parent is not None and call.parent.span_id == producer.context.span_id
    assert call.attributes is not None and call.attributes["gen_ai.usage.output_tokens"] == 2
    assert 'gateway_runs_finished_total{status="completed"} 1.0' in metrics


def test_a_message_s_run_is_its_key_s_only() -> None:
    with running_gateway(api_keys=api_keys("alice", "bob")) as gateway:
        alice = anthropic.Anthropic(base_url=gateway.base_url, api_key="alice", max_retries=0)
        raw = alice.messages.with_raw_response.create(model="demo", max_tokens=5, messages=HELLO)
        run_id = raw.headers["x-run-id"]
        with httpx.Client(base_url=gateway.base_url, timeout=10) as http:
            assert http.get(f"/v1/runs/{run_id}", headers={"x-api-key": "alice"}).is_success
            assert http.get(f"/v1/runs/{run_id}", headers={"x-api-key": "bob"}).status_code == 404


async def test_a_run_read_in_the_anthropic_dialect_pings_with_ping_events() -> None:
    with running_gateway(heartbeat_interval=0.05, countdown_interval=0.2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            spec = {"model": "demo", "messages": [{"role": "user", "content": "count down from 2"}]}
            started = await http.post("/v1/runs", json={**spec, "tools": ["countdown"]})
            run_id = started.json()["run_id"]
            answer = await http.get(f"/v1/runs/{run_id}/events?format=anthropic")
    assert "event: ping" in answer.text
    assert not any(raw.startswith(": ping") for raw in answer.text.split("\n\n")[1:])
