"""Specification of the incremental Server-Sent Events decoder (``streams/upstream/sse.py``),
following the WHATWG event-stream parsing rules: whatever the line endings, and wherever the
upstream splits its bytes, the same messages come out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.upstream.sse import SSEDecoder, SSEMessage


def decode(*chunks: bytes) -> list[SSEMessage]:
    decoder = SSEDecoder()
    messages: list[SSEMessage] = []
    for chunk in chunks:
        messages.extend(decoder.feed(chunk))
    return messages


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
