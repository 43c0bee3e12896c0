"""An Anthropic Messages request as a run, pure: its ``system`` and ``messages`` as the
engine's chat messages, its tools, and its parameters as sampling options.

The engine keeps an OpenAI-style conversation whose content parts may be Anthropic blocks
kept as the client sent them (see :mod:`streams.spec`), so an Anthropic upstream gets them
back unchanged (a thinking block's signature byte for byte, ``cache_control`` where it
was) and an OpenAI-compatible upstream gets them translated (its provider converts or drops
what it cannot take):

=============================  ==============================================================
Messages                       the engine's conversation
=============================  ==============================================================
``system`` (string or blocks)  a ``system`` message, its content as given
``role: "system"`` message     a ``system`` message where it is (Claude Code sends one)
user text/image/document       a ``user`` message, content the blocks as given
user ``tool_result``           a ``tool`` message before the user's other blocks (content a
                               string or blocks, ``is_error`` and ``cache_control`` kept)
assistant text/thinking        an ``assistant`` message: content the text, or, with thinking
                               or block fields (``cache_control``), the blocks in order
assistant ``tool_use``         that message's ``tool_calls`` (``input`` as JSON arguments)
assistant ``mcp_tool_use`` /   of the gateway's MCP server: a tool call and its ``tool``
``mcp_tool_result``            message, as the gateway ran it
=============================  ==============================================================

Anthropic-only parameters (``thinking``, ``top_k``, ``metadata``, ``context_management``,
``output_config``, ``service_tier``), the ``anthropic-beta`` header and tool definition
fields (``cache_control``, ``defer_loading`` …) travel in the ``"anthropic"`` option, which
only the Anthropic provider reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.dialects.anthropic_messages import SERVER_NAME
from streams.errors import InvalidRequestError
from streams.spec import (
    FAILOVER_OPTION,
    MAX_BETAS,
    ChatMessage,
    ClientTool,
    check_anthropic_option,
    client_tool,
)

__all__ = [
    "PASSED_TO_ANTHROPIC",
    "MessagesRequest",
    "betas_of",
    "conversation_of",
    "options_of",
    "tools_of",
]

# Request fields an Anthropic upstream understands and a translated upstream has no use for.
PASSED_TO_ANTHROPIC = (
    "thinking",
    "top_k",
    "metadata",
    "context_management",
    "output_config",
    "service_tier",
)

_USER_BLOCKS = frozenset({"text", "image", "document", "search_result"})
# Blocks of tools Anthropic runs itself (web search …): nothing another upstream can replay.
_HOSTED_RESULTS = ("server_tool_use", "web_search_tool_result", "web_fetch_tool_result")

StopSequence = Annotated[str, Field(max_length=1024)]


class MessagesRequest(BaseModel):
    """The Messages API's request body (``POST /v1/messages`` and its ``count_tokens``).

    Fields the gateway has no use for are accepted and ignored, as Anthropic's server
    does with fields of betas it does not know; ``max_tokens``, which the Messages API
    requires, is checked by the operation that needs it."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=256)
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[StopSequence] | None = Field(default=None, max_length=64)
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    stream: bool = False
    mcp_servers: list[dict[str, Any]] | None = None


