"""Specification of ``UpstreamModel.count_tokens`` and of the provider headers a request
carries (``streams/upstream/client.py``), against the loopback upstream of
``tests/upstream_server.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from streams.errors import UpstreamProtocolError, UpstreamStatusError
from streams.models import ModelOutput
from streams.upstream.client import UpstreamModel
from streams.upstream.http import UpstreamHTTP
from streams.upstream.route import Route
from tests.support import ScriptedModel
from tests.upstream_server import Reply, UpstreamServer, error_reply, sse

MESSAGES = [{"role": "user", "content": "hi"}]
BETA = {"anthropic": {"beta": ["interleaved-thinking-2025-05-14", "x-1"]}}


def json_reply(payload: Any) -> Reply:
    return Reply(steps=[json.dumps(payload).encode()], headers={"content-type": "application/json"})


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[UpstreamHTTP]:
    async with UpstreamHTTP(trust_env=False) as pool:
        yield pool


def model(upstream: UpstreamServer, http: UpstreamHTTP, provider: str) -> UpstreamModel:
    route = Route(
        "up", provider, upstream.base_url, "up-model", api_key="sk-test", headers={"x-route": "r"}
    )
    return UpstreamModel(route, http.transport_for(route.base_url))


async def test_anthropic_counts_with_its_endpoint_headers_and_body(
    upstream: UpstreamServer, http: UpstreamHTTP
) -> None:
    upstream.script(json_reply({"input_tokens": 42}))

    count = await model(upstream, http, "anthropic").count_tokens(MESSAGES, [], BETA)

    assert count == 42
    (record,) = upstream.wait_for_requests(1)
    assert record.path == "/v1/messages/count_tokens"
    assert record.body == {
        "model": "up-model",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert record.headers["x-api-key"] == "sk-test"
    assert record.headers["x-route"] == "r"
    assert record.headers["anthropic-version"] == "2023-06-01"
    assert record.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,x-1"


async def test_an_openai_route_cannot_count(upstream: UpstreamServer, http: UpstreamHTTP) -> None:
    assert await model(upstream, http, "openai").count_tokens(MESSAGES, [], {}) is None
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(error_reply(400, "bad model"), UpstreamStatusError, id="status"),
        pytest.param(json_reply({"tokens": 1}), UpstreamProtocolError, id="no-input-tokens"),
        pytest.param(json_reply({"input_tokens": "1"}), UpstreamProtocolError, id="not-an-int"),
    ],
)
async def test_a_failed_count_raises_an_upstream_error(
    upstream: UpstreamServer, http: UpstreamHTTP, reply: Reply, error: type[Exception]
) -> None:
    upstream.script(reply)

    with pytest.raises(error):
        await model(upstream, http, "anthropic").count_tokens(MESSAGES, [], {})


async def test_a_streamed_request_carries_the_provider_headers(
    upstream: UpstreamServer, http: UpstreamHTTP
) -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    upstream.script(Reply(steps=[sse(payload, event=name) for name, payload in events]))

    out: list[ModelOutput] = [
        item async for item in model(upstream, http, "anthropic").stream(MESSAGES, [], BETA)
    ]

    assert out
    (record,) = upstream.wait_for_requests(1)
    assert record.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,x-1"
    assert "anthropic" not in record.body


async def test_a_model_that_cannot_count_says_none() -> None:
    assert await ScriptedModel("silent").count_tokens(MESSAGES, [], {}) is None
