"""Long-lived streams leave the middleware stack once their head is out.

An SSE stream or a WebSocket session can stay open for hours. Run inside the stack, it
keeps every layer's frame, closure and exit stack alive for as long (about 9 KiB per idle
SSE stream, measured with tracemalloc), and every frame it sends passes through each
layer's ``send`` wrapper. The layers only need the *head*: the status and the headers
(CORS, the request id, the status in the access log).

So a streaming response sends its head through the stack and then *detaches* its body: it
gives it to the request's :class:`Handoff` and returns. The stack unwinds; the outermost
layer, :class:`HandoffLayer`, then runs the body in the same task with the server's own
``receive`` and ``send``. A layer that must act when the request truly ends (the access log
line, the span) registers a callback with :meth:`Handoff.on_end`.

Without a :class:`HandoffLayer` (no ``Handoff`` in the scope) a response streams in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HANDOFF_KEY", "DetachedBody", "Handoff", "HandoffLayer", "handoff_of"]

HANDOFF_KEY = "gateway.handoff"

EndCallback = Callable[[BaseException | None], None]


class DetachedBody(Protocol):
    """A response's body, run after the middleware stack has unwound."""

    async def run(self, receive: Receive, send: Send) -> None:
        """Stream the body with the server's ``receive`` and ``send``; release what the
        head took (as :meth:`abandon` does) however it ends."""

    async def abandon(self) -> None:
        """Release what the head took: the body will never run (the request failed or
        was cancelled after the body was detached)."""


class Handoff:
    """One request's way out of the stack: at most one detached body, and the callbacks
    to call when the request ends (with the error it ended with, if any)."""

    __slots__ = ("_body", "_on_end")

    def __init__(self) -> None:
        self._body: DetachedBody | None = None
        self._on_end: list[EndCallback] = []

    @property
    def detached(self) -> bool:
        """Whether a body waits to run after the stack."""
        return self._body is not None

    def detach(self, body: DetachedBody) -> None:
        if self._body is not None:
            raise RuntimeError("this request has detached a body already")
        self._body = body

    def on_end(self, callback: EndCallback) -> None:
        """Call ``callback(error)`` when the request ends, after its detached body."""
        self._on_end.append(callback)

    def _take(self) -> DetachedBody | None:
        body, self._body = self._body, None
        return body

    async def _end(self, error: BaseException | None) -> None:
        body = self._take()
        try:
            if body is not None:  # detached, then the request failed before it could run
                await body.abandon()
        finally:
            for callback in reversed(self._on_end):
                callback(error)


def handoff_of(scope: Scope) -> Handoff | None:
    handoff: Handoff | None = scope.get(HANDOFF_KEY)
    return handoff


class HandoffLayer:
    """The outermost layer: runs the app, then the body it detached, if any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = list(scope)
        handoff = Handoff()
        scope[HANDOFF_KEY] = handoff
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send)
            body = handoff._take()
            if body is not None:
                # What the layers added to the scope (routing, their exit stacks, this
                # handoff) is theirs and done with; the body keeps what it needs itself.
                for key in [key for key in scope if key not in given]:
                    del scope[key]
                del given
                await body.run(receive, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            await handoff._end(error)
