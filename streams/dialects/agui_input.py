"""The AG-UI 1.0 dialect, input: AG-UI's ``RunAgentInput`` as a :class:`~streams.spec.RunSpec`.
Pure: no I/O, no web framework. The events out are :mod:`streams.dialects.agui`.

:func:`run_spec_from_agui` turns ``RunAgentInput`` (camelCase) into an agent run: messages
become OpenAI-style chat messages (``developer`` → ``system``; ``activity`` and ``reasoning``
messages are UI state and are left out); the input's ``tools`` are client tools in
``client_tool_mode="return"`` (the frontend executes them after the run and starts a new run
with the results, as AG-UI does); ``forwardedProps.model`` (default ``"demo"``),
``forwardedProps.tools`` (server tool names), ``forwardedProps.maxSteps`` and
``forwardedProps.failover`` (a model group's policy for this run) and
``forwardedProps.approval`` (``"all"`` or a list of tool names: the calls that wait for a
person, the spec's ``approval``) choose the rest;
``context`` becomes a leading system message; ``threadId`` / ``runId`` go to
``metadata["ag_ui"]``, from which the encoder takes the ids it reports.

An input with ``resume[]`` starts no run: it answers approval interrupts
(:func:`resume_answers`), and the gateway run that waits goes on. Each entry names an
interrupt by the id :func:`streams.dialects.agui.interrupt_id` made; ``status: "resolved"``
with ``payload`` ``{"approved": bool, "reason"?: str, "arguments"?: {...}}`` approves (with
the arguments edited, if given) or denies; ``status: "cancelled"`` denies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from streams.approvals import MAX_REASON_LENGTH, ApprovalAnswer
from streams.dialects.agui import METADATA_KEY, parse_interrupt_id
from streams.errors import InvalidRequestError
from streams.spec import FAILOVER_OPTION, FAILOVER_POLICIES, RunSpec

__all__ = [
    "DEFAULT_MODEL",
    "MAX_RESUME_ENTRIES",
    "AGUIContext",
    "AGUIFunctionCall",
    "AGUIMessage",
    "AGUIResume",
    "AGUIResumeEntry",
    "AGUIRunInput",
    "AGUITool",
    "AGUIToolCall",
    "chat_message",
    "resume_answers",
    "run_spec_from_agui",
]

DEFAULT_MODEL = "demo"
MAX_RESUME_ENTRIES = 64  # interrupts one input may answer


class _CamelModel(BaseModel):
    # AG-UI's wire is camelCase; snake_case is accepted too, as AG-UI's own SDK does. Unknown
    # fields are ignored: a newer client's additions must not break a run.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class AGUIFunctionCall(_CamelModel):
    name: str
    arguments: str = ""


class AGUIToolCall(_CamelModel):
    id: str
    type: Literal["function"] = "function"
    function: AGUIFunctionCall


class AGUIMessage(_CamelModel):
    """One message of AG-UI's conversation (every role in one shape; role-specific fields are
    checked here and converted by :func:`chat_message`)."""

    id: str | None = None
    role: Literal["developer", "system", "assistant", "user", "tool", "activity", "reasoning"]
    content: str | list[dict[str, Any]] | dict[str, Any] | None = None
    name: str | None = None
    tool_calls: list[AGUIToolCall] | None = None
    tool_call_id: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _role_fields(self) -> AGUIMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'toolCallId'")
        if self.role in ("developer", "system", "user") and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role != "activity" and isinstance(self.content, dict):
            raise ValueError("'content' must be a string or a list of parts")
        return self


class AGUITool(_CamelModel):
    """A tool the frontend offers (and executes)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class AGUIContext(_CamelModel):
    description: str
    value: str


class AGUIResumeEntry(_CamelModel):
    """AG-UI's ``ResumeEntry``: the answer to one interrupt."""

    interrupt_id: str = Field(max_length=1024)
    status: Literal["resolved", "cancelled"]
    payload: Any = None
    metadata: dict[str, Any] | None = None


