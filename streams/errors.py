"""The gateway's one exception tree. Everything the engine or the gateway raises on purpose
derives from :class:`GatewayError`: a wire ``code`` and a message, nothing about HTTP. The
gateway maps each to an HTTP status at its one boundary (:mod:`gateway.errors`); a stream
ends with the same ``code`` in its error event or message.

Names follow the state of the resource (closed, finished, busy, not found, invalid). Every
leaf is drawn here, and only here (a test walks the packages and holds the two to each
other)::

    GatewayError
    ├── InvalidRequestError
    ├── AuthenticationError
    ├── NotFoundError
    │   └── ModelNotFoundError
    ├── BodyTooLargeError
    ├── LimitExceededError
    │   └── RateLimitedError
    ├── RunFinishedError
    ├── ApprovalAnsweredError
    ├── RunBusyError
    │   └── ChatBusyError
    ├── LogClosedError
    ├── LogTakenOverError
    ├── ShuttingDownError
    ├── StoreUnavailableError
    ├── ToolError
    │   ├── ToolTimeoutError
    │   └── ApprovalExpiredError
    └── UpstreamError
        ├── UpstreamUnavailableError
        ├── UpstreamStatusError
        ├── UpstreamTimeoutError
        ├── UpstreamProtocolError
        ├── UpstreamStreamError
        ├── ModelOutputLimitError
        ├── CircuitOpenError
        └── RoutesExhaustedError

Not in the tree, on purpose: errors that never leave the module that raises them
(``SSELimitError`` of the upstream event-stream decoder, which its caller turns into an
:class:`UpstreamProtocolError`; the calculator tool's ``CalculatorError``, whose message is
the tool's result).
"""

from __future__ import annotations

__all__ = [
    "ApprovalAnsweredError",
    "ApprovalExpiredError",
    "AuthenticationError",
    "BodyTooLargeError",
    "ChatBusyError",
    "CircuitOpenError",
    "GatewayError",
    "InvalidRequestError",
    "LimitExceededError",
    "LogClosedError",
    "LogTakenOverError",
    "ModelNotFoundError",
    "ModelOutputLimitError",
    "NotFoundError",
    "RateLimitedError",
    "RoutesExhaustedError",
    "RunBusyError",
    "RunFinishedError",
    "ShuttingDownError",
    "StoreUnavailableError",
    "ToolError",
    "ToolTimeoutError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamStreamError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class GatewayError(Exception):
    """Root of every error the gateway raises deliberately."""

    code = "gateway_error"


class InvalidRequestError(GatewayError):
    """The client's input is wrong (unknown model or tool, bad arguments, bad cursor)."""

    code = "invalid_request"


class AuthenticationError(GatewayError):
    """No valid credentials: a key missing, unknown or not accepted (HTTP 401)."""

    code = "unauthorized"


class NotFoundError(GatewayError):
    """No such run (or one the caller may not see)."""

    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """No model (or route) of that name."""

    code = "model_not_found"


class BodyTooLargeError(GatewayError):
    """A request body, or a part of it (metadata, tool arguments), is larger than the
    gateway's limits."""

    code = "body_too_large"


class LimitExceededError(GatewayError):
    """A concurrency limit is reached: too many active runs, globally or per connection."""

    code = "limit_exceeded"


class RateLimitedError(LimitExceededError):
    """Too many requests in a time window; ``retry_after`` says when one more fits."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RunFinishedError(GatewayError):
    """The run has already reached a terminal state."""

    code = "run_finished"


class ApprovalAnsweredError(GatewayError):
    """The tool call's approval has been answered already (a second answer changes
    nothing)."""

    code = "approval_answered"


class RunBusyError(GatewayError):
    """The run is still queued or running: what was asked needs it ended."""

    code = "run_busy"


class ChatBusyError(RunBusyError):
    """A chat's turn is still running: a new turn of it needs that one ended (or cancelled)."""

    code = "chat_busy"


class LogClosedError(GatewayError):
    """Append to an event log whose run has ended."""

    code = "log_closed"


class ToolError(GatewayError):
    """A tool failed; its message goes back to the model as the tool's result."""

    code = "tool_error"


class ToolTimeoutError(ToolError):
    """A tool took longer than its timeout."""

    code = "tool_timeout"


class ApprovalExpiredError(ToolError):
    """No one answered a tool call's approval within ``approval_timeout`` (and the config
    says to fail the call rather than deny it)."""

    code = "approval_expired"


class ShuttingDownError(GatewayError):
    """The gateway is draining and takes no new work."""

    code = "shutting_down"


class UpstreamError(GatewayError):
    """A model provider failed. ``retryable`` says whether trying again may succeed (only
    ever done before the first byte of output)."""

    code = "upstream_error"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailableError(UpstreamError):
    """The upstream could not be reached (refused, reset, DNS, TLS)."""

    code = "upstream_unavailable"
    retryable = True


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an HTTP error status."""

    code = "upstream_status"

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.retryable = status == 429 or status >= 500


class UpstreamTimeoutError(UpstreamError):
    """A phase of the upstream call (connect, first token, idle, total) took too long."""

    code = "upstream_timeout"

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"the upstream {phase} timeout ({seconds:g}s) passed")
        self.phase = phase
        # Waiting for a first token may succeed on another try; a stall mid-stream may not
        # be retried anyway (output has started).
        self.retryable = phase in ("connect", "first_token")


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not a valid stream (bad JSON, HTML, cut short)."""

    code = "upstream_protocol"


class ModelOutputLimitError(UpstreamError):
    """A model step went past one of the gateway's bounds on what one step may produce (tool
    calls, text, one call's arguments): the step fails there, and none of its tool calls
    is run."""

    code = "upstream_output_limit"


class UpstreamStreamError(UpstreamError):
    """The upstream reported an error inside the stream, or the stream broke mid-way."""

    code = "upstream_stream_error"


class CircuitOpenError(UpstreamError):
    """The route's circuit breaker is open: the upstream failed repeatedly."""

    code = "circuit_open"


class RoutesExhaustedError(UpstreamError):
    """Every route of a model group failed, or none is left to switch to; the message names
    each attempt (``route: what it did``), :attr:`attempts` holds them."""

    code = "upstream_exhausted"

    def __init__(self, message: str, attempts: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.attempts = attempts


class StoreUnavailableError(GatewayError):
    """The shared store (Redis) cannot be reached, or did not answer in time."""

    code = "store_unavailable"


class LogTakenOverError(GatewayError):
    """Another instance ended this run's log (it declared this instance lost): the events
    this instance still holds for it cannot be written."""

    code = "log_taken_over"
