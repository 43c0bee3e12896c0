"""For the dialects' tests: native events of one run (each builder appends the next event),
and the SSE frames a dialect encodes them to, split and parsed as a client reads them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from streams.events import Event, EventType

__all__ = ["NativeEvents", "parse", "parse_data", "split_frames"]


def split_frames(stream: bytes) -> list[bytes]:
    """A stream's SSE messages, each with its blank line."""
    return [frame + b"\n\n" for frame in stream.split(b"\n\n") if frame]


def parse(frame: bytes) -> tuple[int | None, str, dict[str, Any]]:
    """A frame's ``id`` (None without one), ``event`` and ``data``."""
    lines = frame.rstrip(b"\n").split(b"\n")
    id_line = lines.pop(0) if lines[0].startswith(b"id: ") else None
    event_line, data_line = lines
    assert event_line.startswith(b"event: ")
    assert data_line.startswith(b"data: ")
    data = json.loads(data_line.removeprefix(b"data: "))
    assert isinstance(data, dict)
    return (None if id_line is None else int(id_line[4:])), event_line[7:].decode(), data


def parse_data(frame: bytes) -> tuple[int | None, Any]:
    """A data-only frame's ``id`` (None without one) and its data: parsed JSON, or the
    string ``"[DONE]"``."""
    lines = frame.rstrip(b"\n").split(b"\n")
    id_line = lines.pop(0) if lines[0].startswith(b"id: ") else None
    (data_line,) = lines
    assert data_line.startswith(b"data: ")
    raw = data_line.removeprefix(b"data: ")
    data = "[DONE]" if raw == b"[DONE]" else json.loads(raw)
    return (None if id_line is None else int(id_line[4:])), data


class NativeEvents:
    """Native events of run ``run_id``, ``seq`` counting from 1 and ``ts`` from 2.0, one a
    second; ``model`` and ``tools`` are what its ``run.started`` says, ``usage`` the
    ``(input, output)`` tokens its ``run.completed`` gives by default."""

    def __init__(
        self,
        run_id: str,
        *,
        model: str = "upstream-model",
        tools: Sequence[str] = (),
        usage: tuple[int, int] = (0, 0),
    ) -> None:
        self.run_id = run_id
        self.model = model
        self.tools = list(tools)
        self.usage = usage
        self.seq = 0

    def __call__(self, type: EventType, producer: str | None = None, **data: Any) -> Event:
        self.seq += 1
        return Event.create(self.seq, self.run_id, type, 1.0 + self.seq, producer, data)

    def run_started(self) -> Event:
        return self(EventType.RUN_STARTED, kind="agent", model=self.model, tools=self.tools)

    def message(self, message_id: str = "m1", step: int = 0) -> Event:
        return self(EventType.MESSAGE_STARTED, "model", message_id=message_id, step=step)

    def delta(self, text: str, message_id: str = "m1") -> Event:
        return self(EventType.MESSAGE_DELTA, "model", message_id=message_id, delta=text)

    def thinking(self, text: str, message_id: str = "m1") -> Event:
        return self(EventType.REASONING_DELTA, "model", message_id=message_id, delta=text)

    def signature(self, signature: str, message_id: str = "m1") -> Event:
        return self(
            EventType.REASONING_SIGNATURE, "model", message_id=message_id, signature=signature
        )

    def redacted(self, data: str, message_id: str = "m1") -> Event:
        return self(EventType.REASONING_REDACTED, "model", message_id=message_id, data=data)

    def message_done(self, text: str = "", message_id: str = "m1", **extra: Any) -> Event:
        usage = {"input_tokens": 0, "output_tokens": 0}
        return self(
            EventType.MESSAGE_COMPLETED,
            "model",
            message_id=message_id,
            text=text,
            usage=usage,
            **extra,
        )

    def message_failed(self, message_id: str = "m1") -> Event:
        error = {"code": "upstream_stream_error", "message": "it broke"}
        return self(EventType.MESSAGE_FAILED, "model", message_id=message_id, error=error)

    def rerouted(
        self,
        from_route: str = "a",
        to_route: str = "b",
        reason: str = "http_503",
        message_id: str = "m1",
    ) -> Event:
        """A model group moved the step from route ``from_route`` to ``to_route``."""
        return self(
            EventType.MESSAGE_REROUTED,
            "model",
            message_id=message_id,
            reason=reason,
            **{"from": from_route, "to": to_route},
        )

    def retracted(self, reason: str = "stream_broken", message_id: str = "m1") -> Event:
        """The message's output so far is void (the step restarts on another route)."""
        return self(EventType.MESSAGE_RETRACTED, "model", message_id=message_id, reason=reason)

    def call(self, call_id: str, name: str, message_id: str = "m1") -> Event:
        return self(
            EventType.TOOL_CALL_STARTED, "model", message_id=message_id, call_id=call_id, name=name
        )

    def call_delta(self, call_id: str, fragment: str) -> Event:
        return self(EventType.TOOL_CALL_DELTA, "model", call_id=call_id, delta=fragment)

    def call_done(self, call_id: str, name: str, arguments: str) -> Event:
        return self(
            EventType.TOOL_CALL_COMPLETED, "model", call_id=call_id, name=name, arguments=arguments
        )

    def tool_started(self, call_id: str, name: str = "calculator") -> Event:
        return self(EventType.TOOL_STARTED, call_id, call_id=call_id, name=name, arguments={})

    def tool_delta(self, call_id: str, delta: str) -> Event:
        return self(EventType.TOOL_DELTA, call_id, call_id=call_id, delta=delta)

    def tool_done(self, call_id: str, output: Any) -> Event:
        return self(EventType.TOOL_COMPLETED, call_id, call_id=call_id, output=output)

    def tool_failed(self, call_id: str) -> Event:
        error = {"code": "tool_error", "message": "division by zero"}
        return self(EventType.TOOL_FAILED, call_id, call_id=call_id, error=error)

    def client_tool(self, call_id: str) -> Event:
        return self(
            EventType.CLIENT_TOOL_REQUESTED, call_id, call_id=call_id, name="clock", arguments={}
        )

    def run_completed(
        self,
        stop_reason: str = "completed",
        *,
        usage: tuple[int, int] | None = None,
        **extra: Any,
    ) -> Event:
        input_tokens, output_tokens = usage or self.usage
        return self(
            EventType.RUN_COMPLETED,
            output=None,
            steps=1,
            stop_reason=stop_reason,
            usage={"input_tokens": input_tokens, "output_tokens": output_tokens},
            **extra,
        )

    def run_failed(self, code: str = "upstream_timeout", message: str = "too slow") -> Event:
        return self(EventType.RUN_FAILED, error={"code": code, "message": message})

    def cancelled(self) -> Event:
        return self(EventType.RUN_CANCELLED, reason="cancelled by client")

    def gap(self, after: int, next_seq: int) -> Event:
        """A ``stream.gap`` as a reader gets it: the events before ``next_seq`` are gone."""
        self.seq = next_seq - 1
        return Event.create(
            self.seq,
            self.run_id,
            EventType.STREAM_GAP,
            1.0 + self.seq,
            None,
            {"after": after, "next_seq": next_seq, "snapshot": {}},
        )
