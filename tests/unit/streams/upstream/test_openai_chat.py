"""Specification of the OpenAI-compatible chat completions upstream, pure part
(``streams/upstream/openai_chat.py``): the streamed request body, and the parser that turns
``data:`` payloads into model output, tool calls assembled from every shape real upstreams
send."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import UpstreamProtocolError, UpstreamStreamError
from streams.models import (
    Finish,
    ModelOutput,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.upstream.openai_chat import (
    MAX_CALLS,
    MAX_UNNAMED_ARGUMENTS,
    ChatChunkParser,
    chat_request,
)
from streams.upstream.sse import SSEMessage

MESSAGES = [{"role": "user", "content": "hi"}]


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    index: int = 0,
    **extra: Any,
) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish_reason}],
            **extra,
        }
    )


def call(
    index: int,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    delta: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        delta["id"] = id
        delta["type"] = "function"
    return delta


def tool_chunk(*calls: dict[str, Any]) -> str:
    return chunk({"tool_calls": list(calls)})


def sse_data(payload: str) -> SSEMessage:
    """A chunk as the decoder hands it to the parser."""
    return SSEMessage(payload)


def feed_all(*payloads: str) -> tuple[ChatChunkParser, list[ModelOutput]]:
    parser = ChatChunkParser()
    out: list[ModelOutput] = []
    for payload in payloads:
        out.extend(parser.feed(sse_data(payload)))
    return parser, out


# -- chat_request --------------------------------------------------------------------------


def test_request_streams_and_asks_for_usage() -> None:
    body = chat_request("gpt-x", MESSAGES, [])

    assert body == {
        "model": "gpt-x",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_request_without_tools_has_no_tools_field() -> None:
    assert "tools" not in chat_request("gpt-x", MESSAGES, [])


def test_request_copies_the_messages_into_a_list() -> None:
    messages = ({"role": "user", "content": "hi"},)

    body = chat_request("gpt-x", messages, [])

    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert isinstance(body["messages"], list)


def test_request_maps_tools_to_function_tools() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    tools = [{"name": "search", "description": "Search the web", "parameters": schema}]

    body = chat_request("gpt-x", MESSAGES, tools)

    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "Search the web", "parameters": schema},
        }
    ]


@pytest.mark.parametrize(
    "tool",
    [
        pytest.param({"name": "now"}, id="missing"),
        pytest.param({"name": "now", "description": "", "parameters": None}, id="none"),
        pytest.param({"name": "now", "description": "", "parameters": {}}, id="empty"),
    ],
)
def test_request_gives_tools_without_parameters_an_empty_object_schema(
    tool: dict[str, Any],
) -> None:
    body = chat_request("gpt-x", MESSAGES, [tool])

    assert body["tools"][0]["function"] == {
        "name": "now",
        "description": "",
        "parameters": {"type": "object", "properties": {}},
    }


def test_request_keeps_tool_order() -> None:
    tools = [{"name": name} for name in ("c", "a", "b")]

    body = chat_request("gpt-x", MESSAGES, tools)

    assert [t["function"]["name"] for t in body["tools"]] == ["c", "a", "b"]


def test_request_merges_options_then_extra_after_the_fixed_fields() -> None:
    body = chat_request(
        "gpt-x",
        MESSAGES,
        [{"name": "t"}],
        options={"temperature": 0.2, "seed": 7},
        extra={"user": "u1"},
    )

    assert list(body) == [
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "temperature",
        "seed",
        "user",
    ]
    assert body["temperature"] == 0.2
    assert body["seed"] == 7
    assert body["user"] == "u1"


def test_request_extra_overrides_options() -> None:
    body = chat_request(
        "gpt-x", MESSAGES, [], options={"temperature": 0.2}, extra={"temperature": 0.9}
    )

    assert body["temperature"] == 0.9


# -- ChatChunkParser: text -----------------------------------------------------------------


def test_content_deltas_become_text_deltas() -> None:
    _, out = feed_all(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
    )

    assert out == [TextDelta("Hel"), TextDelta("lo")]


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param({"role": "assistant", "content": ""}, id="empty-string"),
        pytest.param({"content": None}, id="null"),
        pytest.param({}, id="empty-delta"),
        pytest.param({"refusal": None}, id="other-fields"),
    ],
)
def test_deltas_without_content_produce_nothing(delta: dict[str, Any]) -> None:
    _, out = feed_all(chunk(delta))

    assert out == []


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(json.dumps({"choices": [{"index": 0, "delta": None}]}), id="null-delta"),
        pytest.param(json.dumps({"choices": None}), id="null-choices"),
        pytest.param(json.dumps({"choices": []}), id="empty-choices"),
        pytest.param(json.dumps({}), id="no-choices"),
        pytest.param(json.dumps({"choices": ["junk"]}), id="non-object-choice"),
    ],
)
def test_chunks_without_a_usable_choice_produce_nothing(payload: str) -> None:
    _, out = feed_all(payload)

    assert out == []


def test_choices_other_than_index_0_are_ignored() -> None:
    _, out = feed_all(
        chunk({"content": "other"}, index=1),
        chunk({"tool_calls": [call(0, id="c", name="f", arguments="{}")]}, index=2),
        chunk({"content": "mine"}, index=0),
    )

    assert out == [TextDelta("mine")]


def test_choice_without_index_counts_as_index_0() -> None:
    _, out = feed_all(json.dumps({"choices": [{"delta": {"content": "x"}}]}))

    assert out == [TextDelta("x")]


# -- ChatChunkParser: tool calls -----------------------------------------------------------


def test_tool_call_with_id_and_name_on_the_first_chunk_only() -> None:
    _, out = feed_all(
        tool_chunk(call(0, id="call_1", name="search", arguments="")),
        tool_chunk(call(0, arguments='{"q":')),
        tool_chunk(call(0, arguments='"x"}')),
    )

    assert out == [
        ToolCallStart(index=0, name="search", call_id="call_1"),
        ToolCallDelta(0, '{"q":'),
        ToolCallDelta(0, '"x"}'),
    ]


def test_whole_tool_call_in_one_chunk() -> None:
    _, out = feed_all(tool_chunk(call(0, id="call_1", name="now", arguments="{}")))

    assert out == [ToolCallStart(0, "now", "call_1"), ToolCallDelta(0, "{}")]


@pytest.mark.parametrize(
    "fragment",
    [
        pytest.param(call(0, arguments=""), id="empty-string"),
        pytest.param(call(0), id="no-arguments"),
        pytest.param({"index": 0, "function": None}, id="null-function"),
        pytest.param({"index": 0}, id="no-function"),
    ],
)
def test_empty_argument_deltas_produce_nothing(fragment: dict[str, Any]) -> None:
    parser = ChatChunkParser()
    parser.feed(sse_data(tool_chunk(call(0, id="call_1", name="f"))))

    assert parser.feed(sse_data(tool_chunk(fragment))) == []


def test_tool_call_without_id_starts_with_no_call_id() -> None:
    _, out = feed_all(tool_chunk(call(0, name="f", arguments="{}")))

    assert out == [ToolCallStart(0, "f", None), ToolCallDelta(0, "{}")]


def test_repeated_id_and_name_do_not_start_the_call_again() -> None:
    _, out = feed_all(
        tool_chunk(call(0, id="call_1", name="f", arguments="{")),
        tool_chunk(call(0, id="call_1", name="f", arguments="}")),
    )

    assert out == [ToolCallStart(0, "f", "call_1"), ToolCallDelta(0, "{"), ToolCallDelta(0, "}")]


def test_first_id_and_name_win_over_later_ones() -> None:
    _, out = feed_all(
        tool_chunk(call(0, id="call_1", name="f")),
        tool_chunk(call(0, id="call_2", name="g", arguments="{}")),
    )

    assert out == [ToolCallStart(0, "f", "call_1"), ToolCallDelta(0, "{}")]


def test_arguments_before_the_name_are_held_then_flushed_after_the_start() -> None:
    parser = ChatChunkParser()

    assert parser.feed(sse_data(tool_chunk(call(0, id="call_1", arguments='{"a"')))) == []
    assert parser.feed(sse_data(tool_chunk(call(0, arguments=":1")))) == []
    assert parser.feed(sse_data(tool_chunk(call(0, name="f", arguments="}")))) == [
        ToolCallStart(0, "f", "call_1"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ":1"),
        ToolCallDelta(0, "}"),
    ]


def test_arguments_after_a_late_name_are_passed_on_at_once() -> None:
    parser = ChatChunkParser()
    parser.feed(sse_data(tool_chunk(call(0, arguments="{"))))
    parser.feed(sse_data(tool_chunk(call(0, name="f"))))

    assert parser.feed(sse_data(tool_chunk(call(0, arguments="}")))) == [ToolCallDelta(0, "}")]


def test_interleaved_tool_calls_are_told_apart_by_index() -> None:
    _, out = feed_all(
        tool_chunk(call(0, id="a", name="f")),
        tool_chunk(call(1, id="b", name="g")),
        tool_chunk(call(0, arguments='{"x":')),
        tool_chunk(call(1, arguments='{"y":')),
        tool_chunk(call(1, arguments="2}"), call(0, arguments="1}")),
    )

    assert out == [
        ToolCallStart(0, "f", "a"),
        ToolCallStart(1, "g", "b"),
        ToolCallDelta(0, '{"x":'),
        ToolCallDelta(1, '{"y":'),
        ToolCallDelta(1, "2}"),
        ToolCallDelta(0, "1}"),
    ]


def test_several_whole_calls_in_one_chunk() -> None:
    _, out = feed_all(
        tool_chunk(
            call(0, id="a", name="f", arguments="{}"),
            call(1, id="b", name="g", arguments="[]"),
        )
    )

    assert out == [
        ToolCallStart(0, "f", "a"),
        ToolCallDelta(0, "{}"),
        ToolCallStart(1, "g", "b"),
        ToolCallDelta(1, "[]"),
    ]


def test_tool_call_delta_without_index_counts_as_index_0() -> None:
    _, out = feed_all(tool_chunk({"id": "a", "function": {"name": "f", "arguments": "{}"}}))

    assert out == [ToolCallStart(0, "f", "a"), ToolCallDelta(0, "{}")]


def test_text_and_tool_call_in_one_delta_come_out_text_first() -> None:
    _, out = feed_all(chunk({"content": "Let me look.", "tool_calls": [call(0, id="a", name="f")]}))

    assert out == [TextDelta("Let me look."), ToolCallStart(0, "f", "a")]


@pytest.mark.parametrize(
    ("fragment", "match"),
    [
        pytest.param("junk", "not a JSON object", id="string"),
        pytest.param(["junk"], "not a JSON object", id="list"),
        pytest.param({"index": "0", "function": {}}, "integer index", id="string-index"),
        pytest.param({"index": None, "function": {}}, "integer index", id="null-index"),
    ],
)
def test_malformed_tool_call_delta_is_a_protocol_error(fragment: Any, match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match):
        ChatChunkParser().feed(sse_data(tool_chunk(fragment)))


def test_arguments_held_for_unnamed_calls_are_bounded_in_all() -> None:
    parser = ChatChunkParser()
    half = "x" * (MAX_UNNAMED_ARGUMENTS // 2)
    assert parser.feed(sse_data(tool_chunk(call(0, arguments=half), call(1, arguments=half)))) == []

    with pytest.raises(UpstreamProtocolError, match="not named"):
        parser.feed(sse_data(tool_chunk(call(2, arguments="y"))))


def test_arguments_flushed_by_a_name_no_longer_count_as_held() -> None:
    parser = ChatChunkParser()
    held = "x" * MAX_UNNAMED_ARGUMENTS
    parser.feed(sse_data(tool_chunk(call(0, arguments=held))))
    assert parser.feed(sse_data(tool_chunk(call(0, name="f")))) == [
        ToolCallStart(0, "f", None),
        ToolCallDelta(0, held),
    ]

    assert parser.feed(sse_data(tool_chunk(call(1, arguments=held)))) == []


def test_more_calls_than_max_calls_is_a_protocol_error() -> None:
    parser = ChatChunkParser()
    for index in range(MAX_CALLS):
        parser.feed(sse_data(tool_chunk(call(index, id=f"c{index}", name="f"))))

    with pytest.raises(UpstreamProtocolError, match=f"more than {MAX_CALLS} tool calls"):
        parser.feed(sse_data(tool_chunk(call(MAX_CALLS, id="last", name="f"))))


# -- ChatChunkParser: end of stream, usage, errors -----------------------------------------


def test_final_usage_chunk_with_empty_choices_becomes_usage() -> None:
    payload = json.dumps(
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}
    )

    _, out = feed_all(payload)

    assert out == [Usage(input_tokens=12, output_tokens=5)]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param({}, Usage(0, 0), id="empty"),
        pytest.param({"prompt_tokens": None, "completion_tokens": 3}, Usage(0, 3), id="null"),
    ],
)
def test_missing_usage_counts_are_zero(usage: dict[str, Any], expected: Usage) -> None:
    _, out = feed_all(json.dumps({"choices": [], "usage": usage}))

    assert out == [expected]


def test_null_usage_on_ordinary_chunks_produces_no_usage() -> None:
    _, out = feed_all(chunk({"content": "x"}, usage=None))

    assert out == [TextDelta("x")]


def test_usage_comes_after_the_deltas_of_the_same_chunk() -> None:
    _, out = feed_all(chunk({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 1}))

    assert out == [TextDelta("x"), Usage(1, 1)]


@pytest.mark.parametrize("done", ["[DONE]", " [DONE] ", "[DONE]\n"])
def test_done_marks_the_stream_done_and_finished(done: str) -> None:
    parser = ChatChunkParser()

    assert parser.feed(sse_data(done)) == []
    assert parser.done
    assert parser.finished
    assert parser.finish_reason is None


def test_a_fresh_parser_is_not_finished() -> None:
    parser = ChatChunkParser()

    assert not parser.finished
    assert not parser.done
    assert parser.finish_reason is None


@pytest.mark.parametrize("reason", ["stop", "tool_calls", "length", "content_filter"])
def test_finish_reason_marks_the_stream_finished_but_not_done(reason: str) -> None:
    parser, _ = feed_all(chunk({}, finish_reason=reason))

    assert parser.finish_reason == reason
    assert parser.finished
    assert not parser.done


def test_finish_reason_on_another_choice_is_ignored() -> None:
    parser, _ = feed_all(chunk({}, finish_reason="stop", index=1))

    assert not parser.finished


def test_content_in_the_finishing_chunk_is_kept() -> None:
    parser, out = feed_all(chunk({"content": "end"}, finish_reason="stop"))

    assert out == [TextDelta("end"), Finish("stop")]
    assert parser.finish_reason == "stop"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param({"message": "rate limited", "type": "rate_limit"}, "rate limited", id="dict"),
        pytest.param("boom", "boom", id="string"),
    ],
)
def test_error_chunk_raises_a_stream_error(error: Any, message: str) -> None:
    with pytest.raises(UpstreamStreamError, match=message) as raised:
        ChatChunkParser().feed(sse_data(json.dumps({"error": error})))

    assert not raised.value.retryable


def test_empty_error_field_is_not_an_error() -> None:
    _, out = feed_all(chunk({"content": "x"}, error=None))

    assert out == [TextDelta("x")]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        pytest.param("{not json", "not JSON", id="broken"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param("<html>", "not JSON", id="html"),
        pytest.param("[1, 2]", "not a JSON object", id="array"),
        pytest.param('"text"', "not a JSON object", id="string"),
        pytest.param("42", "not a JSON object", id="number"),
        pytest.param("null", "not a JSON object", id="null"),
    ],
)
def test_payload_that_is_not_a_json_object_is_a_protocol_error(payload: str, match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match):
        ChatChunkParser().feed(sse_data(payload))


# -- property: tool calls survive any fragmentation and interleaving -----------------------


@st.composite
def _fragmented_calls(
    draw: st.DrawFn,
) -> tuple[dict[int, tuple[str, str, str]], list[dict[str, Any]]]:
    """Random tool calls, each split into fragments, the fragments of all calls interleaved
    (each call's own order kept), its id on its first fragment and its name on the first or
    a later one."""
    count = draw(st.integers(min_value=1, max_value=4))
    calls: dict[int, tuple[str, str, str]] = {}
    queues: dict[int, list[dict[str, Any]]] = {}
    for index in range(count):
        name = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=10))
        arguments = draw(st.text(st.characters(codec="utf-8"), max_size=40))
        call_id = f"call_{index}"
        cuts = sorted(
            [*draw(st.lists(st.integers(0, len(arguments)), max_size=6)), 0, len(arguments)]
        )
        pieces = [arguments[a:b] for a, b in itertools.pairwise(cuts)]
        deltas = [call(index, arguments=piece) for piece in pieces]
        deltas[0]["id"] = call_id
        deltas[0]["type"] = "function"
        named = draw(st.integers(0, len(deltas) - 1))
        deltas[named]["function"]["name"] = name
        calls[index] = (call_id, name, arguments)
        queues[index] = deltas
    interleaved: list[dict[str, Any]] = []
    while any(queues.values()):
        index = draw(st.sampled_from([i for i, q in queues.items() if q]))
        interleaved.append(queues[index].pop(0))
    return calls, interleaved


@given(_fragmented_calls(), st.integers(min_value=1, max_value=3))
@settings(max_examples=200, deadline=None)
def test_fragmented_interleaved_tool_calls_are_reassembled(
    case: tuple[dict[int, tuple[str, str, str]], list[dict[str, Any]]], per_chunk: int
) -> None:
    calls, deltas = case
    payloads = [tool_chunk(*deltas[i : i + per_chunk]) for i in range(0, len(deltas), per_chunk)]

    _, out = feed_all(*payloads)

    starts = [item for item in out if isinstance(item, ToolCallStart)]
    assert sorted(s.index for s in starts) == sorted(calls)  # each call starts exactly once
    for start in starts:
        call_id, name, _ = calls[start.index]
        assert (start.name, start.call_id) == (name, call_id)
    for index, (_, _, arguments) in calls.items():
        position = out.index(next(s for s in starts if s.index == index))
        fragments = [(i, item) for i, item in enumerate(out) if isinstance(item, ToolCallDelta)]
        mine = [(i, item.arguments) for i, item in fragments if item.index == index]
        assert all(i > position for i, _ in mine)  # no fragment before its call starts
        assert all(fragment for _, fragment in mine)  # no empty fragments
        assert "".join(fragment for _, fragment in mine) == arguments


# -- reasoning, finish reasons, cached tokens ----------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        pytest.param({"reasoning_content": "Hmm"}, [ReasoningDelta("Hmm")], id="reasoning_content"),
        pytest.param({"reasoning": "Hmm"}, [ReasoningDelta("Hmm")], id="reasoning"),
        pytest.param(
            {"reasoning_content": "Hmm", "reasoning": "Hmm"},
            [ReasoningDelta("Hmm")],
            id="both-names-read-once",
        ),
        pytest.param(
            {"reasoning_content": "", "reasoning": "Hmm"}, [ReasoningDelta("Hmm")], id="empty-first"
        ),
        pytest.param(
            {"reasoning": "so", "content": "Yes"},
            [ReasoningDelta("so"), TextDelta("Yes")],
            id="with-content",
        ),
        pytest.param({"reasoning_content": None, "content": ""}, [], id="null"),
        pytest.param({"reasoning": {"text": "x"}}, [], id="not-a-string"),
        pytest.param({"reasoning_content": ["x"]}, [], id="a-list"),
    ],
)
def test_reasoning_in_a_delta(delta: dict[str, Any], expected: list[ModelOutput]) -> None:
    _, out = feed_all(chunk(delta))

    assert out == expected


def test_reasoning_deltas_stream_before_the_answer() -> None:
    _, out = feed_all(
        chunk({"role": "assistant", "content": None, "reasoning_content": "The user "}),
        chunk({"reasoning_content": "greets."}),
        chunk({"content": "Hello!"}),
        chunk({}, finish_reason="stop"),
    )

    assert out == [
        ReasoningDelta("The user "),
        ReasoningDelta("greets."),
        TextDelta("Hello!"),
        Finish("stop"),
    ]


@pytest.mark.parametrize(
    ("finish_reason", "finish"),
    [
        ("stop", Finish("stop")),
        ("length", Finish("length")),
        ("tool_calls", Finish("tool_calls")),
        ("content_filter", Finish("content_filter")),
        ("function_call", Finish("tool_calls")),
        ("eos", Finish("eos")),
    ],
)
def test_a_finish_reason_becomes_a_finish(finish_reason: str, finish: Finish) -> None:
    parser, out = feed_all(chunk({}, finish_reason=finish_reason))

    assert out == [finish]
    assert parser.finished


def test_a_finish_reason_that_is_not_a_string_is_no_finish() -> None:
    payload = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]})

    _, out = feed_all(payload)

    assert out == []


@pytest.mark.parametrize(
    ("details", "cached"),
    [
        pytest.param({"cached_tokens": 1024}, 1024, id="cached"),
        pytest.param({"cached_tokens": 0}, 0, id="zero"),
        pytest.param({"cached_tokens": None}, 0, id="null"),
        pytest.param({"cached_tokens": "9"}, 0, id="not-a-count"),
        pytest.param({"cached_tokens": True}, 0, id="a-bool"),
        pytest.param(None, 0, id="no-details"),
        pytest.param([1], 0, id="details-not-an-object"),
    ],
)
def test_cached_prompt_tokens_are_a_cache_read(details: Any, cached: int) -> None:
    usage = {"prompt_tokens": 2000, "completion_tokens": 5, "prompt_tokens_details": details}

    _, out = feed_all(json.dumps({"choices": [], "usage": usage}))

    assert out == [Usage(input_tokens=2000, output_tokens=5, cache_read_tokens=cached)]
