"""The providers routes can name (``Route.provider``, ``provider`` in a route's settings).

Adding a provider is a module of :mod:`streams.upstream` implementing
:class:`~streams.upstream.provider.Provider`, and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from streams.upstream.anthropic import AnthropicMessages
from streams.upstream.openai_chat import OpenAIChat
from streams.upstream.provider import Provider

__all__ = ["DEFAULT_PROVIDER", "PROVIDERS", "known_providers", "provider_for"]

# In the order settings errors list them.
PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        "openai": OpenAIChat(),
        "anthropic": AnthropicMessages(),
    }
)

DEFAULT_PROVIDER = "openai"  # a route's, when its settings name none


def known_providers() -> str:
    """The registered names as a sentence: ``'openai' or 'anthropic'``."""
    names = [repr(name) for name in PROVIDERS]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def provider_for(name: str) -> Provider:
    """The provider registered as ``name``; ``ValueError`` naming the known ones if none."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}: it should be {known_providers()}") from None
