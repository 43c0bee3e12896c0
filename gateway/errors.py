"""Map errors to HTTP answers with a 4xx status that says what was wrong, in the error shape
of the face that was asked. Nothing the client sends produces a 5xx on purpose; an
upstream's failure is a 502 (504 for a timeout, 503 while its circuit breaker is open).

Two shapes, chosen by the request's path (:func:`error_shape_for`):

* OpenAI's, for every route but the Anthropic face's: ``{"error": {"code", "message",
  "type", "param", "details"?}}`` (a superset of OpenAI's, so its SDKs read our errors);
* Anthropic's, under ``/v1/messages``: ``{"type": "error", "error": {"type", "message",
  "code"}}``, its ``type`` the one Anthropic gives the status (``invalid_request_error``,
  ``not_found_error`` …), so the anthropic SDKs raise their typed exceptions.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Send

from gateway.responses import JSONResponse
from streams.errors import (
    ApprovalAnsweredError,
    AuthenticationError,
    BodyTooLargeError,
    CircuitOpenError,
    GatewayError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    RunBusyError,
    RunFinishedError,
    ShuttingDownError,
    StoreUnavailableError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from streams.events import dumps

__all__ = [
    "ANTHROPIC_ERROR_RESPONSES",
    "ERROR_RESPONSES",
    "FAILED_RUN_STATUS",
    "RUN_FINISHED_RESPONSE",
    "STATUS_BY_ERROR",
    "UPSTREAM_RESPONSES",
    "AnthropicErrorBody",
    "AnthropicErrorDetail",
    "ErrorBody",
    "ErrorDetail",
    "ErrorShape",
    "anthropic_error_body",
    "anthropic_error_type",
    "error_body",
    "error_response",
    "error_shape_for",
    "error_type",
    "install_error_handlers",
    "send_error_body",
    "status_for",
    "status_of_failed_run",
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str
    param: str | None = None
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "type", "param", "details"?}}``."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str
    code: str | None = None


class AnthropicErrorBody(BaseModel):
    """An error answer of the Anthropic face: ``{"type": "error", "error": {"type",
    "message", "code"}}``."""

    type: str = "error"
    error: AnthropicErrorDetail


def _documented(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


# The error answers any API route may give, for its OpenAPI documentation.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("The request is invalid (not JSON, or not what the operation takes)."),
    401: _documented("An API key is required and missing, unknown or invalid."),
    404: _documented("No such run (or model), or not the caller's."),
    413: _documented("The body, or a part of it, is larger than the gateway's limits."),
    429: _documented("Too many runs or streams for the caller, or for the gateway."),
    503: _documented("The gateway is shutting down, or an upstream's circuit is open."),
}
# The same answers in the Anthropic face's shape.
ANTHROPIC_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: _documented(answer["description"], AnthropicErrorBody)
    for status, answer in ERROR_RESPONSES.items()
} | {
    502: _documented("The upstream model failed.", AnthropicErrorBody),
    504: _documented("The upstream model timed out.", AnthropicErrorBody),
}
RUN_FINISHED_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: _documented("The run has already ended.")
}
UPSTREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: _documented("The upstream model failed."),
    504: _documented("The upstream model timed out."),
}


STATUS_BY_ERROR: list[tuple[type[GatewayError], int]] = [
    (AuthenticationError, 401),
    (UpstreamTimeoutError, 504),
    (CircuitOpenError, 503),
    (UpstreamError, 502),
    (InvalidRequestError, 400),
    (NotFoundError, 404),
    (RunFinishedError, 409),
    (ApprovalAnsweredError, 409),
    (RunBusyError, 409),
    (BodyTooLargeError, 413),
    (LimitExceededError, 429),
    (ShuttingDownError, 503),
    (StoreUnavailableError, 503),
]


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for a status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(
    code: str, message: str, details: Any = None, *, status: int = 400, param: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "type": error_type(status),
        "param": param,
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


# Anthropic's error ``type`` per status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """Anthropic's error ``type`` for a status."""
    found = _ANTHROPIC_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error_body(
    code: str, message: str, details: Any = None, *, status: int = 400, param: str | None = None
) -> dict[str, Any]:
    """An error in Anthropic's shape; our ``code`` rides along (the SDKs ignore it)."""
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(status), "message": message, "code": code},
    }


class ErrorShape(Protocol):
    """How a face writes an error body (:func:`error_body`, :func:`anthropic_error_body`)."""

    def __call__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        status: int = 400,
        param: str | None = None,
    ) -> dict[str, Any]: ...


# Path prefixes whose routes answer errors in a shape of their own; every other path answers
# OpenAI's.
_SHAPES_BY_PREFIX: tuple[tuple[str, ErrorShape], ...] = (("/v1/messages", anthropic_error_body),)


def error_shape_for(path: str) -> ErrorShape:
    """The error shape of the face that serves ``path``."""
    for prefix, shape in _SHAPES_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return shape
    return error_body


# The status of a whole answer (not streamed) whose run failed, by the run's native error
# code; an upstream's other failures are a 502, a run that failed otherwise a 500.
FAILED_RUN_STATUS = {
    "upstream_timeout": 504,
    "circuit_open": 503,
    "rate_limited": 429,
    "cancelled": 499,
}


def status_of_failed_run(code: str) -> int:
    """The status a face answers a whole request with when its run failed with ``code``."""
    return FAILED_RUN_STATUS.get(code, 502 if code.startswith("upstream") else 500)


def status_for(exc: GatewayError) -> int:
    if isinstance(exc, UpstreamStatusError) and exc.status == 429:
        return 429  # the upstream's rate limit: the client should back off, too
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(exc, request.url.path)


async def send_error_body(send: Send, status: int, body: dict[str, Any]) -> None:
    """Answer an error ``body`` as JSON from a pure-ASGI layer (no response object; the
    connection is kept alive, so the server reads and discards what the client still
    sends: closing with it unread would reset the connection before the client reads this)."""
    content = dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def error_response(exc: GatewayError, path: str = "") -> JSONResponse:
    """The JSON answer for ``exc`` (in the error shape of the face serving ``path``), with
    ``Retry-After`` on 429 and 503 and ``WWW-Authenticate`` on 401."""
    status = status_for(exc)
    headers = None
    if status in (429, 503):
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, math.ceil(retry_after or 1)))}
    elif status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    shape = error_shape_for(path)
    return JSONResponse(
        shape(exc.code, str(exc), status=status), status_code=status, headers=headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    error_body = error_shape_for(request.url.path)
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        message = f"the body is not valid JSON: {detail.get('ctx', {}).get('error', '')}".strip()
        return JSONResponse(error_body("invalid_json", message, status=400), status_code=400)
    details = [
        {"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return JSONResponse(
        error_body(
            "invalid_request",
            f"the request is invalid: {summary}",
            details,
            status=400,
            param=details[0]["field"] if details else None,
        ),
        # 400, as OpenAI answers invalid requests (its SDKs raise BadRequestError for it).
        status_code=400,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, GatewayError):  # FastAPI wraps errors raised reading the body
        return await _gateway_error(request, exc.__cause__)
    # FastAPI's 400 is a body it could not parse: not UTF-8, or nested past the parser's depth.
    code = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    error_body = error_shape_for(request.url.path)
    return JSONResponse(
        error_body(code, str(exc.detail), status=exc.status_code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
