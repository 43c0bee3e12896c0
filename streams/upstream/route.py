"""A route: the model name clients use, the upstream behind it and how it is called
(timeouts, retries, limits). Configuration only: :mod:`streams.upstream.client` calls it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.upstream.sse import MAX_EVENT_BYTES, MAX_LINE_BYTES

__all__ = ["RetryPolicy", "Route", "Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per phase of an upstream call."""

    connect: float = 10.0
    first_token: float = 60.0  # from sending the request to the first output
    idle: float = 60.0  # longest silence between chunks
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for


@dataclass(frozen=True, slots=True)
class Route:
    """A model name clients use, and the upstream behind it."""

    name: str
    provider: str  # a name in streams.upstream.registry.PROVIDERS
    base_url: str
    upstream_model: str
    api_key: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    max_in_flight: int = 16
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    max_tokens: int = 4096  # Anthropic requires it
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    # Past either, the upstream's stream is broken (upstream_protocol): see streams.upstream.sse.
    max_sse_line_bytes: int = MAX_LINE_BYTES
    max_sse_event_bytes: int = MAX_EVENT_BYTES
    # How a model group asks this route to continue a partial answer: "auto" (its
    # provider's default_continuation), None (never: the group restarts instead), or one of
    # its provider's continuations.
    continuation: str | None = "auto"
