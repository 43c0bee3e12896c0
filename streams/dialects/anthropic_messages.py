"""The Anthropic Messages dialect: native events as the Messages API's stream events, framed
for SSE (``event: <type>`` + ``data: <json>``), and the ``message`` object a non-streamed
request answers. Pure: no I/O, no web framework.

One run is one Messages message, across all its model steps (the gateway's own tools run
between them): content block indices keep counting from the first step to the last.

:class:`MessagesEncoder` is stateful and deterministic: what it emits for an event depends
only on the events before it, so a resumed stream primes a fresh encoder with the events the
client has (:meth:`MessagesEncoder.prime`). The SSE ``id:`` is the native ``seq`` of the
event a frame came from, on the last frame of each native event only, so a ``Last-Event-ID``
always names a native event whose frames all arrived.

A Messages stream has one open content block at a time; native events imply blocks that may
overlap (an OpenAI upstream streams parallel tool calls' arguments interleaved). So blocks
are written in order: while a tool call's block is open, what comes for later blocks
(another call's arguments, text, reasoning) waits, in order, and is sent when the blocks
before it have stopped (the calls of a step complete in order at its end). What waits is
bounded by what the run's log holds.

=========================  ===================================================================
native                     Messages
=========================  ===================================================================
``run.started``            ``message_start`` (empty content, the echoed model, the face's
                           input token estimate and ``output_tokens`` 1, as Anthropic's own)
``message.started``        nothing: blocks open lazily
``message.delta``          a ``text`` block: ``content_block_start``, then ``text_delta``\\ s
``reasoning.delta``        a ``thinking`` block: ``content_block_start``, ``thinking_delta``\\ s
``reasoning.signature``    the thinking block's ``signature_delta`` (the string as it came),
                           then its ``content_block_stop``: a signature ends its block
``reasoning.redacted``     a ``redacted_thinking`` block, whole (start, stop)
``tool_call.started``      a client tool's ``tool_use`` block; a gateway tool's call is an
                           ``mcp_tool_use`` block (server ``gateway``), sent whole when its
                           arguments are complete (the SDK applies no ``input_json_delta`` to
                           one unless it reads the beta API)
``tool_call.delta``        ``input_json_delta`` in the call's ``tool_use`` block
``tool_call.completed``    the whole arguments as one ``input_json_delta`` if none was sent,
                           then ``content_block_stop``
``tool.completed``         an ``mcp_tool_result`` block (the output as JSON text), whole
``tool.failed``            the same, ``is_error`` true, text ``"<code>: <message>"``
``message.completed``      the open block's ``content_block_stop`` (and any waiting blocks)
``run.completed``          ``message_delta`` (stop reason, the run's usage), ``message_stop``
``message.rerouted``       nothing: a switch of route is no part of the message
``message.retracted``      ``error`` (``api_error``, ``"output_retracted: <why>"``): a stream
                           cannot take back text, so it ends there (the encoder is ``ended``)
                           while the run restarts the step on another route
``run.failed``             ``error`` (its type from the native code); nothing after it
``run.cancelled``          ``error`` (``api_error``, ``"cancelled: <reason>"``): a cancelled
                           stream never looks like a whole one
``stream.gap``             ``error`` (``api_error``) naming the events lost
others                     nothing
=========================  ===================================================================

Once ``message_stop`` or ``error`` is out, the encoder is ``ended`` (an
:class:`~streams.dialects.retraction.EndingEncoder`) and encodes nothing more. A non-streamed
message is assembled from the events :func:`~streams.dialects.retraction.without_retracted`
leaves: the last attempt's answer.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.dialects.retraction import RETRACTED_CODE, retracted_message
from streams.dialects.sse import frame
from streams.events import Event, EventType, dumps
from streams.spec import RunSpec

__all__ = [
    "ERROR_STATUS",
    "METADATA_KEY",
    "PING_FRAME",
    "SERVER_NAME",
    "MessagesEncoder",
    "error_frame",
    "error_type",
    "message_id",
    "messages_usage",
    "run_id_of",
    "stop_reason",
]

# The spec metadata key under which the Messages face keeps what the message echoes:
# ``{"model": <the model id the client asked for>, "input_tokens": <estimate>}``.
METADATA_KEY = "messages"
# The ``server_name`` of the gateway's own tools' ``mcp_tool_use`` blocks.
SERVER_NAME = "gateway"
# Anthropic's heartbeat, byte for byte as its API sends it.
PING_FRAME = b'event: ping\ndata: {"type": "ping"}\n\n'
# The HTTP status Anthropic answers with each error type.
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

MessagesEvent = dict[str, Any]

_CALL_KINDS = frozenset({"tool_use", "mcp_tool_use"})
# Blocks sent whole: a start and a stop, nothing between.
_WHOLE_KINDS = frozenset({"redacted_thinking", "mcp_tool_result"})
_RATE_LIMITED_CODES = frozenset({"rate_limited", "limit_exceeded"})
_FINISH_STOP_REASONS = {
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
}


def message_id(run_id: str) -> str:
    """The message id of a run: ``msg_`` and the run's hex id."""
    return "msg_" + run_id.removeprefix("run_")


