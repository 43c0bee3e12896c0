"""The faces the gateway serves: each a module of :mod:`gateway.faces` with its router.

Adding a face (a client protocol with endpoints of its own) is its module here plus one
line in :data:`FACES`; its wire encoding is a dialect in :mod:`streams.dialects`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from gateway.faces import agui, console, openai_chat, responses, responses_ws, runs, ws

__all__ = ["FACES", "Face"]


@dataclass(frozen=True, slots=True)
class Face:
    """One client protocol's routes."""

    name: str
    router: APIRouter
    # Its HTTP routes answer errors with the gateway's JSON error bodies (and the OpenAPI
    # schema documents them); a WebSocket or static files do not.
    json_errors: bool


# In the order the app tries them: FastAPI matches routers in turn, so the busiest first.
FACES: tuple[Face, ...] = (
    Face("openai-chat", openai_chat.router, json_errors=True),
    Face("runs", runs.router, json_errors=True),
    Face("responses", responses.router, json_errors=True),
    Face("ag-ui", agui.router, json_errors=True),
    Face("websocket", ws.router, json_errors=False),
    Face("responses-websocket", responses_ws.router, json_errors=False),
    Face("console", console.router, json_errors=False),
)
