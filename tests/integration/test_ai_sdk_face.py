"""The AI SDK face over a real gateway, read as raw SSE: a chat turn's UI message stream, a
drop that does not cancel, a resume that replays, a stop that stops (its upstream too)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from streams.dialects.ai_sdk import DONE_FRAME, STREAM_HEADERS, UIStreamEncoder
from tests.gateway_process import api_keys
from tests.sockets import eventually, server_side
from tests.support import RunningGateway, all_events, running_gateway, wait_for
from tests.upstream_server import STALL, Reply, UpstreamServer, chat_chunk, route

pytestmark = pytest.mark.usefixtures("backend")

CHAT = "/v1/ai-sdk/chat"
PROMPT = "what time is it and count down from 3"


def chat_body(chat_id: str, text: str = PROMPT, **extra: Any) -> dict[str, Any]:
    """What DefaultChatTransport sends, plus the app's ``body`` fields."""
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {
        "id": chat_id,
        "messages": [message],
        "trigger": "submit-message",
        "model": "demo",
        "tools": ["clock", "countdown"],
        **extra,
    }


def without_comments(body: bytes) -> bytes:
    """The stream's frames without heartbeat comments (``: ping``), which readers ignore."""
    frames = [frame for frame in body.split(b"\n\n") if frame and not frame.startswith(b":")]
    return b"".join(frame + b"\n\n" for frame in frames)


def chunks(body: bytes) -> list[Any]:
    """The ``data:`` values of a stream: chunk objects, and the final ``"[DONE]"``."""
    values: list[Any] = []
    for frame in without_comments(body).split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                data = line.removeprefix(b"data: ").decode()
                values.append(data if data == "[DONE]" else json.loads(data))
    return values


async def read_until(stream: AsyncIterator[bytes], marker: bytes) -> bytes:
    """What ``stream`` sends until a whole frame holding ``marker`` has arrived (perhaps
    with part of the next)."""
    received = b""
    while marker not in received or b"\n\n" not in received[received.index(marker) :]:
        received += await anext(stream)
    return received


def whole_frames(received: bytes, *, through_id: bool = False) -> bytes:
    """The whole frames of ``received`` (comments left out); ``through_id``: only up to the
    last frame with an ``id:``, the events a client has all of."""
    frames = without_comments(received[: received.rindex(b"\n\n") + 2]).split(b"\n\n")[:-1]
    if through_id:
        last = max(i for i, frame in enumerate(frames) if b"\nid: " in b"\n" + frame)
        frames = frames[: last + 1]
    return b"".join(frame + b"\n\n" for frame in frames)


def last_id(frames: bytes) -> str:
    """The ``id:`` of the last frame that has one."""
    ids = [line for line in frames.split(b"\n") if line.startswith(b"id: ")]
    return ids[-1].removeprefix(b"id: ").decode()


async def expected_body(gateway: RunningGateway, run_id: str) -> bytes:
    """What an uninterrupted stream of the (ended) run sends: its whole log, encoded."""

    async def encode() -> bytes:
        run = gateway.state.manager.get_unchecked(run_id)
        return UIStreamEncoder.for_run(run_id, run.spec)(
            await all_events(gateway.state.manager, run_id)
        )

    return await gateway.call(encode())


@pytest.fixture
def gateway() -> AsyncIterator[RunningGateway]:
    # A countdown slow enough that a turn is still running when the test resumes it.
    with running_gateway(countdown_interval=0.3) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


