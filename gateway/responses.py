"""JSON responses rendered with the gateway's one JSON encoder (orjson)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from streams.events import dumps

__all__ = ["JSONResponse"]


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)
