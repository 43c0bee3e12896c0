"""Pure encoders from events to wire bytes, one per dialect. No I/O here.

SSE frames use LF line endings only (AG-UI's client splits on ``\\n\\n``), carry the event's
``seq`` as ``id:`` so ``Last-Event-ID`` resumes, and put the whole event on one ``data:`` line
(JSON never contains a raw newline).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.events import Event, dumps

SSE_PING = b": ping\n\n"


def encode_sse(event: Event) -> bytes:
    """One SSE frame: ``id: <seq>\\ndata: <json>\\n\\n`` (made once per event, then reused
    by every reader)."""
    return event.sse_frame()


def encode_sse_batch(events: Iterable[Event]) -> bytes:
    """Several frames as one write."""
    return b"".join([event.sse_frame() for event in events])


def encode_stream_error(code: str, message: str) -> bytes:
    """``event: error`` with ``{"type": "stream.error", "code", "message"}``: the stream ends
    for a reason of the gateway's. No ``id:`` line, so a client that resumes sends the id of
    the last real event."""
    body = dumps({"type": "stream.error", "code": code, "message": message})
    return b"event: error\ndata: " + body + b"\n\n"


def encode_sse_comment(text: str) -> bytes:
    """A comment frame (ignored by clients, keeps proxies from timing out).

    Every line of ``text`` becomes its own comment line, so no text can inject a field.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return b"".join(b": %s\n" % line.encode() for line in lines) + b"\n"


def encode_ws_event(event: Event) -> str:
    """A WebSocket text message for a run event (it carries ``run_id`` and ``seq``); made once
    per event, then reused by every reader."""
    return event.text()


def encode_ws_ack(command_id: Any, **fields: Any) -> str:
    """Answer to a client command that succeeded."""
    return dumps({"type": "ack", "id": command_id, **fields}).decode()


def encode_ws_error(command_id: Any, code: str, message: str, **fields: Any) -> str:
    """Answer to a client command that failed; the session goes on."""
    return dumps(
        {"type": "error", "id": command_id, "code": code, "message": message, **fields}
    ).decode()
