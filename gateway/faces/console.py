"""The browser console: static files from ``web/`` served at ``/`` and ``/web/...``.

The console is a client of the public API only; this module just hands the browser its
files. Wiring, in ``create_app``::

    app.include_router(console.router)
    console.mount_console(app)
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

__all__ = ["INDEX", "WEB_DIR", "console_index", "mount_console"]

# Resolved from this file, not the working directory, so `uv run gateway` serves the
# console from anywhere.
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
INDEX = WEB_DIR / "index.html"

# The page is small and changes with the code: always revalidate, so an operator never
# debugs with a stale console after an upgrade.
_NO_CACHE = {"cache-control": "no-cache"}

router = APIRouter()


@router.get("/", include_in_schema=False)
async def console_index() -> FileResponse:
    """The console's page."""
    return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=_NO_CACHE)


class _ConsoleFiles(StaticFiles):
    """StaticFiles with the console's caching policy (ETag revalidation, no stale files)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_NO_CACHE)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve ``web/`` at ``/web`` (the page's modules and style sheet)."""
    app.mount("/web", _ConsoleFiles(directory=WEB_DIR), name="console")
