"""The AG-UI 1.0 dialect, events out: native events as AG-UI events, framed for SSE. Pure: no
I/O, no web framework, no dependency on the ``ag-ui-protocol`` package (the tests validate
every event against its models). AG-UI's ``RunAgentInput``, the way in, is
:mod:`streams.dialects.agui_input`.

:class:`AGUIEncoder` is stateful (AG-UI opens and closes messages and tool calls that native
events only imply) and deterministic: what it emits for an event depends only on the events
before it, so an encoder *primed* with the events a client already has continues exactly
where the client's stream stopped.

=========================  ===================================================================
native                     AG-UI
=========================  ===================================================================
``run.started``            ``RUN_STARTED`` (threadId, runId: the AG-UI client's own ids when
                           the run came from ``RunAgentInput``, else the native run id)
``message.started``        nothing: a text message opens lazily, on its first text
``message.delta``          ``TEXT_MESSAGE_START`` (role assistant) before the first delta of a
                           text segment, then ``TEXT_MESSAGE_CONTENT``
``message.completed``      ``TEXT_MESSAGE_END`` if a text segment is open
``message.failed``         ``TEXT_MESSAGE_END`` / ``TOOL_CALL_END`` for what the message left
                           open, then ``CUSTOM`` (name ``message.failed``)
``message.rerouted``       ``CUSTOM`` (name ``message.rerouted``, value ``{from, to, reason}``)
``message.retracted``      ``TEXT_MESSAGE_END`` / ``TOOL_CALL_END`` for whatever is open, then
                           ``RUN_ERROR`` (code ``output_retracted``): AG-UI cannot take back
                           a message, so the stream ends there (the encoder is ``ended``)
                           while the run restarts the step on another route
``tool_call.started``      ``TEXT_MESSAGE_END`` if text is open, then ``TOOL_CALL_START``
                           (parentMessageId: the assistant message the text went to)
``tool_call.delta``        ``TOOL_CALL_ARGS``
``tool_call.completed``    ``TOOL_CALL_END``
``tool.started``           ``ACTIVITY_SNAPSHOT`` (activityType ``tool_execution``, content
                           ``{toolCallId, name, arguments, status: "running", deltas: []}``)
``tool.delta``             ``ACTIVITY_DELTA`` (JSON Patch: append to ``/deltas``)
``tool.completed``         ``ACTIVITY_DELTA`` (status ``completed``, ``output``), then
                           ``TOOL_CALL_RESULT`` (content: the output as JSON text)
``tool.failed``            ``ACTIVITY_DELTA`` (status ``failed``, ``error``), then
                           ``TOOL_CALL_RESULT`` (content: ``{"error": message}`` as JSON text)
``tool.approval_requested`` ``TEXT_MESSAGE_END`` / ``TOOL_CALL_END`` for whatever is open,
                           then ``RUN_FINISHED`` with the interrupt outcome: one interrupt
                           (id ``<run_id>:<seq>:<call_id>``, see :func:`interrupt_id`; reason
                           ``tool_approval``; toolCallId; expiresAt; metadata ``{toolName,
                           arguments}``; the answer's ``responseSchema``), and the stream
                           ends there (the encoder is ``ended``) while the run waits
``tool.approved``          ``CUSTOM`` (name = native type, value = native payload): the call
                           then runs (``tool.started`` …) as any other
``tool.denied``            ``CUSTOM`` (likewise), then ``TOOL_CALL_RESULT`` (content:
                           ``{"error": <the refusal the model reads>}`` as JSON text)
``client_tool.requested``  ``CUSTOM`` (name = native type, value = native payload)
``stream.gap``             ``CUSTOM`` (likewise; the value holds the run's snapshot)
``run.completed``          ``TEXT_MESSAGE_END`` / ``TOOL_CALL_END`` for anything still open,
                           then ``RUN_FINISHED`` (result: the output; usage; outcome success
                           with ``pendingToolCallIds`` when the run handed client tool calls
                           back)
``run.failed``             (closing as above) ``RUN_ERROR`` (message, code)
``run.cancelled``          (closing as above) ``RUN_ERROR`` (message, code ``cancelled``)
=========================  ===================================================================

Why these choices:

* Text closes before a tool call starts, so an AG-UI client builds one assistant message
  holding the text and then the call (``parentMessageId`` names it). Text that resumes after a
  tool call within the same native message opens a new AG-UI message, ``<message_id>.2``,
  ``.3`` …: an id the client already holds is never reopened.
* ``TOOL_CALL_RESULT`` goes out only for calls the stream announced with ``TOOL_CALL_START``
  (a model's calls). A parallel run's tool items have no such call; a result without one would
  put a tool message with no matching assistant call into the client's history. Their output
  is in the activity instead.
* Tool execution (progress and streamed output) is an *activity*: AG-UI's structured progress
  that is not conversation content, which a UI renders as its own widget. Ids the encoder mints
  carry the native run id (``<run_id>.<call_id>.activity``, ``<run_id>.<call_id>.result``),
  so they stay unique across the runs of one thread.
* After ``RUN_FINISHED`` or ``RUN_ERROR`` the encoder is ``ended`` (an
  :class:`~streams.dialects.retraction.EndingEncoder`): AG-UI allows nothing after them.
* An approval is an AG-UI 1.0 *interrupt*: the AG-UI run finishes, and the client answers
  with a new ``RunAgentInput`` whose ``resume[]`` names the interrupt (the AG-UI face). The
  interrupt's id carries the gateway run id and the seq of ``tool.approval_requested``, so
  any instance finds the run and the point its stream stopped without a table of its own;
  the answering stream is the same encoder, primed up to that seq and resumed
  (:meth:`AGUIEncoder.resume`) under the new AG-UI run's ids. Only the first waiting call
  of a batch is an interrupt: the stream stops there, and a second call's request starts
  the answering stream, which finishes at once with its own interrupt.
* Cancellation is ``RUN_ERROR`` (code ``cancelled``): an AG-UI consumer that does not know the
  1.0 ``cancelled`` outcome of ``RUN_FINISHED`` reads it as success.

Framing (by :mod:`streams.dialects.sse`): ``data: <json>\\n\\n`` per AG-UI event, LF only.
The native event's ``seq`` is the ``id:`` of the *last* frame it yields, so a client's
``Last-Event-ID`` always names a native event whose AG-UI events it has all received. A native
event that yields nothing sends nothing; resuming after the last id a client saw replays it,
harmlessly, into the primed encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.approvals import MAX_REASON_LENGTH, denial_message
from streams.dialects.retraction import RETRACTED_CODE, retracted_message
from streams.dialects.sse import data_frame
from streams.events import Event, EventType, dumps
from streams.spec import RunSpec

__all__ = [
    "ACTIVITY_TYPE",
    "APPROVAL_RESPONSE_SCHEMA",
    "INTERRUPT_REASON",
    "METADATA_KEY",
    "AGUIEncoder",
    "agui_ids",
    "frame_group",
    "interrupt_id",
    "parse_interrupt_id",
]

AGUIEvent = dict[str, Any]

ACTIVITY_TYPE = "tool_execution"
METADATA_KEY = "ag_ui"  # RunSpec.metadata key holding the AG-UI client's thread and run ids
INTERRUPT_REASON = "tool_approval"  # an approval interrupt's reason
# What a resume entry's payload answers an approval interrupt with (status "resolved"; a
# "cancelled" entry denies the call).
APPROVAL_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": MAX_REASON_LENGTH},
        "arguments": {"type": "object"},
    },
    "required": ["approved"],
    "additionalProperties": False,
}


# -- ids --------------------------------------------------------------------------------------


def agui_ids(run_id: str, metadata: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(thread_id, run_id)`` to report for native run ``run_id``: the AG-UI client's own
    (kept in ``metadata["ag_ui"]`` by :func:`streams.dialects.agui_input.run_spec_from_agui`),
    else the native run id."""
    ids = (metadata or {}).get(METADATA_KEY)
    if not isinstance(ids, Mapping):
        return run_id, run_id
    thread_id, agui_run_id = ids.get("thread_id"), ids.get("run_id")
    return (
        thread_id if isinstance(thread_id, str) else run_id,
        agui_run_id if isinstance(agui_run_id, str) else run_id,
    )


