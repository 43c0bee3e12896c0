"""How a failure of a run or of one of its producers is told: the ``error`` of its event."""

from __future__ import annotations

from streams.errors import GatewayError
from streams.events import error_payload

__all__ = ["describe_exception", "is_expected"]


def is_expected(exc: BaseException) -> bool:
    """A failure the gateway reports on purpose (an upstream error, …), not a bug."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_expected(inner) for inner in exc.exceptions)
    return isinstance(exc, GatewayError)


def describe_exception(exc: BaseException) -> dict[str, str]:
    """The ``{"code", "message"}`` of ``exc``: a gateway error's own code, ``internal_error``
    for anything else; a group is told by its first exception."""
    if isinstance(exc, GatewayError):
        return error_payload(exc.code, str(exc))
    if isinstance(exc, BaseExceptionGroup):
        return describe_exception(exc.exceptions[0])
    return error_payload("internal_error", f"{type(exc).__name__}: {exc}")
