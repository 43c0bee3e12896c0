"""The native dialect, pure: a run's events as they are, over SSE and the WebSocket.

An SSE frame carries the event's ``seq`` as ``id:`` so ``Last-Event-ID`` resumes, and the
whole event on one ``data:`` line (its JSON holds no raw line break). Frames are made by
:mod:`streams.dialects.sse`, as every dialect's are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.dialects.sse import comment_frame, frame
from streams.events import Event, dumps
from streams.spec import RunSpec

__all__ = [
    "SSE_PING",
    "encode_sse",
    "encode_sse_batch",
    "encode_sse_comment",
    "encode_stream_error",
    "encode_ws_ack",
    "encode_ws_error",
    "encode_ws_event",
    "encoder_for_run",
]

SSE_PING = comment_frame("ping")


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
    return frame(
        event="error", data=dumps({"type": "stream.error", "code": code, "message": message})
    )


def encode_sse_comment(text: str) -> bytes:
    """A comment frame (ignored by clients, keeps proxies from timing out).

    Every line of ``text`` becomes its own comment line, so no text can inject a field.
    """
    return comment_frame(text)


def encoder_for_run(run_id: str, spec: RunSpec) -> Callable[[list[Event]], bytes]:
    """The native encoder for any run: it holds no state, so every stream shares one."""
    return encode_sse_batch


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
