"""The Vercel AI SDK's UI message stream (protocol ``v1``): native events as the chunks
``useChat`` / ``AbstractChat`` read, framed for SSE (``data: <json>``), ``data: [DONE]`` at
the end. Pure: no I/O, no web framework.

One run is one assistant UI message, across all its model steps. Only the chunk types and
keys that every supported ``ai`` release accepts go out: ``ai@5.0.0``, ``6.0.0`` and
``7.0.0`` parse chunks with strict objects (an unknown key fails the stream), so what is
sent is the intersection of their schemas and those of the latest 5, 6 and 7. Optional
chunk kinds go out only when the request names them in its features (:data:`FEATURES`):

* ``"reasoning"``: ``reasoning-start`` / ``-delta`` / ``-end`` (accepted by every release);
* ``"preliminary-tool-output"``: a server tool's streamed output as preliminary
  ``tool-output-available`` chunks. ``ai@5.0.0`` refuses the ``preliminary`` key (later 5.0
  releases, 6 and 7 take it), so a client asks for it only when it knows it is newer.
* ``"tool-approval"`` (ai 6 and 7, ``addToolApprovalResponse``): a call waiting for a
  person is a ``tool-approval-request`` (``approvalId``: :func:`approval_id` of the call),
  and the stream *pauses* once every call of the step has its output or waits: the step's
  ``finish-step``, ``finish`` and ``[DONE]``, as the SDK's own server ends a turn that waits
  for approvals, while the gateway run waits on (it needs no reader). The next request of
  the chat carries the answers; its stream is the same run's from the pause on (the face's),
  beginning with ``start`` again, then ``tool-output-denied`` for a denied call or the
  approved call's output, and the rest of the turn. Without the feature the approval events
  give nothing but a denial, a ``tool-output-error`` (``"tool_denied: <reason>"``), so the
  part ends; such a call is answered over ``POST /v1/runs/{id}/approvals/{call_id}``.

:class:`UIStreamEncoder` is stateful and deterministic: what it emits for an event depends
only on the events before it, so a resumed stream primes a fresh encoder with the events the
client has (:meth:`UIStreamEncoder.prime`). The SSE ``id:`` is the native ``seq``, on the last
chunk frame of each native event only, so a ``Last-Event-ID`` always names a native event
whose chunks all arrived; a terminal event's frames then end with :data:`DONE_FRAME` (no id).

=========================  ===================================================================
native                     UI message stream chunks
=========================  ===================================================================
``run.started``            ``start`` (``messageId``: the face's, else ``msg_`` + the run's hex)
``message.started``        ``start-step`` (``finish-step`` first if a step is open: a step
                           stays open through its tool calls' runs, so their outputs land in it)
``message.delta``          ``text-start`` (lazily; ids ``<messageId>:<n>``), ``text-delta``
``reasoning.delta``        with ``"reasoning"``: ``reasoning-start`` (lazily), ``-delta``
``message.completed``      the open text's ``text-end`` (or reasoning's ``reasoning-end``)
``message.failed``         the same
``tool_call.started``      the open text's end, then ``tool-input-start``
``tool_call.delta``        ``tool-input-delta``
``tool_call.completed``    ``tool-input-available``: ``input`` the arguments parsed (``{}`` when
                           empty; the raw text as a string when it is not JSON, as the SDK's
                           own server gives an unparsable call's input)
``tool.delta``             with ``"preliminary-tool-output"``: ``tool-output-available`` with
                           the output streamed so far (joined) and ``preliminary: true``
``tool.completed``         ``tool-output-available`` (the output as it is)
``tool.failed``            ``tool-output-error`` (``"<code>: <message>"``)
``tool.approval_requested`` with ``"tool-approval"``: ``tool-approval-request``; then, when no
                           call of the step runs any more, the pause (``finish-step``,
                           ``finish``, ``[DONE]``: the encoder is ``paused``)
``tool.approved``          nothing (the client has the answer: ``approval-responded``); after
                           a pause, ``start`` first
``tool.denied``            with ``"tool-approval"``: ``tool-output-denied`` (after a pause,
                           ``start`` first); else ``tool-output-error`` (``tool_denied: …``)
``run.completed``          the open text's end, ``finish-step``, ``finish``, then ``[DONE]``
``message.rerouted``       nothing: a switch of route is no part of the message
``message.retracted``      the open text's end, ``error`` (``"output_retracted: <why>"``),
                           ``[DONE]``: the stream ends there (the encoder is ``ended``), as a
                           UI message cannot take back text, while the run restarts the step
``run.failed``             the open text's end, ``error`` (``"<code>: <message>"``), ``[DONE]``
``run.cancelled``          the open text's end, ``abort``, ``[DONE]``
``stream.gap``             ``error`` naming the events lost (the stream goes on)
others                     nothing (a client tool's call is its ``tool-input-*`` chunks: the
                           run ends, the app runs it and sends its result in the next request)
=========================  ===================================================================

A tool output goes out only for a call whose ``tool-input-start`` went out (the SDK throws
on an output for a call it has no part for): a parallel run's own tool calls have none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.dialects.retraction import RETRACTED_CODE, retracted_message
from streams.dialects.sse import JSONFrameTemplate, data_frame
from streams.events import Event, EventType, dumps
from streams.spec import RunSpec

__all__ = [
    "APPROVAL_PREFIX",
    "CHUNK_KEYS",
    "DONE_FRAME",
    "FEATURES",
    "METADATA_KEY",
    "STREAM_HEADERS",
    "UIStreamEncoder",
    "approval_id",
    "call_of_approval",
    "default_message_id",
    "error_frame",
    "parse_input",
]

# The last frame of every stream that ended (finish, abort or error).
DONE_FRAME = b"data: [DONE]\n\n"


def error_frame(code: str, message: str) -> bytes:
    """An ``error`` chunk and ``[DONE]``: how a stream ends for a reason outside the run's
    log (its store gone), in chunks every supported release reads (no ``id:``: a client
    that resumes sends the id of the last real event)."""
    return data_frame(dumps({"type": "error", "errorText": f"{code}: {message}"})) + DONE_FRAME


# The response header the SDK's transport checks for.
STREAM_HEADERS: Mapping[str, str] = {"x-vercel-ai-ui-message-stream": "v1"}
# The spec metadata key the AI SDK face keeps ``{"message_id": str, "features": [str]}`` in.
METADATA_KEY = "ai_sdk"
# The optional chunk kinds a client may ask for; none is sent by default.
FEATURES = frozenset({"reasoning", "preliminary-tool-output", "tool-approval"})
# What an approval id is made of: this prefix and the call's id (so an answer finds its call).
APPROVAL_PREFIX = "approval_"
# The error code of a denied call's ``tool-output-error`` for a client without approvals.
_DENIED_CODE = "tool_denied"
# The keys each chunk type may carry here (with ``type``): within every release's schema.
CHUNK_KEYS: Mapping[str, frozenset[str]] = {
    kind: frozenset(keys) | {"type"}
    for kind, keys in {
        "start": {"messageId"},
        "start-step": set(),
        "finish-step": set(),
        "text-start": {"id"},
        "text-delta": {"id", "delta"},
        "text-end": {"id"},
        "reasoning-start": {"id"},
        "reasoning-delta": {"id", "delta"},
        "reasoning-end": {"id"},
        "tool-input-start": {"toolCallId", "toolName"},
        "tool-input-delta": {"toolCallId", "inputTextDelta"},
        "tool-input-available": {"toolCallId", "toolName", "input"},
        "tool-output-available": {"toolCallId", "output", "preliminary"},
        "tool-output-error": {"toolCallId", "errorText"},
        "tool-approval-request": {"approvalId", "toolCallId"},
        "tool-output-denied": {"toolCallId"},
        "finish": set(),
        "abort": set(),
        "error": {"errorText"},
    }.items()
}

Chunk = dict[str, Any]


def default_message_id(run_id: str) -> str:
    """The default UI message id of a run: ``msg_`` and the run's hex id."""
    return "msg_" + run_id.removeprefix("run_")


