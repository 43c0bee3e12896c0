"""The OpenAI Responses dialect: native events as Responses API stream events, framed for SSE
(``event: <type>`` + ``data: <json>``). Pure: no I/O, no web framework.

:class:`ResponsesEncoder` is stateful (the Responses API opens and closes output items that
native events only imply) and deterministic: what it emits for an event depends only on the
events before it. Its ``sequence_number`` is the response's own counter, from 0, one per
Responses event; since the encoding is deterministic, the events after sequence number ``N``
are found by encoding the log from its start and skipping the first ``N + 1``
(:meth:`ResponsesEncoder.skip_through`). The SSE ``id:`` is the native ``seq`` of the event a
frame came from, on the last frame of each native event (as in AG-UI), so ``Last-Event-ID``
resumes natively too and always names a native event whose frames all arrived.

=========================  ===================================================================
native                     Responses
=========================  ===================================================================
``run.started``            ``response.created``, ``response.in_progress`` (status
                           ``in_progress``)
``message.started``        nothing: a text item opens lazily, on its first text
``message.delta``          ``response.output_item.added`` (a ``message``) and
                           ``response.content_part.added`` (``output_text``) before the first
                           delta of a text segment, then ``response.output_text.delta``
``message.completed``      the open text item's ``response.output_text.done``,
                           ``response.content_part.done``, ``response.output_item.done``
``tool_call.started``      (closing open text as above) ``response.output_item.added``: a
                           ``function_call`` for a tool the client runs, an ``mcp_call``
                           (server label ``gateway``) for one the gateway runs
``tool_call.delta``        ``response.function_call_arguments.delta`` /
                           ``response.mcp_call_arguments.delta``
``tool_call.completed``    ``….arguments.done``; a function call's ``output_item.done``
``tool.started``           ``response.mcp_call.in_progress``
``tool.completed``         ``response.mcp_call.completed``, ``output_item.done`` (``output``:
                           the result as JSON text)
``tool.failed``            ``response.mcp_call.failed``, ``output_item.done`` (``error``: an
                           ``mcp_tool_execution_error`` whose content is ``"<code>: <message>"``)
``run.completed``          (closing what is open) ``response.completed``: the whole response,
                           its ``output``, ``usage`` and ``completed_at``; when the model cut
                           its answer (finish reason ``length`` or ``content_filter``),
                           ``response.incomplete`` with ``incomplete_details.reason``
                           (``max_output_tokens``, ``content_filter``), items ``incomplete``
``message.rerouted``       nothing: a switch of route is no part of the response
``message.retracted``      (closing what is open, as ``incomplete``) ``response.failed`` with
                           ``error`` (``output_retracted`` first in its message): a stream
                           cannot take back text, so it ends there (the encoder is ``ended``)
                           while the run restarts the step on another route
``run.failed``             (closing what is open, as ``incomplete``) ``response.failed`` with
                           ``error``
``run.cancelled``          (closing what is open) nothing more: a cancelled response's stream
                           ends without ``response.completed``, as OpenAI's does
``tool.approval_requested`` the waiting ``mcp_call``'s ``output_item.done`` (``incomplete``,
                           with its ``approval_request_id``), an ``mcp_approval_request`` item
                           (id ``mcpr_<call_id>``, ``added`` and ``done``), ``response.completed``
                           (closing what is open as ``incomplete``): the response ends, as
                           OpenAI's does, while the run waits for the answer
``tool.approved``          in the response that goes on after the request: the call's
                           ``mcp_call`` item again (``approval_request_id``; the edited
                           arguments, if any), then as above
``tool.denied``            nothing: the model reads the refusal
``stream.gap``             ``error`` (code ``stream_gap``): events the client missed are gone
others                     nothing (``tool.delta``, ``client_tool.requested``)
=========================  ===================================================================

A run that asks for approvals is several responses, one after another: the run's first
(``resp_<hex>``) ends at its first ``tool.approval_requested``; the client answers with a new
request (``previous_response_id`` and ``mcp_approval_response`` items), which is the next
response of the same run, ``resp_<hex>_<seq>``: its events are those after the native event
``seq`` (the approval request it goes on after), up to the next approval request or the run's
end. An encoder made with ``after=seq`` takes in the events up to ``seq`` and sends nothing of
them; a call still open at a cut is added again to the next response when its next event
comes.

Once ``response.completed``, ``response.incomplete`` or ``response.failed`` is out, the encoder
is ``ended`` (an :class:`~streams.dialects.retraction.EndingEncoder`) and encodes nothing
more. A non-streamed response is assembled from the events
:func:`~streams.dialects.retraction.without_retracted` leaves: the last attempt's answer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.dialects.retraction import RETRACTED_CODE, retracted_message
from streams.dialects.sse import frame
from streams.events import Event, EventType, dumps
from streams.spec import RunSpec

__all__ = [
    "METADATA_KEY",
    "SERVER_LABEL",
    "ResponsesEncoder",
    "approval_request_id",
    "call_id_of",
    "response_id",
    "response_start",
    "response_usage",
    "run_id_of",
]

# The spec metadata key under which the Responses face keeps what the response object echoes
# (instructions, tool_choice, the client's own metadata …) and a native run has no notion of.
METADATA_KEY = "responses"
# The ``server_label`` of the gateway's own tools, offered as an ``mcp`` tool.
SERVER_LABEL = "gateway"

ResponsesEvent = dict[str, Any]

# The finish reasons of a last model step that make a response incomplete, and the reason
# OpenAI gives for each.
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(run_id: str, after: int = 0) -> str:
    """The response id of a run's response that starts after native event ``after``:
    ``resp_`` and the run's hex id (its first response), then ``_<after>`` (one that goes
    on after an approval request)."""
    base = "resp_" + run_id.removeprefix("run_")
    return base if after == 0 else f"{base}_{after}"


def run_id_of(response: str) -> str:
    """The run id of a response id (the inverse of :func:`response_id`)."""
    return "run_" + response.removeprefix("resp_").partition("_")[0]


def response_start(response: str) -> int:
    """The native seq a response starts after: 0 for the run's first response, -1 for a
    malformed suffix (an id that names no response of the run)."""
    _, cut, suffix = response.removeprefix("resp_").partition("_")
    if not cut:
        return 0
    seq = int(suffix) if suffix.isdigit() and len(suffix) <= 18 else -1
    return seq if seq > 0 else -1


_APPROVAL_PREFIX = "mcpr_"


def approval_request_id(call_id: str) -> str:
    """The id of the ``mcp_approval_request`` item of a call waiting for approval."""
    return _APPROVAL_PREFIX + call_id


def call_id_of(approval_request: str) -> str | None:
    """The call id of an approval request id (None: not one of ours)."""
    if not approval_request.startswith(_APPROVAL_PREFIX):
        return None
    return approval_request.removeprefix(_APPROVAL_PREFIX) or None


def _require_approval(spec: RunSpec) -> Any:
    """The ``require_approval`` of the gateway's ``mcp`` tool, as the run's spec asks it."""
    if spec.approval is None:
        return "never"
    if spec.approval == "all":
        return "always"
    return {"always": {"tool_names": list(spec.approval.tools)}}


def response_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """A native ``usage`` as the Responses API's."""
    usage = usage or {}
    input_tokens = int(usage.get("input_tokens", 0))
    output_tokens = int(usage.get("output_tokens", 0))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": int(usage.get("cached_tokens", 0)),
            "cache_write_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": int(usage.get("reasoning_tokens", 0))},
        "total_tokens": input_tokens + output_tokens,
    }


