"""The dialects a run's event stream can be read in, by the name ``?format=`` gives.

A dialect is one module of :mod:`streams.dialects` (its encoder) plus one line in
:data:`DIALECTS`; the HTTP routes validate ``?format=`` against these names (and the OpenAPI
schema lists them), so nothing else changes to add one.

The OpenAI chat-completion chunks (:mod:`streams.dialects.openai_chat`) are not here: they
encode one model step of a chat completion for the request that asked for it (its model, its
``created``, its ``include_usage``), not any run read by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from streams.dialects import agui, native
from streams.dialects.ai_sdk import UIStreamEncoder
from streams.dialects.anthropic_messages import MessagesEncoder
from streams.dialects.responses import ResponsesEncoder
from streams.events import Event
from streams.spec import RunSpec

__all__ = [
    "DEFAULT_DIALECT",
    "DIALECTS",
    "Dialect",
    "DialectName",
    "PrimableEncoder",
    "RunEncoder",
    "describe_dialects",
]


class RunEncoder(Protocol):
    """Encodes each batch of a run's events, in order, into the bytes of SSE frames."""

    def __call__(self, events: list[Event], /) -> bytes: ...


@runtime_checkable
class PrimableEncoder(RunEncoder, Protocol):
    """A stateful encoder: what it sends for an event depends on the events before it, so a
    resumed stream's encoder first takes in (without sending) the events the client has."""

    def prime(self, events: Iterable[Event], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """One wire dialect of a run's event stream."""

    name: str  # the ``?format=`` value
    description: str  # what it streams, for the API's documentation
    # The encoder for one stream of run ``run_id`` with ``spec``.
    encoder_for: Callable[[str, RunSpec], RunEncoder]


DEFAULT_DIALECT = "native"

DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {
        dialect.name: dialect
        for dialect in (
            Dialect("native", "native events", native.encoder_for_run),
            Dialect("ag-ui", "AG-UI 1.0 events", agui.AGUIEncoder.for_spec),
            Dialect("responses", "OpenAI Responses API events", ResponsesEncoder.for_run),
            Dialect("anthropic", "Anthropic Messages API events", MessagesEncoder.for_run),
            Dialect("ai-sdk", "Vercel AI SDK UI message stream chunks", UIStreamEncoder.for_run),
        )
    }
)

if TYPE_CHECKING:
    DialectName = str
else:
    # The names as a Literal, so that a route's ``format`` validates (and is documented as an
    # enum in the OpenAPI schema) exactly as a Literal written out would: made from the table,
    # it cannot drift from it. Type checkers cannot read a Literal built at run time, hence str.
    DialectName = Literal[tuple(DIALECTS)]


def describe_dialects() -> str:
    """The ``format`` parameter's description: every dialect, in the table's order."""
    return "The dialect: " + ", or ".join(d.description for d in DIALECTS.values())
