"""The Vercel AI SDK's chat request, input: the body ``DefaultChatTransport`` POSTs (plus what
the app adds through the transport's ``body``) and its UIMessages as chat messages. Pure: no
I/O, no web framework. The stream out is :mod:`streams.dialects.ai_sdk`.

=================================  ==========================================================
UIMessage part                     chat message
=================================  ==========================================================
``text``                           content: a system or assistant message's texts joined by
                                   newlines; a user message's one text as a string, several
                                   (or with files) as text parts
``file`` ``image/*``               an ``image_url`` part, the URL as given (``data:`` or
                                   ``https:``)
``file`` ``application/pdf``       a ``document`` block, base64 (a ``data:`` URL only)
``file`` ``text/*``                a text part of its decoded text (a ``data:`` URL only)
``file`` other                     refused
``tool-<name>``, ``dynamic-tool``  (assistant) a tool call (id the ``toolCallId``, arguments
                                   the JSON of ``input``; an ``input`` string is taken as the
                                   arguments' raw text), then a tool message with the output's
                                   JSON, or ``{"error": errorText}``
``step-start``, text after a       (assistant) a new assistant message once the current one
tool part                          has tool calls
``reasoning``, ``source-*``,       dropped: UI state, no upstream takes it back
``data-*``, others
=================================  ==========================================================

A tool part without its output (``input-streaming``, ``input-available``, an approval still
open) is refused: the app adds the result (``addToolResult``) before it sends the message.
Every error names the part (``messages.2.parts.1: …``).

A request whose last message is an assistant message with tool parts in the state
``approval-responded`` (``addToolApprovalResponse``) starts no turn: it answers the calls
waiting in the chat's turn (:func:`approval_responses`), which then streams on.

Bounds: ids and tool names are at most 256 characters; everything else (the number of
messages and parts, texts, file sizes) is bounded by the face's request body-size limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.approvals import MAX_REASON_LENGTH
from streams.dialects.ai_sdk import call_of_approval
from streams.errors import InvalidRequestError
from streams.spec import ApprovalAsked, ChatMessage, ClientTool, client_tool

__all__ = [
    "MAX_ID",
    "ApprovalResponse",
    "ChatRequest",
    "approval_responses",
    "conversation_of",
    "tools_of",
]

# The longest id (chat, message, tool call) or tool name taken.
MAX_ID = 256

_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
_WAITING_STATES = frozenset(
    {"input-streaming", "input-available", "approval-requested", "approval-responded"}
)


class ChatRequest(BaseModel):
    """The body of ``POST /v1/ai-sdk/chat``: what ``DefaultChatTransport`` sends (``id``,
    ``messages``, ``trigger``, ``messageId``) and what the app adds through its ``body``
    option. Unknown fields are kept (a newer SDK's additions must not break a turn)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(max_length=MAX_ID, description="the chat's id")
    messages: list[dict[str, Any]] = Field(description="the chat's UIMessages")
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, max_length=MAX_ID)  # the wire's spelling
    model: str = Field(max_length=128, description="a route, a group, or 'demo'")
    tools: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="a name: a gateway tool the gateway runs; an object {name, description?, "
        "inputSchema | parameters}: a client tool the app runs",
    )
    max_steps: int | None = None
    metadata: dict[str, Any] | None = None
    options: dict[str, Any] | None = Field(
        default=None, description="sampling options, as native runs take them"
    )
    features: list[str] = Field(
        default_factory=list,
        description="optional chunk kinds the client accepts: 'reasoning', "
        "'preliminary-tool-output', 'tool-approval' (ai 6 and later)",
    )
    cancel_active: bool = Field(
        default=False, description="cancel the chat's active turn rather than refuse (409)"
    )
    approval: Literal["all"] | ApprovalAsked | None = Field(
        default=None,
        description="tool calls that wait for a person's approval: 'all' or {'tools': [...]} "
        "(answered with addToolApprovalResponse when features has 'tool-approval')",
    )


@dataclass(frozen=True, slots=True)
class ApprovalResponse:
    """A person's answer to one call, as a tool part in ``approval-responded`` has it."""

    message_id: str  # the assistant UIMessage's id: the turn's
    call_id: str
    approved: bool
    reason: str | None


