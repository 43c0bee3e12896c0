"""Specification of the provider registry (``streams/upstream/registry.py``): every
registered provider builds its request and reads a scripted answer the one way the client
uses them, through :class:`~streams.upstream.provider.Provider`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from streams.models import Finish, ModelOutput, TextDelta, Usage
from streams.upstream.client import UpstreamModel
from streams.upstream.registry import (
    DEFAULT_PROVIDER,
    PROVIDERS,
    known_providers,
    provider_for,
)
from streams.upstream.route import Route
from streams.upstream.sse import SSEDecoder

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
TOOLS = [{"name": "clock", "description": "The time", "parameters": {"type": "object"}}]


def sse(*events: tuple[str | None, Any]) -> bytes:
    lines = []
    for event, data in events:
        if event is not None:
            lines.append(f"event: {event}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}\n")
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Script:
    """What a provider sends for a route, and an answer of ``Hi`` (3 tokens in, 1 out)."""

    path: str
    headers: dict[str, str]  # the provider's, for api_key="sk-test"
    body: dict[str, Any]  # of MESSAGES, TOOLS, temperature 0.5, on the route below
    answer: bytes


SCRIPTS = {
    "openai": Script(
        path="/v1/chat/completions",
        headers={"authorization": "Bearer sk-test"},
        body={
            "model": "up-model",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "clock",
                        "description": "The time",
                        "parameters": {"type": "object"},
                    },
                }
            ],
            "temperature": 0.5,
        },
        answer=sse(
            (None, {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            (None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
            (None, "[DONE]"),
        ),
    ),
    "anthropic": Script(
        path="/v1/messages",
        headers={"anthropic-version": "2023-06-01", "x-api-key": "sk-test"},
        body={
            "model": "up-model",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "stream": True,
            "system": "Be brief.",
            "tools": [
                {"name": "clock", "description": "The time", "input_schema": {"type": "object"}}
            ],
            "temperature": 0.5,
        },
        answer=sse(
            ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Hi"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": 1}}),
            ("message_stop", {"type": "message_stop"}),
        ),
    ),
}  # fmt: skip
ANSWER: list[ModelOutput] = [
    TextDelta("Hi"),
    Finish("stop"),
    Usage(input_tokens=3, output_tokens=1),
]


def route(provider: str) -> Route:
    return Route(
        name="r",
        provider=provider,
        base_url="https://up.example/v1/",
        upstream_model="up-model",
        api_key="sk-test",
        max_tokens=100,
    )


def test_every_registered_provider_has_a_script_here() -> None:
    assert set(SCRIPTS) == set(PROVIDERS)


def test_the_default_provider_is_registered() -> None:
    assert DEFAULT_PROVIDER in PROVIDERS


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_a_provider_says_where_its_requests_go_and_its_headers(name: str) -> None:
    endpoint = provider_for(name).endpoint(route(name))
    assert endpoint.url == "https://up.example" + SCRIPTS[name].path
    assert dict(endpoint.headers) == SCRIPTS[name].headers


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_a_provider_builds_the_body_of_a_streamed_request(name: str) -> None:
    body = provider_for(name).body(route(name), MESSAGES, TOOLS, {"temperature": 0.5})
    assert body == SCRIPTS[name].body


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_a_provider_parses_a_scripted_answer_to_its_end(name: str) -> None:
    parser = provider_for(name).parser()
    out: list[ModelOutput] = []
    for message in SSEDecoder().feed(SCRIPTS[name].answer):
        assert not parser.done
        out.extend(parser.feed(message))
    assert out == ANSWER
    assert (parser.done, parser.finished) == (True, True)


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_a_provider_cut_after_its_first_event_is_not_finished(name: str) -> None:
    parser = provider_for(name).parser()
    parser.feed(SSEDecoder().feed(SCRIPTS[name].answer)[0])
    assert (parser.done, parser.finished) == (False, False)


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_a_route_of_every_provider_streams_its_answer_through_the_client(
    name: str,
) -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=SCRIPTS[name].answer
        )

    model = UpstreamModel(route(name), httpx.MockTransport(answer))
    out = [item async for item in model.stream(MESSAGES, TOOLS, {"temperature": 0.5})]
    assert out == ANSWER
    (request,) = requests
    assert str(request.url) == "https://up.example" + SCRIPTS[name].path
    assert {k: request.headers[k] for k in SCRIPTS[name].headers} == SCRIPTS[name].headers
    assert json.loads(request.content) == SCRIPTS[name].body
    assert model.statistics().attempts == 1


def test_an_unknown_provider_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown provider 'openia'") as raised:
        provider_for("openia")
    assert str(raised.value).endswith(known_providers())


def test_the_known_providers_are_named_in_order_as_pydantic_lists_choices() -> None:
    *others, last = [repr(name) for name in PROVIDERS]
    expected = f"{', '.join(others)} or {last}" if others else last
    assert known_providers() == expected
    assert known_providers().startswith("'openai'")  # the default first
