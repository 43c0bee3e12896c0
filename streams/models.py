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
    "Model",
    "ModelOutput",
    "ModelRegistry",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallStart",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


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
    input_tokens: int = 0
    output_tokens: int = 0


ModelOutput = TextDelta | ToolCallStart | ToolCallDelta | Usage


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
