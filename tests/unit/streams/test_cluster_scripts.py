"""The arguments of the script that writes a batch of one run's events
(``streams/cluster/scripts.py``), byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from streams.cluster.scripts import WRITE_EVENTS, WRITE_EVENTS_SHA, write_events_args
from streams.events import Event, EventType


def event(seq: int, type: EventType = EventType.MESSAGE_DELTA) -> Event:
    return Event(seq, "run_1", type, 1.5, None, {}, b'{"seq":%d}' % seq)


@pytest.mark.parametrize(
    ("events", "run_fields", "producers", "maxlen", "ttl", "expected"),
    [
        # Events only: MAXLEN, no TTL, no fields, no producers, then seq and JSON each.
        (
            [event(1), event(2)],
            [],
            {},
            1000,
            0,
            [b"1000", b"0", b"0", b"0", b"1", b'{"seq":1}', b"2", b'{"seq":2}'],
        ),
        # The run's fields and its producers come before the events, counted in pairs.
        (
            [event(7, EventType.RUN_COMPLETED)],
            [b"last_seq", b"7", b"status", b"completed"],
            {"model.1": b"[0,{}]", "tool.2": b"[1,{}]"},
            50,
            30,
            [
                *(b"50", b"30", b"2", b"2"),
                *(b"last_seq", b"7", b"status", b"completed"),
                *(b"model.1", b"[0,{}]", b"tool.2", b"[1,{}]"),
                *(b"7", b'{"seq":7}'),
            ],
        ),
        # A registration with no event yet: fields alone.
        (
            [],
            [b"owner", b"", b"last_seq", b"0"],
            {},
            10,
            0,
            [b"10", b"0", b"2", b"0", b"owner", b"", b"last_seq", b"0"],
        ),
        # A producer id is UTF-8.
        (
            [],
            [],
            {"tool.é": b"[0,{}]"},
            1,
            0,
            [b"1", b"0", b"0", b"1", "tool.é".encode(), b"[0,{}]"],
        ),
    ],
)
def test_the_arguments_are_counts_then_fields_then_producers_then_events(
    events: list[Event],
    run_fields: list[bytes],
    producers: dict[str, bytes],
    maxlen: int,
    ttl: int,
    expected: list[bytes],
) -> None:
    assert write_events_args(events, run_fields, producers, maxlen, ttl) == expected


def test_the_run_fields_must_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="alternates"):
        write_events_args([], [b"status"], {}, 1, 0)


def test_the_sha_is_the_script_s() -> None:
    assert hashlib.sha1(WRITE_EVENTS.encode()).hexdigest() == WRITE_EVENTS_SHA
