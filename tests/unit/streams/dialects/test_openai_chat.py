"""Specification of the OpenAI Chat Completions dialect (``streams/openai_chunks.py``): a
run's native events as byte-exact ``chat.completion.chunk`` SSE frames, or assembled into one
``chat.completion``, both as the ``openai`` package reads them."""

from __future__ import annotations

import json
from typing import Any

import httpx2  # the HTTP client the openai package is built on
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject

from streams.dialects.openai_chat import ChatChunkEncoder, chat_completion
from streams.events import Event, EventType, dumps

CID = "chatcmpl-abc"
MODEL = "demo"
CREATED = 1_700_000_000
DONE = b"data: [DONE]\n\n"


class Events:
    """Native events of one chat completion run, ``seq`` counting from 1."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, type: EventType, **data: Any) -> Event:
        self.seq += 1
        return Event.create(self.seq, "run_abc", type, 1.0 + self.seq, "model.0", data)

    def started(self) -> Event:
        return self(EventType.MESSAGE_STARTED, message_id="m", step=0, model=MODEL)

    def delta(self, text: str) -> Event:
        return self(EventType.MESSAGE_DELTA, message_id="m", delta=text)

    def call_started(self, call_id: str, name: str) -> Event:
        return self(EventType.TOOL_CALL_STARTED, message_id="m", call_id=call_id, name=name)

    def call_delta(self, call_id: str, fragment: str) -> Event:
        return self(EventType.TOOL_CALL_DELTA, call_id=call_id, delta=fragment)

    def call_completed(self, call_id: str, name: str, arguments: str) -> Event:
        return self(EventType.TOOL_CALL_COMPLETED, call_id=call_id, name=name, arguments=arguments)

    def completed(self, text: str = "", input_tokens: int = 0, output_tokens: int = 0) -> Event:
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        return self(EventType.MESSAGE_COMPLETED, message_id="m", text=text, usage=usage)

    def run_completed(self) -> Event:
        return self(EventType.RUN_COMPLETED, output=None, steps=1, stop_reason="completed")

    def failed(self, code: str = "upstream_stream_error", message: str = "it broke") -> Event:
        return self(
            EventType.MESSAGE_FAILED, message_id="m", error={"code": code, "message": message}
        )

    def run_failed(self, code: str = "upstream_timeout", message: str = "too slow") -> Event:
        return self(EventType.RUN_FAILED, error={"code": code, "message": message})

    def cancelled(self, reason: str = "client disconnected") -> Event:
        return self(EventType.RUN_CANCELLED, reason=reason)


@pytest.fixture
def ev() -> Events:
    return Events()


def encoder(include_usage: bool = False) -> ChatChunkEncoder:
    return ChatChunkEncoder(CID, MODEL, CREATED, include_usage)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def chunk_frame(
    seq: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> bytes:
    chunk = {
        "id": CID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"id: %d\ndata: %s\n\n" % (seq, compact(chunk))


def error_frame(seq: int, code: str, message: str) -> bytes:
    error = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"id: %d\ndata: %s\n\n" % (seq, compact(error))


def frames(stream: bytes) -> list[bytes]:
    return [frame + b"\n\n" for frame in stream.split(b"\n\n") if frame]


def payloads(stream: bytes) -> list[dict[str, Any]]:
    out = []
    for frame in frames(stream):
        data = frame.split(b"data: ", 1)[1].rstrip(b"\n")
        if data != b"[DONE]":
            out.append(json.loads(data))
    return out


# -- ChatChunkEncoder: frames --------------------------------------------------------------


def test_text_completion_is_encoded_byte_for_byte(ev: Events) -> None:
    events = [
        ev(EventType.RUN_STARTED, kind="parallel", model=MODEL, tools=[]),
        ev.started(),
        ev.delta("Hi"),
        ev.completed("Hi", 3, 1),
        ev.run_completed(),
    ]

    assert encoder()(events) == (
        b'id: 2\ndata: {"id":"chatcmpl-abc","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"demo","choices":[{"index":0,'
        b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
        b'id: 3\ndata: {"id":"chatcmpl-abc","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"demo","choices":[{"index":0,'
        b'"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        b'id: 4\ndata: {"id":"chatcmpl-abc","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"demo","choices":[{"index":0,'
        b'"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )


def test_message_started_is_a_role_chunk(ev: Events) -> None:
    assert encoder().encode(ev.started()) == chunk_frame(1, {"role": "assistant", "content": ""})


@pytest.mark.parametrize("text", ["Hello", "", "caf\u00e9 \U0001f600", 'quote " and \\ and \n'])
def test_message_delta_is_a_content_chunk(ev: Events, text: str) -> None:
    assert encoder().encode(ev.delta(text)) == chunk_frame(1, {"content": text})


def test_tool_calls_get_an_index_each_in_order_of_their_start(ev: Events) -> None:
    enc = encoder()

    out = enc(
        [
            ev.started(),
            ev.call_started("call_a", "search"),
            ev.call_started("call_b", "now"),
            ev.call_delta("call_a", '{"q":'),
            ev.call_delta("call_b", "{}"),
            ev.call_delta("call_a", '"x"}'),
        ]
    )

    def call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
        function = {"name": name, "arguments": ""}
        return {"index": index, "id": call_id, "type": "function", "function": function}

    def call_delta(index: int, fragment: str) -> dict[str, Any]:
        return {"index": index, "function": {"arguments": fragment}}

    assert frames(out) == [
        chunk_frame(1, {"role": "assistant", "content": ""}),
        chunk_frame(2, {"tool_calls": [call_start(0, "call_a", "search")]}),
        chunk_frame(3, {"tool_calls": [call_start(1, "call_b", "now")]}),
        chunk_frame(4, {"tool_calls": [call_delta(0, '{"q":')]}),
        chunk_frame(5, {"tool_calls": [call_delta(1, "{}")]}),
        chunk_frame(6, {"tool_calls": [call_delta(0, '"x"}')]}),
    ]


@pytest.mark.parametrize(("with_calls", "finish_reason"), [(False, "stop"), (True, "tool_calls")])
def test_message_completed_is_a_finish_chunk(
    ev: Events, with_calls: bool, finish_reason: str
) -> None:
    enc = encoder()
    enc.encode(ev.started())
    if with_calls:
        enc.encode(ev.call_started("call_a", "now"))

    frame = enc.encode(ev.completed())

    assert frame == chunk_frame(ev.seq, {}, finish_reason)


def test_tool_call_completed_adds_no_frame(ev: Events) -> None:
    enc = encoder()
    enc.encode(ev.call_started("call_a", "now"))

    assert enc.encode(ev.call_completed("call_a", "now", "{}")) == b""


@pytest.mark.parametrize(
    "type_",
    [
        EventType.RUN_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_STARTED,
        EventType.TOOL_DELTA,
        EventType.TOOL_COMPLETED,
        EventType.TOOL_FAILED,
        EventType.CLIENT_TOOL_REQUESTED,
        EventType.REASONING_DELTA,
        EventType.REASONING_SIGNATURE,
        EventType.REASONING_REDACTED,
    ],
)
def test_events_without_a_chat_completion_counterpart_add_no_frame(type_: EventType) -> None:
    event = Event.create(1, "run_abc", type_, 1.0, None, {"call_id": "c", "name": "n"})

    assert encoder().encode(event) == b""


def test_run_completed_without_include_usage_is_only_done(ev: Events) -> None:
    enc = encoder(include_usage=False)
    enc.encode(ev.completed(input_tokens=5, output_tokens=2))

    assert enc.encode(ev.run_completed()) == DONE


def test_run_completed_with_include_usage_sends_a_usage_chunk_then_done(ev: Events) -> None:
    enc = encoder(include_usage=True)
    enc.encode(ev.completed(input_tokens=5, output_tokens=2))

    usage_chunk = {
        "id": CID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    assert enc.encode(ev.run_completed()) == b"id: 2\ndata: %s\n\n" % compact(usage_chunk) + DONE


def test_usage_chunk_without_a_completed_message_counts_zero_tokens(ev: Events) -> None:
    out = encoder(include_usage=True).encode(ev.run_completed())

    assert payloads(out)[0]["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
    }


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        pytest.param(
            lambda ev: ev.failed("upstream_stream_error", "it broke"),
            "upstream_stream_error",
            "it broke",
            id="message.failed",
        ),
        pytest.param(
            lambda ev: ev.run_failed("upstream_timeout", "too slow"),
            "upstream_timeout",
            "too slow",
            id="run.failed",
        ),
        pytest.param(
            lambda ev: ev.cancelled("client disconnected"),
            "cancelled",
            "the request was cancelled: client disconnected",
            id="run.cancelled",
        ),
        pytest.param(
            lambda ev: ev(EventType.STREAM_GAP, after=0, next_seq=5, snapshot={}),
            "stream_gap",
            "events of this completion are no longer retained",
            id="stream.gap",
        ),
    ],
)
def test_failure_is_an_error_frame_then_done(
    ev: Events, make: Any, code: str, message: str
) -> None:
    enc = encoder(include_usage=True)
    enc.encode(ev.started())

    assert enc.encode(make(ev)) == error_frame(2, code, message) + DONE


def test_nothing_is_encoded_after_a_failure(ev: Events) -> None:
    enc = encoder(include_usage=True)
    enc.encode(ev.failed())

    later = [ev.run_failed(), ev.delta("late"), ev.completed(), ev.run_completed()]

    assert enc(later) == b""


def test_nothing_is_encoded_after_run_completed(ev: Events) -> None:
    enc = encoder(include_usage=True)
    enc.encode(ev.run_completed())

    assert enc([ev.delta("late"), ev.run_completed(), ev.cancelled()]) == b""


def test_a_batch_encodes_to_the_frames_of_its_events_in_order(ev: Events) -> None:
    events = [ev.started(), ev.delta("a"), ev.delta("b"), ev.completed(), ev.run_completed()]

    batched = encoder()(events)
    one_by_one = encoder()
    separately = b"".join(one_by_one.encode(event) for event in events)

    assert batched == separately


def test_every_frame_but_done_carries_its_event_seq_as_id(ev: Events) -> None:
    events = [
        ev(EventType.RUN_STARTED, kind="parallel", model=MODEL, tools=[]),
        ev.started(),
        ev.delta("a"),
        ev.call_started("call_a", "now"),
        ev.call_delta("call_a", "{}"),
        ev.call_completed("call_a", "now", "{}"),
        ev.completed(),
        ev.run_completed(),
    ]

    out = frames(encoder(include_usage=True)(events))

    assert out[-1] == DONE
    assert [frame.split(b"\n", 1)[0] for frame in out[:-1]] == [
        b"id: 2",
        b"id: 3",
        b"id: 4",
        b"id: 5",
        b"id: 7",
        b"id: 8",
    ]


# -- the chunks as the openai package reads them -------------------------------------------


def full_stream(ev: Events) -> list[Event]:
    return [
        ev(EventType.RUN_STARTED, kind="parallel", model=MODEL, tools=[]),
        ev.started(),
        ev.delta("Let me "),
        ev.delta("check."),
        ev.call_started("call_a", "search"),
        ev.call_delta("call_a", '{"q":'),
        ev.call_delta("call_a", '"x"}'),
        ev.call_started("call_b", "now"),
        ev.call_delta("call_b", "{}"),
        ev.call_completed("call_a", "search", '{"q":"x"}'),
        ev.call_completed("call_b", "now", "{}"),
        ev.completed("Let me check.", 11, 7),
        ev.run_completed(),
    ]


def test_every_chunk_validates_as_an_openai_chat_completion_chunk(ev: Events) -> None:
    chunks = [
        ChatCompletionChunk.model_validate(payload)
        for payload in payloads(encoder(include_usage=True)(full_stream(ev)))
    ]

    assert all(chunk.id == CID and chunk.model == MODEL for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 18


def test_error_payload_validates_as_an_openai_error_object(ev: Events) -> None:
    (payload,) = payloads(encoder().encode(ev.failed("upstream_stream_error", "it broke")))

    error = ErrorObject.model_validate(payload["error"])

    assert (error.code, error.message, error.type) == (
        "upstream_stream_error",
        "it broke",
        "server_error",
    )


def sdk_client(body: bytes, content_type: str) -> openai.OpenAI:
    """An ``openai`` client whose every request is answered with ``body``, without a
    socket."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    return openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


