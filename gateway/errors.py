"""Map errors to HTTP answers: ``{"error": {"code", "message", "details"?}}`` with a 4xx
status that says what was wrong. Nothing the client sends produces a 5xx on purpose."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from streams.errors import (
    GatewayError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    RunFinishedError,
    ShuttingDownError,
)

from .responses import JSONResponse


class BodyTooLargeError(GatewayError):
    code = "body_too_large"


STATUS_BY_ERROR: list[tuple[type[GatewayError], int]] = [
    (InvalidRequestError, 400),
    (NotFoundError, 404),
    (RunFinishedError, 409),
    (BodyTooLargeError, 413),
    (LimitExceededError, 429),
    (ShuttingDownError, 503),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def status_for(exc: GatewayError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(error_body(exc.code, str(exc)), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        message = f"the body is not valid JSON: {detail.get('ctx', {}).get('error', '')}".strip()
        return JSONResponse(error_body("invalid_json", message), status_code=400)
    details = [
        {"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return JSONResponse(
        error_body("invalid_request", f"the request is invalid: {summary}", details),
        status_code=422,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, GatewayError):  # FastAPI wraps errors raised reading the body
        return await _gateway_error(request, exc.__cause__)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