def run_id_of(message: str) -> str:
    """The run id of a message id (the inverse of :func:`message_id`)."""
    return "run_" + message.removeprefix("msg_")


def messages_usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """A native ``usage`` as the Messages API's (the cache counts 0 when the native one has
    none)."""
    usage = usage or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
    }


def stop_reason(run_completed: Mapping[str, Any]) -> tuple[str, str | None]:
    """The Messages ``stop_reason`` and ``stop_sequence`` of a ``run.completed`` payload."""
    run_stop = run_completed.get("stop_reason")
    if run_stop == "client_tool_calls":
        return "tool_use", None
    if run_stop == "max_steps":
        # The turn stopped before the model finished it: the client may continue it.
        return "pause_turn", None
    reason = _FINISH_STOP_REASONS.get(str(run_completed.get("finish_reason")), "end_turn")
    if reason == "stop_sequence":
        sequence = run_completed.get("stop_sequence")
        return reason, None if sequence is None else str(sequence)
    return reason, None


def error_type(error: Mapping[str, Any]) -> str:
    """The Messages error type of a native ``{code, message}`` error."""
    code = str(error.get("code", ""))
    message = str(error.get("message", ""))
    if code == "upstream_timeout":
        return "timeout_error"
    if code == "circuit_open":
        return "overloaded_error"
    if code in _RATE_LIMITED_CODES:
        return "rate_limit_error"
    # An upstream's own verdict, in its status or its stream's error (the messages
    # streams/upstream writes: "the upstream answered 529: …", "…: overloaded_error: …").
    if code in ("upstream_status", "upstream_stream_error"):
        if "answered 529" in message or "overloaded_error" in message:
            return "overloaded_error"
        if "answered 429" in message or "rate_limit_error" in message:
            return "rate_limit_error"
    return "api_error"


def error_frame(code: str, message: str) -> bytes:
    """An ``event: error`` frame for a failure that ends a stream outside the run's log
    (its store gone): the frame the SSE response sends in this dialect."""
    error = {"code": code, "message": message}
    body = {"type": "error", "error": {"type": error_type(error), "message": f"{code}: {message}"}}
    return frame(event="error", data=dumps(body))


@dataclass(slots=True, eq=False)
class _Block:
    """A content block: waiting to be sent, open, or (``index`` set) sent."""

    kind: str  # its Messages type
    call_id: str = ""
    name: str = ""
    # Text, thinking or argument fragments that came while the block waited.
    parts: list[str] = field(default_factory=list)
    signature: str | None = None  # a thinking block's; set, it ends the block
    done: bool = False  # a call's arguments are complete (``arguments``)
    arguments: str = ""
    whole: dict[str, Any] | None = None  # a block sent whole, as sent
    index: int = -1  # in the message's content, once started
    sent_arguments: bool = False  # an input_json_delta went out for it


