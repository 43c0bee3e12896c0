"""Specification of the dialect registry (``streams/dialects/registry.py``): every dialect
encodes a run. (That ``?format=`` takes exactly its names: tests/unit/gateway/faces.)"""

from __future__ import annotations

from typing import Any

import pytest

from streams.dialects.registry import (
    DEFAULT_DIALECT,
    DIALECTS,
    PrimableEncoder,
    describe_dialects,
)
from streams.events import Event, EventType
from tests.support import run_spec

SPEC = run_spec("hi")


def sample_run() -> list[Event]:
    """A short agent run: one message of reasoning (signed, redacted) and two deltas, then
    the end."""
    thinking = {"type": "thinking", "thinking": "Say hello.", "signature": "c2ln"}
    payloads: list[tuple[EventType, dict[str, Any]]] = [
        (EventType.RUN_STARTED, {"kind": "agent", "model": "demo", "tools": []}),
        (EventType.MESSAGE_STARTED, {"message_id": "m", "step": 1}),
        (EventType.REASONING_DELTA, {"message_id": "m", "delta": "Say hello."}),
        (EventType.REASONING_SIGNATURE, {"message_id": "m", "signature": "c2ln"}),
        (EventType.REASONING_REDACTED, {"message_id": "m", "data": "EmwK"}),
        (EventType.MESSAGE_DELTA, {"message_id": "m", "delta": "hel"}),
        (EventType.MESSAGE_DELTA, {"message_id": "m", "delta": "lo"}),
        (
            EventType.MESSAGE_COMPLETED,
            {
                "message_id": "m",
                "text": "hello",
                "usage": {},
                "finish_reason": "stop",
                "reasoning": [thinking, {"type": "redacted_thinking", "data": "EmwK"}],
            },
        ),
        (
            EventType.RUN_COMPLETED,
            {"output": "hello", "steps": 1, "stop_reason": "answer", "finish_reason": "stop"},
        ),
    ]
    return [
        Event.create(seq, "run_1", type_, 1.5, None, data)
        for seq, (type_, data) in enumerate(payloads, start=1)
    ]


@pytest.mark.parametrize("name", list(DIALECTS))
def test_every_dialect_encodes_a_run_into_sse_frames_ending_at_its_last_seq(name: str) -> None:
    events = sample_run()
    encoder = DIALECTS[name].encoder_for("run_1", SPEC)

    body = b"".join(encoder([event]) for event in events)

    assert body.endswith(b"\n\n") and b"\r" not in body
    ids = [line for line in body.split(b"\n") if line.startswith(b"id: ")]
    assert ids[-1] == b"id: %d" % events[-1].seq


@pytest.mark.parametrize("name", list(DIALECTS))
def test_a_primed_encoder_sends_what_a_fresh_one_sends_after_the_same_events(name: str) -> None:
    events = sample_run()
    fresh = DIALECTS[name].encoder_for("run_1", SPEC)
    fresh(events[:3])
    resumed = DIALECTS[name].encoder_for("run_1", SPEC)
    if isinstance(resumed, PrimableEncoder):
        resumed.prime(events[:3])

    assert resumed(events[3:]) == fresh(events[3:])


def test_the_default_format_is_a_registered_name_and_every_dialect_is_described() -> None:
    assert DEFAULT_DIALECT in DIALECTS
    assert all(d.description in describe_dialects() for d in DIALECTS.values())
    assert all(name == d.name for name, d in DIALECTS.items())