def test_the_openai_sdk_reads_the_stream_unchanged(ev: Events) -> None:
    client = sdk_client(encoder(include_usage=True)(full_stream(ev)), "text/event-stream")

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments: dict[int, str] = {}
    names: dict[int, str | None] = {}
    for c in chunks:
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            assert call.function is not None
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
            if call.id:
                names[call.index] = call.function.name
    assert text == "Let me check."
    assert names == {0: "search", 1: "now"}
    assert arguments == {0: '{"q":"x"}', 1: "{}"}
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 7)


def test_the_openai_sdk_raises_the_error_frame_as_an_api_error(ev: Events) -> None:
    enc = encoder()
    body = enc([ev.started(), ev.delta("par"), ev.failed("upstream_stream_error", "it broke")])
    client = sdk_client(body, "text/event-stream")

    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIError, match="it broke") as raised:
        received.extend(stream)

    assert len(received) == 2
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "upstream_stream_error"


# -- chat_completion -----------------------------------------------------------------------


def completion(events: list[Event]) -> dict[str, Any]:
    answer = chat_completion(events, CID, MODEL, CREATED)
    assert isinstance(answer, dict)
    return answer


def test_text_completion_is_assembled(ev: Events) -> None:
    answer = completion(
        [
            ev.started(),
            ev.delta("Hel"),
            ev.delta("lo"),
            ev.completed("Hello", 4, 2),
            ev.run_completed(),
        ]
    )

    assert answer == {
        "id": CID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def test_tool_calls_are_assembled_from_their_completed_events(ev: Events) -> None:
    answer = completion(
        [
            ev.started(),
            ev.call_started("call_a", "search"),
            ev.call_delta("call_a", '{"q":'),
            ev.call_started("call_b", "now"),
            ev.call_delta("call_a", '"x"}'),
            ev.call_completed("call_a", "search", '{"q":"x"}'),
            ev.call_completed("call_b", "now", ""),
            ev.completed("", 9, 3),
            ev.run_completed(),
        ]
    )

    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "search", "arguments": '{"q":"x"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}},
        ],
    }


