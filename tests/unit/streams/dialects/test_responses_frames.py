"""The Responses dialect's frames (``streams/dialects/responses.py``): what
:meth:`ResponsesEncoder.__call__` sends is the SSE framing of what :meth:`translate` says, byte
for byte, text deltas (its hot path) included."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dialects.responses import ResponsesEncoder
from streams.dialects.sse import frame
from streams.events import Event, EventType, dumps

TEXT = st.text(alphabet=st.sampled_from(["a", "é", "%", '"', "\n", "\u2028", "d", "\\"]))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("delta"), st.sampled_from(["m1", "m%2", 'm"3']), TEXT),
        st.tuples(st.just("completed"), st.just(""), st.just("")),
        st.tuples(st.just("call"), st.sampled_from(["c1", "c2"]), st.just("")),
    ),
    max_size=30,
)


def _events(steps: list[tuple[str, str, str]]) -> list[Event]:
    events = []

    def add(kind: EventType, data: dict[str, Any]) -> None:
        events.append(Event.create(len(events) + 1, "run_x", kind, 1.0, "model.0", data))

    add(EventType.RUN_STARTED, {"model": "up"})
    for kind, key, text in steps:
        if kind == "delta":
            add(EventType.MESSAGE_DELTA, {"message_id": key, "delta": text})
        elif kind == "completed":
            add(EventType.MESSAGE_COMPLETED, {})
        else:
            add(EventType.TOOL_CALL_STARTED, {"call_id": key, "name": "f"})
    add(EventType.RUN_COMPLETED, {"usage": {"input_tokens": 1, "output_tokens": 2}})
    return events


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, batch=st.integers(1, 5), skip=st.integers(-1, 12))
def test_the_frames_sent_are_the_framing_of_the_translated_events(
    steps: list[tuple[str, str, str]], batch: int, skip: int
) -> None:
    events = _events(steps)
    sent, reference = ResponsesEncoder("run_x", model="up"), ResponsesEncoder("run_x", model="up")
    sent.skip_through(skip)
    expected = b""
    for event in events:
        items = [item for item in reference.translate(event) if item["sequence_number"] > skip]
        for index, item in enumerate(items):
            last = index == len(items) - 1  # only the last carries the native seq
            expected += frame(id=event.seq if last else None, event=item["type"], data=dumps(item))
    got = b"".join(sent(events[i : i + batch]) for i in range(0, len(events), batch))
    assert got == expected
    assert sent.response() == reference.response()
