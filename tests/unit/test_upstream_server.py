"""Replies of the tests' upstream (``tests/upstream_server.py``): what the Anthropic-speaking
ones send is a Messages stream the gateway's own parser reads as meant (and the OpenAI tool
call one a chat completions stream)."""

from __future__ import annotations

import json

from streams.models import ModelOutput, TextDelta, ToolCallDelta, ToolCallStart, Usage
from streams.upstream.anthropic import MessagesEventParser
from streams.upstream.openai_chat import ChatChunkParser
from streams.upstream.sse import SSEDecoder, SSEMessage
from tests.upstream_server import (
    Reply,
    anthropic_error_reply,
    anthropic_text_reply,
    anthropic_thinking_reply,
    anthropic_tool_reply,
    chat_tool_reply,
    count_tokens_reply,
    messages_events,
    text_block,
)


def messages(reply: Reply) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out: list[SSEMessage] = []
    for step in reply.steps:
        if isinstance(step, bytes):
            out.extend(decoder.feed(step))
    return out


def parsed(reply: Reply) -> tuple[MessagesEventParser, list[ModelOutput]]:
    parser = MessagesEventParser()
    out: list[ModelOutput] = []
    for message in messages(reply):
        out.extend(parser.feed(message))
    return parser, out


def test_each_event_line_names_its_data_s_type() -> None:
    sent = messages(anthropic_thinking_reply("hmm", "sig", "ok"))
    assert [m.event for m in sent] == [json.loads(m.data)["type"] for m in sent]


def test_a_text_reply_is_the_whole_event_sequence_of_one_text_block() -> None:
    sent = messages(anthropic_text_reply("Hel", "lo"))
    assert [m.event for m in sent] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert json.loads(sent[-2].data) == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }


def test_a_text_reply_parses_as_its_text_and_usage() -> None:
    parser, out = parsed(anthropic_text_reply("Hel", "lo", usage=(7, 2)))
    assert parser.finished
    assert [o for o in out if isinstance(o, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    (usage,) = [o for o in out if isinstance(o, Usage)]
    assert (usage.input_tokens, usage.output_tokens) == (7, 2)


def test_a_tool_reply_parses_as_its_calls_after_its_text() -> None:
    reply = anthropic_tool_reply(
        [("toolu_1", "clock", '{"utc": 2}'), ("toolu_2", "echo", "{}")], text="Checking"
    )
    _, out = parsed(reply)
    assert [o for o in out if not isinstance(o, Usage)][:4] == [
        TextDelta("Checking"),
        ToolCallStart(index=1, name="clock", call_id="toolu_1"),
        ToolCallDelta(1, '{"utc": 2}'),
        ToolCallStart(index=2, name="echo", call_id="toolu_2"),
    ]
    assert json.loads(messages(reply)[-2].data)["delta"]["stop_reason"] == "tool_use"


def test_a_thinking_reply_sends_its_thinking_and_signature_before_its_text() -> None:
    sent = [json.loads(m.data) for m in messages(anthropic_thinking_reply("hmm", "c2ln", "ok"))]
    deltas = [(e["index"], e["delta"]) for e in sent if e["type"] == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "hmm"}),
        (0, {"type": "signature_delta", "signature": "c2ln"}),
        (1, {"type": "text_delta", "text": "ok"}),
    ]
    _, out = parsed(anthropic_thinking_reply("hmm", "c2ln", "ok"))
    assert [o for o in out if isinstance(o, TextDelta)] == [TextDelta("ok")]


def test_cache_tokens_are_in_message_start_only_when_given() -> None:
    plain = json.loads(messages(Reply(steps=messages_events(text_block("x"))))[0].data)
    cached = json.loads(
        messages(Reply(steps=messages_events(text_block("x"), cache=(4, 9))))[0].data
    )
    assert plain["message"]["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert cached["message"]["usage"] == {
        "input_tokens": 3,
        "output_tokens": 1,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 9,
    }


def test_json_replies_are_whole_bodies() -> None:
    count, error = count_tokens_reply(42), anthropic_error_reply(529, "overloaded_error")
    assert (count.status, count.headers["content-type"]) == (200, "application/json")
    assert count.steps == [b'{"input_tokens": 42}']
    (body,) = error.steps
    assert isinstance(body, bytes)
    assert error.status == 529
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "upstream says no"},
    }


def test_a_chat_tool_reply_parses_as_its_one_call() -> None:
    parser = ChatChunkParser()
    out = [
        o for m in messages(chat_tool_reply("call_1", "Bash", '{"a": 1}')) for o in parser.feed(m)
    ]
    assert parser.finished
    assert [o for o in out if isinstance(o, ToolCallStart | ToolCallDelta)] == [
        ToolCallStart(index=0, name="Bash", call_id="call_1"),
        ToolCallDelta(0, '{"a": 1}'),
    ]