def _invalid(where: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {what}")


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(where, "must be a non-empty string")
    if len(value) > MAX_ID:
        raise _invalid(where, f"must be at most {MAX_ID} characters")
    return value


def _data_url(url: str, where: str) -> tuple[bytes, bool]:
    """The payload of a ``data:`` URL and whether it was base64 (decoded when not)."""
    if not url.startswith("data:") or "," not in url:
        raise _invalid(where, "must be a data: URL for this media type")
    header, payload = url[5:].split(",", 1)
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True), True
        except (binascii.Error, ValueError):
            raise _invalid(where, "is not valid base64") from None
    return urllib.parse.unquote_to_bytes(payload), False


def _file_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A user ``file`` part as a content part an upstream takes."""
    media_type, url = part.get("mediaType"), part.get("url")
    if not isinstance(media_type, str) or not isinstance(url, str):
        raise _invalid(where, "a file part needs 'mediaType' and 'url' strings")
    kind = media_type.split(";", 1)[0].strip().lower()
    if kind.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "application/pdf":
        payload, was_base64 = _data_url(url, f"{where}.url")
        data = url.split(",", 1)[1] if was_base64 else base64.b64encode(payload).decode()
        source = {"type": "base64", "media_type": "application/pdf", "data": data}
        return {"type": "document", "source": source}
    if kind.startswith("text/"):
        payload, _ = _data_url(url, f"{where}.url")
        try:
            return {"type": "text", "text": payload.decode()}
        except UnicodeDecodeError:
            raise _invalid(f"{where}.url", "is not UTF-8 text") from None
    raise _invalid(
        f"{where}.mediaType",
        f"{media_type!r} is not taken (images, application/pdf and text/* are)",
    )


def _text(part: Mapping[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text", "must be a string")
    return text


def _parts(message: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise _invalid(f"{where}.parts", "must be a list")
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _invalid(f"{where}.parts.{index}", "must be an object with a 'type'")
    return parts


def _texts(parts: list[Mapping[str, Any]], where: str, role: str) -> str:
    texts = []
    for index, part in enumerate(parts):
        if part["type"] == "text":
            texts.append(_text(part, f"{where}.parts.{index}"))
        elif part["type"] == "file":
            raise _invalid(f"{where}.parts.{index}", f"a {role} message cannot hold a file")
    return "\n".join(texts)


def _user(parts: list[Mapping[str, Any]], where: str) -> ChatMessage:
    content: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        at = f"{where}.parts.{index}"
        if part["type"] == "text":
            content.append({"type": "text", "text": _text(part, at)})
        elif part["type"] == "file":
            content.append(_file_part(part, at))
    if len(content) == 1 and content[0]["type"] == "text":
        return ChatMessage(role="user", content=content[0]["text"])
    return ChatMessage(role="user", content=content)


def _tool_name(part: Mapping[str, Any], where: str) -> str:
    if part["type"] == "dynamic-tool":
        return _id(part.get("toolName"), f"{where}.toolName")
    return _id(part["type"].removeprefix("tool-"), f"{where}.type")


def _result(part: Mapping[str, Any], call_id: str, where: str) -> str:
    """The tool message's content of a tool part: the output's JSON, or its error's (as the
    gateway writes its own tools' results)."""
    state = part.get("state")
    if state == "output-available":
        return json.dumps(part.get("output"), ensure_ascii=False)
    if state == "output-error":
        return json.dumps({"error": str(part.get("errorText") or "")}, ensure_ascii=False)
    if state == "output-denied":
        return json.dumps({"error": "the user denied this tool call"})
    if state in _WAITING_STATES:
        raise _invalid(where, f"tool call {call_id} has no output; add it with addToolResult")
    raise _invalid(f"{where}.state", f"{state!r} is not a tool part state")


def _assistant(parts: list[Mapping[str, Any]], where: str) -> list[ChatMessage]:
    """An assistant UIMessage as chat messages: one assistant message per step with tool
    calls, each followed by its calls' tool messages."""
    out: list[ChatMessage] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[ChatMessage] = []

    def flush() -> None:
        if texts or calls:
            out.append(
                ChatMessage(
                    role="assistant",
                    content="\n".join(texts) if texts else None,
                    tool_calls=list(calls) or None,
                )
            )
            out.extend(results)
        texts.clear()
        calls.clear()
        results.clear()

    for index, part in enumerate(parts):
        at, kind = f"{where}.parts.{index}", part["type"]
        if kind == "text":
            if calls:  # text after a step's tool calls is the next step's
                flush()
            texts.append(_text(part, at))
        elif kind == "step-start":
            if calls:
                flush()
        elif kind.startswith("tool-") or kind == "dynamic-tool":
            call_id = _id(part.get("toolCallId"), f"{at}.toolCallId")
            name = _tool_name(part, at)
            content = _result(part, call_id, at)
            value = part.get("input")
            arguments = value if isinstance(value, str) else json.dumps(value or {})
            function = {"name": name, "arguments": arguments}
            calls.append({"id": call_id, "type": "function", "function": function})
            results.append(ChatMessage(role="tool", tool_call_id=call_id, content=content))
    flush()
    return out


