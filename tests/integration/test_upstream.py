"""Model steps streamed from a real (loopback) OpenAI-compatible or Anthropic upstream."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import pytest

from tests.support import SSE, RunningGateway, collect, running_gateway, sse_events
from tests.upstream_server import (
    RESET,
    STALL,
    Reply,
    UpstreamServer,
    ask,
    chat_chunk,
    error_reply,
    route,
    split_bytes,
    sse,
    text_reply,
)


async def stream_run(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def tool_call_reply(*calls: tuple[int, str, str, list[str]], whole: bool = False) -> Reply:
    """Tool calls the awkward way: id and name only on a call's first chunk, an empty
    argument delta, calls interleaved by index, a usage chunk with empty choices."""
    steps: list[Any] = [
        b": ping\n\n",
        chat_chunk({"role": "assistant", "content": None}),
    ]
    for index, call_id, name, fragments in calls:
        if whole:
            steps.append(
                chat_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": "".join(fragments)},
                            }
                        ]
                    }
                )
            )
            continue
        steps.append(
            chat_chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
    if not whole:
        longest = max(len(fragments) for *_, fragments in calls)
        for position in range(longest):
            for index, _, _, fragments in calls:
                if position < len(fragments):
                    steps.append(
                        chat_chunk(
                            {
                                "tool_calls": [
                                    {"index": index, "function": {"arguments": fragments[position]}}
                                ]
                            }
                        )
                    )
                    steps.append(
                        chat_chunk(
                            {"tool_calls": [{"index": index, "function": {"arguments": ""}}]}
                        )
                    )
    steps.append(chat_chunk({}, "tool_calls"))
    steps.append(
        chat_chunk(None, usage={"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14})
    )
    steps.append(b"data: [DONE]\n\n")
    return Reply(steps=steps)


async def test_an_agent_run_on_an_upstream_route_with_builtin_tools_end_to_end(
    upstream: UpstreamServer,
) -> None:
    upstream.script(
        tool_call_reply(
            (0, "call_up_a", "calculator", ['{"expr', 'ession": ', '"6*7"}']),
            (1, "call_up_b", "clock", ["{", "}"]),
        ),
        text_reply("6*7 is ", "42."),
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask("6*7 and the time", ["calculator", "clock"]))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == "6*7 is 42."
    starts = of_type(events, "tool_call.started")
    assert [(s["call_id"], s["name"]) for s in starts] == [
        ("call_up_a", "calculator"),
        ("call_up_b", "clock"),
    ]
    deltas = [d["delta"] for d in of_type(events, "tool_call.delta") if d["call_id"] == "call_up_a"]
    assert deltas == ['{"expr', 'ession": ', '"6*7"}']  # forwarded as they came, not coalesced
    assert of_type(events, "tool.completed")[0]["output"] == {"expression": "6*7", "value": 42}
    assert events[-1]["usage"] == {"input_tokens": 13, "output_tokens": 9}
    assert of_type(events, "message.completed")[0]["usage"] == {
        "input_tokens": 10,
        "output_tokens": 4,
    }
    first, second = upstream.requests
    assert first.body["model"] == "up-model"
    assert first.body["stream_options"] == {"include_usage": True}
    assert {t["function"]["name"] for t in first.body["tools"]} == {"calculator", "clock"}
    tool_messages = [m for m in second.body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_up_a", "call_up_b"]
    assert json.loads(tool_messages[0]["content"]) == {"expression": "6*7", "value": 42}


@pytest.mark.parametrize("size", [1, 7, 64])
async def test_a_stream_resplit_at_any_byte_boundary_gives_the_same_events(
    upstream: UpstreamServer, size: int
) -> None:
    reply = tool_call_reply((0, "call_x", "clock", ['{"utc_offset', '_hours": 1}']))
    upstream.script(split_bytes(reply, size), text_reply("done"))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask("time", ["clock"]))
    completed = of_type(events, "tool_call.completed")
    assert completed == [
        {
            **completed[0],
            "call_id": "call_x",
            "name": "clock",
            "arguments": '{"utc_offset_hours": 1}',
        }
    ]
    assert events[-1]["type"] == "run.completed"


async def test_a_whole_tool_call_in_one_chunk(upstream: UpstreamServer) -> None:
    upstream.script(
        tool_call_reply((0, "c1", "clock", ["{}"]), (1, "c2", "clock", ["{}"]), whole=True),
        text_reply("ok"),
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask("time", ["clock"]))
    assert [e["call_id"] for e in of_type(events, "tool.completed")] == ["c1", "c2"]


async def test_a_503_then_success_is_retried_and_the_client_sees_no_error(
    upstream: UpstreamServer,
) -> None:
    upstream.script(error_reply(503), text_reply("fine"))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask())
        stats = gateway.state.manager.models.get("up").statistics()  # type: ignore[attr-defined]
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == "fine"
    assert not of_type(events, "message.failed")
    assert (stats.attempts, stats.retries, stats.failures) == (2, 1, 0)
    assert len(upstream.requests) == 2


async def test_a_429_retry_waits_at_least_its_retry_after(upstream: UpstreamServer) -> None:
    upstream.script(error_reply(429, headers={"retry-after": "0.3"}), text_reply("ok"))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask())
    first, second = upstream.requests
    assert events[-1]["type"] == "run.completed"
    assert second.received_at - first.received_at >= 0.3


async def test_a_reset_after_the_first_token_fails_without_a_retry_or_duplicated_text(
    upstream: UpstreamServer,
) -> None:
    upstream.script(
        Reply(
            steps=[
                chat_chunk({"role": "assistant", "content": "Partial"}),
                chat_chunk({"content": " answ"}),
                RESET,
            ]
        )
    )
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask())
    text = "".join(d["delta"] for d in of_type(events, "message.delta"))
    assert text == "Partial answ"
    failed = of_type(events, "message.failed")[0]
    assert failed["error"]["code"] == "upstream_unavailable"
    assert events[-1]["type"] == "run.failed"
    assert len(upstream.requests) == 1


async def test_a_reset_before_the_first_byte_is_retried(upstream: UpstreamServer) -> None:
    upstream.script(Reply(before_headers=RESET), text_reply("second try"))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        events = await stream_run(gateway, ask())
    assert events[-1]["output"] == "second try"
    assert len(upstream.requests) == 2


async def test_connection_refused_fails_the_run_with_upstream_unavailable() -> None:
    with UpstreamServer() as gone:
        base_url = gone.base_url  # the port is closed once the server stops
    config = {
        "provider": "openai",
        "base_url": base_url,
        "model": "m",
        "max_attempts": 2,
        "retry_base_delay": 0.01,
    }
    with running_gateway(routes={"up": config}) as gateway:
        events = await stream_run(gateway, ask())
    assert of_type(events, "message.failed")[0]["error"]["code"] == "upstream_unavailable"
    assert events[-1]["type"] == "run.failed"


@pytest.mark.parametrize(
    ("reply", "code", "says"),
    [
        (
            Reply(steps=[chat_chunk({"content": "a"}), b"data: {not json\n\n"]),
            "upstream_protocol",
            "not JSON",
        ),
        (
            Reply(steps=[b"<html>oops</html>"], headers={"content-type": "text/html"}),
            "upstream_protocol",
            "text/html",
        ),
        (
            Reply(steps=[chat_chunk({"content": "cut"})]),
            "upstream_stream_error",
            "ended before the response was complete",
        ),
        (
            Reply(
                steps=[
                    chat_chunk({"content": "a"}),
                    sse({"error": {"message": "model overloaded"}}),
                ]
            ),
            "upstream_stream_error",
            "model overloaded",
        ),
        (error_reply(400, "bad tool schema"), "upstream_status", "bad tool schema"),
        (
            error_reply(200, "the model up-model does not exist"),
            "upstream_protocol",
            "application/json where an event stream (text/event-stream) was expected: "
            "server_error: the model up-model does not exist",
        ),
        (
            Reply(
                steps=[
                    b'{"type": "error", "error": {"type": "overloaded_error", '
                    b'"message": "Overloaded"}}'
                ],
                headers={"content-type": "application/json"},
            ),
            "upstream_protocol",
            "was expected: overloaded_error: Overloaded",
        ),
    ],
    ids=[
        "malformed-chunk",
        "html-body",
        "no-done",
        "error-chunk",
        "status-400",
        "json-error-with-200",
        "anthropic-json-error-with-200",
    ],
)
async def test_a_broken_upstream_stream_ends_with_a_typed_failure(
    upstream: UpstreamServer, reply: Reply, code: str, says: str
) -> None:
    upstream.script(reply)
    with running_gateway(routes={"up": route(upstream, max_attempts=1)}) as gateway:
        events = await stream_run(gateway, ask())
        after = await stream_run(gateway, {**ask(), "model": "demo"})
    failed = of_type(events, "message.failed")[0]
    assert failed["error"]["code"] == code
    assert says in failed["error"]["message"]
    assert events[-1]["type"] == "run.failed"
    assert after[-1]["type"] == "run.completed"  # the gateway keeps serving


MIB = 1024 * 1024


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("limits", "limit"),
    [({}, MIB), ({"max_sse_line_bytes": 64 * 1024}, 64 * 1024)],
    ids=["default", "route-setting"],
)
async def test_a_line_past_the_limit_fails_the_step_at_once_and_the_gateway_keeps_serving(
    upstream: UpstreamServer, provider: str, limits: dict[str, int], limit: int
) -> None:
    # A line that never ends: the gateway must not hold it until a timeout.
    piece = b"x" * (16 * 1024)
    upstream.script(Reply(steps=[b"data: ", *[piece] * (limit // len(piece) + 1), STALL]))
    up = route(upstream, provider=provider, max_attempts=1, idle_timeout=30, **limits)
    with running_gateway(routes={"up": up}) as gateway:
        events = await stream_run(gateway, ask())  # long before the idle timeout
        after = await stream_run(gateway, {**ask(), "model": "demo"})
    failed = of_type(events, "message.failed")[0]
    assert failed["error"] == {
        "code": "upstream_protocol",
        "message": f"the upstream sent an event stream line longer than {limit} bytes "
        "(the route's max_sse_line_bytes)",
    }
    assert events[-1]["type"] == "run.failed"
    assert after[-1]["type"] == "run.completed"


async def test_data_lines_past_the_event_limit_fail_the_step(upstream: UpstreamServer) -> None:
    line = b"data: " + b"x" * 1000 + b"\n"  # data lines and never the blank line that ends them
    upstream.script(Reply(steps=[line] * 100 + [STALL]))
    up = route(upstream, max_attempts=1, idle_timeout=30, max_sse_event_bytes=64 * 1024)
    with running_gateway(routes={"up": up}) as gateway:
        events = await stream_run(gateway, ask())
    failed = of_type(events, "message.failed")[0]
    assert failed["error"] == {
        "code": "upstream_protocol",
        "message": "the upstream sent an event's data longer than 65536 bytes "
        "(the route's max_sse_event_bytes)",
    }


async def test_a_stream_that_stalls_past_the_idle_timeout_fails(upstream: UpstreamServer) -> None:
    upstream.script(Reply(steps=[chat_chunk({"content": "a"}), STALL]))
    with running_gateway(routes={"up": route(upstream, idle_timeout=0.3)}) as gateway:
        events = await stream_run(gateway, ask())
    failed = of_type(events, "message.failed")[0]
    assert failed["error"] == {
        "code": "upstream_timeout",
        "message": "the upstream idle timeout (0.3s) passed",
    }
    await upstream.wait_disconnect(upstream.requests[0])


async def test_no_first_token_within_its_timeout_fails_after_retries(
    upstream: UpstreamServer,
) -> None:
    upstream.script(Reply(before_headers=STALL), Reply(before_headers=STALL))
    settings = route(upstream, first_token_timeout=0.2, max_attempts=2)
    with running_gateway(routes={"up": settings}) as gateway:
        events = await stream_run(gateway, ask())
    assert of_type(events, "message.failed")[0]["error"]["code"] == "upstream_timeout"
    # The upstream's thread records a request once it has read its head: waited for, since
    # under load it may do so just after the gateway has given up on that attempt.
    records = await asyncio.to_thread(upstream.wait_for_requests, 2)
    assert len(records) == 2
    for record in records:
        await upstream.wait_disconnect(record)


async def test_the_circuit_breaker_opens_and_a_successful_probe_closes_it(
    upstream: UpstreamServer,
) -> None:
    upstream.script(error_reply(500), error_reply(500), text_reply("back"))
    settings = route(upstream, max_attempts=1, failure_threshold=2, reset_timeout=0.3)
    with running_gateway(routes={"up": settings}) as gateway:
        first = await stream_run(gateway, ask())
        second = await stream_run(gateway, ask())
        refused = await stream_run(gateway, ask())
        opened_at = time.monotonic()
        model = gateway.state.manager.models.get("up")
        assert model.breaker.state == "open"  # type: ignore[attr-defined]
        await asyncio.sleep(0.35)  # the breaker's reset_timeout
        probe = await stream_run(gateway, ask())
        assert model.breaker.state == "closed"  # type: ignore[attr-defined]
    assert [r[-1]["type"] for r in (first, second)] == ["run.failed", "run.failed"]
    assert of_type(refused, "message.failed")[0]["error"]["code"] == "circuit_open"
    assert len(upstream.requests) == 3  # the refused run never reached the upstream
    assert probe[-1]["output"] == "back"
    assert time.monotonic() - opened_at >= 0.3


@pytest.mark.parametrize("phase", ["first_token", "mid_stream", "backoff"])
async def test_cancelling_a_run_closes_its_upstream_request_in_every_phase(
    upstream: UpstreamServer, phase: str
) -> None:
    if phase == "first_token":
        upstream.script(Reply(before_headers=STALL))
    elif phase == "mid_stream":
        upstream.script(text_reply(*(["tok"] * 200), pause=0.02))
    else:
        upstream.script(error_reply(503, headers={"retry-after": "5"}), text_reply("late"))
    with running_gateway(routes={"up": route(upstream, max_attempts=2)}) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            run_id = (await client.post("/v1/runs", json=ask())).json()["run_id"]
            record = (await asyncio.to_thread(upstream.wait_for_requests, 1))[0]
            if phase == "mid_stream":
                async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                    async for event in sse_events(response):
                        if event["type"] == "message.delta":
                            break
            cancelled_at = time.monotonic()
            answer = await client.post(f"/v1/runs/{run_id}/cancel")
        assert answer.json()["status"] == "cancelled"
        if phase != "backoff":
            disconnected_at = await upstream.wait_disconnect(record)
            assert disconnected_at - cancelled_at < 1.0
            assert record.chunks_after_disconnect == 0
    if phase == "backoff":
        assert len(upstream.requests) == 1  # the retry never happened


async def test_an_anthropic_route_streams_text_and_tool_use(upstream: UpstreamServer) -> None:
    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, **payload}, event=kind)

    upstream.script(
        Reply(
            steps=[
                event("message_start", message={"usage": {"input_tokens": 12, "output_tokens": 1}}),
                event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                event("ping"),
                event(
                    "content_block_delta", index=0, delta={"type": "text_delta", "text": "Checking"}
                ),
                event("content_block_stop", index=0),
                event(
                    "content_block_start",
                    index=1,
                    content_block={
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "clock",
                        "input": {},
                    },
                ),
                event(
                    "content_block_delta",
                    index=1,
                    delta={"type": "input_json_delta", "partial_json": ""},
                ),
                event(
                    "content_block_delta",
                    index=1,
                    delta={"type": "input_json_delta", "partial_json": '{"utc_offset_hours"'},
                ),
                event(
                    "content_block_delta",
                    index=1,
                    delta={"type": "input_json_delta", "partial_json": ": 2}"},
                ),
                event("content_block_stop", index=1),
                event(
                    "message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}
                ),
                event("message_stop"),
            ]
        ),
        Reply(
            steps=[
                event("message_start", message={"usage": {"input_tokens": 30, "output_tokens": 1}}),
                event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                event(
                    "content_block_delta", index=0, delta={"type": "text_delta", "text": "Done."}
                ),
                event(
                    "message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}
                ),
                event("message_stop"),
            ]
        ),
    )
    settings = route(upstream, provider="anthropic", model="claude-x", api_key_env="UP_KEY")
    os.environ["UP_KEY"] = "sk-test"
    try:
        with running_gateway(routes={"up": settings}) as gateway:
            events = await stream_run(
                gateway,
                {
                    "model": "up",
                    "tools": ["clock"],
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "time in UTC+2?"},
                    ],
                },
            )
    finally:
        del os.environ["UP_KEY"]
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == "Done."
    call = of_type(events, "tool_call.completed")[0]
    assert (call["call_id"], call["arguments"]) == ("toolu_1", '{"utc_offset_hours": 2}')
    assert of_type(events, "tool.completed")[0]["output"]["utc_offset_hours"] == 2
    assert events[-1]["usage"] == {"input_tokens": 42, "output_tokens": 11}
    first, second = upstream.requests
    assert first.path == "/v1/messages"
    assert first.headers["x-api-key"] == "sk-test"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.body["system"] == "Be brief."
    assert first.body["tools"][0]["input_schema"]["type"] == "object"
    blocks = second.body["messages"][-1]["content"]
    assert blocks[0]["type"] == "tool_result"
    assert blocks[0]["tool_use_id"] == "toolu_1"


async def test_a_route_bounds_its_requests_in_flight(upstream: UpstreamServer) -> None:
    upstream.script(text_reply("one", "two", pause=0.05), text_reply("three"))
    spec = {
        "parallel": [
            {"model": "up", "messages": [{"role": "user", "content": "a"}]},
            {"model": "up", "messages": [{"role": "user", "content": "b"}]},
        ]
    }
    with running_gateway(routes={"up": route(upstream, max_in_flight=1)}) as gateway:
        events = await stream_run(gateway, spec)
    first, second = upstream.requests
    assert events[-1]["type"] == "run.completed"
    assert first.finished_at is not None
    assert second.received_at >= first.finished_at  # the second waited for the first


async def test_a_cookie_an_upstream_sets_is_not_sent_with_later_requests(
    upstream: UpstreamServer,
) -> None:
    # The upstream client is shared by every caller: a cookie must not carry across them.
    first = text_reply("one")
    first.headers["set-cookie"] = "lb=node-7; Path=/"
    upstream.script(first, text_reply("two"))
    with running_gateway(routes={"up": route(upstream)}) as gateway:
        for prompt in ("a", "b"):
            events = await stream_run(gateway, ask(prompt))
            assert events[-1]["type"] == "run.completed"
    assert [record.headers.get("cookie") for record in upstream.requests] == [None, None]
    assert upstream.requests[0].headers["content-type"] == "application/json"


async def test_a_route_goes_through_the_proxy_the_environment_names(
    upstream: UpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loopback upstream plays the proxy as well: it answers the request the proxy gets,
    # whose target is the route's URL in absolute form.
    monkeypatch.setenv("HTTP_PROXY", upstream.base_url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the test's own client
    upstream.script(text_reply("via ", "the proxy"))
    base_url = "http://llm.upstream.test/v1"
    with running_gateway(routes={"up": route(upstream, base_url=base_url)}) as gateway:
        events = await stream_run(gateway, ask())
    assert events[-1]["output"] == "via the proxy"
    (record,) = upstream.requests
    assert record.path == "http://llm.upstream.test/v1/chat/completions"
    assert record.headers["user-agent"].startswith("agent-gateway/")
