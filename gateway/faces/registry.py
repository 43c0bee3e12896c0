"""The faces the gateway serves: each a module of :mod:`gateway.faces` with its router.

Adding a face (a client protocol with endpoints of its own) is its module here plus one
line in :data:`FACES`; its wire encoding is a dialect in :mod:`streams.dialects`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from gateway.errors import ANTHROPIC_ERROR_RESPONSES, ERROR_RESPONSES
from gateway.faces import (
    agui,
    ai_sdk,
    anthropic_messages,
    console,
    openai_chat,
    responses,
    responses_ws,
    runs,
    ws,
)

__all__ = ["FACES", "Face"]


@dataclass(frozen=True, slots=True)
class Face:
    """One client protocol's routes."""

    name: str
    router: APIRouter
    # The JSON error answers its HTTP routes give, in the face's error shape, for the OpenAPI
    # schema (gateway.errors: the shape is chosen by path); None for a WebSocket or static
    # files, which answer none.
    error_responses: dict[int | str, dict[str, Any]] | None


# In the order the app tries them: FastAPI matches routers in turn, so the busiest first.
FACES: tuple[Face, ...] = (
    Face("openai-chat", openai_chat.router, ERROR_RESPONSES),
    Face("runs", runs.router, ERROR_RESPONSES),
    Face("responses", responses.router, ERROR_RESPONSES),
    Face("anthropic-messages", anthropic_messages.router, ANTHROPIC_ERROR_RESPONSES),
    Face("ag-ui", agui.router, ERROR_RESPONSES),
    Face("ai-sdk", ai_sdk.router, ERROR_RESPONSES),
    Face("websocket", ws.router, None),
    Face("responses-websocket", responses_ws.router, None),
    Face("console", console.router, None),
)
