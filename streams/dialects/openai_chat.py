"""The OpenAI Chat Completions dialect, pure: a run's events as ``chat.completion.chunk``
SSE frames (so the openai SDKs read a gateway stream unchanged), or assembled into one
``chat.completion``.

The run behind a chat completion is one model step (``message.*`` and ``tool_call.*``
events). Each frame carries the event's ``seq`` as ``id:``. A failure is an error frame
``data: {"error": …}``, which the SDKs raise as an API error; every stream ends with
``data: [DONE]``.

=========================  ===================================================================
native                     Chat Completions chunks
=========================  ===================================================================
``message.started``        a chunk with ``role: assistant`` and empty ``content``
``message.delta``          a chunk with the ``content`` delta
``tool_call.started``      a ``tool_calls`` chunk: index, id, name, empty arguments
``tool_call.delta``        a ``tool_calls`` chunk with the arguments fragment
``message.completed``      an empty delta with the ``finish_reason``
``message.rerouted``       nothing: a switch of route is no part of the answer
``message.retracted``      an error frame (code ``output_retracted``), then ``[DONE]``: the
                           stream ends there (the encoder is ``ended``); a chunk stream cannot
                           take back text, and silently joining the restarted answer to it
                           would duplicate the text
``message.failed``         an error frame (the native code), ``[DONE]``
``run.completed``          the usage chunk (``include_usage``), ``[DONE]``
``run.failed``             an error frame, ``[DONE]``
``run.cancelled``          an error frame (code ``cancelled``), ``[DONE]``
``stream.gap``             an error frame (code ``stream_gap``), ``[DONE]``
others                     nothing
=========================  ===================================================================

The non-streamed :func:`chat_completion` is the answer of the step's last attempt: what a
retraction voided is left out (:func:`~streams.dialects.retraction.without_retracted`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.dialects.retraction import RETRACTED_CODE, retracted_message, without_retracted
from streams.dialects.sse import JSONFrameTemplate, data_frame
from streams.events import Event, EventType, dumps

__all__ = [
    "DONE",
    "ChatChunkEncoder",
    "chat_completion",
    "finish_reason",
    "openai_error",
    "usage_payload",
]

DONE = data_frame(b"[DONE]")


def _frame(seq: int, payload: dict[str, Any]) -> bytes:
    return data_frame(dumps(payload), seq)


def openai_error(code: str, message: str, type_: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def finish_reason(step_reason: Any, called_tools: bool) -> str:
    """A choice's ``finish_reason`` for a step that ended with ``step_reason`` (the
    ``message.completed`` field, if any): ``length`` and ``content_filter`` as the step said;
    otherwise ``tool_calls`` when it called tools, else ``stop`` (the two a client acts on,
    decided by what it will read in the message)."""
    if step_reason in ("length", "content_filter"):
        return str(step_reason)
    return "tool_calls" if called_tools else "stop"


def usage_payload(usage: dict[str, int] | None) -> dict[str, int]:
    prompt = (usage or {}).get("input_tokens", 0)
    completion = (usage or {}).get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass
class ChatChunkEncoder:
    """Stateful encoder of one chat completion's events, callable on each batch; ``ended``
    once its stream has said ``[DONE]`` (an
    :class:`~streams.dialects.retraction.EndingEncoder`)."""

    completion_id: str
    model: str
    created: int
    include_usage: bool = False
    _tool_index: dict[str, int] = field(default_factory=dict)
    _usage: dict[str, int] | None = None
    ended: bool = field(default=False, init=False)
    _content_template: JSONFrameTemplate | None = None  # a text delta's frame around the text

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def __call__(self, events: list[Event]) -> bytes:
        return b"".join([self.encode(event) for event in events])

    def _content_frame(self, seq: int, text: str) -> bytes:
        """A text delta's frame. The hot path of a streamed completion: the chunk's JSON
        around the text is the same for every delta, so it is made once and only the text
        is encoded each time (the bytes are those of ``_frame(seq, _chunk(...))``)."""
        template = self._content_template
        if template is None:
            chunk = dumps(self._chunk({"content": ""}))
            head, _, tail = chunk.rpartition(b'"content":""')
            template = self._content_template = JSONFrameTemplate(head + b'"content":', tail)
        return template.frame(seq, dumps(text))

    def encode(self, event: Event) -> bytes:
        if self.ended:
            return b""
        data = event.data
        kind = event.type
        if kind is EventType.MESSAGE_STARTED:
            return _frame(event.seq, self._chunk({"role": "assistant", "content": ""}))
        if kind is EventType.MESSAGE_DELTA:
            return self._content_frame(event.seq, data["delta"])
        if kind is EventType.TOOL_CALL_STARTED:
            index = self._tool_index.setdefault(data["call_id"], len(self._tool_index))
            call = {
                "index": index,
                "id": data["call_id"],
                "type": "function",
                "function": {"name": data["name"], "arguments": ""},
            }
            return _frame(event.seq, self._chunk({"tool_calls": [call]}))
        if kind is EventType.TOOL_CALL_DELTA:
            index = self._tool_index[data["call_id"]]
            call = {"index": index, "function": {"arguments": data["delta"]}}
            return _frame(event.seq, self._chunk({"tool_calls": [call]}))
        if kind is EventType.MESSAGE_COMPLETED:
            self._usage = data.get("usage")
            finish = finish_reason(data.get("finish_reason"), bool(self._tool_index))
            return _frame(event.seq, self._chunk({}, finish))
        if kind is EventType.MESSAGE_RETRACTED:
            return self._error(event.seq, RETRACTED_CODE, retracted_message(data.get("reason")))
        if kind is EventType.MESSAGE_FAILED:
            return self._error(event.seq, data["error"]["code"], data["error"]["message"])
        if kind is EventType.RUN_FAILED:
            return self._error(event.seq, data["error"]["code"], data["error"]["message"])
        if kind is EventType.RUN_CANCELLED:
            return self._error(
                event.seq, "cancelled", f"the request was cancelled: {data.get('reason', '')}"
            )
        if kind is EventType.RUN_COMPLETED:
            self.ended = True
            frames = b""
            if self.include_usage:
                usage_chunk = {
                    **self._chunk({}),
                    "choices": [],
                    "usage": usage_payload(self._usage),
                }
                frames = _frame(event.seq, usage_chunk)
            return frames + DONE
        if kind is EventType.STREAM_GAP:
            return self._error(
                event.seq, "stream_gap", "events of this completion are no longer retained"
            )
        return b""

    def _error(self, seq: int, code: str, message: str) -> bytes:
        self.ended = True
        return _frame(seq, openai_error(code, message)) + DONE


def chat_completion(
    events: list[Event], completion_id: str, model: str, created: int
) -> dict[str, Any] | tuple[str, str]:
    """The non-streaming answer assembled from a finished run's events (a retracted
    attempt's text and calls left out: the answer is the last attempt's), or ``(code,
    message)`` if the model step failed."""
    text: list[str] = []
    calls: dict[str, dict[str, Any]] = {}
    usage: dict[str, int] | None = None
    finished: Any = None  # the step's finish_reason
    for event in without_retracted(events):
        data = event.data
        if event.type is EventType.MESSAGE_DELTA:
            text.append(data["delta"])
        elif event.type is EventType.TOOL_CALL_COMPLETED:
            calls[data["call_id"]] = {
                "id": data["call_id"],
                "type": "function",
                "function": {"name": data["name"], "arguments": data["arguments"]},
            }
        elif event.type is EventType.MESSAGE_COMPLETED:
            usage = data.get("usage")
            finished = data.get("finish_reason")
        elif event.type in (EventType.MESSAGE_FAILED, EventType.RUN_FAILED):
            return data["error"]["code"], data["error"]["message"]
        elif event.type is EventType.RUN_CANCELLED:
            return "cancelled", f"the request was cancelled: {data.get('reason', '')}"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
    }
    if calls:
        message["tool_calls"] = list(calls.values())
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(finished, bool(calls)),
                "logprobs": None,
            }
        ],
        "usage": usage_payload(usage),
    }
