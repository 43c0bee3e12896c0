"""What a client sends to start a run (validated with pydantic; no web framework here)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from streams.errors import InvalidRequestError

__all__ = [
    "FAILOVER_OPTION",
    "FAILOVER_POLICIES",
    "MAX_BETAS",
    "SAMPLING_OPTIONS",
    "ApprovalAsked",
    "ChatMessage",
    "ClientTool",
    "FailoverPolicy",
    "OnDisconnect",
    "ParallelModelCall",
    "ParallelToolCall",
    "RunSpec",
    "check_anthropic_option",
    "check_failover_option",
    "check_stop",
    "client_tool",
]

OnDisconnect = Literal["cancel", "continue"]

_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"

# Names a client gives of what the gateway offers (models, tools): route names are at most
# 128 characters, and a name is echoed in the error that says it is unknown.
ModelOrToolName = Annotated[str, Field(max_length=128)]
# Ids and names a client chose (a tool call's id, a message's author): they go out in events.
ClientId = Annotated[str, Field(max_length=256)]


# What every model (the demo, the OpenAI and Anthropic conversions) reads in a message's
# content parts and tool calls, when present. Only checked: the message keeps the client's
# own dicts, passed on as they came (other part types and fields included).
class _Shape(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _a_dict(cls, value: Any) -> Any:
        if not isinstance(value, dict):  # pydantic's own message would name this class
            raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
        return value


class _ContentPart(_Shape):
    type: str = ""
    text: str = ""


class _Function(_Shape):
    name: str
    arguments: str = ""  # JSON text, as OpenAI sends it


class _ToolCall(_Shape):
    id: str = ""
    type: str = ""
    function: _Function


_CONTENT_PARTS = TypeAdapter(list[_ContentPart])
_TOOL_CALLS = TypeAdapter(list[_ToolCall])


class ChatMessage(BaseModel):
    """An OpenAI-style chat message."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: ClientId | None = None
    name: ClientId | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_parts(cls, value: Any) -> Any:
        # A text part whose text is a number or null was accepted, and failed the run.
        if isinstance(value, list):
            _CONTENT_PARTS.validate_python(value)  # its errors name the part's field
        return value

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _tool_calls(cls, value: Any) -> Any:
        if isinstance(value, list):
            _TOOL_CALLS.validate_python(value)
        return value


class ApprovalAsked(BaseModel):
    """A run's ``approval``: the tools whose calls wait for a person (streams.approvals)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[ModelOrToolName] = Field(max_length=256)


class ClientTool(BaseModel):
    """A tool the client executes itself (WebSocket runs only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


def client_tool(name: Any, description: Any, parameters: dict[str, Any], where: str) -> ClientTool:
    """A client tool a face's request declares (``where`` names it in the request): an
    invalid name is an :class:`~streams.errors.InvalidRequestError` naming ``where``."""
    try:
        return ClientTool(name=name, description=str(description or ""), parameters=parameters)
    except ValidationError as exc:
        message = exc.errors()[0].get("msg", "invalid")
        raise InvalidRequestError(f"{where}.name: {message}") from None


SAMPLING_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "logit_bias",
        "reasoning_effort",
        "anthropic",  # Anthropic-only fields: check_anthropic_option
        "failover",  # a model group's policy for this request: check_failover_option
    }
)

# What a model group does when a route fails after its output has started (see
# streams.upstream.group): the group's own, or the request's ``"failover"`` option.
FailoverPolicy = Literal["fail", "restart", "continue"]
FAILOVER_POLICIES: tuple[FailoverPolicy, ...] = ("fail", "restart", "continue")
FAILOVER_OPTION = "failover"


def check_failover_option(value: Any) -> None:
    """The ``"failover"`` option is a policy name (or null: the group's own)."""
    if value is not None and value not in FAILOVER_POLICIES:
        raise ValueError(f"'failover' must be one of {list(FAILOVER_POLICIES)} or null")


# anthropic-beta values ("interleaved-thinking-2025-05-14"): a header, so no separators.
_BETA = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_BETAS = 32


