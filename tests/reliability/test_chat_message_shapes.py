"""Chat messages of every shape, against a real gateway whose models are the demo model, an
OpenAI route and an Anthropic route (each turns messages into its own request): a message
the gateway cannot use is a 400 in OpenAI's error shape naming the field, never a 500 or a
run that fails with ``internal_error``. Fuzzed with hypothesis over the JSON values a
client could put in each field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import RunningGateway, running_gateway
from tests.upstream_server import Reply, UpstreamServer, sse

TIMEOUT = 10.0
MODELS = ["demo", "openai-route", "anthropic-route"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: UpstreamServer) -> Iterator[RunningGateway]:
    # Unless a test scripts it, the upstream answers with OpenAI's stream: the Anthropic
    # route then fails upstream_protocol (502), after it has turned the messages into its
    # request (and its circuit breaker never opens).
    common = {
        "base_url": upstream.base_url,
        "model": "up-model",
        "max_attempts": 1,
        "failure_threshold": 1_000_000,
    }
    routes = {
        "openai-route": {"provider": "openai", **common},
        "anthropic-route": {"provider": "anthropic", **common},
    }
    with running_gateway(routes=routes, runs_per_key_per_minute=100_000.0) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=TIMEOUT) as client:
        yield client


def check_answer(response: httpx.Response) -> None:
    """A 200 (a streamed one without an internal error), a 4xx with an error in OpenAI's
    shape, or a 502 that is the upstream's failure: never a 500."""
    text = response.text
    assert response.status_code != 500, text[:500]
    assert "internal_error" not in text, text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        if response.status_code >= 500:
            assert response.status_code == 502 and error["code"].startswith("upstream"), text


USER = {"role": "user", "content": "what time is it?"}


def calling(function: Any) -> list[dict[str, Any]]:
    """A conversation in which the assistant called a tool described by ``function``."""
    call = {"id": "call_1", "type": "function", "function": function}
    return [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]


BAD_MESSAGES = {
    "text part of a number": (
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        "messages.0.content.0.text",
    ),
    "text part of null": (
        [{"role": "user", "content": [{"type": "text", "text": None}]}],
        "messages.0.content.0.text",
    ),
    "text part of an object": (
        [{"role": "user", "content": [{"type": "text", "text": {"value": "hi"}}]}],
        "messages.0.content.0.text",
    ),
    "part of a number": ([{"role": "user", "content": [5]}], "messages.0.content.0"),
    "part type of a number": (
        [{"role": "user", "content": [{"type": 1, "text": "hi"}]}],
        "messages.0.content.0.type",
    ),
    "tool result part of a number": (
        [
            *calling({"name": "clock", "arguments": "{}"})[:2],
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": 1}]},
        ],
        "messages.2.content.0.text",
    ),
    "function of a string": (calling("clock"), "messages.1.tool_calls.0.function"),
    "function without a name": (
        calling({"arguments": "{}"}),
        "messages.1.tool_calls.0.function.name",
    ),
    "function name of a number": (
        calling({"name": 5, "arguments": "{}"}),
        "messages.1.tool_calls.0.function.name",
    ),
    "arguments of an object": (
        calling({"name": "clock", "arguments": {"utc_offset_hours": 1}}),
        "messages.1.tool_calls.0.function.arguments",
    ),
    "call id of a list": (
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": ["call_1"], "function": {"name": "clock", "arguments": "{}"}}
                ],
            },
        ],
        "messages.1.tool_calls.0.id",
    ),
}


@pytest.mark.parametrize(("conversation", "field"), BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_message_no_model_can_read_is_a_400_naming_its_field(
    client: httpx.Client, conversation: list[dict[str, Any]], field: str, stream: bool
) -> None:
    body = {"model": "demo", "messages": conversation, "stream": stream}
    response = client.post("/v1/chat/completions", json=body)

    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (
        "invalid_request",
        "invalid_request_error",
        field,
    )
    assert field in error["message"]


@pytest.mark.parametrize(("conversation", "field"), BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_a_run_with_a_message_no_model_can_read_is_a_400_naming_its_field(
    client: httpx.Client, conversation: list[dict[str, Any]], field: str
) -> None:
    response = client.post("/v1/runs", json={"model": "demo", "messages": conversation})

    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == field


@pytest.mark.parametrize("stop", [5, [1, "x"], {"a": "b"}, True])
def test_a_stop_that_is_no_string_or_list_of_strings_is_a_400(
    client: httpx.Client, stop: Any
) -> None:
    body = {"model": "demo", "messages": [USER], "stop": stop}
    response = client.post("/v1/chat/completions", json=body)

    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == "stop"


def anthropic_text(text: str) -> Reply:
    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, **payload}, event=kind)

    return Reply(
        steps=[
            event("message_start", message={"usage": {"input_tokens": 1, "output_tokens": 0}}),
            event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": text}),
            event("message_stop"),
        ]
    )


@pytest.mark.parametrize("option", ["stop", "max_tokens", "temperature"])
def test_a_null_sampling_option_is_the_default_for_an_anthropic_route(
    client: httpx.Client, upstream: UpstreamServer, option: str
) -> None:
    upstream.script(anthropic_text("fine"))
    body = {"model": "anthropic-route", "messages": [USER], option: None}
    response = client.post("/v1/chat/completions", json=body)

    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"] == "fine"
    sent = upstream.requests[-1].body
    assert sent["max_tokens"] == 4096
    assert "stop_sequences" not in sent and "temperature" not in sent


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def either(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A likely shape for a field (three times in four), or any JSON value at all: a request
    with a wrong value in every field would be refused for its first one."""
    return st.one_of(*(strategies * 3), json_values)


content_parts = st.fixed_dictionaries(
    {},
    optional={
        "type": either(st.sampled_from(["text", "image_url", "refusal", "input_audio"])),
        "text": either(st.text(max_size=8)),
        "image_url": either(st.fixed_dictionaries({"url": st.just("https://x.test/a.png")})),
        "refusal": either(st.text(max_size=4)),
    },
)
functions = st.fixed_dictionaries(
    {},
    optional={
        "name": either(st.sampled_from(["clock", "calculator", "x"])),
        "arguments": either(st.sampled_from(["{}", '{"a": 1}', "[1]", "not json", ""])),
    },
)
tool_calls = st.fixed_dictionaries(
    {},
    optional={
        "id": either(st.sampled_from(["call_1", "call_2"])),
        "type": either(st.just("function")),
        "function": either(functions),
    },
)
messages = st.fixed_dictionaries(
    {"role": either(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))},
    optional={
        "content": either(st.text(max_size=8), st.lists(either(content_parts), max_size=3)),
        "tool_calls": either(st.lists(either(tool_calls), max_size=2)),
        "tool_call_id": either(st.sampled_from(["call_1", "call_2"])),
        "name": either(st.text(max_size=4)),
    },
)
options = st.fixed_dictionaries(
    {},
    optional={
        "stop": either(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=3)),
        "max_tokens": either(st.integers(1, 100)),
        "temperature": either(st.floats(0, 2)),
        "top_p": either(st.floats(0, 1)),
    },
)


@given(
    model=st.sampled_from(MODELS),
    conversation=st.lists(messages, min_size=1, max_size=4),
    sampling=options,
    stream=st.booleans(),
)
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_chat_completion_request_is_answered_without_a_server_error(
    client: httpx.Client,
    model: str,
    conversation: list[dict[str, Any]],
    sampling: dict[str, Any],
    stream: bool,
) -> None:
    body = {"model": model, "messages": conversation, "stream": stream, **sampling}
    check_answer(client.post("/v1/chat/completions", json=body))
