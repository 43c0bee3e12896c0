"""Per-request context, as pure ASGI middleware (it never buffers or compresses a stream):
a request id (taken from ``X-Request-ID`` or made) on every log line of the request and on
the response, a span for the request (continuing the client's W3C trace context), and one
log line when the request ends (for a stream: when the stream ends)."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.streaming.handoff import handoff_of
from gateway.telemetry.logs import redact_text

__all__ = ["REQUEST_ID", "RequestContext"]

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_log = structlog.get_logger("gateway.requests")


def _path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    return path + (f"?{query}" if query else "")


class RequestContext:
    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else secrets.token_hex(16)
        method = scope.get("method", "WS")
        path = redact_text(_path(scope))
        status: dict[str, Any] = {"code": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            elif message["type"] == "websocket.close" and status["code"] is None:
                status["code"] = 403
            await send(message)

        started = time.perf_counter()
        span = self.tracer.start_span(
            f"{method} {scope.get('path', '')}",
            context=extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "gateway.request_id": request_id,
            },
        )
        del headers
        token = otel_context.attach(trace.set_span_in_context(span))
        log_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)

        def end(error: BaseException | None) -> None:
            if isinstance(error, Exception):
                status["error"] = type(error).__name__
                request_log.error("request failed", method=method, path=path, exc_info=error)
            elif error is not None:  # cancelled (the server is stopping)
                status["error"] = type(error).__name__
            duration = time.perf_counter() - started
            if status["code"] is not None:
                span.set_attribute("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    span.set_status(trace.StatusCode.ERROR)
            span.end()
            request_log.info(
                "request",
                method=method,
                path=path,
                status=status["code"],
                duration_s=round(duration, 4),
                error=status.get("error"),
            )
            structlog.contextvars.reset_contextvars(**log_tokens)
            otel_context.detach(token)

        handoff = handoff_of(scope)
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if handoff is not None and handoff.detached and error is None:
                # The body streams after the stack, still in this request's context: the
                # request ends (log line, span) when the body does.
                handoff.on_end(end)
            else:
                end(error)
