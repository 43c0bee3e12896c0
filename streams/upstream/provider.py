"""What an upstream provider is: how to ask it for a streamed answer, and how to read it.

A provider is one module of :mod:`streams.upstream` with a class that satisfies
:class:`Provider`, and one line naming it in :data:`streams.upstream.registry.PROVIDERS`.
It is pure (no I/O): :class:`~streams.upstream.client.UpstreamModel` does the transport,
timeouts, retries and accounting for every provider alike, and asks the provider only

* once per route, where requests go and the headers it needs (:meth:`Provider.endpoint`);
* per request, the JSON body for the step's messages, tools and options
  (:meth:`Provider.body`), and the headers those options add (:meth:`Provider.headers`:
  Anthropic's ``anthropic-beta``), sent after the route's and the endpoint's;
* per request, a fresh :class:`StreamParser` for the answer's event stream
  (:meth:`Provider.parser`);
* to count a request's input tokens, where to ask and with what body
  (:meth:`Provider.count_request`; ``None`` from a provider that cannot count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streams.models import ModelOutput
from streams.upstream.route import Route
from streams.upstream.sse import SSEMessage

__all__ = ["Endpoint", "Provider", "StreamParser"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a route's requests go, and the headers the provider adds to them (its API
    version, its way of sending the key). They are sent after the route's own headers, so
    they win over a route header of the same name."""

    url: str
    headers: Mapping[str, str]


class StreamParser(Protocol):
    """Reads one answer: its Server-Sent Events in, model output out.

    Two ends are told apart because some upstreams say "complete" before the body ends:
    :attr:`done` means nothing more will come (stop reading); :attr:`finished` means an
    end of the body now would be a proper end, not a truncated answer (an OpenAI
    ``finish_reason`` is followed by a chunk with the usage, then ``[DONE]``).
    """

    @property
    def done(self) -> bool:
        """The upstream said the answer is complete: what follows is not read."""

    @property
    def finished(self) -> bool:
        """The answer is whole: the stream may end here."""

    def feed(self, message: SSEMessage) -> Sequence[ModelOutput]:
        """The output one event carries (often none). Raises
        :class:`~streams.errors.UpstreamProtocolError` for an event that breaks the
        protocol, :class:`~streams.errors.UpstreamStreamError` for an error the upstream
        reports in the stream."""


class Provider(Protocol):
    """One upstream API (see the module's docstring)."""

    # How its API can be asked to go on with a partial answer (a model group's "continue"
    # policy, streams.upstream.group): the modes it has ("prefill": the partial answer as
    # the last assistant turn, Anthropic's; "continue_final_message": the same plus that
    # flag, an OpenAI-compatible server's such as vLLM), and the one a route uses unless
    # its settings say otherwise (None: it cannot, a group restarts instead).
    continuations: tuple[str, ...]
    default_continuation: str | None

    def endpoint(self, route: Route) -> Endpoint:
        """Where ``route``'s requests go and the provider's headers for them."""

    def body(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The JSON body of a streamed request: the engine's OpenAI-style conversation,
        tools (``name``, ``description``, ``parameters``) and sampling options, in the
        provider's terms; the route's ``extra_body`` last."""

    def headers(self, options: Mapping[str, Any]) -> Mapping[str, str]:
        """Headers a request with these options needs besides the route's (``{}`` for
        none); they are sent last."""

    def count_request(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
    ) -> tuple[str, dict[str, Any]] | None:
        """The URL and JSON body of a request that answers how many input tokens this
        request would be (``{"input_tokens": n}``), or ``None`` if the API has none."""

    def parser(self) -> StreamParser:
        """A parser for one answer's event stream."""
