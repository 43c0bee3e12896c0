"""The gateway's exception tree. Everything the engine raises on purpose derives from
:class:`GatewayError`; the HTTP layer maps each to a status code and an error ``code``.

Names follow the state of the resource: closed, busy, not found, invalid.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises deliberately."""

    code = "gateway_error"


class InvalidRequestError(GatewayError):
    """The client's input is wrong (unknown model or tool, bad arguments, bad cursor)."""

    code = "invalid_request"


class NotFoundError(GatewayError):
    """No such run (or one the caller may not see)."""

    code = "not_found"


class LimitExceededError(GatewayError):
    """A concurrency limit is reached: too many active runs, globally or per connection."""

    code = "limit_exceeded"


class RunFinishedError(GatewayError):
    """The run has already reached a terminal state."""

    code = "run_finished"


class LogClosedError(GatewayError):
    """Append to an event log whose run has ended."""

    code = "log_closed"


class ToolError(GatewayError):
    """A tool failed; its message goes back to the model as the tool's result."""

    code = "tool_error"


class ToolTimeoutError(ToolError):
    code = "tool_timeout"


class ShuttingDownError(GatewayError):
    """The gateway is draining and takes no new work."""

    code = "shutting_down"
