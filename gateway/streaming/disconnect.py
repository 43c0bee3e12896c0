"""Every way the gateway lets a reader go, in one table (as centrifuge's ``disconnect.go``):
the SSE stream and the WebSocket session both read it, so the two channels say the same
thing the same way, and ``gateway_reader_disconnects{channel, reason}`` counts it under
one label.

==================  ============  ===========  ====  ========================================
row                 label         SSE          WS    WS close reason
==================  ============  ===========  ====  ========================================
``DONE``            done          last event   —     —
``ENDED``           ended         dialect end  —     —
``ERROR``           error         error event  —     —
``CLIENT``          client        gone         1000  (empty)
``SLOW``            slow          closed       1013  slow reader: resume with subscribe/after
``SHUTDOWN``        shutdown      closed       1012  the gateway is restarting
``REFUSED``         refused       —            1013  the refusing error's code
``UNAUTHORIZED``    unauthorized  —            4401  the refusing error's code
``AUTH_FAILURES``   unauthorized  —            4401  too many failed authentications
``FOREIGN_ORIGIN``  forbidden     —            4403  origin not allowed
``FOREIGN_HOST``    forbidden     —            1008  (empty)
==================  ============  ===========  ====  ========================================

A dash: it never happens on that channel (a WebSocket session outlives its runs; an SSE
stream is refused with an HTTP error before it opens). The 4xxx codes are the HTTP status
they stand for, in the application range.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AUTH_FAILURES",
    "CLIENT",
    "DISCONNECTS",
    "DONE",
    "ENDED",
    "ERROR",
    "FOREIGN_HOST",
    "FOREIGN_ORIGIN",
    "REFUSED",
    "SHUTDOWN",
    "SLOW",
    "UNAUTHORIZED",
    "Disconnect",
    "SSEEnding",
]


class SSEEnding(enum.Enum):
    """How an SSE response ends."""

    LAST_EVENT = "the run's terminal event is the body's last frame"
    DIALECT_END = "the dialect's own end (an error it cannot take back, then its end of stream)"
    ERROR_EVENT = "a typed error event (its code and message) is the body's last frame"
    CLOSED = "the body stops unfinished and the connection is closed (reset past its linger)"
    GONE = "nothing is sent: the peer has gone already"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """One way a reader is let go: its metric label, how each channel ends it, and why."""

    label: str  # the ``reason`` label of gateway_reader_disconnects
    sse: SSEEnding | None  # None: never on SSE
    ws_code: int | None  # the close frame's code; None: never on a WebSocket
    # The close frame's reason text; ``{code}`` stands for the code of the error that
    # refused the session (sent as an error message just before the close).
    ws_reason: str
    doc: str

    @property
    def ws_close_code(self) -> int:
        """The close frame's code (``ValueError`` for a row that never ends a WebSocket)."""
        if self.ws_code is None:
            raise ValueError(f"a WebSocket is never closed for {self.label!r}")
        return self.ws_code

    def ws_reason_for(self, code: str = "") -> str:
        """The close frame's reason text, with the refusing error's ``code`` filled in."""
        return self.ws_reason.format(code=code)


DONE = Disconnect(
    label="done",
    sse=SSEEnding.LAST_EVENT,
    ws_code=None,
    ws_reason="",
    doc="The run's log ended and every event was delivered.",
)
ENDED = Disconnect(
    label="ended",
    sse=SSEEnding.DIALECT_END,
    ws_code=None,
    ws_reason="",
    doc="The dialect said its last before the run ended (a retraction it cannot carry): "
    "the reader leaves, and a run whose last reader left may be cancelled.",
)
ERROR = Disconnect(
    label="error",
    sse=SSEEnding.ERROR_EVENT,
    ws_code=None,
    ws_reason="",
    doc="The run's log cannot be read (the shared store is gone); the reader may resume.",
)
CLIENT = Disconnect(
    label="client",
    sse=SSEEnding.GONE,
    ws_code=1000,
    ws_reason="",
    doc="The peer went away (closed or reset), or ended the session itself.",
)
SLOW = Disconnect(
    label="slow",
    sse=SSEEnding.CLOSED,
    ws_code=1013,
    ws_reason="slow reader: resume with subscribe/after",
    doc="A send blocked past send_timeout: the peer does not keep up; it may resume.",
)
SHUTDOWN = Disconnect(
    label="shutdown",
    sse=SSEEnding.CLOSED,
    ws_code=1012,
    ws_reason="the gateway is restarting",
    doc="The gateway drained and its grace passed: every open stream is stopped.",
)
REFUSED = Disconnect(
    label="refused",
    sse=None,
    ws_code=1013,
    ws_reason="{code}",
    doc="The session could not open: the key's stream limit, or the shared store is gone.",
)
UNAUTHORIZED = Disconnect(
    label="unauthorized",
    sse=None,
    ws_code=4401,
    ws_reason="{code}",
    doc="The handshake's credentials were rejected.",
)
AUTH_FAILURES = Disconnect(
    label="unauthorized",
    sse=None,
    ws_code=4401,
    ws_reason="too many failed authentications",
    doc="Too many auth commands failed on one session.",
)
FOREIGN_ORIGIN = Disconnect(
    label="forbidden",
    sse=None,
    ws_code=4403,
    ws_reason="origin not allowed",
    doc="A page of another origin opened the socket: the handshake is refused (HTTP 403).",
)
FOREIGN_HOST = Disconnect(
    label="forbidden",
    sse=None,
    ws_code=1008,
    ws_reason="",
    doc="The handshake named a Host not allowed: it is refused (HTTP 403).",
)

DISCONNECTS: tuple[Disconnect, ...] = (
    DONE,
    ENDED,
    ERROR,
    CLIENT,
    SLOW,
    SHUTDOWN,
    REFUSED,
    UNAUTHORIZED,
    AUTH_FAILURES,
    FOREIGN_ORIGIN,
    FOREIGN_HOST,
)