def test_text_next_to_tool_calls_is_kept_as_content(ev: Events) -> None:
    answer = completion(
        [
            ev.started(),
            ev.delta("Checking."),
            ev.call_started("call_a", "now"),
            ev.call_completed("call_a", "now", "{}"),
            ev.completed("Checking."),
        ]
    )

    message = answer["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert len(message["tool_calls"]) == 1
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


def test_completion_without_text_or_tool_calls_has_empty_content(ev: Events) -> None:
    answer = completion([ev.started(), ev.completed(), ev.run_completed()])

    assert answer["choices"][0]["message"] == {"role": "assistant", "content": ""}
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_completion_without_a_completed_message_counts_zero_tokens(ev: Events) -> None:
    answer = completion([ev.started(), ev.delta("x")])

    assert answer["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda ev: ev.failed("upstream_stream_error", "it broke"),
            ("upstream_stream_error", "it broke"),
            id="message.failed",
        ),
        pytest.param(
            lambda ev: ev.run_failed("upstream_timeout", "too slow"),
            ("upstream_timeout", "too slow"),
            id="run.failed",
        ),
        pytest.param(
            lambda ev: ev.cancelled("shutdown"),
            ("cancelled", "the request was cancelled: shutdown"),
            id="run.cancelled",
        ),
    ],
)
def test_failed_completion_returns_code_and_message(
    ev: Events, make: Any, expected: tuple[str, str]
) -> None:
    events = [ev.started(), ev.delta("partial"), make(ev)]

    assert chat_completion(events, CID, MODEL, CREATED) == expected


