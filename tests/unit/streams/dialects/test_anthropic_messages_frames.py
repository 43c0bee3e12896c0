"""The Anthropic Messages dialect's frames (``streams/dialects/anthropic_messages.py``): what
:meth:`MessagesEncoder.__call__` sends is the SSE framing of what :meth:`translate` says, byte
for byte, text deltas (its hot path) included, however the events are batched."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dialects.anthropic_messages import MessagesEncoder, error_frame
from streams.dialects.sse import frame
from streams.events import Event, EventType, dumps

TEXT = st.text(alphabet=st.sampled_from(["a", "é", "%", '"', "\n", "\u2028", "d", "\\"]))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("delta"), TEXT),
        st.tuples(st.just("thinking"), TEXT),
        st.tuples(st.just("signature"), TEXT),
        st.tuples(st.just("completed"), st.just("")),
        st.tuples(st.just("call"), st.sampled_from(["c1", "c2"])),
        st.tuples(st.just("call_done"), st.sampled_from(["c1", "c2"])),
    ),
    max_size=30,
)


def _events(steps: list[tuple[str, str]]) -> list[Event]:
    events = []

    def add(kind: EventType, data: dict[str, Any]) -> None:
        events.append(Event.create(len(events) + 1, "run_x", kind, 1.0, "model.0", data))

    add(EventType.RUN_STARTED, {"model": "up%s"})
    for kind, value in steps:
        if kind == "delta":
            add(EventType.MESSAGE_DELTA, {"message_id": "m", "delta": value})
        elif kind == "thinking":
            add(EventType.REASONING_DELTA, {"message_id": "m", "delta": value})
        elif kind == "signature":
            add(EventType.REASONING_SIGNATURE, {"message_id": "m", "signature": value})
        elif kind == "completed":
            add(EventType.MESSAGE_COMPLETED, {"message_id": "m"})
        elif kind == "call":
            add(EventType.TOOL_CALL_STARTED, {"call_id": value, "name": "f"})
        else:
            add(EventType.TOOL_CALL_COMPLETED, {"call_id": value, "name": "f", "arguments": "{}"})
    add(EventType.RUN_COMPLETED, {"usage": {"input_tokens": 1, "output_tokens": 2}})
    return events


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, batch=st.integers(1, 5))
def test_the_frames_sent_are_the_framing_of_the_translated_events(
    steps: list[tuple[str, str]], batch: int
) -> None:
    events = _events(steps)
    sent = MessagesEncoder("run_x", model="", client_tools=["f"])
    reference = MessagesEncoder("run_x", model="", client_tools=["f"])
    expected = b""
    for event in events:
        items = reference.translate(event)
        for index, item in enumerate(items):
            last = index == len(items) - 1  # only the last carries the native seq
            expected += frame(id=event.seq if last else None, event=item["type"], data=dumps(item))
    got = b"".join(sent(events[i : i + batch]) for i in range(0, len(events), batch))
    assert got == expected
    assert sent.message() == reference.message()


def test_a_stream_ended_for_the_gateway_s_own_reason_is_an_error_event() -> None:
    assert error_frame("store_unavailable", "Redis is gone") == (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"api_error",'
        b'"message":"store_unavailable: Redis is gone"}}\n\n'
    )
