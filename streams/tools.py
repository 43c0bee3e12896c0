"""Tools: things a model can call. A tool is an async function of its JSON arguments that
may stream output deltas through ``emit`` and returns a JSON-serialisable result.

The gateway's own tools are in :mod:`streams.builtin.tools`. Raise
:class:`~streams.errors.ToolError` for a failure the model should read (bad arguments,
division by zero); the run reports ``tool.failed`` and carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.errors import InvalidRequestError

__all__ = ["Emit", "Tool", "ToolFunction", "ToolRegistry"]

Emit = Callable[[str], Awaitable[None]]
ToolFunction = Callable[[Mapping[str, Any], Emit], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A server-side tool: name, JSON schema of its arguments, and the function."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: ToolFunction
    timeout: float | None = None  # overrides the gateway's default tool timeout

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(slots=True)
class ToolRegistry:
    """The tools a gateway offers, by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            raise InvalidRequestError(f"unknown tool {name!r}") from None

    def require(self, names: Iterable[str]) -> list[Tool]:
        return [self.get(name) for name in names]

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def describe(self) -> list[dict[str, Any]]:
        return [tool.describe() for tool in self.tools.values()]

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        """Only the tools named (each must exist)."""
        return ToolRegistry({name: self.get(name) for name in names})
