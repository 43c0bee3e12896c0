"""What the dialects share about a retracted message (``message.retracted``, a model group
restarting a step on another route after its output had started).

A *streamed* answer cannot take back what a client has read, so a dialect either carries the
retraction (native, AG-UI's ``RUN_ERROR``) or ends its stream with an error: its encoder is
then an :class:`EndingEncoder` whose ``ended`` is true, and the SSE response ends with that
batch (``gateway.streaming.sse``) rather than staying open while the run goes on.

A *non-streamed* answer is made once the run has ended, so it is simply the answer of the
last attempt: :func:`without_retracted` drops what every retraction voided before the
answer is assembled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from streams.events import Event, EventType

__all__ = ["RETRACTED_CODE", "EndingEncoder", "retracted_message", "without_retracted"]

# The error code a dialect that cannot retract ends its stream with.
RETRACTED_CODE = "output_retracted"

# The events whose output a retraction voids: the message's own, and those of its calls.
_MESSAGE_OUTPUT = frozenset(
    {
        EventType.MESSAGE_DELTA,
        EventType.REASONING_DELTA,
        EventType.REASONING_SIGNATURE,
        EventType.REASONING_REDACTED,
        EventType.TOOL_CALL_STARTED,
    }
)
_CALL_OUTPUT = frozenset({EventType.TOOL_CALL_DELTA, EventType.TOOL_CALL_COMPLETED})


@runtime_checkable
class EndingEncoder(Protocol):
    """An encoder that may end its stream before the run ends (a retraction it cannot
    carry): once ``ended``, it encodes nothing more, and the stream's body ends after the
    batch that ended it."""

    @property
    def ended(self) -> bool:
        """Whether the stream has said its last: nothing more is encoded."""

    def __call__(self, events: list[Event], /) -> bytes: ...


def retracted_message(reason: object) -> str:
    """The message of the error a dialect that cannot take back text sends for a
    ``message.retracted`` with ``reason``."""
    return (
        f"the route failed after output started ({reason}) and the answer is being restarted "
        "on another route; this dialect cannot take back text already sent"
    )


def without_retracted(events: Iterable[Event]) -> list[Event]:
    """``events`` as if every retracted output had never been: for each ``message.retracted``,
    the message's output before it (text, reasoning, tool calls and their arguments) is
    dropped, and so is the retraction itself. Everything else (``message.started``, the
    reroutes, what came after) stays, in order."""
    events = list(events)
    retracted: dict[str, int] = {}  # message_id -> seq of its last retraction
    for event in events:
        if event.type is EventType.MESSAGE_RETRACTED:
            retracted[str(event.data.get("message_id"))] = event.seq
    if not retracted:
        return events
    calls: dict[str, str] = {}  # call_id -> the message that started it
    kept: list[Event] = []
    for event in events:
        kind = event.type
        if kind is EventType.MESSAGE_RETRACTED:
            continue
        if kind in _MESSAGE_OUTPUT:
            message = str(event.data.get("message_id"))
            if kind is EventType.TOOL_CALL_STARTED:
                calls[str(event.data.get("call_id"))] = message
        elif kind in _CALL_OUTPUT:
            message = calls.get(str(event.data.get("call_id")), "")
        else:
            kept.append(event)
            continue
        if event.seq < retracted.get(message, -1):
            continue
        kept.append(event)
    return kept
