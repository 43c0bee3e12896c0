"""The WebSocket command protocol, as pure functions (no socket here).

Client → server, one JSON object per text message, each with a ``type`` and the client's
own command ``id`` (echoed in the answer)::

    {"type": "run.start",   "id": 1, "run": {<run spec>}}
    {"type": "run.cancel",  "id": 2, "run_id": "run_…", "reason": "…"?}
    {"type": "subscribe",   "id": 3, "run_id": "run_…", "after": 0?}
    {"type": "unsubscribe", "id": 4, "run_id": "run_…"}
    {"type": "tool.result", "id": 5, "run_id": "run_…", "call_id": "call_1",
                            "output": <any JSON>? | "error": "message"?}
    {"type": "tool.approve", "id": 8, "run_id": "run_…", "call_id": "call_1",
                             "reason": "…"?, "arguments": {…}?}
    {"type": "tool.deny",   "id": 9, "run_id": "run_…", "call_id": "call_1", "reason": "…"?}
    {"type": "ping",        "id": 6}
    {"type": "auth",        "id": 7, "key": "<API key>"}   (when not sent as a header)

Server → client: ``{"type": "ack", "id", "command", …}``, ``{"type": "error", "id", "code",
"message"}``, and run events (each with its ``run_id`` and ``seq``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from streams.approvals import MAX_REASON_LENGTH
from streams.spec import RunSpec

__all__ = [
    "COMMAND_TYPES",
    "Authenticate",
    "CancelRun",
    "CommandError",
    "Ping",
    "StartRun",
    "Subscribe",
    "ToolApprove",
    "ToolDeny",
    "ToolResult",
    "Unsubscribe",
    "parse_command",
]

CommandId = StrictStr | StrictInt | None  # a JSON true is not the id 1


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CommandId = None


class StartRun(_Command):
    type: Literal["run.start"]
    run: RunSpec


class CancelRun(_Command):
    type: Literal["run.cancel"]
    run_id: str
    reason: str = Field(default="cancelled by client", max_length=200)


class Subscribe(_Command):
    type: Literal["subscribe"]
    run_id: str
    after: int = Field(default=0, ge=0)


class Unsubscribe(_Command):
    type: Literal["unsubscribe"]
    run_id: str


class ToolResult(_Command):
    type: Literal["tool.result"]
    run_id: str
    call_id: str
    output: Any = None
    error: str | None = None


class ToolApprove(_Command):
    """Approve a call waiting for a person (``tool.approval_requested``), possibly with
    edited ``arguments`` (checked against the tool's schema)."""

    type: Literal["tool.approve"]
    run_id: str
    call_id: str
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    arguments: dict[str, Any] | None = None


class ToolDeny(_Command):
    """Deny a call waiting for a person: the model reads a refusal."""

    type: Literal["tool.deny"]
    run_id: str
    call_id: str
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)


class Ping(_Command):
    type: Literal["ping"]


class Authenticate(_Command):
    """The API key, for clients that cannot set a header on the handshake (browsers)."""

    type: Literal["auth"]
    key: str = Field(min_length=1, max_length=512)


AnyCommand = (
    StartRun
    | CancelRun
    | Subscribe
    | Unsubscribe
    | ToolResult
    | ToolApprove
    | ToolDeny
    | Ping
    | Authenticate
)
Command = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND_TYPES = (
    "auth",
    "run.start",
    "run.cancel",
    "subscribe",
    "unsubscribe",
    "tool.result",
    "tool.approve",
    "tool.deny",
    "ping",
)

_adapter: TypeAdapter[Command] = TypeAdapter(Command)


@dataclass(frozen=True, slots=True)
class CommandError:
    """A message that is not a valid command: answer with an error, keep the session."""

    id: CommandId
    code: str
    message: str


def parse_command(text: str | bytes) -> AnyCommand | CommandError:
    """Parse one client message into a command, or say precisely what is wrong with it."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return CommandError(None, "invalid_json", f"the message is not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return CommandError(None, "invalid_command", "a command must be a JSON object")
    command_id = raw.get("id")
    if not isinstance(command_id, str | int) or isinstance(command_id, bool):
        command_id = None
    kind = raw.get("type")
    if kind not in COMMAND_TYPES:
        return CommandError(
            command_id,
            "unknown_command",
            f"unknown command type {kind!r}; expected one of {', '.join(COMMAND_TYPES)}",
        )
    try:
        return _adapter.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'command'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return CommandError(command_id, "invalid_command", f"invalid {kind}: {problems}")