class _ApprovalPayload(BaseModel):
    """A resolved approval interrupt's payload (``APPROVAL_RESPONSE_SCHEMA``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    approved: bool
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    arguments: dict[str, Any] | None = None


class AGUIRunInput(_CamelModel):
    """AG-UI's ``RunAgentInput``: what an AG-UI client POSTs to start a run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "threadId": "thread_1",
                    "runId": "run_1",
                    "messages": [{"id": "m1", "role": "user", "content": "count down from 3"}],
                    "tools": [],
                    "context": [],
                    "forwardedProps": {"model": "demo", "tools": ["countdown"]},
                }
            ]
        }
    )

    # The client's own ids, echoed in every run's RUN_STARTED and RUN_FINISHED.
    thread_id: str = Field(max_length=256)
    run_id: str = Field(max_length=256)
    parent_run_id: str | None = Field(default=None, max_length=256)
    state: Any = None
    messages: list[AGUIMessage]
    tools: list[AGUITool] | None = None
    context: list[AGUIContext] | None = None
    forwarded_props: Any = None
    # Answers to the interrupts the thread's last run finished with (AG-UI 1.0).
    resume: list[AGUIResumeEntry] | None = Field(default=None, max_length=MAX_RESUME_ENTRIES)


def _text_of(content: str | list[dict[str, Any]] | dict[str, Any] | None, role: str) -> str:
    """The text of a message where only text can go (system, assistant, tool): a string, or
    a list of text parts (joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content if isinstance(content, list) else [content]:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequestError(f"a {role} message's content parts must be text parts")
        texts.append(part["text"])
    return "\n".join(texts)


def _user_content(
    content: str | list[dict[str, Any]] | dict[str, Any] | None,
) -> str | list[dict[str, Any]]:
    """AG-UI user content as OpenAI's: a string (text parts only), or parts: text, and images
    by URL or inline data."""
    if not isinstance(content, list) or all(part.get("type") == "text" for part in content):
        return _text_of(content, "user")
    converted: list[dict[str, Any]] = []
    for part in content:
        kind, source = part.get("type"), part.get("source")
        if kind == "text" and isinstance(part.get("text"), str):
            converted.append({"type": "text", "text": part["text"]})
        elif kind == "image" and isinstance(source, Mapping) and source.get("type") == "url":
            converted.append({"type": "image_url", "image_url": {"url": source.get("value")}})
        elif kind == "image" and isinstance(source, Mapping) and source.get("type") == "data":
            url = f"data:{source.get('mimeType')};base64,{source.get('value')}"
            converted.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise InvalidRequestError(
                f"unsupported content part {kind!r}: user messages take text parts and images "
                "given by URL or inline data"
            )
    return converted


def chat_message(message: AGUIMessage) -> dict[str, Any] | None:
    """One AG-UI message as an OpenAI-style chat message; ``None`` for UI-only messages."""
    role, content = message.role, message.content
    chat: dict[str, Any]
    if role in ("activity", "reasoning"):
        return None  # UI state (tool progress, reasoning shown to the user), not conversation
    if role == "tool":
        # A failed tool reads as the engine reports one to a model: {"error": message}.
        text = (
            json.dumps({"error": message.error})
            if message.error is not None
            else _text_of(content, role)
        )
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": text}
    if role == "user":
        chat = {"role": "user", "content": _user_content(content)}
    elif role == "assistant":
        chat = {"role": "assistant", "content": _text_of(content, role)}
        if message.tool_calls:
            chat["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in message.tool_calls
            ]
    else:
        # RunSpec speaks OpenAI's older roles, where developer instructions are system ones.
        chat = {"role": "system", "content": _text_of(content, role)}
    if message.name is not None:
        chat["name"] = message.name
    return chat


def _context_message(context: list[AGUIContext]) -> dict[str, Any]:
    lines = [f"- {item.description}: {item.value}" for item in context]
    return {"role": "system", "content": "Context:\n" + "\n".join(lines)}


def _prop(props: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str) -> Any:
    value = props.get(key)
    if value is not None and not check(value):
        raise InvalidRequestError(f"forwardedProps.{key} must be {what}")
    return value


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}"
        for error in exc.errors()[:5]
    )


def run_spec_from_agui(
    input: AGUIRunInput | Mapping[str, Any], *, default_model: str = DEFAULT_MODEL
) -> RunSpec:
    """The agent run an AG-UI ``RunAgentInput`` asks for (see the module docstring).

    Raises :class:`~streams.errors.InvalidRequestError` for input that does not make a run.
    """
    try:
        parsed = input if isinstance(input, AGUIRunInput) else AGUIRunInput.model_validate(input)
    except ValidationError as exc:
        raise InvalidRequestError(f"invalid RunAgentInput: {_summary(exc)}") from None
    props: Mapping[str, Any] = (
        parsed.forwarded_props if isinstance(parsed.forwarded_props, Mapping) else {}
    )
    model = _prop(props, "model", lambda v: isinstance(v, str), "a model name")
    tools = _prop(
        props,
        "tools",
        lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
        "a list of tool names",
    )
    max_steps = _prop(
        props,
        "maxSteps",
        lambda v: isinstance(v, int) and not isinstance(v, bool),
        "a whole number",
    )
    failover = _prop(
        props, "failover", lambda v: v in FAILOVER_POLICIES, f"one of {list(FAILOVER_POLICIES)}"
    )
    approval = _prop(
        props,
        "approval",
        lambda v: v == "all" or (isinstance(v, list) and all(isinstance(t, str) for t in v)),
        '"all" or a list of tool names',
    )
    messages = [m for m in map(chat_message, parsed.messages) if m is not None]
    if parsed.context:
        messages.insert(0, _context_message(parsed.context))
    ids: dict[str, Any] = {"thread_id": parsed.thread_id, "run_id": parsed.run_id}
    if parsed.parent_run_id is not None:
        ids["parent_run_id"] = parsed.parent_run_id
    fields: dict[str, Any] = {
        "model": model or default_model,
        "messages": messages,
        "tools": tools or [],
        "client_tools": [
            {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in parsed.tools or []
        ],
        # AG-UI frontends run their tools after the run and send the results in a new run.
        "client_tool_mode": "return",
        "metadata": {METADATA_KEY: ids},
    }
    if max_steps is not None:
        fields["max_steps"] = max_steps
    if failover is not None:
        fields["options"] = {FAILOVER_OPTION: failover}
    if approval is not None:
        fields["approval"] = approval if approval == "all" else {"tools": approval}
    try:
        return RunSpec.model_validate(fields)
    except ValidationError as exc:
        raise InvalidRequestError(f"the AG-UI input does not make a run: {_summary(exc)}") from None


@dataclass(frozen=True, slots=True)
class AGUIResume:
    """What an input's ``resume[]`` asks: answers to calls of gateway run ``run_id`` that
    wait for approval, and ``after``, the seq its AG-UI stream stopped at (the latest of the
    answered interrupts): the answering stream continues from there."""

    run_id: str
    after: int
    answers: list[tuple[str, ApprovalAnswer]]  # (call id, answer), in the input's order


def _answer(entry: AGUIResumeEntry, by: str) -> ApprovalAnswer:
    if entry.status == "cancelled":  # abandoned: the call does not run
        return ApprovalAnswer("deny", by=by)
    try:
        payload = _ApprovalPayload.model_validate(entry.payload)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"resume entry {entry.interrupt_id!r}: its payload must be "
            f'{{"approved": true|false, "reason"?, "arguments"?}}: {_summary(exc)}'
        ) from None
    return ApprovalAnswer(
        "approve" if payload.approved else "deny",
        by=by,
        reason=payload.reason,
        arguments=payload.arguments,
    )


def resume_answers(input: AGUIRunInput, *, by: str) -> AGUIResume | None:
    """The approvals ``input.resume`` answers, answered by ``by``; None when it has none (the
    input starts a run). Raises :class:`~streams.errors.InvalidRequestError` for an entry that
    names no approval interrupt, entries naming two runs or one interrupt twice, and a
    payload that is not an answer."""
    if not input.resume:
        return None
    run_ids: set[str] = set()
    after = 0
    answers: list[tuple[str, ApprovalAnswer]] = []
    seen: set[str] = set()
    for entry in input.resume:
        parsed = parse_interrupt_id(entry.interrupt_id)
        if parsed is None:
            raise InvalidRequestError(
                f"resume entry {entry.interrupt_id!r} names no interrupt of this gateway"
            )
        if entry.interrupt_id in seen:
            raise InvalidRequestError(f"interrupt {entry.interrupt_id!r} is answered twice")
        seen.add(entry.interrupt_id)
        run_id, seq, call_id = parsed
        run_ids.add(run_id)
        after = max(after, seq)
        answers.append((call_id, _answer(entry, by)))
    if len(run_ids) > 1:
        raise InvalidRequestError("the resume entries answer interrupts of different runs")
    return AGUIResume(run_ids.pop(), after, answers)