def _invalid(where: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {what}")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise _invalid(where, "must be a string or a list of content blocks")
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{where}.{index}", "a content block is an object with a 'type'")
    return content


def _text_block(block: Mapping[str, Any], where: str) -> None:
    if not isinstance(block.get("text"), str):
        raise _invalid(f"{where}.text", "must be a string")


def _system(content: Any, where: str) -> ChatMessage:
    if isinstance(content, str):
        return ChatMessage(role="system", content=content)
    blocks = _blocks(content, where)
    for index, block in enumerate(blocks):
        if block["type"] != "text":
            raise _invalid(f"{where}.{index}.type", "system blocks are text blocks")
        _text_block(block, f"{where}.{index}")
    return ChatMessage(role="system", content=blocks)


def _tool_result(block: Mapping[str, Any], where: str) -> ChatMessage:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.tool_use_id", "must be a non-empty string")
    content = block.get("content", "")
    if not isinstance(content, str):
        for index, part in enumerate(_blocks(content, f"{where}.content")):
            if part["type"] == "text":
                _text_block(part, f"{where}.content.{index}")
    fields: dict[str, Any] = {}
    if block.get("is_error"):
        fields["is_error"] = True
    if isinstance(block.get("cache_control"), dict):
        # Claude Code's cache breakpoint is often on its last tool result.
        fields["cache_control"] = block["cache_control"]
    return ChatMessage(role="tool", tool_call_id=call_id, content=content, **fields)


def _user(content: Any, where: str) -> list[ChatMessage]:
    if isinstance(content, str):
        return [ChatMessage(role="user", content=content)]
    results: list[ChatMessage] = []
    rest: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, where)):
        at = f"{where}.{index}"
        kind = block["type"]
        if kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind in _USER_BLOCKS:
            if kind == "text":
                _text_block(block, at)
            elif kind in ("image", "document") and not isinstance(block.get("source"), dict):
                raise _invalid(f"{at}.source", "must be an object")
            rest.append(block)
        else:
            raise _invalid(
                f"{at}.type",
                f"{kind!r} is not a user content block the gateway takes (text, image, "
                "document, search_result, tool_result)",
            )
    # Chat Completions wants a call's result right after the call: results first.
    return results + ([ChatMessage(role="user", content=rest)] if rest else [])


def _arguments(block: Mapping[str, Any], where: str) -> str:
    tool_input = block.get("input", {})
    if not isinstance(tool_input, dict):
        raise _invalid(f"{where}.input", "must be an object")
    return json.dumps(tool_input, ensure_ascii=False)


def _call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.id", "must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise _invalid(f"{where}.name", "must be a non-empty string")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": _arguments(block, where)},
    }


class _Turn:
    """An assistant message being assembled from its blocks."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def message(self) -> ChatMessage | None:
        if not self.parts and not self.calls:
            return None
        content: str | list[dict[str, Any]] | None
        if all(part.keys() == {"type", "text"} for part in self.parts):
            # Plain text: one string, as every provider reads it.
            content = "".join(part["text"] for part in self.parts) or None
        else:
            content = self.parts
        return ChatMessage(role="assistant", content=content, tool_calls=self.calls or None)


def _assistant(content: Any, where: str) -> list[ChatMessage]:
    if isinstance(content, str):
        return [ChatMessage(role="assistant", content=content)]
    out: list[ChatMessage] = []
    turn = _Turn()
    for index, block in enumerate(_blocks(content, where)):
        at = f"{where}.{index}"
        kind = block["type"]
        if kind == "text":
            _text_block(block, at)
            turn.parts.append(block)
        elif kind == "thinking":
            if not isinstance(block.get("thinking"), str):
                raise _invalid(f"{at}.thinking", "must be a string")
            turn.parts.append(block)
        elif kind == "redacted_thinking":
            turn.parts.append(block)
        elif kind == "tool_use" or (
            kind == "mcp_tool_use" and block.get("server_name") == SERVER_NAME
        ):
            turn.calls.append(_call(block, at))
        elif kind == "mcp_tool_result":
            # What the gateway's tool answered: the turn so far, then the result.
            message = turn.message()
            if message is not None:
                out.append(message)
            out.append(_tool_result(block, at))
            turn = _Turn()
        elif kind in _HOSTED_RESULTS or kind == "mcp_tool_use":
            continue  # a tool another server ran: no upstream here can replay it
        else:
            raise _invalid(f"{at}.type", f"{kind!r} is not an assistant content block")
    message = turn.message()
    if message is not None:
        out.append(message)
    return out


def conversation_of(
    system: str | list[dict[str, Any]] | None, messages: Sequence[Mapping[str, Any]]
) -> list[ChatMessage]:
    """``system`` and ``messages`` as the engine's chat messages (see the module)."""
    out: list[ChatMessage] = []
    if system:
        out.append(_system(system, "system"))
    try:
        for index, message in enumerate(messages):
            where = f"messages.{index}"
            role, content = message.get("role"), message.get("content")
            if role == "user":
                out += _user(content, f"{where}.content")
            elif role == "assistant":
                out += _assistant(content, f"{where}.content")
            elif role == "system":
                out.append(_system(content, f"{where}.content"))
            else:
                raise _invalid(f"{where}.role", "must be 'user' or 'assistant'")
    except ValidationError as exc:  # a block the engine's message model refuses
        raise InvalidRequestError(f"messages: {exc.errors()[0].get('msg', 'invalid')}") from None
    if not any(message.role != "system" for message in out):
        raise InvalidRequestError("messages: at least one user or assistant message is required")
    return out


