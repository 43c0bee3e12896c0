"""The one disconnect table (``gateway/streaming/disconnect.py``): every way a reader is
let go has all its columns, valid close codes, and the labels and codes the metrics and
clients already know."""

from __future__ import annotations

import pytest

from gateway.streaming import disconnect
from gateway.streaming.disconnect import DISCONNECTS, Disconnect

# Codes an endpoint may send in a close frame (RFC 6455 7.4.1; 1004-1006 and 1015 are never
# sent), and the range left to applications (7.4.2).
SENDABLE_STANDARD_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013}
APPLICATION_CODES = range(4000, 5000)
MAX_CLOSE_REASON_BYTES = 123  # a control frame's 125 bytes, less the code's 2


def rows() -> dict[str, Disconnect]:
    return {
        name: value for name, value in vars(disconnect).items() if isinstance(value, Disconnect)
    }


def test_every_row_is_in_the_table() -> None:
    assert set(rows().values()) == set(DISCONNECTS)
    assert len(DISCONNECTS) == len(set(DISCONNECTS))


@pytest.mark.parametrize("row", DISCONNECTS, ids=lambda row: row.doc[:30])
def test_every_row_has_a_label_a_doc_and_a_channel(row: Disconnect) -> None:
    assert row.label
    assert row.doc.endswith(".")
    assert row.sse is not None or row.ws_code is not None


@pytest.mark.parametrize("row", [r for r in DISCONNECTS if r.ws_code is not None])
def test_a_websocket_close_code_is_standard_or_an_application_s(row: Disconnect) -> None:
    assert row.ws_code in SENDABLE_STANDARD_CODES or row.ws_code in APPLICATION_CODES


@pytest.mark.parametrize("row", [r for r in DISCONNECTS if r.ws_code is not None])
def test_a_websocket_close_reason_fits_in_the_close_frame(row: Disconnect) -> None:
    assert len(row.ws_reason_for("store_unavailable").encode()) <= MAX_CLOSE_REASON_BYTES


def test_a_row_that_never_ends_a_websocket_has_no_close_code() -> None:
    with pytest.raises(ValueError, match="never closed"):
        _ = disconnect.DONE.ws_close_code


def test_the_reason_text_names_the_refusing_error_s_code() -> None:
    assert disconnect.REFUSED.ws_reason_for("limit_exceeded") == "limit_exceeded"
    assert disconnect.SLOW.ws_reason_for("ignored") == "slow reader: resume with subscribe/after"


def test_every_row_is_drawn_in_the_docstring() -> None:
    assert disconnect.__doc__ is not None
    for name in rows():
        assert f"``{name}``" in disconnect.__doc__


def test_the_labels_and_codes_are_the_ones_metrics_and_clients_know() -> None:
    assert {name: (row.label, row.ws_code) for name, row in rows().items()} == {
        "DONE": ("done", None),
        "ENDED": ("ended", None),
        "ERROR": ("error", None),
        "CLIENT": ("client", 1000),
        "SLOW": ("slow", 1013),
        "SHUTDOWN": ("shutdown", 1012),
        "REFUSED": ("refused", 1013),
        "UNAUTHORIZED": ("unauthorized", 4401),
        "AUTH_FAILURES": ("unauthorized", 4401),
        "FOREIGN_ORIGIN": ("forbidden", 4403),
        "FOREIGN_HOST": ("forbidden", 1008),
    }
