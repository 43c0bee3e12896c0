"""Native event types.

An :class:`Event` is one entry of a run's event log: ``{seq, run_id, type, ts, producer?, ...}``.
``seq`` is assigned by the log and increases strictly from 1 within a run. The event is
serialised to JSON exactly once, when it is appended (:attr:`Event.json`); every encoder and
every reader reuses those bytes, so the cost of an event does not grow with its readers.

Payload fields per type (all snake_case):

=========================  ==================================================================
``run.started``            ``kind`` ("agent" | "parallel"), ``model``, ``tools``
``message.started``        ``message_id``, ``step``
``message.delta``          ``message_id``, ``delta``
``reasoning.delta``        ``message_id``, ``delta`` (a fragment of the model's thinking)
``reasoning.signature``    ``message_id``, ``signature`` (opaque, Anthropic's: it ends the
                           thinking block it signs)
``reasoning.redacted``     ``message_id``, ``data`` (an opaque redacted thinking block)
``message.completed``      ``message_id``, ``text``, ``usage`` (this step's tokens),
                           ``finish_reason`` (when the model gave one: "stop" | "length" |
                           "tool_calls" | "stop_sequence" | "content_filter" | the
                           upstream's own), ``stop_sequence`` (when finish_reason is
                           "stop_sequence"), ``reasoning`` (only when the step had some: its
                           blocks in order, ``{type: "thinking", thinking, signature}`` or
                           ``{type: "redacted_thinking", data}``)
``message.failed``         ``message_id``, ``error`` ({code, message}): the model's stream broke
``message.rerouted``       ``message_id``, ``from``, ``to`` (route names), ``reason`` (why
                           ``from`` was left: ``http_503``, ``first_token_timeout``,
                           ``hedge``, …): a model group moved the step to another route
``message.retracted``      ``message_id``, ``reason``: the message's output so far (text,
                           reasoning, tool calls) is void; the step starts again, on another
                           route, with new deltas under the same ``message_id``
``tool_call.started``      ``call_id``, ``name``, ``message_id``
``tool_call.delta``        ``call_id``, ``delta`` (a fragment of the JSON arguments)
``tool_call.completed``    ``call_id``, ``name``, ``arguments``
``tool.started``           ``call_id``, ``name``, ``arguments``
``tool.delta``             ``call_id``, ``delta``
``tool.completed``         ``call_id``, ``output``
``tool.failed``            ``call_id``, ``error`` ({code, message})
``client_tool.requested``  ``call_id``, ``name``, ``arguments``
``tool.approval_requested`` ``call_id``, ``name``, ``arguments``, ``expires_at``: the call
                           waits for a person (streams.approvals)
``tool.approved``          ``call_id``, ``by``, ``reason``, ``arguments`` (only when edited)
``tool.denied``            ``call_id``, ``by`` (``"timeout"`` when none answered), ``reason``:
                           the model reads a refusal
``run.completed``          ``output``, ``steps``, ``stop_reason``, ``finish_reason`` and
                           ``stop_sequence`` (of the last model step, as in
                           ``message.completed``), ``usage``
``run.failed``             ``error`` ({code, message})
``run.cancelled``          ``reason``
``stream.gap``             ``after``, ``next_seq``, ``snapshot`` (never stored: sent to a reader
                           whose cursor is older than what the log retains)
=========================  ==================================================================

A ``usage`` dict has ``input_tokens`` and ``output_tokens``, and ``cache_read_input_tokens``
/ ``cache_creation_input_tokens`` only when they are not zero.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.dialects.sse import data_frame

__all__ = ["ENVELOPE", "TERMINAL_TYPES", "Event", "EventType", "dumps", "error_payload"]


class EventType(enum.StrEnum):
    RUN_STARTED = "run.started"
    MESSAGE_STARTED = "message.started"
    MESSAGE_DELTA = "message.delta"
    REASONING_DELTA = "reasoning.delta"
    REASONING_SIGNATURE = "reasoning.signature"
    REASONING_REDACTED = "reasoning.redacted"
    MESSAGE_COMPLETED = "message.completed"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_REROUTED = "message.rerouted"
    MESSAGE_RETRACTED = "message.retracted"
    TOOL_CALL_STARTED = "tool_call.started"
    TOOL_CALL_DELTA = "tool_call.delta"
    TOOL_CALL_COMPLETED = "tool_call.completed"
    TOOL_STARTED = "tool.started"
    TOOL_DELTA = "tool.delta"
    TOOL_COMPLETED = "tool.completed"
    TOOL_FAILED = "tool.failed"
    CLIENT_TOOL_REQUESTED = "client_tool.requested"
    TOOL_APPROVAL_REQUESTED = "tool.approval_requested"
    TOOL_APPROVED = "tool.approved"
    TOOL_DENIED = "tool.denied"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    STREAM_GAP = "stream.gap"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TYPES


TERMINAL_TYPES = frozenset({EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED})


ENVELOPE = frozenset({"seq", "run_id", "type", "ts", "producer"})


def _default(value: object) -> Any:
    """Fallback for orjson: anything it cannot encode becomes its ``str``.

    Tool outputs are arbitrary; an event must never fail to encode after its producer
    has already done the work.
    """
    return str(value)


def _plain(value: object) -> Any:
    """``value`` with what orjson handles specially made plain for the standard library:
    non-finite floats become null and keys become strings, as orjson writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dumps(value: object) -> bytes:
    """The gateway's JSON encoder (compact, UTF-8, non-ASCII kept).

    orjson does the work; integers beyond 64 bits (exact arithmetic gives them) make it
    refuse, and then the standard library, which writes them exactly, takes over.
    """
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(
            _plain(value), ensure_ascii=False, separators=(",", ":"), default=str
        ).encode()


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's event log. Immutable; ``json`` is computed once."""

    seq: int
    run_id: str
    type: EventType
    ts: float
    producer: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    json: bytes = b""
    # Wire forms, each made at most once however many readers there are (the native dialect
    # sends these very bytes to every reader: streams/dialects/native.py).
    _sse: bytes | None = field(default=None, repr=False, compare=False)
    _text: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        seq: int,
        run_id: str,
        type: EventType,
        ts: float,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        payload = data or {}
        if not ENVELOPE.isdisjoint(payload):
            raise ValueError(f"payload keys {sorted(ENVELOPE & payload.keys())} are reserved")
        body: dict[str, Any] = {"seq": seq, "run_id": run_id, "type": type.value, "ts": ts}
        if producer is not None:
            body["producer"] = producer
        body.update(payload)
        # A copy of exactly its size: orjson's result keeps the whole buffer it wrote into
        # (about 4 KiB however short the JSON), and a retained log holds many events.
        return cls(seq, run_id, type, ts, producer, payload, bytes(memoryview(dumps(body))))

    @classmethod
    def from_json(cls, raw: bytes) -> Event:
        """The event whose JSON is ``raw`` (as another instance wrote it to the shared
        store). ``raw`` is kept as it is, so every instance sends the same bytes."""
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("an event is a JSON object")
        seq, run_id, type_, ts = (
            body.pop("seq"),
            body.pop("run_id"),
            body.pop("type"),
            body.pop("ts"),
        )
        producer = body.pop("producer", None)
        return cls(int(seq), str(run_id), EventType(type_), float(ts), producer, body, bytes(raw))

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def sse_frame(self) -> bytes:
        """``id: <seq>\ndata: <json>\n\n``, made once (by the SSE framer)."""
        frame = self._sse
        if frame is None:
            frame = data_frame(self.json, self.seq)
            _set_sse(self, frame)
        return frame

    def text(self) -> str:
        """The JSON as ``str`` (what a WebSocket text message carries), made once."""
        text = self._text
        if text is None:
            text = self.json.decode()
            object.__setattr__(self, "_text", text)
        return text

    @property
    def size(self) -> int:
        """Bytes this event costs the log's retention budget."""
        return len(self.json)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.json)
        return result


# The cache slot's own setter (the frozen dataclass refuses a plain assignment): half the cost
# of object.__setattr__, which looks the slot up each time, on a path every event takes.
_set_sse: Callable[[Event, bytes], None] = Event.__dict__["_sse"].__set__


def error_payload(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