def test_the_first_failure_is_the_one_reported(ev: Events) -> None:
    events = [ev.started(), ev.failed("first", "a"), ev.run_failed("second", "b")]

    assert chat_completion(events, CID, MODEL, CREATED) == ("first", "a")


@pytest.mark.parametrize("with_text", [True, False])
def test_completion_validates_as_an_openai_chat_completion(ev: Events, with_text: bool) -> None:
    events = [ev.started()]
    if with_text:
        events.append(ev.delta("Hi"))
    events += [
        ev.call_started("call_a", "now"),
        ev.call_completed("call_a", "now", "{}"),
        ev.completed("Hi" if with_text else "", 2, 1),
        ev.run_completed(),
    ]

    parsed = ChatCompletion.model_validate(completion(events))

    message = parsed.choices[0].message
    assert message.content == ("Hi" if with_text else None)
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "call_a"
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == 3


def test_the_openai_sdk_reads_the_completion_unchanged(ev: Events) -> None:
    answer = completion([ev.started(), ev.delta("Hello"), ev.completed("Hello", 4, 2)])
    client = sdk_client(json.dumps(answer).encode(), "application/json")

    parsed = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )

    assert parsed.choices[0].message.content == "Hello"
    assert parsed.choices[0].finish_reason == "stop"


