"""Model providers: the interface every model (the demo, upstream LLMs) implements.

A model turns a conversation (OpenAI-style message dicts) and the tools on offer into a
stream of :data:`ModelOutput` items. The engine turns those into ``message.*`` and
``tool_call.*`` events, so a provider never touches the event log.
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.errors import InvalidRequestError

__all__ = [
    "Attempt",
    "Finish",
    "Model",
    "ModelOutput",
    "ModelRegistry",
    "ReasoningDelta",
    "ReasoningSignature",
    "RedactedReasoning",
    "Rerouted",
    "Retracted",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallStart",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A fragment of the model's thinking (shown to the client, never part of its answer)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningSignature:
    """Anthropic's ``signature_delta``: opaque, passed on byte for byte. It ends the thinking
    block it belongs to (Anthropic wants the signed block back on the next step)."""

    signature: str


@dataclass(frozen=True, slots=True)
class RedactedReasoning:
    """An Anthropic ``redacted_thinking`` block: encrypted thinking, ``data`` opaque."""

    data: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A new tool call, ``index`` identifying it among the calls of this step."""

    index: int
    name: str
    call_id: str | None = None  # the upstream's id, when it gives one


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the call's JSON arguments


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of a step. The cache counts are Anthropic's ``cache_read_input_tokens`` /
    ``cache_creation_input_tokens`` (an OpenAI upstream's ``cached_tokens`` is a read)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the model ended its turn, in canonical names: ``"stop"``, ``"length"``,
    ``"tool_calls"``, ``"stop_sequence"`` (with the ``stop_sequence`` it met) or
    ``"content_filter"``; an upstream's other values as it gave them."""

    reason: str
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Rerouted:
    """A model group moved the step from one route to another (``reason``: why ``from_route``
    was left, see :func:`streams.upstream.group.failover_reason`). Only groups send it."""

    from_route: str
    to_route: str
    reason: str


@dataclass(frozen=True, slots=True)
class Retracted:
    """Everything this step has output so far is void (a group restarts it on another
    route): what follows is a new answer from its start. Only groups send it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One route's try at a step, as it ended (a group sends one per try, for the run's
    state): ``outcome`` is ``"completed"``, ``"failed"`` (``reason`` and ``error`` say how)
    or ``"lost"`` (a hedged try that another route beat to its first token, cancelled)."""

    route: str
    outcome: str
    reason: str | None = None
    error: str | None = None
    ttft: float | None = None  # seconds from its start to its first output, if any came
    duration: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "outcome": self.outcome,
            "reason": self.reason,
            "error": self.error,
            "ttft": self.ttft,
            "duration": self.duration,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


ModelOutput = (
    TextDelta
    | ReasoningDelta
    | ReasoningSignature
    | RedactedReasoning
    | ToolCallStart
    | ToolCallDelta
    | Usage
    | Finish
    | Rerouted
    | Retracted
    | Attempt
)


class Model(abc.ABC):
    """A model the gateway can stream from."""

    name: str
    description: str = ""

    @abc.abstractmethod
    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        """Stream one assistant turn. Cancelling the consumer must close any upstream I/O.

        ``options`` are sampling options in OpenAI's names (``temperature``, ``top_p``,
        ``max_tokens``, ``stop``, ``seed``, …), passed to the upstream as it understands them.
        """

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> int | None:
        """The input tokens of this request as the model counts them, or ``None`` when it
        cannot say exactly (then :func:`streams.tokens.estimate_tokens` is the guess)."""
        return None


@dataclass(slots=True)
class ModelRegistry:
    """The models the gateway serves, by name, and aliases of them.

    An alias is a model id clients send (an ``fnmatch`` pattern: ``"claude-*"``) for a
    served model: Claude Code asks for ``claude-sonnet-4-5`` whatever the gateway routes
    it to. A served name wins over any alias; aliases are tried in the order they were
    added.
    """

    models: dict[str, Model] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # pattern -> served name

    def register(self, model: Model) -> None:
        self.models[model.name] = model

    def alias(self, pattern: str, target: str) -> None:
        """Serve ``target`` for the names ``pattern`` matches; ``ValueError`` naming the
        served models if ``target`` is none of them."""
        if target not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ValueError(
                f"model alias {pattern!r}: {target!r} is not a served model (known: {known})"
            )
        self.aliases[pattern] = target

    def _served(self, name: str) -> str | None:
        if name in self.models:
            return name
        for pattern, target in self.aliases.items():
            if fnmatch.fnmatchcase(name, pattern):
                return target
        return None

    def resolve(self, name: str) -> str:
        """The served model's name for ``name`` (itself, or its alias's target)."""
        served = self._served(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise InvalidRequestError(f"unknown model {name!r} (known: {known})")
        return served

    def get(self, name: str) -> Model:
        return self.models[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._served(name) is not None

    def names(self) -> list[str]:
        return list(self.models)