def approval_id(call_id: str) -> str:
    """The ``approvalId`` of the approval of call ``call_id``."""
    return APPROVAL_PREFIX + call_id


def call_of_approval(approval: str) -> str | None:
    """The call id an ``approvalId`` of :func:`approval_id` names; None for any other."""
    if not approval.startswith(APPROVAL_PREFIX) or len(approval) == len(APPROVAL_PREFIX):
        return None
    return approval.removeprefix(APPROVAL_PREFIX)


def parse_input(arguments: str) -> Any:
    """A call's ``input`` of its argument JSON: ``{}`` for none, the raw text when it is not
    JSON (what the SDK's own server sends for a call it could not parse)."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _error_text(error: Any, default: str) -> str:
    error = error if isinstance(error, Mapping) else {}
    return f"{error.get('code', default)}: {error.get('message', '')}"


class UIStreamEncoder:
    """Encodes one run's native events as one UI message's stream (see the module)."""

    def __init__(
        self, run_id: str, *, message_id: str | None = None, features: Iterable[str] = ()
    ) -> None:
        self.message_id = message_id or default_message_id(run_id)
        self.features = frozenset(features) & FEATURES
        self._parts: list[dict[str, Any]] = []  # the UI message's parts, as the SDK builds
        self._texts = 0  # text and reasoning ids given so far
        # The open text or reasoning part: its kind, id, native message id and part. Its
        # deltas are joined into the part's text when read (appending each would copy it).
        self._open_kind: str | None = None
        self._open_id = ""
        self._open_message: Any = None
        self._open_part: dict[str, Any] | None = None
        self._open_text: list[str] = []
        # The open text's delta frames, but for the seq and the delta: the hot path.
        self._delta_template: JSONFrameTemplate | None = None
        self._step_open = False
        self._calls: dict[str, dict[str, Any]] = {}  # call id -> its tool part (started)
        self._arguments: dict[str, list[str]] = {}  # call id -> argument fragments so far
        self._progress: dict[str, list[str]] = {}  # call id -> streamed output so far
        self._ended = False
        # Approvals ("tool-approval"): the calls of the open step (their tool parts went
        # out), those waiting for an answer, those done (an output, an error, a denial);
        # whether the step's model message is complete (no call can join the step then);
        # whether the stream is paused for the waiting calls.
        self._step_calls: list[str] = []
        self._awaiting: set[str] = set()
        self._done_calls: set[str] = set()
        self._step_complete = False
        self._paused = False
        self._restart = False  # a pause ended: the next chunks begin with ``start``
        self._answered: frozenset[str] = frozenset()  # calls a pause is not made for
        self._handlers: dict[EventType, Callable[[Event], list[Chunk]]] = {
            EventType.RUN_STARTED: self._run_started,
            EventType.MESSAGE_STARTED: self._message_started,
            EventType.MESSAGE_DELTA: self._message_delta,
            EventType.REASONING_DELTA: self._reasoning_delta,
            EventType.MESSAGE_COMPLETED: self._message_completed,
            EventType.MESSAGE_FAILED: self._message_completed,
            EventType.MESSAGE_RETRACTED: self._message_retracted,
            EventType.TOOL_CALL_STARTED: self._tool_call_started,
            EventType.TOOL_CALL_DELTA: self._tool_call_delta,
            EventType.TOOL_CALL_COMPLETED: self._tool_call_completed,
            EventType.TOOL_DELTA: self._tool_delta,
            EventType.TOOL_COMPLETED: self._tool_completed,
            EventType.TOOL_FAILED: self._tool_failed,
            EventType.TOOL_APPROVAL_REQUESTED: self._approval_requested,
            EventType.TOOL_APPROVED: self._approved,
            EventType.TOOL_DENIED: self._denied,
            EventType.RUN_COMPLETED: self._run_completed,
            EventType.RUN_FAILED: self._run_failed,
            EventType.RUN_CANCELLED: self._run_cancelled,
            EventType.STREAM_GAP: self._stream_gap,
        }

    @classmethod
    def for_run(cls, run_id: str, spec: RunSpec) -> UIStreamEncoder:
        """An encoder for run ``run_id``: a run the AI SDK face started uses the message id
        and features its request gave (the spec's metadata, :data:`METADATA_KEY`); any
        other run gets ``msg_`` + its hex id and no optional chunk."""
        options = spec.metadata.get(METADATA_KEY)
        options = options if isinstance(options, Mapping) else {}
        given = options.get("message_id")
        features = options.get("features")
        return cls(
            run_id,
            message_id=given if isinstance(given, str) and given else None,
            features=[f for f in features if isinstance(f, str)]
            if isinstance(features, list)
            else (),
        )

    # -- public API ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (its ``[DONE]`` is sent): a terminal event, or a
        pause for approvals (:attr:`paused`)."""
        return self._ended or self._paused

    @property
    def paused(self) -> bool:
        """Whether the stream is paused: every call of the step has its output or waits for
        a person, and the SDK's turn has ended (``finish``); the run goes on."""
        return self._paused

    @property
    def awaiting(self) -> frozenset[str]:
        """The calls whose approval was requested and not answered yet."""
        return frozenset(self._awaiting)

    def __call__(self, events: list[Event]) -> bytes:
        """SSE frames for ``events`` (b"" when they yield no chunk)."""
        frames = []
        for event in events:
            template = self._delta_template
            if (
                template is not None
                and event.type is EventType.MESSAGE_DELTA
                and event.data.get("message_id") == self._open_message
            ):
                # The hot path, a delta of the open text: one format operation, the bytes
                # the general path below makes of the chunk translate() returns.
                delta = event.data["delta"]
                self._open_text.append(delta)
                frames.append(template.frame(event.seq, dumps(delta)))
                continue
            ended = self.ended
            chunks = self.translate(event)
            if not chunks:
                continue
            for chunk in chunks[:-1]:
                frames.append(data_frame(dumps(chunk)))
            # Only the last frame of a native event carries its seq, so a Last-Event-ID
            # always names a native event whose chunks all arrived.
            frames.append(data_frame(dumps(chunks[-1]), event.seq))
            if self.ended and not ended:
                frames.append(DONE_FRAME)
        return b"".join(frames)

    def prime(self, events: Iterable[Event]) -> None:
        """Take in events the client already has: update the state, emit nothing."""
        for event in events:
            self.translate(event)

    def translate(self, event: Event) -> list[Chunk]:
        """The chunks for one native event, updating the state (``[DONE]`` is not a chunk:
        :meth:`__call__` adds it after a terminal event's)."""
        handler = self._handlers.get(event.type)
        if handler is None or self._ended:
            return []
        if self._paused:
            self.go_on()
        if self._restart:
            # The stream after a pause is the next request's: the SDK reads a new response
            # into the same message, which begins with ``start``.
            self._restart = False
            return [{"type": "start", "messageId": self.message_id}, *handler(event)]
        return handler(event)

    def known_answers(self, calls: Iterable[str]) -> None:
        """Calls whose answers the log has already: no pause is made for them alone, so a
        replay of a turn that went on past its approvals (a resume) goes on too."""
        self._answered = frozenset(calls)

    def go_on(self) -> None:
        """End a pause (:attr:`paused`): the encoder is no longer ``ended``, and what it
        sends next begins with ``start``, as the next request's stream does. A stream that
        goes on from a pause calls it before its first batch, which may be a while coming."""
        if self._paused:
            self._paused, self._restart = False, True

    def message(self) -> dict[str, Any]:
        """The UI message the stream builds, as the log stands (what the SDK's chat holds
        once it has read every chunk sent so far), a deep copy."""
        self._join_text()
        return {
            "id": self.message_id,
            "role": "assistant",
            "parts": json.loads(dumps(self._parts)),
        }

    # -- text and reasoning -------------------------------------------------------------------

    def _join_text(self) -> None:
        if self._open_text:
            assert self._open_part is not None
            self._open_part["text"] += "".join(self._open_text)
            self._open_text.clear()

    def _end_text(self) -> list[Chunk]:
        """The open text's (or reasoning's) end chunk; [] when none is open."""
        kind = self._open_kind
        if kind is None:
            return []
        self._join_text()
        assert self._open_part is not None
        self._open_part["state"] = "done"
        self._open_kind, self._open_part, self._open_message = None, None, None
        self._delta_template = None
        return [{"type": f"{kind}-end", "id": self._open_id}]

    def _start_text(self, kind: str, native_message: Any) -> list[Chunk]:
        out = self._end_text()
        self._texts += 1
        self._open_kind, self._open_message = kind, native_message
        self._open_id = f"{self.message_id}:{self._texts}"
        self._open_part = {"type": kind, "text": "", "state": "streaming"}
        self._parts.append(self._open_part)
        if kind == "text":
            head = dumps({"type": "text-delta", "id": self._open_id, "delta": ""})
            self._delta_template = JSONFrameTemplate(head[: -len(b'""}')], b"}")
        out.append({"type": f"{kind}-start", "id": self._open_id})
        return out

    def _delta(self, kind: str, event: Event) -> list[Chunk]:
        native_message = event.data.get("message_id")
        out: list[Chunk] = []
        if self._open_kind != kind or self._open_message != native_message:
            out += self._start_text(kind, native_message)
        delta = str(event.data["delta"])
        self._open_text.append(delta)
        out.append({"type": f"{kind}-delta", "id": self._open_id, "delta": delta})
        return out

    # -- handlers -----------------------------------------------------------------------------

    def _run_started(self, event: Event) -> list[Chunk]:
        return [{"type": "start", "messageId": self.message_id}]

    def _finish_step(self) -> list[Chunk]:
        out = self._end_text()
        if self._step_open:
            self._step_open = False
            out.append({"type": "finish-step"})
        return out

    def _message_started(self, event: Event) -> list[Chunk]:
        out = self._finish_step()
        self._step_calls.clear()
        self._step_complete = False
        self._step_open = True
        self._parts.append({"type": "step-start"})
        out.append({"type": "start-step"})
        return out

    def _message_delta(self, event: Event) -> list[Chunk]:
        return self._delta("text", event)

    def _reasoning_delta(self, event: Event) -> list[Chunk]:
        if "reasoning" not in self.features:
            return []
        return self._delta("reasoning", event)

    def _message_completed(self, event: Event) -> list[Chunk]:
        self._step_complete = True
        return self._end_text()

    def _tool_call_started(self, event: Event) -> list[Chunk]:
        call_id, name = str(event.data["call_id"]), str(event.data["name"])
        if call_id in self._calls:
            return []
        part: dict[str, Any] = {
            "type": f"tool-{name}",
            "toolCallId": call_id,
            "state": "input-streaming",
        }
        self._calls[call_id] = part
        self._step_calls.append(call_id)
        self._arguments[call_id] = []
        self._parts.append(part)
        out = self._end_text()
        out.append({"type": "tool-input-start", "toolCallId": call_id, "toolName": name})
        return out

    def _tool_call_delta(self, event: Event) -> list[Chunk]:
        call_id = str(event.data.get("call_id", ""))
        fragments = self._arguments.get(call_id)
        if fragments is None:
            return []
        fragment = str(event.data["delta"])
        fragments.append(fragment)
        return [{"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": fragment}]

    def _tool_call_completed(self, event: Event) -> list[Chunk]:
        call_id = str(event.data.get("call_id", ""))
        part = self._calls.get(call_id)
        if part is None or self._arguments.pop(call_id, None) is None:
            return []
        value = parse_input(str(event.data.get("arguments") or ""))
        part["state"], part["input"] = "input-available", value
        return [
            {
                "type": "tool-input-available",
                "toolCallId": call_id,
                "toolName": part["type"].removeprefix("tool-"),
                "input": value,
            }
        ]

    def _output_part(self, event: Event) -> tuple[str, dict[str, Any] | None]:
        """The call of a tool event and its part, if its input went out whole."""
        call_id = str(event.data.get("call_id", ""))
        part = self._calls.get(call_id)
        if part is None or call_id in self._arguments:
            return call_id, None
        return call_id, part

    def _tool_delta(self, event: Event) -> list[Chunk]:
        if "preliminary-tool-output" not in self.features:
            return []
        call_id, part = self._output_part(event)
        if part is None:
            return []
        progress = self._progress.setdefault(call_id, [])
        progress.append(str(event.data.get("delta", "")))
        # The whole output so far each time, as the SDK replaces a preliminary output.
        output = "".join(progress)
        progress[:] = [output]
        part.update(state="output-available", output=output, preliminary=True)
        chunk: Chunk = {"type": "tool-output-available", "toolCallId": call_id, "output": output}
        chunk["preliminary"] = True
        return [chunk]

    def _tool_completed(self, event: Event) -> list[Chunk]:
        call_id, part = self._output_part(event)
        if part is None:
            return []
        self._progress.pop(call_id, None)
        output = event.data.get("output")
        part.pop("preliminary", None)
        part.update(state="output-available", output=output)
        self._done_calls.add(call_id)
        out: list[Chunk] = [
            {"type": "tool-output-available", "toolCallId": call_id, "output": output}
        ]
        return out + self._pause_if_waiting()

    def _tool_failed(self, event: Event) -> list[Chunk]:
        call_id, part = self._output_part(event)
        if part is None:
            return []
        self._progress.pop(call_id, None)
        text = _error_text(event.data.get("error"), "tool_error")
        for key in ("output", "preliminary"):
            part.pop(key, None)
        part.update(state="output-error", errorText=text)
        self._done_calls.add(call_id)
        self._awaiting.discard(call_id)  # an approval that expired with "fail"
        out: list[Chunk] = [{"type": "tool-output-error", "toolCallId": call_id, "errorText": text}]
        return out + self._pause_if_waiting()

    # -- approvals ----------------------------------------------------------------------------

    def _pause_if_waiting(self) -> list[Chunk]:
        """The pause, once calls wait for a person and none of the step's runs any more."""
        if (
            not self._awaiting - self._answered
            or not self._step_complete
            or any(
                call not in self._awaiting and call not in self._done_calls
                for call in self._step_calls
            )
        ):
            return []
        out = self._finish_step()
        out.append({"type": "finish"})
        self._paused = True
        return out

    def _approval_requested(self, event: Event) -> list[Chunk]:
        if "tool-approval" not in self.features:
            return []
        call_id, part = self._output_part(event)
        if part is None or call_id in self._done_calls:
            return []
        approval = approval_id(call_id)
        part.update(state="approval-requested", approval={"id": approval})
        self._awaiting.add(call_id)
        out: list[Chunk] = [
            {"type": "tool-approval-request", "approvalId": approval, "toolCallId": call_id}
        ]
        return out + self._pause_if_waiting()

    def _answer(self, event: Event, approved: bool) -> dict[str, Any] | None:
        """The part of an answered call that waited (its state the SDK's after the answer)."""
        call_id, part = self._output_part(event)
        if part is None or call_id not in self._awaiting:
            return None
        self._awaiting.discard(call_id)
        reason = event.data.get("reason")
        approval: dict[str, Any] = {"id": approval_id(call_id), "approved": approved}
        if isinstance(reason, str):
            approval["reason"] = reason
        part.update(state="approval-responded", approval=approval)
        return part

    def _approved(self, event: Event) -> list[Chunk]:
        self._answer(event, True)
        return []

    def _denied(self, event: Event) -> list[Chunk]:
        call_id = str(event.data.get("call_id", ""))
        if "tool-approval" not in self.features:
            _, part = self._output_part(event)
            if part is None or call_id in self._done_calls:
                return []
            reason = event.data.get("reason")
            failed = {"code": _DENIED_CODE, "message": reason if isinstance(reason, str) else ""}
            text = _error_text(failed, _DENIED_CODE)
            part.update(state="output-error", errorText=text)
            self._done_calls.add(call_id)
            return [{"type": "tool-output-error", "toolCallId": call_id, "errorText": text}]
        part = self._answer(event, False)
        if part is None:
            return []
        part["state"] = "output-denied"
        self._done_calls.add(call_id)
        out: list[Chunk] = [{"type": "tool-output-denied", "toolCallId": call_id}]
        return out + self._pause_if_waiting()

    def _run_completed(self, event: Event) -> list[Chunk]:
        out = self._finish_step()
        self._ended = True
        out.append({"type": "finish"})
        return out

    def _run_failed(self, event: Event) -> list[Chunk]:
        return self._fail(_error_text(event.data.get("error"), "error"))

    def _message_retracted(self, event: Event) -> list[Chunk]:
        return self._fail(f"{RETRACTED_CODE}: {retracted_message(event.data.get('reason'))}")

    def _fail(self, text: str) -> list[Chunk]:
        out = self._end_text()
        self._ended = True
        out.append({"type": "error", "errorText": text})
        return out

    def _run_cancelled(self, event: Event) -> list[Chunk]:
        out = self._end_text()
        self._ended = True
        out.append({"type": "abort"})
        return out

    def _stream_gap(self, event: Event) -> list[Chunk]:
        text = (
            f"stream_gap: events after seq {event.data['after']} up to "
            f"{event.data['next_seq'] - 1} are no longer retained"
        )
        return [{"type": "error", "errorText": text}]
