"""What every HTTP route needs from a request: the app's state, the caller, the connection."""

from __future__ import annotations

from fastapi import Request

from gateway.auth import Principal, key_from_headers
from gateway.state import GatewayState
from streams.connection import Connection

__all__ = ["connection", "gateway", "principal", "principal_of"]


def gateway(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


async def principal(request: Request) -> Principal:
    """The caller (the dependency routes declare). Async, so that FastAPI calls it on the
    event loop rather than sending every request through its thread pool."""
    return principal_of(request)


def principal_of(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer`` or ``X-API-Key`` (401 if keys are
    configured and none of them matches)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    presented = key_from_headers(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    found = gateway(request).keys.authenticate(presented)
    request.state.principal = found
    return found


def connection(request: Request) -> Connection:
    """The connection limits of the TCP connection this request came on."""
    client = request.client
    key = f"http:{client.host}:{client.port}" if client else "http:unknown"
    return gateway(request).connection(key)