async def test_a_turn_with_two_gateway_tools_streams_its_ui_message_chunks(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    response = await http.post(CHAT, json=chat_body("chat-1"))
    assert response.status_code == 200
    for name, value in STREAM_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["content-type"].startswith("text/event-stream")
    run_id = response.headers["x-run-id"]
    values = chunks(response.content)
    assert values[-1] == "[DONE]"
    assert response.content.endswith(DONE_FRAME)
    kinds = [value["type"] for value in values[:-1]]
    assert kinds[0] == "start"
    assert kinds[-2:] == ["finish-step", "finish"]
    for kind in ("start-step", "text-start", "text-delta", "text-end", "tool-input-delta"):
        assert kind in kinds
    started = {v["toolName"] for v in values[:-1] if v["type"] == "tool-input-start"}
    assert started == {"clock", "countdown"}
    available = [v for v in values[:-1] if v["type"] == "tool-input-available"]
    assert {v["toolName"]: v["input"] for v in available}["countdown"] == {"start": 3}
    outputs = {v["toolCallId"] for v in values[:-1] if v["type"] == "tool-output-available"}
    assert outputs == {v["toolCallId"] for v in available}
    # Each turn is a run in the log, readable as native events.
    assert (await gateway.wait_run(run_id))["status"] == "completed"
    assert without_comments(response.content) == await expected_body(gateway, run_id)


async def test_a_drop_does_not_cancel_and_a_resume_replays_the_whole_turn(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    async with http.stream("POST", CHAT, json=chat_body("chat-drop")) as response:
        run_id = response.headers["x-run-id"]
        received = await read_until(response.aiter_raw(), b'"tool-input-start"')
    # The client left mid-turn; the turn goes on, and a resume replays it from its start.
    resumed = await http.get(f"{CHAT}/chat-drop/stream")
    assert resumed.status_code == 200
    assert resumed.headers["x-run-id"] == run_id
    for name, value in STREAM_HEADERS.items():
        assert resumed.headers[name] == value
    assert (await gateway.wait_run(run_id))["status"] == "completed"
    expected = await expected_body(gateway, run_id)
    assert without_comments(resumed.content) == expected
    assert expected.startswith(whole_frames(received))
    # Once the turn has ended there is nothing to resume.
    assert (await http.get(f"{CHAT}/chat-drop/stream")).status_code == 204


async def test_last_event_id_resumes_exactly_after_it(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    async with http.stream("POST", CHAT, json=chat_body("chat-cursor")) as response:
        run_id = response.headers["x-run-id"]
        received = await read_until(response.aiter_raw(), b'"tool-input-available"')
    upto = whole_frames(received, through_id=True)
    resumed = await http.get(f"{CHAT}/chat-cursor/stream", headers={"last-event-id": last_id(upto)})
    assert resumed.status_code == 200
    await gateway.wait_run(run_id)
    assert upto + without_comments(resumed.content) == await expected_body(gateway, run_id)


def stalled_reply() -> Reply:
    """An upstream answer that sends a little text, then nothing until the gateway leaves."""
    return Reply(
        steps=[
            chat_chunk({"role": "assistant", "content": ""}),
            chat_chunk({"content": "Thinking"}),
            STALL,
        ]
    )


@pytest.fixture
def upstream_gateway(upstream: UpstreamServer) -> AsyncIterator[RunningGateway]:
    with running_gateway(routes={"up": route(upstream, max_attempts=1)}) as running:
        yield running


async def test_stop_ends_the_stream_with_abort_and_closes_the_upstream(
    upstream: UpstreamServer, upstream_gateway: RunningGateway
) -> None:
    upstream.script(stalled_reply())
    body = chat_body("chat-stop", "hello", model="up", tools=[])
    async with httpx.AsyncClient(base_url=upstream_gateway.base_url, timeout=10) as http:
        async with http.stream("POST", CHAT, json=body) as response:
            run_id = response.headers["x-run-id"]
            stream = response.aiter_raw()
            received = await read_until(stream, b'"text-delta"')
            (record,) = upstream.wait_for_requests(1)
            stopped_at = time.monotonic()
            stop = await http.post(f"{CHAT}/chat-stop/stop")
            assert stop.status_code == 200
            assert stop.json() == {"chat_id": "chat-stop", "run_id": run_id, "status": "cancelled"}

            async def rest() -> bytes:
                return b"".join([chunk async for chunk in stream])

            received += await wait_for(rest(), timeout=1)
        assert time.monotonic() - stopped_at < 1
        values = chunks(received)
        assert values[-2:] == [{"type": "abort"}, "[DONE]"]
        # The upstream saw the gateway leave, and the OS holds no socket of it.
        await upstream.wait_disconnect(record, timeout=1)
        port = urlsplit(upstream.base_url).port
        assert port is not None
        await eventually(lambda: not server_side(port), timeout=5)
        # An ended turn: no resume, and a stop answers how it ended.
        assert (await http.get(f"{CHAT}/chat-stop/stream")).status_code == 204
        again = await http.post(f"{CHAT}/chat-stop/stop")
        assert again.status_code == 200
        assert again.json()["status"] == "cancelled"


async def test_a_second_turn_while_one_is_active_is_409_unless_it_cancels_it(
    upstream: UpstreamServer, upstream_gateway: RunningGateway
) -> None:
    upstream.script(stalled_reply())
    body = chat_body("chat-busy", "hello", model="up", tools=[])
    async with httpx.AsyncClient(base_url=upstream_gateway.base_url, timeout=10) as http:
        async with http.stream("POST", CHAT, json=body) as first:
            first_run = first.headers["x-run-id"]
            await read_until(first.aiter_raw(), b'"text-delta"')
            busy = await http.post(CHAT, json=body)
            assert busy.status_code == 409
            assert busy.json()["error"]["code"] == "chat_busy"
            replaced = await http.post(CHAT, json={**body, "cancel_active": True})
            assert replaced.status_code == 200
            assert replaced.headers["x-run-id"] != first_run
            assert chunks(replaced.content)[-1] == "[DONE]"
        snapshot = await upstream_gateway.wait_run(first_run)
        assert snapshot["status"] == "cancelled"


async def test_chats_are_per_key_and_unknown_ones_answer_as_documented() -> None:
    with running_gateway(api_keys=api_keys("alice", "bob")) as gateway:
        async with (
            httpx.AsyncClient(
                base_url=gateway.base_url, headers={"authorization": "Bearer alice"}, timeout=10
            ) as alice,
            httpx.AsyncClient(
                base_url=gateway.base_url, headers={"authorization": "Bearer bob"}, timeout=10
            ) as bob,
        ):
            async with alice.stream("POST", CHAT, json=chat_body("chat-a")) as response:
                await read_until(response.aiter_raw(), b'"start"')
                for answer in await asyncio.gather(
                    bob.get(f"{CHAT}/chat-a/stream"),
                    bob.post(f"{CHAT}/chat-a/stop"),
                    bob.post(CHAT, json=chat_body("chat-a")),
                ):
                    assert answer.status_code == 404
                    assert answer.json()["error"]["code"] == "not_found"
            # A chat nobody has: nothing to resume, nothing to stop.
            assert (await bob.get(f"{CHAT}/nobody/stream")).status_code == 204
            assert (await bob.post(f"{CHAT}/nobody/stop")).status_code == 404


async def test_an_unknown_model_is_404_and_a_bad_body_400(http: httpx.AsyncClient) -> None:
    unknown = await http.post(CHAT, json=chat_body("chat-m", model="no-such-model"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    bad = await http.post(CHAT, json={"id": "chat-m", "model": "demo"})
    assert bad.status_code == 400
    assert "error" in bad.json()
    too_many_steps = await http.post(CHAT, json=chat_body("chat-m", max_steps=1000))
    assert too_many_steps.status_code == 400
    long_id = await http.get(f"{CHAT}/{'x' * 300}/stream")
    assert long_id.status_code == 400


async def test_a_chat_turn_makes_the_span_tree_and_metrics_of_a_run() -> None:
    exporter = InMemorySpanExporter()
    with running_gateway(span_exporter=exporter) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            answer = await http.post("/v1/ai-sdk/chat", json=chat_body("c-spans", "hello"))
            assert answer.content.endswith(DONE_FRAME)
            metrics = (await http.get("/metrics")).text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, run = spans["POST /v1/ai-sdk/chat"], spans["run"]
    assert run.parent is not None and run.parent.span_id == request.context.span_id
    assert "model demo" in spans
    assert 'gateway_runs_finished_total{status="completed"} 1.0' in metrics
