"""Human approval of tool calls: which calls need it, the request a run waits on, the answer.

A call needs approval when the gateway's config says so for its tool (``always``), for the
API key that started the run, or when the run's spec asks (``"approval": "all"`` or
``{"tools": [...]}``), for server and client tools alike. The run then appends
``tool.approval_requested`` and that producer waits (the others carry on) until an answer,
its ``approval_timeout`` (then ``deny`` or ``fail``, as the config says) or a cancel::

    requested ──approve (arguments as asked, or edited and valid)──▶ approved ──▶ runs
        │      └─deny──────────────────────────────────────────────▶ denied (a refusal
        │                                                             the model reads)
        └──timeout──▶ denied (by "timeout") | failed (approval_timeout)

Pure: no I/O. The waiting is :meth:`streams.runs.run.Run.awaiting_approval`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from streams.errors import InvalidRequestError

__all__ = [
    "MAX_REASON_LENGTH",
    "ApprovalAnswer",
    "ApprovalObserver",
    "ApprovalPolicy",
    "ApprovalRequest",
    "answered_by",
    "check_arguments",
    "denial_message",
]

MAX_REASON_LENGTH = 1000  # characters of an answer's reason (it goes out in events)

Decision = Literal["approve", "deny"]


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """What the gateway's config says about approvals."""

    # Per tool: "always" (every call of it waits for a person) or "never" (only when a run
    # or its key asks).
    tools: Mapping[str, Literal["always", "never"]] = field(default_factory=dict)
    # Per API key name: the tools whose calls wait in the runs it starts ("all": every tool).
    keys: Mapping[str, Sequence[str] | Literal["all"]] = field(default_factory=dict)
    # Keys that may answer any run's approvals (a run's owner may always answer its own).
    approvers: frozenset[str] = frozenset()
    timeout: float = 600.0  # seconds a call waits for its answer
    on_timeout: Literal["deny", "fail"] = "deny"

    def required(
        self, tool: str, owner: str | None, asked: Literal["all"] | Sequence[str] | None
    ) -> bool:
        """Whether a call of ``tool`` in a run of ``owner`` whose spec asks ``asked`` waits."""
        if self.tools.get(tool) == "always":
            return True
        by_key = self.keys.get(owner) if owner is not None else None
        for wanted in (by_key, asked):
            if wanted == "all" or (wanted is not None and tool in wanted):
                return True
        return False

    def may_answer(self, key: str | None, owner: str | None) -> bool:
        """Whether the caller with API key ``key`` may answer a run of ``owner`` (an open
        gateway has neither: anyone may)."""
        return owner is None or key == owner or (key is not None and key in self.approvers)


class ApprovalObserver(Protocol):
    """Told of every approval's course (the gateway's metrics implement it). ``tool`` is
    the server tool's name, or ``"client"`` for every client tool (whose names are the
    clients' own: no bound on how many)."""

    def requested(self, tool: str) -> None:
        """A call of ``tool`` began to wait for a person."""

    def answered(self, tool: str, decision: Decision, seconds: float) -> None:
        """A person answered a call of ``tool`` after it waited ``seconds``."""

    def expired(self, tool: str) -> None:
        """No one answered a call of ``tool`` within the timeout."""


def answered_by(key: str | None) -> str:
    """An answer's ``by`` for the caller with API key name ``key`` (``None``: an open
    gateway, whose callers have no name)."""
    return key or "anonymous"


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A call waiting for its answer (``tool.approval_requested``)."""

    call_id: str
    name: str
    arguments: Any
    parameters: Mapping[str, Any]  # the tool's schema: edited arguments must fit it
    expires_at: float  # time.time() seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    """A person's answer to one call: ``by`` is who (the API key's name, ``"anonymous"`` on
    an open gateway, ``"timeout"``), ``arguments`` the edited ones if any."""

    decision: Decision
    by: str
    reason: str | None = None
    arguments: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.decision not in ("approve", "deny"):
            raise InvalidRequestError("decision must be 'approve' or 'deny'")
        if self.reason is not None and len(self.reason) > MAX_REASON_LENGTH:
            raise InvalidRequestError(f"reason is longer than {MAX_REASON_LENGTH} characters")
        if self.arguments is not None and self.decision != "approve":
            raise InvalidRequestError("only an approval may edit the call's arguments")

    def event(self, call_id: str) -> dict[str, Any]:
        """The payload of ``tool.approved`` / ``tool.denied``."""
        payload: dict[str, Any] = {"call_id": call_id, "by": self.by, "reason": self.reason}
        if self.arguments is not None:
            payload["arguments"] = self.arguments
        return payload


def denial_message(reason: object) -> str:
    """The refusal the model reads for a denied call (``tool.denied``'s ``reason``), which
    the dialects that report the call's result show the client too."""
    return "the user denied this tool call" + (
        f": {reason}" if isinstance(reason, str) and reason else ""
    )


def _is(value: Any, kind: str) -> bool:
    """Whether ``value`` (parsed JSON) is of the JSON Schema type ``kind``."""
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):  # not an integer, whatever Python says
        return False
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int),
        "number": isinstance(value, int | float),
        "null": value is None,
    }.get(kind, True)


def check_arguments(value: Any, schema: Mapping[str, Any], where: str = "arguments") -> None:
    """Raise :class:`~streams.errors.InvalidRequestError` naming where ``value`` does not fit
    ``schema``, for the JSON Schema a tool's parameters use: ``type``, ``properties``,
    ``required``, ``additionalProperties: false``, ``items``, ``enum``, ``minimum`` /
    ``maximum``, ``minLength`` / ``maxLength``. Other keywords are not checked (the tool
    checks its own arguments too)."""
    kinds = schema.get("type")
    if isinstance(kinds, str):
        kinds = [kinds]
    if isinstance(kinds, list) and kinds and not any(_is(value, str(k)) for k in kinds):
        raise InvalidRequestError(f"{where} must be {' or '.join(map(str, kinds))}")
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        raise InvalidRequestError(f"{where} must be one of {enum}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestError(f"{where} must be a finite number")
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int | float) and value < low:
            raise InvalidRequestError(f"{where} must be at least {low}")
        if isinstance(high, int | float) and value > high:
            raise InvalidRequestError(f"{where} must be at most {high}")
    if isinstance(value, str):
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if isinstance(shortest, int) and len(value) < shortest:
            raise InvalidRequestError(f"{where} must have at least {shortest} characters")
        if isinstance(longest, int) and len(value) > longest:
            raise InvalidRequestError(f"{where} must have at most {longest} characters")
    if isinstance(value, dict):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        for name in schema.get("required") or ():
            if name not in value:
                raise InvalidRequestError(f"{where}.{name} is required")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                raise InvalidRequestError(f"{where}.{extra[0]} is not a parameter of the tool")
        for name, item in value.items():
            sub = properties.get(name)
            if isinstance(sub, Mapping):
                check_arguments(item, sub, f"{where}.{name}")
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                check_arguments(item, items, f"{where}[{index}]")