def interrupt_id(run_id: str, seq: int, call_id: str) -> str:
    """The id of the interrupt for the call ``call_id`` that waits for approval since event
    ``seq`` of native run ``run_id``: ``<run_id>:<seq>:<call_id>`` (a run id has no colon,
    a seq is digits; the call id, last, may hold anything)."""
    return f"{run_id}:{seq}:{call_id}"


def parse_interrupt_id(value: str) -> tuple[str, int, str] | None:
    """``(run_id, seq, call_id)`` of an :func:`interrupt_id`; None for anything else."""
    parts = value.split(":", 2)
    if len(parts) != 3 or not all(parts) or not parts[1].isascii() or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def _iso(seconds: Any) -> str | None:
    """``time.time()`` seconds as ISO 8601 in UTC, to the millisecond (AG-UI's convention)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    moment = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def _activity_id(run_id: str, call_id: str) -> str:
    return f"{run_id}.{call_id}.activity"


def _result_id(run_id: str, call_id: str) -> str:
    return f"{run_id}.{call_id}.result"


def _segment_id(message_id: str, segment: int) -> str:
    """The AG-UI message id of the ``segment``-th text segment (from 1) of a native message."""
    return message_id if segment == 1 else f"{message_id}.{segment}"


# -- the encoder ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    """A native message as the AG-UI client has seen it so far."""

    current_id: str  # the AG-UI message text goes to now, or would go to next
    segment: int = 1
    used: bool = False  # the client holds ``current_id`` (text went to it, or a call's parent)
    open: bool = False  # a TEXT_MESSAGE_START without its END


def _usage(model: Any, usage: Any) -> list[dict[str, Any]] | None:
    """Native run usage as AG-UI ``TokenUsage`` entries (one: the run's model)."""
    if not isinstance(usage, Mapping):
        return None
    entry: dict[str, Any] = {}
    if isinstance(model, str):
        entry["model"] = model
    total = 0
    for native, camel in (("input_tokens", "inputTokens"), ("output_tokens", "outputTokens")):
        value = usage.get(native)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            entry[camel] = value
            total += value
    if "inputTokens" not in entry and "outputTokens" not in entry:
        return None  # nothing counted: no entry rather than an empty one
    if "inputTokens" in entry and "outputTokens" in entry:
        entry["totalTokens"] = total
    return [entry]


def _error_fields(error: Any, default_code: str) -> tuple[str, str]:
    """``(message, code)`` of a native ``{code, message}`` error (AG-UI wants a message)."""
    fields = error if isinstance(error, Mapping) else {}
    message, code = fields.get("message"), fields.get("code")
    return (
        message if isinstance(message, str) and message else "failed",
        code if isinstance(code, str) and code else default_code,
    )


class AGUIEncoder:
    """Native events → AG-UI 1.0 SSE frames (see the module docstring for the mapping).

    Call it with each batch of a run's events, in order (``encoder(events) -> bytes``, the
    shape :class:`gateway.sse.EventStreamResponse` wants). For a resumed stream, first
    :meth:`prime` it with the events the client already has.

    ``thread_id`` / ``run_id`` are the ids ``RUN_STARTED`` and ``RUN_FINISHED`` report;
    without them the encoder takes them from ``run.started``'s metadata (see
    :func:`agui_ids`), falling back to the native run id.
    """

    def __init__(self, *, thread_id: str | None = None, run_id: str | None = None) -> None:
        self._thread_override = thread_id
        self._run_override = run_id
        self._thread_id: str | None = thread_id
        self._run_id: str | None = run_id
        self._model: Any = None
        self._messages: dict[str, _Message] = {}  # native message id → its AG-UI view
        self._open_calls: dict[str, str] = {}  # call id → native message id, START sent, no END
        self._announced: dict[str, None] = {}  # calls with a TOOL_CALL_START, in order
        self._answered: set[str] = set()  # calls with a TOOL_CALL_RESULT
        self._activities: set[str] = set()  # calls whose activity the client holds
        self.ended = False  # RUN_FINISHED or RUN_ERROR is out: nothing more is encoded
        self._start_next = False  # resumed: the next event is preceded by RUN_STARTED
        self._handlers: dict[EventType, Callable[[Event], list[AGUIEvent]]] = {
            EventType.RUN_STARTED: self._run_started,
            EventType.MESSAGE_STARTED: self._message_started,
            EventType.MESSAGE_DELTA: self._message_delta,
            EventType.MESSAGE_COMPLETED: self._message_completed,
            EventType.MESSAGE_FAILED: self._message_failed,
            EventType.MESSAGE_REROUTED: self._message_rerouted,
            EventType.MESSAGE_RETRACTED: self._message_retracted,
            # Not sent (AG-UI clients would get them as CUSTOM events they do not know).
            EventType.REASONING_DELTA: self._nothing,
            EventType.REASONING_SIGNATURE: self._nothing,
            EventType.REASONING_REDACTED: self._nothing,
            EventType.TOOL_CALL_STARTED: self._tool_call_started,
            EventType.TOOL_CALL_DELTA: self._tool_call_delta,
            EventType.TOOL_CALL_COMPLETED: self._tool_call_completed,
            EventType.TOOL_STARTED: self._tool_started,
            EventType.TOOL_DELTA: self._tool_delta,
            EventType.TOOL_COMPLETED: self._tool_completed,
            EventType.TOOL_FAILED: self._tool_failed,
            EventType.TOOL_APPROVAL_REQUESTED: self._approval_requested,
            EventType.TOOL_APPROVED: self._custom,
            EventType.TOOL_DENIED: self._denied,
            EventType.RUN_COMPLETED: self._run_completed,
            EventType.RUN_FAILED: self._run_failed,
            EventType.RUN_CANCELLED: self._run_cancelled,
        }

    @classmethod
    def for_run(cls, run_id: str, metadata: Mapping[str, Any] | None) -> AGUIEncoder:
        """An encoder reporting the ids a run's spec metadata names (see :func:`agui_ids`),
        whether or not its ``run.started`` is still retained."""
        thread_id, agui_run_id = agui_ids(run_id, metadata)
        return cls(thread_id=thread_id, run_id=agui_run_id)

    @classmethod
    def for_spec(cls, run_id: str, spec: RunSpec) -> AGUIEncoder:
        """:meth:`for_run` with the metadata of ``spec``."""
        return cls.for_run(run_id, spec.metadata)

    # -- public API ---------------------------------------------------------------------------

    def __call__(self, events: list[Event]) -> bytes:
        """SSE frames for ``events`` (b"" when they yield no AG-UI event)."""
        frames: list[bytes] = []
        for event in events:
            frames.append(frame_group(event.seq, self.translate(event)))
        return b"".join(frames)

    def prime(self, events: Iterable[Event]) -> None:
        """Take in events the client already has: update the state, emit nothing.

        It runs the very code that encodes, so a primed encoder is in exactly the state the
        client's stream left it in.
        """
        for event in events:
            self.translate(event)

    def resume(self, *, thread_id: str, run_id: str) -> None:
        """Continue, as a new AG-UI run with these ids, a stream that ended on an approval
        interrupt: call it after :meth:`prime` with the events up to that interrupt. The next
        event encoded is preceded by ``RUN_STARTED``; what the client holds (the calls it
        was announced, the messages it has) stays as the first stream left it."""
        self._thread_id = self._thread_override = thread_id
        self._run_id = self._run_override = run_id
        self.ended = False
        self._start_next = True

    def translate(self, event: Event) -> list[AGUIEvent]:
        """The AG-UI events (as dicts, camelCase) for one native event, updating the state."""
        if self.ended:
            return []
        handler = self._handlers.get(event.type, self._custom)
        if not self._start_next:
            return handler(event)
        self._start_next = False
        thread_id, run_id = self._ids(event)
        started = {**self._base(event, "RUN_STARTED"), "threadId": thread_id, "runId": run_id}
        return [started, *handler(event)]

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _base(event: Event, type: str) -> AGUIEvent:
        # Milliseconds since the epoch, as every AG-UI SDK sets it (and an int, as 1.0 wants).
        return {"type": type, "timestamp": int(event.ts * 1000)}

    def _ids(self, event: Event) -> tuple[str, str]:
        return self._thread_id or event.run_id, self._run_id or event.run_id

    def _message(self, message_id: str) -> _Message:
        message = self._messages.get(message_id)
        if message is None:
            message = self._messages[message_id] = _Message(message_id)
        return message

    def _close_text(self, event: Event, message: _Message) -> list[AGUIEvent]:
        if not message.open:
            return []
        message.open = False
        return [{**self._base(event, "TEXT_MESSAGE_END"), "messageId": message.current_id}]

    def _close_call(self, event: Event, call_id: str) -> list[AGUIEvent]:
        if self._open_calls.pop(call_id, None) is None:
            return []
        return [{**self._base(event, "TOOL_CALL_END"), "toolCallId": call_id}]

    def _close_everything(self, event: Event) -> list[AGUIEvent]:
        """END events for whatever is still open: AG-UI clients refuse ``RUN_FINISHED`` while a
        message or tool call is open."""
        out: list[AGUIEvent] = []
        for message in self._messages.values():
            out += self._close_text(event, message)
        for call_id in list(self._open_calls):
            out += self._close_call(event, call_id)
        self._messages.clear()
        return out

    # -- handlers, one per native type --------------------------------------------------------

    @staticmethod
    def _nothing(event: Event) -> list[AGUIEvent]:
        return []

    def _custom(self, event: Event) -> list[AGUIEvent]:
        """``client_tool.requested``, ``stream.gap`` and anything AG-UI has no event for."""
        return [
            {**self._base(event, "CUSTOM"), "name": event.type.value, "value": dict(event.data)}
        ]

    def _run_started(self, event: Event) -> list[AGUIEvent]:
        thread_id, run_id = agui_ids(event.run_id, event.data.get("metadata"))
        self._thread_id = self._thread_override or thread_id
        self._run_id = self._run_override or run_id
        self._model = event.data.get("model")
        thread_id, run_id = self._ids(event)
        return [{**self._base(event, "RUN_STARTED"), "threadId": thread_id, "runId": run_id}]

    def _message_started(self, event: Event) -> list[AGUIEvent]:
        self._message(event.data["message_id"])
        return []

    def _message_delta(self, event: Event) -> list[AGUIEvent]:
        delta = event.data.get("delta")
        if not isinstance(delta, str) or not delta:
            return []  # nothing to show; an empty delta would only open an empty message
        message = self._message(event.data["message_id"])
        out: list[AGUIEvent] = []
        if not message.open:
            if message.used:  # the client holds this id already: text goes to a new message
                message.segment += 1
                message.current_id = _segment_id(event.data["message_id"], message.segment)
            message.open = message.used = True
            out.append(
                {
                    **self._base(event, "TEXT_MESSAGE_START"),
                    "messageId": message.current_id,
                    "role": "assistant",
                }
            )
        out.append(
            {
                **self._base(event, "TEXT_MESSAGE_CONTENT"),
                "messageId": message.current_id,
                "delta": delta,
            }
        )
        return out

    def _message_completed(self, event: Event) -> list[AGUIEvent]:
        message = self._messages.pop(event.data["message_id"], None)
        return [] if message is None else self._close_text(event, message)

    def _message_failed(self, event: Event) -> list[AGUIEvent]:
        message_id = event.data["message_id"]
        message = self._messages.pop(message_id, None)
        out = [] if message is None else self._close_text(event, message)
        for call_id, parent in list(self._open_calls.items()):
            if parent == message_id:
                out += self._close_call(event, call_id)
        return [*out, *self._custom(event)]

    def _message_rerouted(self, event: Event) -> list[AGUIEvent]:
        value = {key: event.data.get(key) for key in ("from", "to", "reason")}
        return [{**self._base(event, "CUSTOM"), "name": event.type.value, "value": value}]

    def _message_retracted(self, event: Event) -> list[AGUIEvent]:
        return self._run_error(event, retracted_message(event.data.get("reason")), RETRACTED_CODE)

    def _run_error(self, event: Event, message: str, code: str) -> list[AGUIEvent]:
        out = self._close_everything(event)
        self.ended = True
        return [*out, {**self._base(event, "RUN_ERROR"), "message": message, "code": code}]

    def _tool_call_started(self, event: Event) -> list[AGUIEvent]:
        call_id = event.data["call_id"]
        if call_id in self._open_calls or call_id in self._announced:
            return []  # never a second START for one id
        message_id = event.data["message_id"]
        message = self._message(message_id)
        out = self._close_text(event, message)
        message.used = True
        self._open_calls[call_id] = message_id
        self._announced[call_id] = None
        out.append(
            {
                **self._base(event, "TOOL_CALL_START"),
                "toolCallId": call_id,
                "toolCallName": event.data["name"],
                "parentMessageId": message.current_id,
            }
        )
        return out

    def _tool_call_delta(self, event: Event) -> list[AGUIEvent]:
        call_id = event.data["call_id"]
        if call_id not in self._open_calls:
            return []  # its START is not in this stream (lost to a gap): ARGS would be invalid
        return [
            {
                **self._base(event, "TOOL_CALL_ARGS"),
                "toolCallId": call_id,
                "delta": event.data["delta"],
            }
        ]

    def _tool_call_completed(self, event: Event) -> list[AGUIEvent]:
        return self._close_call(event, event.data["call_id"])

    def _activity(
        self, event: Event, call_id: str, patch: list[dict[str, Any]], content: dict[str, Any]
    ) -> AGUIEvent:
        """``ACTIVITY_DELTA`` with ``patch`` for an activity the client holds; otherwise (its
        ``tool.started`` was lost to a gap) an ``ACTIVITY_SNAPSHOT`` with ``content``."""
        base = {"messageId": _activity_id(event.run_id, call_id), "activityType": ACTIVITY_TYPE}
        if call_id in self._activities:
            return {**self._base(event, "ACTIVITY_DELTA"), **base, "patch": patch}
        self._activities.add(call_id)
        return {
            **self._base(event, "ACTIVITY_SNAPSHOT"),
            **base,
            "content": {"toolCallId": call_id, **content},
        }

    def _tool_started(self, event: Event) -> list[AGUIEvent]:
        call_id = event.data["call_id"]
        self._activities.add(call_id)
        return [
            {
                **self._base(event, "ACTIVITY_SNAPSHOT"),
                "messageId": _activity_id(event.run_id, call_id),
                "activityType": ACTIVITY_TYPE,
                "content": {
                    "toolCallId": call_id,
                    "name": event.data.get("name"),
                    "arguments": event.data.get("arguments"),
                    "status": "running",
                    "deltas": [],
                },
            }
        ]

    def _tool_delta(self, event: Event) -> list[AGUIEvent]:
        call_id, delta = event.data["call_id"], event.data["delta"]
        patch = [{"op": "add", "path": "/deltas/-", "value": delta}]
        return [self._activity(event, call_id, patch, {"status": "running", "deltas": [delta]})]

    def _tool_result(self, event: Event, call_id: str, content: Any) -> list[AGUIEvent]:
        if call_id not in self._announced or call_id in self._answered:
            return []
        self._answered.add(call_id)
        return [
            {
                **self._base(event, "TOOL_CALL_RESULT"),
                "messageId": _result_id(event.run_id, call_id),
                "toolCallId": call_id,
                "content": dumps(content).decode(),
                "role": "tool",
            }
        ]

    def _tool_completed(self, event: Event) -> list[AGUIEvent]:
        call_id, output = event.data["call_id"], event.data.get("output")
        patch: list[dict[str, Any]] = [
            {"op": "replace", "path": "/status", "value": "completed"},
            {"op": "add", "path": "/output", "value": output},
        ]
        activity = self._activity(event, call_id, patch, {"status": "completed", "output": output})
        return [activity, *self._tool_result(event, call_id, output)]

    def _tool_failed(self, event: Event) -> list[AGUIEvent]:
        call_id, error = event.data["call_id"], event.data.get("error")
        patch: list[dict[str, Any]] = [
            {"op": "replace", "path": "/status", "value": "failed"},
            {"op": "add", "path": "/error", "value": error},
        ]
        activity = self._activity(event, call_id, patch, {"status": "failed", "error": error})
        message, _ = _error_fields(error, "tool_error")
        return [activity, *self._tool_result(event, call_id, {"error": message})]

    def _approval_requested(self, event: Event) -> list[AGUIEvent]:
        call_id, name = event.data["call_id"], event.data.get("name")
        # What is open is closed (AG-UI refuses RUN_FINISHED otherwise), but the messages are
        # remembered: text that goes on after the answer opens a new id, as after a call.
        out: list[AGUIEvent] = []
        for message in self._messages.values():
            out += self._close_text(event, message)
        for open_call in list(self._open_calls):
            out += self._close_call(event, open_call)
        interrupt: dict[str, Any] = {
            "id": interrupt_id(event.run_id, event.seq, call_id),
            "reason": INTERRUPT_REASON,
            "message": f"Approve the call of tool {name!r}?",
        }
        if call_id in self._announced:  # the client holds the call (not a parallel item)
            interrupt["toolCallId"] = call_id
        interrupt["responseSchema"] = APPROVAL_RESPONSE_SCHEMA
        expires_at = _iso(event.data.get("expires_at"))
        if expires_at is not None:
            interrupt["expiresAt"] = expires_at
        interrupt["metadata"] = {"toolName": name, "arguments": event.data.get("arguments")}
        thread_id, run_id = self._ids(event)
        finished: AGUIEvent = {
            **self._base(event, "RUN_FINISHED"),
            "threadId": thread_id,
            "runId": run_id,
            "outcome": {"type": "interrupt", "interrupts": [interrupt]},
        }
        self.ended = True
        return [*out, finished]

    def _denied(self, event: Event) -> list[AGUIEvent]:
        # A denied call never runs: its result is the refusal the model reads.
        refusal = {"error": denial_message(event.data.get("reason"))}
        return [*self._custom(event), *self._tool_result(event, event.data["call_id"], refusal)]

    def _run_completed(self, event: Event) -> list[AGUIEvent]:
        out = self._close_everything(event)
        thread_id, run_id = self._ids(event)
        finished: AGUIEvent = {
            **self._base(event, "RUN_FINISHED"),
            "threadId": thread_id,
            "runId": run_id,
        }
        output = event.data.get("output")
        if output is not None:  # 1.0 leaves an absent result out rather than writing null
            finished["result"] = output
        pending = [call_id for call_id in self._announced if call_id not in self._answered]
        if event.data.get("stop_reason") == "client_tool_calls" and pending:
            # The run stopped on frontend tool calls: the client answers them in its next input.
            finished["outcome"] = {"type": "success", "pendingToolCallIds": pending}
        usage = _usage(self._model, event.data.get("usage"))
        if usage is not None:
            finished["usage"] = usage
        self.ended = True
        return [*out, finished]

    def _run_failed(self, event: Event) -> list[AGUIEvent]:
        message, code = _error_fields(event.data.get("error"), "run_failed")
        return self._run_error(event, message, code)

    def _run_cancelled(self, event: Event) -> list[AGUIEvent]:
        reason = event.data.get("reason")
        message = f"run cancelled: {reason}" if isinstance(reason, str) else "run cancelled"
        return self._run_error(event, message, "cancelled")


def frame_group(seq: int, events: list[AGUIEvent]) -> bytes:
    """SSE frames for the AG-UI events of native event ``seq``; only the last carries
    ``id: <seq>``, so a client's ``Last-Event-ID`` never names a half-delivered group."""
    if not events:
        return b""
    frames = [data_frame(dumps(event)) for event in events[:-1]]
    frames.append(data_frame(dumps(events[-1]), seq))
    return b"".join(frames)