def conversation_of(messages: Sequence[Mapping[str, Any]]) -> list[ChatMessage]:
    """A chat's UIMessages as the chat messages of a run (see the module for each part)."""
    out: list[ChatMessage] = []
    try:
        for index, message in enumerate(messages):
            where = f"messages.{index}"
            if not isinstance(message, Mapping):
                raise _invalid(where, "must be an object")
            if "id" in message:
                _id(message["id"], f"{where}.id")
            role = message.get("role")
            parts = _parts(message, where)
            if role == "system":
                out.append(ChatMessage(role="system", content=_texts(parts, where, "system")))
            elif role == "user":
                out.append(_user(parts, where))
            elif role == "assistant":
                out += _assistant(parts, where)
            else:
                raise _invalid(f"{where}.role", "must be 'system', 'user' or 'assistant'")
    except ValidationError as exc:  # a message the engine's model refuses
        raise InvalidRequestError(f"messages: {exc.errors()[0].get('msg', 'invalid')}") from None
    if not any(message.role != "system" for message in out):
        raise InvalidRequestError("messages: at least one user or assistant message is required")
    return out


def approval_responses(messages: Sequence[Mapping[str, Any]]) -> list[ApprovalResponse]:
    """The answers the chat's last message carries: its tool parts in ``approval-responded``
    (in order); [] when the last message is not an assistant message or has none."""
    if not messages or not isinstance(messages[-1], Mapping):
        return []
    message, where = messages[-1], f"messages.{len(messages) - 1}"
    if message.get("role") != "assistant":
        return []
    out: list[ApprovalResponse] = []
    for index, part in enumerate(_parts(message, where)):
        kind, at = part["type"], f"{where}.parts.{index}"
        is_tool = kind.startswith("tool-") or kind == "dynamic-tool"
        if not is_tool or part.get("state") != "approval-responded":
            continue
        call_id = _id(part.get("toolCallId"), f"{at}.toolCallId")
        approval = part.get("approval")
        if not isinstance(approval, Mapping):
            raise _invalid(f"{at}.approval", "must be an object")
        if call_of_approval(_id(approval.get("id"), f"{at}.approval.id")) != call_id:
            raise _invalid(f"{at}.approval.id", f"is not the approval of call {call_id}")
        approved, reason = approval.get("approved"), approval.get("reason")
        if not isinstance(approved, bool):
            raise _invalid(f"{at}.approval.approved", "must be a boolean")
        if reason is not None and not isinstance(reason, str):
            raise _invalid(f"{at}.approval.reason", "must be a string")
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise _invalid(
                f"{at}.approval.reason", f"must be at most {MAX_REASON_LENGTH} characters"
            )
        message_id = _id(message.get("id"), f"{where}.id")
        out.append(ApprovalResponse(message_id, call_id, approved, reason))
    return out


def tools_of(
    tools: Iterable[str | Mapping[str, Any]], offered: Sequence[str]
) -> tuple[list[ClientTool], list[str]]:
    """The request's client tools and the gateway tools it asks for (in order, once each).

    A string names a gateway tool (an unknown one is left to the engine's own check); an
    object ``{name, description?, inputSchema | parameters}`` is a client tool, its schema
    the empty object schema when it gives none. A client tool may not take the name of a
    tool the gateway offers (``offered``): which of the two a call means would be unclear.
    """
    clients: list[ClientTool] = []
    server: list[str] = []
    offered_names = frozenset(offered)
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if isinstance(tool, str):
            if tool not in server:
                server.append(tool)
            continue
        if not isinstance(tool, Mapping):
            raise _invalid(where, "must be a tool name or a tool object")
        schema = tool.get("inputSchema", tool.get("parameters"))
        if schema is None:
            schema = dict(_EMPTY_SCHEMA)
        if not isinstance(schema, dict):
            raise _invalid(f"{where}.inputSchema", "must be an object (a JSON schema)")
        name = tool.get("name")
        if isinstance(name, str) and name in offered_names:
            raise _invalid(f"{where}.name", f"{name!r} is a gateway tool's name")
        clients.append(client_tool(name, tool.get("description"), schema, where))
    return clients, server
