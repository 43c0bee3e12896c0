"""Upstream model providers: OpenAI-compatible chat completions and Anthropic Messages,
streamed over httpx, behind the :class:`streams.models.Model` interface."""

__all__ = []