class ResponsesEncoder:
    """Encodes one run's native events as one response's stream events (see the module)."""

    def __init__(
        self,
        run_id: str,
        *,
        model: str,
        function_tools: Iterable[str] = (),
        echo: Mapping[str, Any] | None = None,
        after: int = 0,
    ) -> None:
        self._run_id = run_id
        # The native seq this response starts after: the events up to it are taken in, and
        # none of them is sent (an earlier response of the run's).
        self._after = after
        self.response_id = response_id(run_id)
        self.model = model
        self._function_tools = frozenset(function_tools)
        self._echo = dict(echo or {})
        self.sequence_number = 0  # of the next event
        self.status = "queued"
        self._created_at = 0.0
        self._completed_at: float | None = None
        self._output: list[dict[str, Any]] = []  # output items, by output_index
        self._open_text: int | None = None  # output_index of the text item being written
        # Its deltas not yet joined into its text (joined when the text is read: appending
        # each to the text would copy the whole text every time).
        self._text: list[str] = []
        # Its text deltas' frame, but for the native seq, the text and the sequence number.
        self._delta_format: bytes | None = None
        self._text_segments: dict[str, int] = {}  # message_id -> text items opened so far
        self._calls: dict[str, int] = {}  # call_id -> output_index
        # Calls open when an earlier response of the run ended: their item, added again to
        # this response on their next event.
        self._carried: dict[str, dict[str, Any]] = {}
        self._opening = False  # response.created is still to be sent (a later response)
        self._usage: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._incomplete: dict[str, str] | None = None  # why a completed run's answer is cut
        self._skip_through = -1  # frames up to this sequence number are not sent
        self.ended = False  # the response's last event is out: nothing more is encoded
        self._handlers: dict[EventType, Callable[[Event], list[ResponsesEvent]]] = {
            EventType.RUN_STARTED: self._run_started,
            EventType.MESSAGE_DELTA: self._message_delta,
            EventType.MESSAGE_COMPLETED: self._message_completed,
            EventType.MESSAGE_FAILED: self._message_failed,
            EventType.MESSAGE_RETRACTED: self._message_retracted,
            EventType.TOOL_CALL_STARTED: self._tool_call_started,
            EventType.TOOL_CALL_DELTA: self._tool_call_delta,
            EventType.TOOL_CALL_COMPLETED: self._tool_call_completed,
            EventType.TOOL_STARTED: self._tool_started,
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
    def for_run(cls, run_id: str, spec: RunSpec, after: int = 0) -> ResponsesEncoder:
        """An encoder for run ``run_id`` (its response after native event ``after``): a run
        the Responses face started echoes what its request said (kept in the spec's
        metadata, :data:`METADATA_KEY`); any other run is read with its own model and
        tools."""
        echo = spec.metadata.get(METADATA_KEY)
        echo = dict(echo) if isinstance(echo, Mapping) else {}
        tools: list[dict[str, Any]] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": False,
            }
            for tool in spec.client_tools
        ]
        if spec.tools:
            tools.append(
                {
                    "type": "mcp",
                    "server_label": SERVER_LABEL,
                    "allowed_tools": list(spec.tools),
                    "require_approval": _require_approval(spec),
                }
            )
        echo["tools"] = tools
        # The instructions are the spec's first message (not copied into the metadata, whose
        # size is bounded).
        if echo.pop("has_instructions", False) and spec.messages:
            echo["instructions"] = spec.messages[0].content
        return cls(
            run_id,
            model=str(echo.get("model") or spec.model or ""),
            function_tools=[tool.name for tool in spec.client_tools],
            echo=echo,
            after=after,
        )

    # -- public API ---------------------------------------------------------------------------

    def __call__(self, events: list[Event]) -> bytes:
        """SSE frames for ``events`` (b"" when they yield no Responses event, or only ones
        :meth:`skip_through` holds back)."""
        frames = []
        for event in events:
            if event.seq <= self._after:
                self.translate(event)  # an earlier response's: taken in, not sent
                continue
            if (
                event.type is EventType.MESSAGE_DELTA
                and self._delta_format is not None
                and self.sequence_number > self._skip_through
            ):
                # The hot path, a text delta of the open item: one format operation, the
                # bytes the general path below makes of the event translate() would return.
                delta = event.data["delta"]
                self._text.append(delta)
                frames.append(self._delta_format % (event.seq, dumps(delta), self.sequence_number))
                self.sequence_number += 1
                continue
            items = [
                item
                for item in self.translate(event)
                if item["sequence_number"] > self._skip_through
            ]
            for item in items[:-1]:
                frames.append(frame(event=item["type"], data=dumps(item)))
            if items:
                # Only the last frame of a native event carries its seq, so a Last-Event-ID
                # always names a native event whose Responses events all arrived.
                frames.append(frame(id=event.seq, event=items[-1]["type"], data=dumps(items[-1])))
        return b"".join(frames)

    def prime(self, events: Iterable[Event]) -> None:
        """Take in events the client already has: update the state, emit nothing."""
        for event in events:
            self.translate(event)

    def skip_through(self, sequence_number: int) -> None:
        """Send nothing up to ``sequence_number`` (a client that has those: ``starting_after``)."""
        self._skip_through = sequence_number

    def translate(self, event: Event) -> list[ResponsesEvent]:
        """The Responses events for one native event, numbered, updating the state."""
        handler = self._handlers.get(event.type)
        if handler is None or self.ended:
            return []
        if event.seq <= self._after:
            handler(event)  # an earlier response's: taken in, not sent
            # A retraction there ended that response's stream, not this one.
            self.ended = False
            return []
        out: list[ResponsesEvent] = []
        if self._opening:
            self._opening = False
            out += [
                {"type": "response.created", "response": self.response()},
                {"type": "response.in_progress", "response": self.response()},
            ]
        out += handler(event)
        for item in out:
            item["sequence_number"] = self.sequence_number
            self.sequence_number += 1
        return out

    def response(self) -> dict[str, Any]:
        """The response object as it stands (``output`` and ``usage`` so far)."""
        echo = self._echo
        self._join_text()
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self._created_at,
            "completed_at": self._completed_at,
            "status": self.status,
            "background": bool(echo.get("background", False)),
            "error": self._error,
            "incomplete_details": self._incomplete,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "metadata": dict(echo.get("metadata") or {}),
            "model": self.model,
            "output": copy.deepcopy(self._output),
            "parallel_tool_calls": bool(echo.get("parallel_tool_calls", True)),
            "previous_response_id": echo.get("previous_response_id"),
            "store": bool(echo.get("store", True)),
            "temperature": echo.get("temperature"),
            "text": {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": list(echo.get("tools") or []),
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "usage": self._usage,
            "user": None,
        }

    # -- output items -------------------------------------------------------------------------

    def _add_item(self, item: dict[str, Any]) -> tuple[int, ResponsesEvent]:
        index = len(self._output)
        self._output.append(item)
        return index, {
            "type": "response.output_item.added",
            "output_index": index,
            "item": copy.deepcopy(item),
        }

    def _item_done(self, index: int, status: str) -> ResponsesEvent:
        item = self._output[index]
        item["status"] = status
        return {
            "type": "response.output_item.done",
            "output_index": index,
            "item": copy.deepcopy(item),
        }

    def _join_text(self) -> None:
        """The open text item's deltas into its text."""
        if self._text:
            assert self._open_text is not None
            self._output[self._open_text]["content"][0]["text"] += "".join(self._text)
            self._text.clear()

    def _close_text(self, status: str = "completed") -> list[ResponsesEvent]:
        self._join_text()
        index, self._open_text = self._open_text, None
        self._delta_format = None
        if index is None:
            return []
        item = self._output[index]
        part = item["content"][0]
        return [
            {
                "type": "response.output_text.done",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "text": part["text"],
                "logprobs": [],
            },
            {
                "type": "response.content_part.done",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "part": copy.deepcopy(part),
            },
            self._item_done(index, status),
        ]

    def _close_all(self, status: str) -> list[ResponsesEvent]:
        out = self._close_text(status)
        for call_id, index in list(self._calls.items()):
            if self._output[index]["status"] in ("in_progress", "calling"):
                out.append(self._item_done(index, status))
            del self._calls[call_id]
        return out

    # -- handlers -----------------------------------------------------------------------------

    def _run_started(self, event: Event) -> list[ResponsesEvent]:
        self._created_at = event.ts
        self.status = "in_progress"
        if not self.model:
            self.model = str(event.data.get("model") or "")
        return [
            {"type": "response.created", "response": self.response()},
            {"type": "response.in_progress", "response": self.response()},
        ]

    def _message_delta(self, event: Event) -> list[ResponsesEvent]:
        out: list[ResponsesEvent] = []
        if self._open_text is None:
            message_id = event.data["message_id"]
            segment = self._text_segments.get(message_id, 0) + 1
            self._text_segments[message_id] = segment
            item_id = message_id if segment == 1 else f"{message_id}.{segment}"
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            index, added = self._add_item(
                {
                    "id": item_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
            )
            self._open_text = index
            self._output[index]["content"].append(part)
            head = dumps(
                {
                    "type": "response.output_text.delta",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                }
            )
            self._delta_format = (
                b"id: %d\nevent: response.output_text.delta\ndata: "
                + head[:-1].replace(b"%", b"%%")
                + b',"delta":%s,"logprobs":[],"sequence_number":%d}\n\n'
            )
            out += [
                added,
                {
                    "type": "response.content_part.added",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": copy.deepcopy(part),
                },
            ]
        index = self._open_text
        item = self._output[index]
        self._text.append(event.data["delta"])
        out.append(
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "delta": event.data["delta"],
                "logprobs": [],
            }
        )
        return out

    def _message_completed(self, event: Event) -> list[ResponsesEvent]:
        cut = str(event.data.get("finish_reason")) in _INCOMPLETE_REASONS
        return self._close_text("incomplete" if cut else "completed")

    def _message_failed(self, event: Event) -> list[ResponsesEvent]:
        return self._close_all("incomplete")

    def _tool_call_started(self, event: Event) -> list[ResponsesEvent]:
        out = self._close_text()
        call_id, name = event.data["call_id"], event.data["name"]
        if name in self._function_tools:
            item: dict[str, Any] = {
                "id": "fc_" + call_id,
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
        else:
            item = {
                "id": "mcp_" + call_id,
                "type": "mcp_call",
                "server_label": SERVER_LABEL,
                "name": name,
                "arguments": "",
                "output": None,
                "error": None,
                "status": "in_progress",
            }
        index, added = self._add_item(item)
        self._calls[call_id] = index
        out.append(added)
        return out

    def _call(self, event: Event) -> tuple[int, dict[str, Any]] | None:
        index = self._calls.get(event.data.get("call_id", ""))
        return None if index is None else (index, self._output[index])

    def _carried_call(
        self, event: Event, out: list[ResponsesEvent]
    ) -> tuple[int, dict[str, Any]] | None:
        """:meth:`_call`, or a call an earlier response left open, added to this one (its
        ``output_item.added`` appended to ``out``)."""
        found = self._call(event)
        if found is not None:
            return found
        item = self._carried.pop(event.data.get("call_id", ""), None)
        if item is None:
            return None
        item["status"] = "in_progress"
        index, added = self._add_item(item)
        self._calls[event.data["call_id"]] = index
        out.append(added)
        return index, item

    def _tool_call_delta(self, event: Event) -> list[ResponsesEvent]:
        found = self._call(event)
        if found is None:
            return []
        index, item = found
        item["arguments"] += event.data["delta"]
        kind = "function_call" if item["type"] == "function_call" else "mcp_call"
        return [
            {
                "type": f"response.{kind}_arguments.delta",
                "item_id": item["id"],
                "output_index": index,
                "delta": event.data["delta"],
            }
        ]

    def _tool_call_completed(self, event: Event) -> list[ResponsesEvent]:
        found = self._call(event)
        if found is None:
            return []
        index, item = found
        item["arguments"] = event.data["arguments"]
        if item["type"] == "function_call":
            del self._calls[event.data["call_id"]]
            return [
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "name": item["name"],
                    "arguments": item["arguments"],
                },
                self._item_done(index, "completed"),
            ]
        item["status"] = "calling"
        return [
            {
                "type": "response.mcp_call_arguments.done",
                "item_id": item["id"],
                "output_index": index,
                "arguments": item["arguments"],
            }
        ]

    def _tool_started(self, event: Event) -> list[ResponsesEvent]:
        out: list[ResponsesEvent] = []
        found = self._carried_call(event, out)
        if found is None or found[1]["type"] != "mcp_call":
            return out
        index, item = found
        out.append(
            {"type": "response.mcp_call.in_progress", "item_id": item["id"], "output_index": index}
        )
        return out

    def _tool_completed(self, event: Event) -> list[ResponsesEvent]:
        out: list[ResponsesEvent] = []
        found = self._carried_call(event, out)
        if found is None or found[1]["type"] != "mcp_call":
            return out
        index, item = found
        item["output"] = dumps(event.data.get("output")).decode()
        del self._calls[event.data["call_id"]]
        return [
            *out,
            {"type": "response.mcp_call.completed", "item_id": item["id"], "output_index": index},
            self._item_done(index, "completed"),
        ]

    def _tool_failed(self, event: Event) -> list[ResponsesEvent]:
        out: list[ResponsesEvent] = []
        found = self._carried_call(event, out)
        if found is None or found[1]["type"] != "mcp_call":
            return out
        index, item = found
        error = event.data.get("error") or {}
        # What an MCP server answers for a tool that failed (a result whose content is the
        # error's text); our code goes first in it, as in a failed response's message.
        text = f"{error.get('code', 'tool_error')}: {error.get('message', '')}"
        item["error"] = {
            "type": "mcp_tool_execution_error",
            "content": [{"type": "text", "text": text}],
        }
        del self._calls[event.data["call_id"]]
        return [
            *out,
            {"type": "response.mcp_call.failed", "item_id": item["id"], "output_index": index},
            self._item_done(index, "failed"),
        ]

    def _approval_requested(self, event: Event) -> list[ResponsesEvent]:
        call_id = str(event.data["call_id"])
        request_id = approval_request_id(call_id)
        out = self._close_text()
        still_open = {call: self._output[index] for call, index in self._calls.items()}
        found = self._call(event)
        if found is not None and found[1]["type"] == "mcp_call":
            # The call has not run in this response: OpenAI's client reads the request item.
            index, item = found
            item["approval_request_id"] = request_id
            out.append(self._item_done(index, "incomplete"))
        out += self._close_all("incomplete")
        index, added = self._add_item(
            {
                "id": request_id,
                "type": "mcp_approval_request",
                "server_label": SERVER_LABEL,
                "name": event.data["name"],
                "arguments": dumps(event.data.get("arguments")).decode(),
            }
        )
        out += [
            added,
            {
                "type": "response.output_item.done",
                "output_index": index,
                "item": copy.deepcopy(self._output[index]),
            },
        ]
        self._completed_at = event.ts
        self.status = "completed"
        out.append({"type": "response.completed", "response": self.response()})
        if event.seq <= self._after:
            # An earlier response ended here (nothing of it is sent): this one follows.
            self._next_response(event, still_open)
            return []
        self.ended = True
        return out

    def _next_response(self, cut: Event, still_open: dict[str, dict[str, Any]]) -> None:
        """Start the response that goes on after the approval request ``cut`` (the calls
        ``still_open`` there are added to it on their next event)."""
        self._carried.update(still_open)
        self._output = []
        self._echo["previous_response_id"] = self.response_id
        self.response_id = response_id(self._run_id, cut.seq)
        self.sequence_number = 0
        self.status = "in_progress"
        self._created_at = cut.ts
        self._completed_at = None
        self._error = None
        self._incomplete = None
        self._usage = None
        self._opening = True

    def _approved(self, event: Event) -> list[ResponsesEvent]:
        out: list[ResponsesEvent] = []
        found = self._carried_call(event, out)
        if found is not None and "arguments" in event.data:
            # Edited: what the tool runs with (the item added above has them too).
            arguments = dumps(event.data["arguments"]).decode()
            found[1]["arguments"] = arguments
            if out:
                out[-1]["item"]["arguments"] = arguments
        return out

    def _denied(self, event: Event) -> list[ResponsesEvent]:
        self._carried.pop(event.data.get("call_id", ""), None)
        return []

    def _run_completed(self, event: Event) -> list[ResponsesEvent]:
        # An answer the model cut (its token budget, a content filter) is OpenAI's
        # "incomplete", with the reason: never a whole answer to the client.
        reason = _INCOMPLETE_REASONS.get(str(event.data.get("finish_reason")))
        out = self._close_all("completed" if reason is None else "incomplete")
        self._completed_at = event.ts
        self._usage = response_usage(event.data.get("usage"))
        if reason is None:
            self.status = "completed"
            out.append({"type": "response.completed", "response": self.response()})
        else:
            self.status = "incomplete"
            self._incomplete = {"reason": reason}
            out.append({"type": "response.incomplete", "response": self.response()})
        self.ended = True
        return out

    def _fail(self, code: str, message: str) -> list[ResponsesEvent]:
        out = self._close_all("incomplete")
        self.status = "failed"
        # The Responses API's codes are its own; ours goes first in the message.
        self._error = {"code": "server_error", "message": f"{code}: {message}"}
        out.append({"type": "response.failed", "response": self.response()})
        self.ended = True
        return out

    def _run_failed(self, event: Event) -> list[ResponsesEvent]:
        error = event.data.get("error") or {}
        return self._fail(str(error.get("code", "server_error")), str(error.get("message", "")))

    def _message_retracted(self, event: Event) -> list[ResponsesEvent]:
        return self._fail(RETRACTED_CODE, retracted_message(event.data.get("reason")))

    def _run_cancelled(self, event: Event) -> list[ResponsesEvent]:
        out = self._close_all("incomplete")
        self.status = "cancelled"
        return out

    def _stream_gap(self, event: Event) -> list[ResponsesEvent]:
        return [
            {
                "type": "error",
                "code": "stream_gap",
                "message": f"events after seq {event.data['after']} up to "
                f"{event.data['next_seq'] - 1} are no longer retained",
                "param": None,
            }
        ]