class MessagesEncoder:
    """Encodes one run's native events as one Messages message's stream (see the module)."""

    def __init__(
        self,
        run_id: str,
        *,
        model: str,
        client_tools: Iterable[str] = (),
        input_tokens: int = 1,
    ) -> None:
        self.message_id = message_id(run_id)
        self.model = model
        self._client_tools = frozenset(client_tools)
        # Anthropic's message_start says at least one input token.
        self._input_tokens = max(1, int(input_tokens))
        self._content: list[dict[str, Any]] = []  # the message's blocks, by index
        self._arguments: dict[int, list[str]] = {}  # a tool_use block's argument JSON sent
        self._open: _Block | None = None
        # The open text block's deltas not yet joined into its text (joined when the text is
        # read: appending each to the text would copy the whole text every time).
        self._text: list[str] = []
        # Its text deltas' frame, but for the native seq and the text.
        self._delta_format: bytes | None = None
        self._queue: collections.deque[_Block] = collections.deque()  # blocks waiting
        self._calls: dict[str, _Block] = {}  # call_id -> a call not yet complete
        self._gateway_calls: set[str] = set()  # call ids of mcp_tool_use blocks
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: dict[str, int] | None = None
        self._error: dict[str, Any] | None = None
        self.ended = False  # a message_stop or an error ended the stream
        self._handlers: dict[EventType, Callable[[Event], list[MessagesEvent]]] = {
            EventType.RUN_STARTED: self._run_started,
            EventType.MESSAGE_DELTA: self._message_delta,
            EventType.REASONING_DELTA: self._reasoning_delta,
            EventType.REASONING_SIGNATURE: self._reasoning_signature,
            EventType.REASONING_REDACTED: self._reasoning_redacted,
            EventType.MESSAGE_COMPLETED: self._message_completed,
            EventType.MESSAGE_FAILED: self._message_failed,
            EventType.MESSAGE_RETRACTED: self._message_retracted,
            EventType.TOOL_CALL_STARTED: self._tool_call_started,
            EventType.TOOL_CALL_DELTA: self._tool_call_delta,
            EventType.TOOL_CALL_COMPLETED: self._tool_call_completed,
            EventType.TOOL_COMPLETED: self._tool_completed,
            EventType.TOOL_FAILED: self._tool_failed,
            EventType.RUN_COMPLETED: self._run_completed,
            EventType.RUN_FAILED: self._run_failed,
            EventType.RUN_CANCELLED: self._run_cancelled,
            EventType.STREAM_GAP: self._stream_gap,
        }

    @classmethod
    def for_run(cls, run_id: str, spec: RunSpec) -> MessagesEncoder:
        """An encoder for run ``run_id``: a run the Messages face started echoes the model
        its request named and the face's input token estimate (kept in the spec's metadata,
        :data:`METADATA_KEY`); any other run is read with its own model."""
        echo = spec.metadata.get(METADATA_KEY)
        echo = echo if isinstance(echo, Mapping) else {}
        estimate = echo.get("input_tokens")
        return cls(
            run_id,
            model=str(echo.get("model") or spec.model or ""),
            client_tools=[tool.name for tool in spec.client_tools],
            input_tokens=estimate if type(estimate) is int else 1,
        )

    # -- public API ---------------------------------------------------------------------------

    def __call__(self, events: list[Event]) -> bytes:
        """SSE frames for ``events`` (b"" when they yield no Messages event)."""
        frames = []
        for event in events:
            if event.type is EventType.MESSAGE_DELTA and self._delta_format is not None:
                # The hot path, a text delta of the open text block: one format operation,
                # the bytes the general path below makes of the event translate() returns.
                delta = event.data["delta"]
                self._text.append(delta)
                frames.append(self._delta_format % (event.seq, dumps(delta)))
                continue
            items = self.translate(event)
            for item in items[:-1]:
                frames.append(frame(event=item["type"], data=dumps(item)))
            if items:
                # Only the last frame of a native event carries its seq, so a Last-Event-ID
                # always names a native event whose Messages events all arrived.
                frames.append(frame(id=event.seq, event=items[-1]["type"], data=dumps(items[-1])))
        return b"".join(frames)

    def prime(self, events: Iterable[Event]) -> None:
        """Take in events the client already has: update the state, emit nothing."""
        for event in events:
            self.translate(event)

    def translate(self, event: Event) -> list[MessagesEvent]:
        """The Messages events for one native event, updating the state."""
        handler = self._handlers.get(event.type)
        if handler is None or self.ended:
            return []
        return handler(event)

    def message(self) -> dict[str, Any]:
        """The message object as the log stands (what a non-streamed request answers): a
        call's ``input`` is its argument JSON parsed, ``{}`` until that JSON is whole."""
        self._join_text()
        content = []
        for index, block in enumerate(self._content):
            block = dict(block)
            if index in self._arguments:
                block["input"] = _parse_input("".join(self._arguments[index]))
            content.append(block)
        usage = self._usage or {
            "input_tokens": self._input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": json.loads(dumps(content)),  # a deep copy, as JSON has it
            "stop_reason": self._stop_reason,
            "stop_sequence": self._stop_sequence,
            "usage": dict(usage),
        }

    def error(self) -> dict[str, Any] | None:
        """The error body of a run that failed or was cancelled (``{"type": "error",
        "error": {type, message}}``; its status: :data:`ERROR_STATUS`), else None."""
        return None if self._error is None else {"type": "error", "error": dict(self._error)}

    # -- blocks -------------------------------------------------------------------------------

    def _join_text(self) -> None:
        """The open text block's deltas into its text."""
        if self._text:
            assert self._open is not None
            self._content[self._open.index]["text"] += "".join(self._text)
            self._text.clear()

    def _busy(self) -> bool:
        """Whether new content must wait: a call's block is open (an open call is one whose
        arguments are not complete) or blocks wait already."""
        return bool(self._queue) or self._call_open()

    def _call_open(self) -> bool:
        return self._open is not None and self._open.kind in _CALL_KINDS

    def _waiting(self, kind: str) -> _Block:
        """The waiting block that takes more content of ``kind``: the last one if it is of
        that kind (and, a thinking block, not signed), else a new one."""
        if self._queue:
            last = self._queue[-1]
            if last.kind == kind and last.signature is None:
                return last
        block = _Block(kind)
        self._queue.append(block)
        return block

    def _start(self, block: _Block, content_block: dict[str, Any]) -> MessagesEvent:
        block.index = len(self._content)
        self._content.append(content_block)
        self._open = block
        if block.kind == "text":
            self._delta_format = (
                b"id: %d\nevent: content_block_delta\ndata: "
                b'{"type":"content_block_delta","index":'
                + str(block.index).encode()
                + b',"delta":{"type":"text_delta","text":%s}}\n\n'
            )
        return {
            "type": "content_block_start",
            "index": block.index,
            "content_block": dict(content_block),
        }

    def _delta(self, block: _Block, delta: dict[str, Any]) -> MessagesEvent:
        return {"type": "content_block_delta", "index": block.index, "delta": delta}

    def _stop(self) -> list[MessagesEvent]:
        """The open block's ``content_block_stop`` ([] when none is open)."""
        self._join_text()
        block, self._open = self._open, None
        self._delta_format = None
        if block is None:
            return []
        self._calls.pop(block.call_id, None)
        return [{"type": "content_block_stop", "index": block.index}]

    def _text_delta(self, block: _Block, text: str) -> MessagesEvent:
        self._text.append(text)
        return self._delta(block, {"type": "text_delta", "text": text})

    def _thinking_delta(self, block: _Block, thinking: str) -> MessagesEvent:
        self._content[block.index]["thinking"] += thinking
        return self._delta(block, {"type": "thinking_delta", "thinking": thinking})

    def _signature(self, block: _Block, signature: str) -> list[MessagesEvent]:
        block.signature = signature
        self._content[block.index]["signature"] = signature
        return [self._delta(block, {"type": "signature_delta", "signature": signature})]

    def _arguments_delta(self, block: _Block, fragment: str) -> MessagesEvent:
        block.sent_arguments = True
        self._arguments[block.index].append(fragment)
        return self._delta(block, {"type": "input_json_delta", "partial_json": fragment})

    def _send(self, block: _Block) -> list[MessagesEvent]:
        """Start ``block`` (nothing is open) with what it holds; stop it too if it is
        complete (sent whole, a signed thinking block, a call whose arguments are done)."""
        kind = block.kind
        out: list[MessagesEvent] = []
        if kind in _WHOLE_KINDS:
            assert block.whole is not None
            out.append(self._start(block, block.whole))
            return out + self._stop()
        if kind == "text":
            out.append(self._start(block, {"type": "text", "text": ""}))
            if block.parts:
                out.append(self._text_delta(block, "".join(block.parts)))
        elif kind == "thinking":
            out.append(self._start(block, {"type": "thinking", "thinking": "", "signature": ""}))
            if block.parts:
                out.append(self._thinking_delta(block, "".join(block.parts)))
            if block.signature is not None:
                out += self._signature(block, block.signature)
                out += self._stop()
        elif kind == "tool_use":
            out.append(
                self._start(
                    block,
                    {"type": "tool_use", "id": block.call_id, "name": block.name, "input": {}},
                )
            )
            self._arguments[block.index] = []
            held = block.arguments if block.done else "".join(block.parts)
            if held:
                out.append(self._arguments_delta(block, held))
            if block.done:
                out += self._stop()
        else:  # mcp_tool_use: open, silent, until its arguments are complete
            self._open = block
            if block.done:
                out += self._finish_call(block)
        return out

    def _finish_call(self, block: _Block) -> list[MessagesEvent]:
        """The open call ``block``'s end, its arguments complete."""
        if block.kind == "tool_use":
            out = []
            if not block.sent_arguments and block.arguments:
                out.append(self._arguments_delta(block, block.arguments))
            return out + self._stop()
        # The SDK applies input_json_delta to an mcp_tool_use block only in its beta API:
        # the input goes whole in the start, which every reader takes.
        self._open = None
        start = self._start(
            block,
            {
                "type": "mcp_tool_use",
                "id": block.call_id,
                "name": block.name,
                "server_name": SERVER_NAME,
                "input": _parse_input(block.arguments),
            },
        )
        return [start, *self._stop()]

    def _drain(self) -> list[MessagesEvent]:
        """Send the waiting blocks, in order, until one stays open (a call whose arguments
        are not complete, or the last one if it can take more)."""
        out: list[MessagesEvent] = []
        while self._queue and not self._call_open():
            block = self._queue.popleft()
            out += self._send(block)
            if self._open is not None and self._queue and self._open.kind not in _CALL_KINDS:
                out += self._stop()
        return out

    def _close(self) -> list[MessagesEvent]:
        """Stop the open block and send every waiting one, complete as it stands (the end of
        a model step)."""
        out = self._close_open()
        while self._queue:
            block = self._queue.popleft()
            if block.kind in _CALL_KINDS and not block.done:
                block.done, block.arguments = True, "".join(block.parts)
            out += self._send(block)
            out += self._close_open()
        self._calls.clear()
        return out

    def _close_open(self) -> list[MessagesEvent]:
        block = self._open
        if block is not None and block.kind == "mcp_tool_use":
            block.done, block.arguments = True, "".join(block.parts)
            return self._finish_call(block)
        return self._stop()

    def _abandon(self) -> list[MessagesEvent]:
        """Stop the open block and drop what waits (the stream ends in an error)."""
        # An mcp_tool_use block whose arguments are not complete was never started.
        silent = self._open is not None and self._open.kind == "mcp_tool_use"
        out = [] if silent else self._stop()
        self._open = None
        self._queue.clear()
        self._calls.clear()
        return out

    def _add(self, block: _Block) -> list[MessagesEvent]:
        """``block`` after what is open and waiting."""
        if self._busy():
            self._queue.append(block)
            return []
        return self._stop() + self._send(block)

    # -- handlers -----------------------------------------------------------------------------

    def _run_started(self, event: Event) -> list[MessagesEvent]:
        if not self.model:
            self.model = str(event.data.get("model") or "")
        message = self.message()
        return [{"type": "message_start", "message": message}]

    def _message_delta(self, event: Event) -> list[MessagesEvent]:
        delta = event.data["delta"]
        if self._busy():
            self._waiting("text").parts.append(delta)
            return []
        open_ = self._open
        out: list[MessagesEvent] = []
        if open_ is None or open_.kind != "text":
            out += self._stop()
            out += self._send(_Block("text"))
            open_ = self._open
            assert open_ is not None
        out.append(self._text_delta(open_, delta))
        return out

    def _reasoning_delta(self, event: Event) -> list[MessagesEvent]:
        delta = event.data["delta"]
        if self._busy():
            self._waiting("thinking").parts.append(delta)
            return []
        open_ = self._open
        out: list[MessagesEvent] = []
        if open_ is None or open_.kind != "thinking":
            out += self._stop()
            out += self._send(_Block("thinking"))
            open_ = self._open
            assert open_ is not None
        out.append(self._thinking_delta(open_, delta))
        return out

    def _reasoning_signature(self, event: Event) -> list[MessagesEvent]:
        signature = event.data["signature"]
        if self._busy():
            self._waiting("thinking").signature = signature
            return []
        open_ = self._open
        if open_ is not None and open_.kind == "thinking":
            return self._signature(open_, signature) + self._stop()
        return self._stop() + self._send(_Block("thinking", signature=signature))

    def _reasoning_redacted(self, event: Event) -> list[MessagesEvent]:
        whole = {"type": "redacted_thinking", "data": event.data["data"]}
        return self._add(_Block("redacted_thinking", whole=whole))

    def _message_completed(self, event: Event) -> list[MessagesEvent]:
        return self._close()

    def _message_failed(self, event: Event) -> list[MessagesEvent]:
        return self._abandon()

    def _tool_call_started(self, event: Event) -> list[MessagesEvent]:
        call_id, name = str(event.data["call_id"]), str(event.data["name"])
        kind = "tool_use" if name in self._client_tools else "mcp_tool_use"
        if kind == "mcp_tool_use":
            self._gateway_calls.add(call_id)
        block = _Block(kind, call_id=call_id, name=name)
        self._calls[call_id] = block
        return self._add(block)

    def _tool_call_delta(self, event: Event) -> list[MessagesEvent]:
        block = self._calls.get(event.data.get("call_id", ""))
        if block is None:
            return []
        fragment = event.data["delta"]
        if block is self._open and block.kind == "tool_use":
            return [self._arguments_delta(block, fragment)]
        block.parts.append(fragment)
        return []

    def _tool_call_completed(self, event: Event) -> list[MessagesEvent]:
        block = self._calls.pop(event.data.get("call_id", ""), None)
        if block is None:
            return []
        block.done, block.arguments = True, str(event.data.get("arguments") or "")
        if block is not self._open:
            return []  # it waits; its block is sent when the ones before it have stopped
        return self._finish_call(block) + self._drain()

    def _tool_result(self, call_id: str, is_error: bool, text: str) -> list[MessagesEvent]:
        if call_id not in self._gateway_calls:
            return []
        self._gateway_calls.discard(call_id)
        whole = {
            "type": "mcp_tool_result",
            "tool_use_id": call_id,
            "is_error": is_error,
            "content": [{"type": "text", "text": text}],
        }
        return self._add(_Block("mcp_tool_result", whole=whole))

    def _tool_completed(self, event: Event) -> list[MessagesEvent]:
        text = dumps(event.data.get("output")).decode()
        return self._tool_result(str(event.data.get("call_id", "")), False, text)

    def _tool_failed(self, event: Event) -> list[MessagesEvent]:
        error = event.data.get("error") or {}
        text = f"{error.get('code', 'tool_error')}: {error.get('message', '')}"
        return self._tool_result(str(event.data.get("call_id", "")), True, text)

    def _run_completed(self, event: Event) -> list[MessagesEvent]:
        out = self._close()
        self._stop_reason, self._stop_sequence = stop_reason(event.data)
        self._usage = messages_usage(event.data.get("usage"))
        self.ended = True
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": self._stop_sequence},
                "usage": dict(self._usage),
            }
        )
        out.append({"type": "message_stop"})
        return out

    def _fail(self, kind: str, message: str) -> list[MessagesEvent]:
        out = self._abandon()
        self._error = {"type": kind, "message": message}
        self.ended = True
        out.append({"type": "error", "error": dict(self._error)})
        return out

    def _run_failed(self, event: Event) -> list[MessagesEvent]:
        error = event.data.get("error") or {}
        message = f"{error.get('code', 'internal_error')}: {error.get('message', '')}"
        return self._fail(error_type(error), message)

    def _message_retracted(self, event: Event) -> list[MessagesEvent]:
        error = {"code": RETRACTED_CODE, "message": retracted_message(event.data.get("reason"))}
        return self._fail(error_type(error), f"{error['code']}: {error['message']}")

    def _run_cancelled(self, event: Event) -> list[MessagesEvent]:
        return self._fail("api_error", f"cancelled: {event.data.get('reason', '')}")

    def _stream_gap(self, event: Event) -> list[MessagesEvent]:
        message = (
            f"stream_gap: events after seq {event.data['after']} up to "
            f"{event.data['next_seq'] - 1} are no longer retained"
        )
        return [{"type": "error", "error": {"type": "api_error", "message": message}}]


def _parse_input(arguments: str) -> Any:
    """A call's input as the SDK makes it of its argument JSON (``{}`` for none)."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {}