def tools_of(
    tools: Iterable[Mapping[str, Any]] | None,
    mcp_servers: Iterable[Mapping[str, Any]] | None,
    offered: Sequence[str],
) -> tuple[list[ClientTool], list[str], dict[str, dict[str, Any]]]:
    """The request's client tools, the gateway tools it asks for (the MCP server named
    :data:`~streams.dialects.anthropic_messages.SERVER_NAME`, its
    ``tool_configuration.allowed_tools`` narrowing them), and each client tool's
    Anthropic-only definition fields (by name).

    Tools Anthropic defines itself (a ``type`` such as ``web_search_20250305``) are dropped:
    no upstream behind the gateway runs them.
    """
    clients: list[ClientTool] = []
    extras: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools or ()):
        if tool.get("type") not in (None, "custom"):
            continue
        name = tool.get("name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"tools.{index}.input_schema", "must be an object (a JSON schema)")
        clients.append(client_tool(name, tool.get("description"), schema, f"tools.{index}"))
        fields = {k: v for k, v in tool.items() if k not in ("name", "description", "input_schema")}
        fields.pop("type", None)
        if fields:
            extras[clients[-1].name] = fields
    server: list[str] = []
    for server_config in mcp_servers or ():
        if server_config.get("name") != SERVER_NAME:
            continue
        configuration = server_config.get("tool_configuration") or {}
        allowed = configuration.get("allowed_tools") if isinstance(configuration, dict) else None
        names = offered if not isinstance(allowed, list) else [str(n) for n in allowed]
        server += [name for name in names if name not in server]
    return clients, server, extras


def _tool_choice(choice: Mapping[str, Any]) -> tuple[Any, bool]:
    """Anthropic's ``tool_choice`` in Chat Completions' terms, and whether parallel calls
    are allowed."""
    kind = choice.get("type")
    parallel = not choice.get("disable_parallel_tool_use", False)
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _invalid("tool_choice", "must be {'type': 'auto' | 'any' | 'none'} or a named 'tool'")


def betas_of(header: str | None) -> list[str]:
    """The values of an ``anthropic-beta`` header (comma-separated), bounded."""
    if not header:
        return []
    values = [value.strip() for value in header.split(",") if value.strip()]
    try:
        check_anthropic_option({"beta": values})
    except ValueError:
        raise InvalidRequestError(
            f"anthropic-beta: at most {MAX_BETAS} comma-separated names of letters, digits, "
            "'.', '_' and '-' (at most 128 each)"
        ) from None
    return values


def options_of(
    body: MessagesRequest,
    *,
    has_tools: bool,
    betas: Sequence[str] = (),
    tool_extras: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The request's parameters as sampling options (OpenAI's names; see the module)."""
    options: dict[str, Any] = {}
    if body.max_tokens is not None:
        options["max_tokens"] = body.max_tokens
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        options["top_p"] = body.top_p
    if body.stop_sequences:
        options["stop"] = list(body.stop_sequences)
    user = (body.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        options["user"] = user[:256]
    if has_tools and body.tool_choice is not None:
        choice, parallel = _tool_choice(body.tool_choice)
        options["tool_choice"] = choice
        if not parallel:
            options["parallel_tool_calls"] = False
    failover = (body.model_extra or {}).get(FAILOVER_OPTION)
    if failover is not None:  # a model group's policy for this request (checked by RunSpec)
        options[FAILOVER_OPTION] = failover
    passed = {**(body.model_extra or {}), **body.model_dump(include=set(PASSED_TO_ANTHROPIC))}
    anthropic: dict[str, Any] = {}
    native = {name: passed[name] for name in PASSED_TO_ANTHROPIC if passed.get(name) is not None}
    if native:
        anthropic["body"] = native
    if betas:
        anthropic["beta"] = list(betas)
    if tool_extras:
        anthropic["tools"] = {name: dict(fields) for name, fields in tool_extras.items()}
    if anthropic:
        options["anthropic"] = anthropic
    return options