def check_anthropic_option(value: Any) -> None:
    """The ``"anthropic"`` option, which only the Anthropic provider reads: ``{"body": {…
    fields merged into its request body}, "beta": [anthropic-beta values], "tools": {tool
    name: {… fields merged into that tool's definition}}}``, every key optional. Its size is
    bounded by the request body's."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValueError("'anthropic' must be an object")
    unknown = sorted(set(value) - {"body", "beta", "tools"})
    if unknown:
        raise ValueError(f"unknown 'anthropic' fields {unknown}; known: ['beta', 'body', 'tools']")
    if not isinstance(value.get("body", {}), dict):
        raise ValueError("'anthropic.body' must be an object")
    beta = value.get("beta", [])
    if (
        not isinstance(beta, list)
        or len(beta) > MAX_BETAS
        or not all(isinstance(b, str) and _BETA.fullmatch(b) for b in beta)
    ):
        raise ValueError(
            f"'anthropic.beta' must be a list of at most {MAX_BETAS} anthropic-beta values "
            "(letters, digits, '.', '_', '-')"
        )
    tools = value.get("tools", {})
    if not isinstance(tools, dict) or not all(isinstance(t, dict) for t in tools.values()):
        raise ValueError("'anthropic.tools' must map tool names to objects")


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - SAMPLING_OPTIONS)
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {sorted(SAMPLING_OPTIONS)}")
    check_stop(options.get("stop"))
    check_anthropic_option(options.get("anthropic"))
    check_failover_option(options.get(FAILOVER_OPTION))
    return options


def check_stop(stop: Any) -> None:
    """``stop`` is a string, a list of strings or null (the Anthropic conversion reads it)."""
    if not (
        stop is None
        or isinstance(stop, str)
        or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise ValueError("'stop' must be a string, a list of strings or null")


class ParallelModelCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelOrToolName
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tools offered to the model ({name, description, parameters}); their "
        "calls are returned, not executed.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Sampling options")

    _options = field_validator("options")(_check_options)


class ParallelToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: ModelOrToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


class RunSpec(BaseModel):
    """An agent run (``model`` + ``messages``, optional ``tools``) or a parallel run
    (``parallel``: model and tool calls side by side)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "demo",
                    "messages": [
                        {"role": "user", "content": "What time is it? Also count down from 5."}
                    ],
                    "tools": ["clock", "countdown"],
                }
            ]
        },
    )

    model: ModelOrToolName | None = None
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[ModelOrToolName] = Field(default_factory=list)
    client_tools: list[ClientTool] = Field(default_factory=list)
    approval: Literal["all"] | ApprovalAsked | None = Field(
        default=None,
        description="Tool calls that wait for a person's approval before they run: 'all', "
        "or {'tools': [names]} (besides those the gateway's config gates)",
    )
    client_tool_mode: Literal["await", "return"] = Field(
        default="await",
        description="'await': the gateway sends client_tool.requested and waits for the "
        "client's tool.result (WebSocket runs). 'return': the run ends after the step that "
        "calls client tools (stop_reason 'client_tool_calls'); the client runs them and "
        "starts a new run with the results in its messages (AG-UI and OpenAI style).",
    )
    max_steps: int = Field(default=8, ge=1, le=64)
    on_disconnect: OnDisconnect | None = Field(
        default=None,
        description="What the run does when its last reader leaves. Default: 'cancel' for "
        "streams opened by POST /v1/runs with Accept: text/event-stream and for runs started "
        "on a WebSocket, 'continue' otherwise.",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Sampling options for the model (temperature, top_p, max_tokens, stop, …)",
    )
    parallel: list[ParallelModelCall | ParallelToolCall] | None = Field(default=None, min_length=1)

    _options = field_validator("options")(_check_options)

    @model_validator(mode="after")
    def _one_kind(self) -> RunSpec:
        if self.parallel is not None:
            if self.model is not None or self.messages or self.tools or self.client_tools:
                raise ValueError(
                    "a parallel run takes only 'parallel' (not model, messages, tools or "
                    "client_tools)"
                )
        else:
            if self.model is None:
                raise ValueError("give 'model' and 'messages' (an agent run) or 'parallel'")
            if not self.messages:
                raise ValueError("'messages' must hold at least one message")
        names = [t.name for t in self.client_tools]
        if len(set(names)) != len(names):
            raise ValueError("client_tools names must be unique")
        if set(names) & set(self.tools):
            raise ValueError("a tool cannot be both a server tool and a client tool")
        return self

    @property
    def kind(self) -> Literal["agent", "parallel"]:
        return "parallel" if self.parallel is not None else "agent"