@given(
    text=st.text(),
    model=st.text(min_size=1),
    completion_id=st.text(min_size=1),
    seq=st.integers(min_value=1, max_value=2**40),
)
@settings(max_examples=300)
def test_a_text_delta_frame_is_the_chunk_encoded_whole_whatever_the_strings(
    text: str, model: str, completion_id: str, seq: int
) -> None:
    """The text frames reuse the chunk's JSON around the text (the hot path); the bytes are
    those of encoding the whole chunk, also when the model or id contain JSON lookalikes."""
    encoder = ChatChunkEncoder(completion_id, model, 1700000000)
    delta = Event.create(seq, "run_x", EventType.MESSAGE_DELTA, 1.0, "model.1", {"delta": text})
    expected = b"id: %d\ndata: %s\n\n" % (
        seq,
        dumps(encoder._chunk({"content": text})),
    )
    assert encoder.encode(delta) == expected
    assert encoder.encode(delta) == expected  # and again, from the kept template


@pytest.mark.parametrize("model", ['"content":""', 'a"content":""b', "é\u2028\x00"])
def test_a_model_name_that_looks_like_the_content_field_does_not_confuse_the_template(
    model: str,
) -> None:
    encoder = ChatChunkEncoder("chatcmpl-1", model, 1)
    delta = Event.create(1, "run_x", EventType.MESSAGE_DELTA, 1.0, "model.1", {"delta": "hi"})
    chunk = json.loads(encoder.encode(delta).split(b"data: ", 1)[1])
    assert chunk["model"] == model
    assert chunk["choices"][0]["delta"] == {"content": "hi"}


# -- the step's finish reason ---------------------------------------------------------------

FINISH_REASONS = [
    pytest.param("length", False, "length", id="length"),
    pytest.param("length", True, "length", id="length-with-calls"),
    pytest.param("content_filter", False, "content_filter", id="content-filter"),
    pytest.param("content_filter", True, "content_filter", id="content-filter-with-calls"),
    pytest.param("stop", True, "tool_calls", id="calls-decide-tool-calls"),
    pytest.param("tool_calls", False, "stop", id="no-calls-decide-stop"),
    pytest.param("stop_sequence", False, "stop", id="stop-sequence-is-stop"),
    pytest.param("pause", False, "stop", id="another-reason-is-stop"),
]


def completed_with(ev: Events, finish_reason: str) -> Event:
    return ev(
        EventType.MESSAGE_COMPLETED,
        message_id="m",
        text="",
        usage={"input_tokens": 0, "output_tokens": 0},
        finish_reason=finish_reason,
    )


@pytest.mark.parametrize(("step_reason", "with_calls", "expected"), FINISH_REASONS)
def test_the_finish_chunk_says_length_and_content_filter_as_the_step_did(
    ev: Events, step_reason: str, with_calls: bool, expected: str
) -> None:
    enc = encoder()
    enc.encode(ev.started())
    if with_calls:
        enc.encode(ev.call_started("call_a", "now"))

    frame = enc.encode(completed_with(ev, step_reason))

    assert frame == chunk_frame(ev.seq, {}, expected)


@pytest.mark.parametrize(("step_reason", "with_calls", "expected"), FINISH_REASONS)
def test_the_completion_says_length_and_content_filter_as_the_step_did(
    ev: Events, step_reason: str, with_calls: bool, expected: str
) -> None:
    events = [ev.started()]
    if with_calls:
        events.append(ev.call_completed("call_a", "now", "{}"))
    events += [completed_with(ev, step_reason), ev.run_completed()]

    assert completion(events)["choices"][0]["finish_reason"] == expected


def test_the_openai_sdk_reads_a_length_finish() -> None:
    ev = Events()
    events = [ev.started(), ev.delta("Hel"), completed_with(ev, "length"), ev.run_completed()]
    body = encoder()(events)

    stream = sdk_client(body, "text/event-stream").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    reasons = [choice.finish_reason for chunk in stream for choice in chunk.choices]

    assert reasons[-1] == "length"
