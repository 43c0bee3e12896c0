"""Specification of the Anthropic Messages upstream, pure part
(``streams/upstream/anthropic.py``): the OpenAI-style conversation converted into a
``/messages`` body, and stream events turned into model output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.errors import UpstreamProtocolError, UpstreamStreamError
from streams.models import (
    Finish,
    ModelOutput,
    ReasoningDelta,
    ReasoningSignature,
    RedactedReasoning,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.upstream.anthropic import MessagesEventParser, messages_request
from streams.upstream.sse import SSEMessage

USER = {"role": "user", "content": "hi"}


def request(messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return messages_request("claude-x", messages, [], **kwargs)


def assistant_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def event(payload: dict[str, Any]) -> tuple[str, str]:
    return payload["type"], json.dumps(payload)


def sse_event(name: str, data: str) -> SSEMessage:
    """An event as the decoder hands it to the parser."""
    return SSEMessage(data, name)


def feed_all(*events: tuple[str, str]) -> tuple[MessagesEventParser, list[ModelOutput]]:
    parser = MessagesEventParser()
    out: list[ModelOutput] = []
    for name, data in events:
        out.extend(parser.feed(sse_event(name, data)))
    return parser, out


def message_start(input_tokens: int = 0, output_tokens: int = 0) -> tuple[str, str]:
    return event(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
        }
    )


def text_start(index: int = 0, text: str = "") -> tuple[str, str]:
    return event(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": text},
        }
    )


def text_delta(text: str, index: int = 0) -> tuple[str, str]:
    return event(
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        }
    )


def tool_start(
    index: int, call_id: str, name: str, input: dict[str, Any] | None = None
) -> tuple[str, str]:
    return event(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": input or {},
            },
        }
    )


def json_delta(partial: str, index: int) -> tuple[str, str]:
    return event(
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": partial},
        }
    )


def block_stop(index: int) -> tuple[str, str]:
    return event({"type": "content_block_stop", "index": index})


def message_delta(output_tokens: int | None, stop_reason: str = "end_turn") -> tuple[str, str]:
    payload: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop_reason}}
    if output_tokens is not None:
        payload["usage"] = {"output_tokens": output_tokens}
    return event(payload)


MESSAGE_STOP = event({"type": "message_stop"})
PING = event({"type": "ping"})


# -- messages_request: the body ------------------------------------------------------------


def test_request_body_streams_with_the_model_and_max_tokens() -> None:
    body = messages_request("claude-x", [USER], [], max_tokens=1000)

    assert body == {
        "model": "claude-x",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }


def test_request_max_tokens_defaults_to_4096() -> None:
    assert request([USER])["max_tokens"] == 4096


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_and_developer_messages_become_the_system_field(role: str) -> None:
    body = request([{"role": role, "content": "Be brief."}, USER])

    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_several_system_messages_are_joined_by_blank_lines_wherever_they_are() -> None:
    body = request(
        [
            {"role": "system", "content": "One."},
            USER,
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
        ]
    )

    assert body["system"] == "One.\n\nTwo."
    assert [turn["role"] for turn in body["messages"]] == ["user"]


def test_request_without_system_messages_has_no_system_field() -> None:
    assert "system" not in request([USER])


@pytest.mark.parametrize(
    ("content", "text"),
    [
        pytest.param("hello", "hello", id="string"),
        pytest.param(
            [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "hi"}],
            "hi",
            id="non-text-parts-dropped",
        ),
        pytest.param(None, "", id="none"),
    ],
)
def test_user_content_becomes_one_text_block(content: Any, text: str) -> None:
    body = request([{"role": "user", "content": content}])

    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": text}]}]


def test_user_text_parts_stay_blocks_of_their_own() -> None:
    # As the client sent them: Claude Code's reminder and its prompt are two blocks.
    parts = [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]

    assert request([{"role": "user", "content": parts}])["messages"] == [
        {"role": "user", "content": parts}
    ]


def test_assistant_text_and_tool_calls_become_text_and_tool_use_blocks() -> None:
    body = request(
        [
            USER,
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    assistant_call("call_1", "search", '{"q": "x"}'),
                    assistant_call("call_2", "now", ""),
                ],
            },
        ]
    )

    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "search", "input": {"q": "x"}},
            {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
        ],
    }


def test_assistant_tool_calls_without_text_have_no_text_block() -> None:
    body = request(
        [
            USER,
            {"role": "assistant", "content": None, "tool_calls": [assistant_call("c", "f", "{}")]},
        ]
    )

    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c", "name": "f", "input": {}}
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param("{not json", id="broken-json"),
        pytest.param("[1, 2]", id="array"),
        pytest.param('"text"', id="string"),
    ],
)
def test_tool_call_arguments_that_are_not_a_json_object_become_empty_input(
    arguments: str,
) -> None:
    body = request(
        [USER, {"role": "assistant", "tool_calls": [assistant_call("c", "f", arguments)]}]
    )

    assert body["messages"][1]["content"][0]["input"] == {}


def test_empty_assistant_message_is_dropped() -> None:
    body = request([USER, {"role": "assistant", "content": ""}, USER])

    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "hi"}],
        }
    ]


def test_consecutive_tool_results_become_one_user_turn() -> None:
    body = request(
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [assistant_call("a", "f", "{}"), assistant_call("b", "g", "{}")],
            },
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "2"}]},
        ]
    )

    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "1"},
            {"type": "tool_result", "tool_use_id": "b", "content": "2"},
        ],
    }
    assert len(body["messages"]) == 3


def test_user_message_after_tool_results_joins_their_turn() -> None:
    body = request(
        [
            USER,
            {"role": "assistant", "tool_calls": [assistant_call("a", "f", "{}")]},
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "user", "content": "thanks"},
        ]
    )

    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "1"},
        {"type": "text", "text": "thanks"},
    ]


def test_turns_alternate_between_user_and_assistant() -> None:
    body = request(
        [
            {"role": "system", "content": "s"},
            USER,
            USER,
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "assistant", "tool_calls": [assistant_call("c", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
            USER,
            {"role": "assistant", "content": "done"},
        ]
    )

    roles = [turn["role"] for turn in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
        {"type": "tool_use", "id": "c", "name": "f", "input": {}},
    ]


def test_messages_of_unknown_roles_are_dropped() -> None:
    body = request([USER, {"role": "function", "content": "x"}])

    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_tools_become_tools_with_input_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}

    body = messages_request(
        "claude-x",
        [USER],
        [{"name": "search", "description": "Search", "parameters": schema}, {"name": "now"}],
    )

    assert body["tools"] == [
        {"name": "search", "description": "Search", "input_schema": schema},
        {
            "name": "now",
            "description": "",
            "input_schema": {"type": "object", "properties": {}},
        },
    ]


def test_request_without_tools_has_no_tools_field() -> None:
    assert "tools" not in request([USER])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"max_tokens": 50}, {"max_tokens": 50}, id="max_tokens"),
        pytest.param({"max_completion_tokens": 60}, {"max_tokens": 60}, id="max_completion"),
        pytest.param({"temperature": 0.3}, {"temperature": 0.3}, id="temperature"),
        pytest.param({"top_p": 0.9}, {"top_p": 0.9}, id="top_p"),
        pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-string"),
        pytest.param({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}, id="stop-list"),
        pytest.param({"stop": ("A",)}, {"stop_sequences": ["A"]}, id="stop-tuple"),
    ],
)
def test_options_are_mapped_to_anthropic_names(
    options: dict[str, Any], expected: dict[str, Any]
) -> None:
    body = request([USER], options=options)

    for name, value in expected.items():
        assert body[name] == value
    assert "stop" not in body
    assert "max_completion_tokens" not in body


@pytest.mark.parametrize(
    "option",
    ["seed", "presence_penalty", "frequency_penalty", "logit_bias", "n", "user", "top_k"],
)
def test_options_without_an_anthropic_equivalent_are_dropped(option: str) -> None:
    body = request([USER], options={option: 1})

    assert option not in body
    assert set(body) == {"model", "max_tokens", "messages", "stream"}


def test_max_tokens_option_overrides_the_route_default() -> None:
    body = request([USER], max_tokens=4096, options={"max_tokens": 10})

    assert body["max_tokens"] == 10


def test_extra_body_fields_are_merged_last() -> None:
    body = request(
        [USER],
        options={"temperature": 0.3},
        extra={"temperature": 1.0, "metadata": {"user_id": "u"}},
    )

    assert body["temperature"] == 1.0
    assert body["metadata"] == {"user_id": "u"}


# -- MessagesEventParser -------------------------------------------------------------------


def test_text_deltas_become_text_deltas() -> None:
    _, out = feed_all(
        message_start(),
        text_start(0),
        text_delta("Hel"),
        text_delta("lo"),
        block_stop(0),
    )

    assert out == [TextDelta("Hel"), TextDelta("lo")]


def test_empty_text_delta_produces_nothing() -> None:
    _, out = feed_all(text_start(0), text_delta(""))

    assert out == []


def test_text_in_the_content_block_start_is_passed_on() -> None:
    _, out = feed_all(text_start(0, "Hi"))

    assert out == [TextDelta("Hi")]


def test_tool_use_block_becomes_a_tool_call_with_its_json_fragments() -> None:
    _, out = feed_all(
        text_start(0),
        text_delta("Checking."),
        block_stop(0),
        tool_start(1, "toolu_1", "search"),
        json_delta("", 1),
        json_delta('{"q": ', 1),
        json_delta('"x"}', 1),
        block_stop(1),
    )

    assert out == [
        TextDelta("Checking."),
        ToolCallStart(index=1, name="search", call_id="toolu_1"),
        ToolCallDelta(1, '{"q": '),
        ToolCallDelta(1, '"x"}'),
    ]


def test_empty_partial_json_is_skipped() -> None:
    parser = MessagesEventParser()
    parser.feed(sse_event(*tool_start(0, "toolu_1", "now")))

    assert parser.feed(sse_event(*json_delta("", 0))) == []


def test_tool_use_with_input_in_the_start_block_passes_it_on_as_json() -> None:
    _, out = feed_all(tool_start(0, "toolu_1", "search", {"q": "x"}))

    assert out == [ToolCallStart(0, "search", "toolu_1"), ToolCallDelta(0, '{"q": "x"}')]


def test_tool_input_for_a_block_that_is_not_a_tool_use_is_a_protocol_error() -> None:
    parser = MessagesEventParser()
    parser.feed(sse_event(*text_start(0)))

    with pytest.raises(UpstreamProtocolError, match="unknown block 0"):
        parser.feed(sse_event(*json_delta('{"a": 1}', 0)))


def test_usage_from_message_start_and_message_delta_is_emitted_at_message_stop() -> None:
    parser = MessagesEventParser()

    assert parser.feed(sse_event(*message_start(input_tokens=25, output_tokens=1))) == []
    assert parser.feed(sse_event(*text_delta("x"))) == [TextDelta("x")]
    assert parser.feed(sse_event(*message_delta(output_tokens=15))) == [Finish("stop")]
    assert parser.feed(sse_event(*MESSAGE_STOP)) == [Usage(input_tokens=25, output_tokens=15)]


def test_usage_of_message_start_stands_when_message_delta_has_none() -> None:
    _, out = feed_all(message_start(10, 3), message_delta(None), MESSAGE_STOP)

    assert out == [Finish("stop"), Usage(10, 3)]


def test_message_stop_without_usage_reports_zero_tokens() -> None:
    _, out = feed_all(MESSAGE_STOP)

    assert out == [Usage(0, 0)]


def test_message_stop_marks_the_parser_finished() -> None:
    parser = MessagesEventParser()
    parser.feed(sse_event(*message_start()))
    parser.feed(sse_event(*message_delta(5)))

    assert not parser.finished
    parser.feed(sse_event(*MESSAGE_STOP))
    assert parser.finished


@pytest.mark.parametrize(
    "ignored",
    [
        pytest.param(PING, id="ping"),
        pytest.param(block_stop(0), id="content_block_stop"),
        pytest.param(event({"type": "some_future_event", "x": 1}), id="unknown-type"),
        pytest.param(
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "some_future_delta", "x": "hmm"},
                }
            ),
            id="unknown-delta-type",
        ),
        pytest.param(
            event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                }
            ),
            id="unknown-block-type",
        ),
    ],
)
def test_events_without_output_are_ignored(ignored: tuple[str, str]) -> None:
    parser = MessagesEventParser()

    assert parser.feed(sse_event(*ignored)) == []
    assert not parser.finished


def test_event_type_falls_back_to_the_sse_event_name() -> None:
    parser = MessagesEventParser()

    assert parser.feed(sse_event("message_stop", "{}")) == [Usage(0, 0)]
    assert parser.finished


def test_payload_type_wins_over_the_sse_event_name() -> None:
    parser = MessagesEventParser()

    assert parser.feed(sse_event("message_stop", json.dumps({"type": "ping"}))) == []
    assert not parser.finished


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("overloaded_error", True),
        # An internal error of the provider, as an HTTP 5xx would be: worth another try.
        ("api_error", True),
        ("invalid_request_error", False),
        ("authentication_error", False),
        ("permission_error", False),
        ("not_found_error", False),
    ],
)
def test_error_event_raises_a_stream_error(error_type: str, retryable: bool) -> None:
    payload = {"type": "error", "error": {"type": error_type, "message": "went wrong"}}

    with pytest.raises(UpstreamStreamError) as raised:
        MessagesEventParser().feed(sse_event("error", json.dumps(payload)))

    assert str(raised.value) == f"the upstream reported an error: {error_type}: went wrong"
    assert raised.value.retryable is retryable


def test_error_event_without_details_is_not_retryable() -> None:
    with pytest.raises(UpstreamStreamError, match=r"reported an error: error$") as raised:
        MessagesEventParser().feed(sse_event("error", json.dumps({"type": "error"})))

    assert raised.value.retryable is False


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param("{not json", "not JSON", id="broken"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param("[1]", "not a JSON object", id="array"),
        pytest.param("null", "not a JSON object", id="null"),
    ],
)
def test_payload_that_is_not_a_json_object_is_a_protocol_error(data: str, match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match):
        MessagesEventParser().feed(sse_event("content_block_delta", data))


# -- thinking, stop reasons, cache usage ---------------------------------------------------


def thinking_start(index: int, thinking: str = "", signature: str = "") -> tuple[str, str]:
    return event(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "thinking", "thinking": thinking, "signature": signature},
        }
    )


def block_delta(index: int, **delta: str) -> tuple[str, str]:
    return event({"type": "content_block_delta", "index": index, "delta": delta})


def test_a_signed_thinking_block_then_text_then_a_tool_call() -> None:
    _, out = feed_all(
        message_start(12, 1),
        thinking_start(0),
        block_delta(0, type="thinking_delta", thinking="Let me "),
        block_delta(0, type="thinking_delta", thinking="think."),
        block_delta(0, type="signature_delta", signature="EqQBCgIYAhIM=="),
        block_stop(0),
        text_start(1),
        text_delta("Checking.", 1),
        block_stop(1),
        tool_start(2, "toolu_1", "clock"),
        json_delta("", 2),
        json_delta('{"tz":', 2),
        json_delta(' "UTC"}', 2),
        block_stop(2),
        message_delta(20, "tool_use"),
        MESSAGE_STOP,
    )

    assert out == [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        ReasoningSignature("EqQBCgIYAhIM=="),
        TextDelta("Checking."),
        ToolCallStart(index=2, name="clock", call_id="toolu_1"),
        ToolCallDelta(2, '{"tz":'),
        ToolCallDelta(2, ' "UTC"}'),
        Finish("tool_calls"),
        Usage(12, 20),
    ]


def test_a_tool_use_block_with_empty_input_at_start_takes_its_arguments_from_deltas() -> None:
    _, out = feed_all(tool_start(0, "toolu_1", "clock", {}), json_delta("{}", 0))

    assert out == [ToolCallStart(index=0, name="clock", call_id="toolu_1"), ToolCallDelta(0, "{}")]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(
            {"type": "thinking", "thinking": "first thought", "signature": ""},
            [ReasoningDelta("first thought")],
            id="thinking-with-initial-text",
        ),
        pytest.param(
            {"type": "thinking", "thinking": "whole", "signature": "sig"},
            [ReasoningDelta("whole"), ReasoningSignature("sig")],
            id="thinking-sent-whole",
        ),
        pytest.param(
            {"type": "thinking", "thinking": "", "signature": ""}, [], id="thinking-empty"
        ),
        pytest.param(
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va=="},
            [RedactedReasoning("EmwKAhgBEgy3va==")],
            id="redacted-thinking",
        ),
        pytest.param({"type": "redacted_thinking", "data": 5}, [], id="redacted-not-a-string"),
        pytest.param({"type": "thinking", "thinking": ["x"]}, [], id="thinking-not-a-string"),
    ],
)
def test_a_reasoning_block_start(block: dict[str, Any], expected: list[ModelOutput]) -> None:
    start = event({"type": "content_block_start", "index": 0, "content_block": block})

    assert MessagesEventParser().feed(sse_event(*start)) == expected


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        pytest.param({"type": "thinking_delta", "thinking": "hmm"}, [ReasoningDelta("hmm")]),
        pytest.param({"type": "thinking_delta", "thinking": ""}, [], id="empty-thinking"),
        pytest.param(
            {"type": "signature_delta", "signature": "c2ln"}, [ReasoningSignature("c2ln")]
        ),
        pytest.param({"type": "signature_delta", "signature": ""}, [], id="empty-signature"),
        pytest.param({"type": "signature_delta", "signature": None}, [], id="null-signature"),
    ],
)
def test_a_reasoning_delta(delta: dict[str, Any], expected: list[ModelOutput]) -> None:
    payload = event({"type": "content_block_delta", "index": 0, "delta": delta})

    assert MessagesEventParser().feed(sse_event(*payload)) == expected


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", Finish("stop")),
        ("max_tokens", Finish("length")),
        ("tool_use", Finish("tool_calls")),
        ("refusal", Finish("content_filter")),
        ("pause_turn", Finish("stop")),
        ("model_context_window_exceeded", Finish("model_context_window_exceeded")),
    ],
)
def test_a_stop_reason_becomes_its_finish_reason(stop_reason: str, finish: Finish) -> None:
    assert MessagesEventParser().feed(sse_event(*message_delta(3, stop_reason))) == [finish]


def test_a_stop_sequence_finish_names_the_sequence() -> None:
    payload = event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
            "usage": {"output_tokens": 3},
        }
    )

    assert MessagesEventParser().feed(sse_event(*payload)) == [Finish("stop_sequence", "END")]


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param({"stop_reason": None, "stop_sequence": None}, id="null"),
        pytest.param({}, id="absent"),
        pytest.param({"stop_reason": 3}, id="not-a-string"),
    ],
)
def test_a_message_delta_without_a_stop_reason_has_no_finish(delta: dict[str, Any]) -> None:
    payload = event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 3}})

    assert MessagesEventParser().feed(sse_event(*payload)) == []


def cached_start(**usage: int) -> tuple[str, str]:
    return event({"type": "message_start", "message": {"usage": usage}})


def test_usage_carries_the_cache_counts_of_message_start() -> None:
    _, out = feed_all(
        cached_start(
            input_tokens=5,
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=200,
            output_tokens=1,
        ),
        message_delta(7),
        MESSAGE_STOP,
    )

    assert out[-1] == Usage(5, 7, cache_read_tokens=1000, cache_write_tokens=200)


def test_usage_repeated_in_message_delta_replaces_message_starts_and_is_never_added() -> None:
    repeated = event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 6,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 0,
                "output_tokens": 9,
            },
        }
    )
    _, out = feed_all(
        cached_start(input_tokens=5, cache_read_input_tokens=1000, cache_creation_input_tokens=200),
        repeated,
        MESSAGE_STOP,
    )

    assert out[-1] == Usage(6, 9, cache_read_tokens=1000, cache_write_tokens=0)


@pytest.mark.parametrize("value", [None, "12", 1.5, True, -3])
def test_a_token_count_that_is_not_a_count_is_zero(value: Any) -> None:
    start = event({"type": "message_start", "message": {"usage": {"input_tokens": value}}})

    _, out = feed_all(start, MESSAGE_STOP)

    assert out == [Usage(0, 0)]
