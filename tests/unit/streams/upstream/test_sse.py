"""Specification of the incremental Server-Sent Events decoder (``streams/upstream/sse.py``),
following the WHATWG event-stream parsing rules: whatever the line endings, and wherever the
upstream splits its bytes, the same messages come out. A line, or a message's data, longer
than the decoder's limits is an error as soon as it is seen, and a long line costs time
linear in its length."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streams.upstream.sse import (
    MAX_EVENT_BYTES,
    MAX_LINE_BYTES,
    SSEDecoder,
    SSELimitError,
    SSEMessage,
)


def decode(*chunks: bytes) -> list[SSEMessage]:
    decoder = SSEDecoder()
    messages: list[SSEMessage] = []
    for chunk in chunks:
        messages.extend(decoder.feed(chunk))
    return messages


def outcome(
    chunks: list[bytes], max_line_bytes: int, max_event_bytes: int
) -> tuple[list[SSEMessage], str | None]:
    """The messages decoded from ``chunks`` under the limits, and the kind of limit passed
    (``None``: none). Messages a chunk completed before the limit are on the error."""
    decoder = SSEDecoder(max_line_bytes=max_line_bytes, max_event_bytes=max_event_bytes)
    messages: list[SSEMessage] = []
    for chunk in chunks:
        try:
            messages.extend(decoder.feed(chunk))
        except SSELimitError as exc:
            return [*messages, *exc.messages], exc.kind
    return messages, None


def split_at(stream: bytes, positions: list[int]) -> list[bytes]:
    cuts = sorted({0, len(stream), *(p % (len(stream) + 1) for p in positions)})
    return [stream[a:b] for a, b in itertools.pairwise(cuts)]


# -- one feed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data: hello\n\n", [SSEMessage("hello")], id="lf"),
        pytest.param(b"data: hello\r\n\r\n", [SSEMessage("hello")], id="crlf"),
        pytest.param(b"data: hello\r\r", [SSEMessage("hello")], id="cr"),
        pytest.param(
            b"data: a\r\n\ndata: b\r\rdata: c\n\r\n",
            [SSEMessage("a"), SSEMessage("b"), SSEMessage("c")],
            id="mixed-line-endings",
        ),
        pytest.param(
            b"data: a\n\ndata: b\n\n", [SSEMessage("a"), SSEMessage("b")], id="two-messages"
        ),
    ],
)
def test_every_line_ending_ends_a_line(stream: bytes, expected: list[SSEMessage]) -> None:
    assert decode(stream) == expected


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b": ping\n\n", id="comment-then-blank"),
        pytest.param(b":\n\n", id="empty-comment"),
        pytest.param(b": data: x\n\n", id="comment-that-looks-like-data"),
    ],
)
def test_comment_lines_are_ignored(stream: bytes) -> None:
    assert decode(stream) == []


def test_comment_between_data_lines_does_not_interrupt_the_message() -> None:
    assert decode(b"data: a\n: keep-alive\ndata: b\n\n") == [SSEMessage("a\nb")]


def test_multiple_data_lines_are_joined_with_line_feeds() -> None:
    assert decode(b"data: a\ndata: b\ndata: c\n\n") == [SSEMessage("a\nb\nc")]


def test_empty_data_lines_keep_their_place_in_the_joined_data() -> None:
    assert decode(b"data: a\ndata:\ndata: b\n\n") == [SSEMessage("a\n\nb")]


def test_event_and_id_fields_are_carried_on_the_message() -> None:
    assert decode(b"event: delta\nid: 7\ndata: x\n\n") == [SSEMessage("x", "delta", "7")]


def test_message_without_event_field_has_type_message() -> None:
    assert decode(b"data: x\n\n") == [SSEMessage("x", "message", None)]


def test_event_type_is_reset_after_each_dispatch() -> None:
    assert decode(b"event: delta\ndata: a\n\ndata: b\n\n") == [
        SSEMessage("a", "delta"),
        SSEMessage("b", "message"),
    ]


def test_last_event_id_persists_across_messages() -> None:
    assert decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n") == [
        SSEMessage("a", id="1"),
        SSEMessage("b", id="1"),
        SSEMessage("c", id="2"),
    ]


def test_id_with_empty_value_resets_the_last_event_id_to_empty() -> None:
    assert decode(b"id: 1\ndata: a\n\nid\ndata: b\n\n") == [
        SSEMessage("a", id="1"),
        SSEMessage("b", id=""),
    ]


def test_id_containing_nul_is_ignored() -> None:
    assert decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n") == [
        SSEMessage("a", id="1"),
        SSEMessage("b", id="1"),
    ]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data\n\n", [SSEMessage("")], id="data-no-colon-is-empty-data"),
        pytest.param(b"data\ndata\n\n", [SSEMessage("\n")], id="two-empty-data-lines"),
        pytest.param(b"event\ndata: x\n\n", [SSEMessage("x", "message")], id="event-no-colon"),
        pytest.param(b"bogus\ndata: x\n\n", [SSEMessage("x")], id="unknown-field-no-colon"),
    ],
)
def test_line_without_colon_is_a_field_name_with_empty_value(
    stream: bytes, expected: list[SSEMessage]
) -> None:
    assert decode(stream) == expected


@pytest.mark.parametrize(
    ("stream", "data"),
    [
        pytest.param(b"data:x\n\n", "x", id="no-space"),
        pytest.param(b"data: x\n\n", "x", id="one-space-removed"),
        pytest.param(b"data:  x\n\n", " x", id="only-first-space-removed"),
        pytest.param(b"data: x \n\n", "x ", id="trailing-space-kept"),
        pytest.param(b"data: a:b: c\n\n", "a:b: c", id="later-colons-kept"),
        pytest.param(b"data:\tx\n\n", "\tx", id="tab-is-not-a-space"),
    ],
)
def test_field_value_loses_only_one_leading_space(stream: bytes, data: str) -> None:
    assert decode(stream) == [SSEMessage(data)]


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"retry: 1000\ndata: x\n\n", id="retry"),
        pytest.param(b"foo: bar\ndata: x\n\n", id="unknown"),
        pytest.param(b"Data: y\ndata: x\n\n", id="names-are-case-sensitive"),
    ],
)
def test_unknown_fields_are_ignored(stream: bytes) -> None:
    assert decode(stream) == [SSEMessage("x")]


def test_byte_order_mark_at_stream_start_is_skipped() -> None:
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [SSEMessage("x")]


def test_byte_order_mark_split_across_feeds_is_skipped() -> None:
    assert decode(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [SSEMessage("x")]


def test_byte_order_mark_later_in_the_stream_is_part_of_the_line() -> None:
    # "\ufeffdata" is not the field name "data": the line is an unknown field.
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [SSEMessage("a")]


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"\n", id="one-blank-line"),
        pytest.param(b"\n\n\n", id="several-blank-lines"),
        pytest.param(b"\r\n\r\n", id="crlf-blank-lines"),
        pytest.param(b"event: delta\n\n", id="event-without-data"),
        pytest.param(b"id: 3\n\n", id="id-without-data"),
    ],
)
def test_blank_line_with_no_data_dispatches_nothing(stream: bytes) -> None:
    assert decode(stream) == []


def test_event_type_without_data_does_not_leak_into_the_next_message() -> None:
    assert decode(b"event: delta\n\ndata: x\n\n") == [SSEMessage("x", "message")]


def test_id_without_data_still_sets_the_last_event_id() -> None:
    assert decode(b"id: 3\n\ndata: x\n\n") == [SSEMessage("x", id="3")]


def test_unterminated_message_is_not_dispatched() -> None:
    assert decode(b"data: x\n") == []
    assert decode(b"data: x") == []


# -- several feeds -------------------------------------------------------------------------


def test_message_is_dispatched_by_the_feed_that_completes_it() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"data: he") == []
    assert decoder.feed(b"llo\n") == []
    assert decoder.feed(b"\n") == [SSEMessage("hello")]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    # Were the "\n" a second line ending, the blank line would dispatch "a" on its own.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEMessage("a\nb")]


def test_crlf_split_with_an_empty_feed_in_between_is_one_line_ending() -> None:
    assert decode(b"data: a\r", b"", b"\ndata: b\n\n") == [SSEMessage("a\nb")]


def test_cr_at_feed_end_followed_by_cr_is_a_blank_line() -> None:
    assert decode(b"data: a\r", b"\rdata: b\r\r") == [SSEMessage("a"), SSEMessage("b")]


def test_cr_at_feed_end_dispatches_on_the_next_line_ending() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"data: a\r\r") == [SSEMessage("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEMessage("b")]


MULTIBYTE = "data: h\u00e9llo \u20ac \U0001f600 \u4e2d\n\n".encode()


@pytest.mark.parametrize("cut", range(1, len(MULTIBYTE)))
def test_utf8_sequence_split_across_feeds_is_decoded_whole(cut: int) -> None:
    assert decode(MULTIBYTE[:cut], MULTIBYTE[cut:]) == [
        SSEMessage("h\u00e9llo \u20ac \U0001f600 \u4e2d")
    ]


def test_utf8_sequence_fed_one_byte_at_a_time_is_decoded_whole() -> None:
    assert decode(*(bytes([b]) for b in MULTIBYTE)) == [
        SSEMessage("h\u00e9llo \u20ac \U0001f600 \u4e2d")
    ]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert decode(b"data: a\xffb\n\n") == [SSEMessage("a\ufffdb")]


# -- limits --------------------------------------------------------------------------------

LINE = 16  # bytes a line may have in these tests: b"data: 0123456789" is one of exactly 16


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"data: 0123456789\n\n"], ([SSEMessage("0123456789")], None), id="16-bytes"),
        pytest.param([b"data: 0123456789a\n\n"], ([], "line"), id="17-bytes"),
        pytest.param([b"data: 0123456789a"], ([], "line"), id="17-bytes-before-its-end"),
        pytest.param([b"data: 01234", b"5678", b"9a"], ([], "line"), id="17-bytes-in-pieces"),
        pytest.param(
            [b"data: 0123456789\r\n\r\n"], ([SSEMessage("0123456789")], None), id="crlf-not-counted"
        ),
        pytest.param(
            [b"data: 0123456789\r", b"\n\r\n"],
            ([SSEMessage("0123456789")], None),
            id="split-crlf-not-counted",
        ),
        pytest.param(
            [b"\xef\xbb\xbfdata: 0123456789\n\n"],
            ([SSEMessage("0123456789")], None),
            id="bom-not-counted",
        ),
        pytest.param(
            [b"\xef\xbb\xbfdata: 0123456789", b"\n\n"],
            ([SSEMessage("0123456789")], None),
            id="bom-not-counted-before-the-line-ends",
        ),
        pytest.param(
            ["data: \u00e9\u00e9\u00e9\u00e9\u00e9\n\n".encode()],
            ([SSEMessage("\u00e9" * 5)], None),
            id="16-bytes-of-11-characters",
        ),
        pytest.param(
            ["data: \u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\n\n".encode()],
            ([], "line"),
            id="18-bytes-of-12-characters",
        ),
        pytest.param([b": 0123456789abcde\n"], ([], "line"), id="a-comment-is-a-line-too"),
        pytest.param([b"event: 0123456789a\n"], ([], "line"), id="any-field-is-a-line-too"),
        pytest.param(
            [b"data: a\n\ndata: 0123456789a\n\n"],
            ([SSEMessage("a")], "line"),
            id="messages-before-it-in-its-chunk-are-kept",
        ),
        pytest.param(
            [b"data: a\n\ndata: 0123456789a"],
            ([SSEMessage("a")], "line"),
            id="messages-before-it-in-its-chunk-are-kept-before-its-end",
        ),
        pytest.param(
            [b"data: 0123456789\n" * 3 + b"\n"],
            ([SSEMessage("\n".join(["0123456789"] * 3))], None),
            id="the-limit-is-per-line",
        ),
    ],
)
def test_a_line_longer_than_the_limit_is_an_error(
    chunks: list[bytes], expected: tuple[list[SSEMessage], str | None]
) -> None:
    assert outcome(chunks, max_line_bytes=LINE, max_event_bytes=1000) == expected


@pytest.mark.parametrize(
    ("chunks", "max_event_bytes", "expected"),
    [
        pytest.param(
            [b"data: 0123\ndata: 4567\n\n"],
            9,
            ([SSEMessage("0123\n4567")], None),
            id="9-bytes-with-the-line-feed",
        ),
        pytest.param([b"data: 0123\ndata: 4567\n\n"], 8, ([], "event"), id="10-bytes"),
        pytest.param(
            [b"data: 0123\ndata: 4567"], 8, ([], None), id="a-line-counts-once-it-has-ended"
        ),
        pytest.param([b"data: 0123\ndata: 4567\n"], 8, ([], "event"), id="before-it-dispatches"),
        pytest.param([b"data\n" * 5 + b"\n"], 4, ([SSEMessage("\n" * 4)], None), id="empty-lines"),
        pytest.param([b"data\n" * 6], 4, ([], "event"), id="one-empty-line-too-many"),
        pytest.param(
            [b"data: 01234567\n\n" * 3],
            8,
            ([SSEMessage("01234567")] * 3, None),
            id="the-limit-is-per-message",
        ),
        pytest.param(
            [b"data: a\n\ndata: 0123\ndata: 4567\n"],
            8,
            ([SSEMessage("a")], "event"),
            id="messages-before-it-in-its-chunk-are-kept",
        ),
        pytest.param(
            [b"data: 0123\n: comment\nevent: x\nid: 1\ndata: 456\n\n"],
            8,
            ([SSEMessage("0123\n456", "x", "1")], None),
            id="only-data-counts",
        ),
    ],
)
def test_a_message_with_more_data_than_the_limit_is_an_error(
    chunks: list[bytes], max_event_bytes: int, expected: tuple[list[SSEMessage], str | None]
) -> None:
    assert outcome(chunks, max_line_bytes=1000, max_event_bytes=max_event_bytes) == expected


def test_by_default_a_line_may_have_1_mib() -> None:
    line = b"data: " + b"x" * (MAX_LINE_BYTES - 6)

    assert MAX_LINE_BYTES == 1024 * 1024
    assert decode(line + b"\n\n") == [SSEMessage("x" * (MAX_LINE_BYTES - 6))]
    with pytest.raises(SSELimitError, match=r"an event stream line longer than 1048576 bytes"):
        decode(line + b"x")


def test_by_default_a_message_may_have_4_mib_of_data() -> None:
    lines = [b"data: " + b"x" * (MAX_LINE_BYTES - 6)] * 4
    data = b"x" * (MAX_LINE_BYTES - 6)
    # Four lines of data and three line feeds: 4 MiB less 21 bytes; a fifth line is too many.
    assert MAX_EVENT_BYTES == 4 * 1024 * 1024
    assert decode(b"\n".join(lines) + b"\n\n") == [SSEMessage("\n".join([data.decode()] * 4))]
    with pytest.raises(SSELimitError, match=r"an event's data longer than 4194304 bytes"):
        decode(b"\n".join(lines) + b"\ndata: " + b"x" * 22 + b"\n")


# -- a long line costs time linear in its length --------------------------------------------


def bytes_searched(work: Callable[[], Any]) -> int:
    """The total length of the bytes and strings whose methods (split, find, decode, …)
    ``work`` calls: a decoder that searches what it holds again with every chunk makes
    this grow with the square of a line's length."""
    total = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal total
        if event == "c_call" and isinstance(getattr(arg, "__self__", None), bytes | str):
            total += len(arg.__self__)

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return total


