"""Request ids, spans, and metrics, as an operator sees them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import hash_key
from tests.gateway_process import eventually, gateway_processes
from tests.support import SSE, agent_spec, captured_logs, collect, running_gateway
from tests.upstream_server import UpstreamServer, error_reply, text_reply


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_a_request_id_is_echoed_or_made() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            given = await client.get("/healthz", headers={"x-request-id": "abc-123"})
            made = await client.get("/healthz")
            hostile = await client.get("/healthz", headers={"x-request-id": b"a\xe9b c"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert len(hostile.headers["x-request-id"]) == 32  # not echoed: made anew


DONE_SSE_CLOSES = ("gateway_reader_disconnects_total", (("channel", "sse"), ("reason", "done")))


async def test_metrics_follow_runs_streams_and_upstream_calls(upstream: UpstreamServer) -> None:
    upstream.script(text_reply("a", "b", "c"), error_reply(500))
    route = {"base_url": upstream.base_url, "model": "m", "max_attempts": 1}
    with running_gateway(routes={"up": route}) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            before = samples((await client.get("/metrics")).text)
            for model in ("up", "up", "demo"):
                spec = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                    events = await collect(response)

            async def closes_counted() -> dict[Any, float] | None:
                # A stream counts its close as it tears down, after its last byte.
                found = samples((await client.get("/metrics")).text)
                return found if found.get(DONE_SSE_CLOSES) == 3 else None

            after = await eventually(closes_counted, timeout=5, what="3 SSE closes counted")
    assert events[-1]["type"] == "run.completed"
    assert after["gateway_runs_finished_total", (("status", "completed"),)] == 2
    assert after["gateway_runs_finished_total", (("status", "failed"),)] == 1
    assert after["gateway_events_sent_total", (("channel", "sse"),)] > 20
    assert ("gateway_events_sent_total", (("channel", "sse"),)) not in before
    assert after["gateway_upstream_requests_total", (("outcome", "ok"), ("route", "up"))] == 1
    assert (
        after["gateway_upstream_errors_total", (("code", "upstream_status"), ("route", "up"))] == 1
    )
    assert after["gateway_upstream_ttft_seconds_count", (("route", "up"),)] == 1
    assert after["gateway_upstream_inter_chunk_seconds_count", (("route", "up"),)] >= 2
    assert after["gateway_circuit_breaker_state", (("route", "up"),)] == 0
    assert after["gateway_active_runs", ()] == 0
    assert DONE_SSE_CLOSES not in before


async def test_an_agent_run_makes_a_span_tree_under_the_request(upstream: UpstreamServer) -> None:
    upstream.script(text_reply("fine"))
    exporter = InMemorySpanExporter()
    route = {"base_url": upstream.base_url, "model": "up-model"}
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with running_gateway(routes={"up": route}, span_exporter=exporter) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            spec = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
            async with client.stream(
                "POST", "/v1/runs", json=spec, headers={**SSE, "traceparent": parent}
            ) as response:
                await collect(response)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, run = spans["POST /v1/runs"], spans["run"]
    producer, call = spans["model up"], spans["chat up-model"]

    def parent_of(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent else None

    assert request.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C  # the client's trace
    assert parent_of(run) == request.context.span_id
    assert parent_of(producer) == run.context.span_id
    assert parent_of(call) == producer.context.span_id
    assert call.attributes is not None
    assert call.attributes["gen_ai.request.model"] == "up-model"
    assert call.attributes["gen_ai.usage.output_tokens"] == 5
    assert "gen_ai.server.time_to_first_token" in call.attributes
    # The upstream call carried the trace onward.
    traceparent = upstream.requests[0].headers["traceparent"]
    assert traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert traceparent.split("-")[2] == format(call.context.span_id, "016x")


async def test_the_run_span_records_its_outcome() -> None:
    exporter = InMemorySpanExporter()
    with running_gateway(span_exporter=exporter) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            async with client.stream(
                "POST", "/v1/runs", headers=SSE, json=agent_spec("what is 2+2", ["calculator"])
            ) as response:
                await collect(response)
    spans = exporter.get_finished_spans()
    run = next(s for s in spans if s.name == "run")
    tools = [s for s in spans if s.name == "tool calculator"]
    assert run.attributes is not None
    assert run.attributes["gateway.run.status"] == "completed"
    assert len(tools) == 1
    assert tools[0].parent is not None
    assert tools[0].parent.span_id == run.context.span_id


async def test_keys_and_tokens_never_reach_the_logs() -> None:
    key = "very-secret-key-1"
    with captured_logs() as output:
        with running_gateway(api_keys={"me": hash_key(key)}) as gateway:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                body = (
                    await client.post(
                        "/v1/runs",
                        json=agent_spec("hi", []),
                        headers={"authorization": f"Bearer {key}"},
                    )
                ).json()
                async with client.stream(
                    "GET", f"{body['events_url']}?token={body['token']}"
                ) as response:
                    await collect(response)
                await client.get("/v1/models", headers={"x-api-key": key})
                await client.get("/v1/models", headers={"x-api-key": "wrong-secret-key"})
    text = output.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert key not in text
    assert body["token"] not in text
    assert body["token"].split(".")[1] not in text
    assert "wrong-secret-key" not in text
    assert any("token=[redacted]" in line["path"] for line in requests)
    assert all(line.get("request_id") for line in requests)
    assert any(
        line.get("event") == "run ended" and line.get("run_id") == body["run_id"] for line in lines
    )


async def test_a_token_under_a_percent_encoded_name_never_reaches_the_logs() -> None:
    """The server decodes the query's names: ``?%74oken=`` opens the stream, so its token
    must not be in the request log or in uvicorn's access log (of a real process, with its
    own logging set up)."""
    key = "very-secret-key-1"
    names = ["%74oken", "t%6Fk%65n", "%74%6F%6B%65%6E"]
    tokens: list[str] = []
    async with gateway_processes(
        1, redis_url=None, api_keys={"me": hash_key(key)}, access_log=True
    ) as [gateway]:
        async with gateway.client(key) as client, gateway.client() as anonymous:
            for name in names:
                body = (await client.post("/v1/runs", json=agent_spec("hi", []))).json()
                tokens.append(body["token"])
                url = f"{body['events_url']}?after=0&{name}={body['token']}"
                async with anonymous.stream("GET", url) as response:
                    assert response.status_code == 200
                    assert (await collect(response))[-1]["type"] == "run.completed"
    lines = [json.loads(line) for line in gateway.log if line.startswith("{")]
    requests = [line["path"] for line in lines if line.get("event") == "request"]
    accesses = [line["event"] for line in lines if line["logger"] == "uvicorn.access"]
    for name, token in zip(names, tokens, strict=True):
        assert not any(token.split(".")[1] in line for line in gateway.log)
        assert sum(f"&{name}=[redacted]" in path for path in requests) == 1
        assert sum(f"&{name}=[redacted]" in event for event in accesses) == 1


def request_lines(text: str, path_part: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request" and path_part in line["path"]]


async def test_a_streams_request_line_and_span_end_when_the_stream_ends() -> None:
    """The stream's body runs after the middleware stack has unwound (gateway.handoff); its
    request still ends with it, carrying its id, status and whole duration."""
    exporter = InMemorySpanExporter()
    origin = "https://app.example"
    spec = {"parallel": [{"tool": "sleep", "arguments": {"seconds": 0.3}}]}
    with captured_logs() as output:
        with running_gateway(span_exporter=exporter, cors_origins=[origin]) as gateway:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                run = (await client.post("/v1/runs", json=spec)).json()
                headers = {"x-request-id": "stream-1", "origin": origin}
                async with client.stream("GET", run["events_url"], headers=headers) as response:
                    events = await collect(response)
    assert events[-1]["type"] == "run.completed"
    assert response.headers["x-request-id"] == "stream-1"
    assert response.headers["access-control-allow-origin"] == origin
    [line] = request_lines(output.getvalue(), "/events")
    assert (line["request_id"], line["status"], line["error"]) == ("stream-1", 200, None)
    assert line["duration_s"] >= 0.25
    [span] = [s for s in exporter.get_finished_spans() if s.name == f"GET {run['events_url']}"]
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.25


async def test_a_websocket_sessions_request_line_comes_when_the_session_ends() -> None:
    with captured_logs() as output:
        with running_gateway() as gateway:
            async with websockets.connect(
                gateway.ws_url, additional_headers={"x-request-id": "session-1"}
            ) as ws:
                await ws.send(json.dumps({"type": "ping", "id": 1}))
                assert json.loads(await ws.recv())["type"] == "ack"
                await asyncio.sleep(0.3)  # the session's length is what is measured
                assert not request_lines(output.getvalue(), "/v1/ws")  # not ended yet
    [line] = request_lines(output.getvalue(), "/v1/ws")
    assert (line["request_id"], line["status"], line["error"]) == ("session-1", 101, None)
    assert line["duration_s"] >= 0.25


async def test_an_upstream_call_is_logged_once_by_the_gateway(upstream: UpstreamServer) -> None:
    """httpx's own line per request would only repeat the gateway's, which says more."""
    upstream.script(text_reply("fine"))
    route = {"base_url": upstream.base_url, "model": "up-model"}
    with captured_logs() as output:
        with running_gateway(routes={"up": route}) as gateway:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                spec = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
                async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                    await collect(response)
    lines = [json.loads(line) for line in output.getvalue().splitlines() if line.startswith("{")]
    assert [line["logger"] for line in lines if line["logger"] == "httpx"] == []
    [call] = [line for line in lines if line.get("event") == "upstream call"]
    assert (call["route"], call["status"], call["model"]) == ("up", 200, "up-model")