@pytest.mark.parametrize("size", [64 * 1024, 512 * 1024])
def test_a_long_line_fed_in_small_chunks_is_searched_a_bounded_number_of_times(
    size: int,
) -> None:
    stream = b"data: " + b"x" * size + b"\n\n"
    chunks = [stream[i : i + 64] for i in range(0, len(stream), 64)]
    messages: list[SSEMessage] = []

    def feed_all() -> None:
        decoder = SSEDecoder()
        for chunk in chunks:
            messages.extend(decoder.feed(chunk))

    searched = bytes_searched(feed_all)

    assert messages == [SSEMessage("x" * size)]
    assert searched <= 8 * len(stream)


# -- property: splits never matter ---------------------------------------------------------

_LINE_CHARS = st.characters(exclude_characters="\r\n", codec="utf-8")


@dataclass(frozen=True)
class _Spec:
    data_lines: list[str]
    event: str | None
    id: str | None


_specs = st.builds(
    _Spec,
    data_lines=st.lists(st.text(_LINE_CHARS, max_size=12), min_size=1, max_size=3),
    event=st.none() | st.text(_LINE_CHARS, max_size=8),
    id=st.none() | st.text(st.characters(exclude_characters="\r\n\0", codec="utf-8"), max_size=6),
)


@st.composite
def _event_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEMessage]]:
    specs = draw(st.lists(_specs, max_size=5))
    endings = st.sampled_from(["\n", "\r\n", "\r"])
    text = "\ufeff" if draw(st.booleans()) else ""
    expected: list[SSEMessage] = []
    last_id: str | None = None
    for spec in specs:
        lines: list[str] = []
        if draw(st.booleans()):
            lines.append(": ping")
        if spec.id is not None:
            lines.append(f"id: {spec.id}")
            last_id = spec.id
        if spec.event is not None:
            lines.append(f"event: {spec.event}")
        lines.extend(f"data: {line}" for line in spec.data_lines)
        lines.append("")  # the blank line that dispatches
        for line in lines:
            # After a lone "\r", a "\n" would pair with it: a blank line then ends in "\r".
            ending = "\r" if not line and text.endswith("\r") else draw(endings)
            text += line + ending
        expected.append(SSEMessage("\n".join(spec.data_lines), spec.event or "message", last_id))
    return text.encode(), expected


@given(_event_streams())
@settings(max_examples=150, deadline=None)
def test_one_feed_yields_the_encoded_messages(case: tuple[bytes, list[SSEMessage]]) -> None:
    stream, expected = case

    assert decode(stream) == expected


@given(_event_streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@settings(max_examples=300, deadline=None)
def test_splitting_the_bytes_anywhere_yields_the_same_messages(
    case: tuple[bytes, list[SSEMessage]], positions: list[int]
) -> None:
    stream, expected = case

    assert decode(*split_at(stream, positions)) == decode(stream) == expected


@given(
    _event_streams(),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=60),
)
@settings(max_examples=300, deadline=None)
def test_splitting_the_bytes_anywhere_under_limits_gives_the_same_outcome(
    case: tuple[bytes, list[SSEMessage]], positions: list[int], max_line: int, max_event: int
) -> None:
    stream, expected = case

    whole = outcome([stream], max_line, max_event)
    messages, limit = whole
    event(f"limit passed: {limit}")

    assert outcome(split_at(stream, positions), max_line, max_event) == whole
    assert messages == expected[: len(messages)]  # the messages before the limit, in full
