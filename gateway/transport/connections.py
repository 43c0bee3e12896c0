"""The gateway's own uvicorn protocols: every connection is closed for real, and none is held
open before its request.

uvicorn closes a connection with ``transport.close()``, which waits for the write buffer to
drain; a peer that stopped reading never drains it, so a connection the gateway gave up on
(a slow reader, a ping timeout, shutdown) stayed ESTABLISHED with megabytes queued, after
its stream slot had been given back. And uvicorn has no deadline before a request's head is
complete: a connection that sends nothing, or trickles header bytes, is held forever.

Both are the server's business, below ASGI, so they are done here, in subclasses of
uvicorn's protocols given to ``uvicorn.Config(http=…, ws=…)``. One connection's life::

    accepted ──(first byte within first_byte_timeout)──▶ reading a head
    reading a head ──(whole head within header_timeout)──▶ request
    request ──(body within body_timeout)──▶ answering ──▶ idle (keep-alive)
    idle ──(next request begun within keep_alive_timeout)──▶ reading a head

    any state ──close()──▶ closing ──(nothing pending, here or in the kernel)──▶ FIN ──▶ gone
                              └──(not drained within close_linger)──▶ reset (RST) ──▶ gone

Every way a connection is let go is counted by reason in :class:`ConnectionStats`:

=================  ===========================================================
reason             when
=================  ===========================================================
``first_byte``     no request begun within ``first_byte_timeout`` of the accept,
                   or within ``keep_alive_timeout`` of the last answer
``header``         a request head was not complete ``header_timeout`` after its
                   first byte (answered 408 when the peer may still read it)
``body``           a request body was not complete ``body_timeout`` after its head
``over_capacity``  accepted past ``max_connections``: answered 503, then closed
``reset``          a close did not drain within ``close_linger``: aborted (RST)
=================  ===========================================================

An application (the SSE response, the WebSocket session) reaches its connection through
:func:`connection_of` to end it on its own initiative (:meth:`GuardedTransport.close`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import math
import os
import socket
import struct
import termios
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from gateway.errors import error_body
from streams.events import dumps

__all__ = [
    "BODY_TIMEOUT",
    "CONNECTION_KEY",
    "DELIVERY_CHECK",
    "HEADER_TIMEOUT",
    "OVER_CAPACITY",
    "ConnectionPolicy",
    "ConnectionStats",
    "DeadlineWheel",
    "GuardedTransport",
    "connection_of",
    "protocol_classes",
]

# The scope's key for the GuardedTransport (a key of its own, as HANDOFF_KEY is: an
# "extensions" dict would be one more object per request, kept by every open stream).
CONNECTION_KEY = "gateway.connection"

# Reads of 64 KiB that a close makes of what its peer sent unread (the kernel's receive
# queue holds a few hundred KiB at most).
_MAX_DISCARD_READS = 16
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
DELIVERY_CHECK = 0.05  # seconds between looks at a closing connection's pending bytes


@dataclass(slots=True)
class ConnectionStats:
    """A server's open connections, and those it let go by reason (the table in this
    module's docstring)."""

    open: int = 0
    closed: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """The bounds of one server's connections (all in seconds, but ``max_connections``)."""

    max_connections: int = 10_000
    first_byte_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    close_linger: float = 2.0
    ws_close_timeout: float = 5.0
    stats: ConnectionStats = field(default_factory=ConnectionStats)

    def guard(self, transport: asyncio.BaseTransport) -> GuardedTransport:
        """``transport``, guarded (uvloop's transports are not asyncio.Transport subclasses,
        hence the cast)."""
        return GuardedTransport(cast(asyncio.Transport, transport), self)


class GuardedTransport:
    """A transport whose :meth:`close` cannot hang, nor leave an orphan in the kernel.

    A close is deferred until nothing is pending, neither in the transport's buffer nor in
    the kernel's send queue, and then made (FIN). If that has not happened ``close_linger``
    seconds later, the connection is reset (RST): a peer that stopped reading is really
    gone, and what it never read is dropped. (Handing the socket to the kernel with data
    queued would leave it in FIN_WAIT1, retrying a zero window for minutes.)

    It stands in for the real transport in uvicorn's protocols (and, after an upgrade, the
    WebSocket's). ``write``, on the hot path, is the real transport's own bound method; the
    rest of the interface goes to the real transport through ``__getattr__``. Small, since
    one is held per open connection.
    """

    __slots__ = ("_closing_at", "_gone", "_policy", "_timer", "_transport", "_waiters", "write")

    def __init__(self, transport: asyncio.Transport, policy: ConnectionPolicy) -> None:
        self._transport = transport
        self._policy = policy
        self._timer: asyncio.TimerHandle | None = None
        self._closing_at: float | None = None  # loop time of close(), once called
        self._gone = False
        self._waiters: list[asyncio.Future[None]] | None = None
        policy.stats.open += 1
        self.write = transport.write

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self._transport, name)

    @property
    def lost(self) -> bool:
        """Whether the connection is gone (its protocol's ``connection_lost`` ran)."""
        return self._gone

    def is_closing(self) -> bool:
        return self._closing_at is not None or self._transport.is_closing()

    def close(self) -> None:
        """Close once what is pending is delivered; reset the connection if that takes
        ``close_linger`` seconds."""
        if self._closing_at is not None or self._gone:
            return
        self._closing_at = asyncio.get_running_loop().time()
        # Nothing more is read: a request read now would be answered on a closing socket.
        self._transport.pause_reading()
        self._close_when_delivered()

    def abort(self) -> None:
        """Reset the connection now (RST), dropping what is pending."""
        if self._gone:
            return
        if self._closing_at is None:
            self._closing_at = asyncio.get_running_loop().time()
        self._policy.stats.closed["reset"] += 1
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self._transport.abort()

    async def wait_lost(self) -> None:
        """Wait until the connection is gone: after a :meth:`close`, ``close_linger``
        seconds at most, and a second more for the reset to be seen."""
        if self._gone:
            return
        lost = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(lost)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._policy.close_linger + 1):
                await lost

    def connection_lost(self) -> None:
        """Called by the protocol: the connection is gone, no reset is needed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gone:
            return
        self._gone = True
        self._policy.stats.open -= 1
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _close_when_delivered(self) -> None:
        self._timer = None
        if self._gone:
            return
        loop = asyncio.get_running_loop()
        assert self._closing_at is not None
        if self._transport.get_write_buffer_size() == 0 and self._unsent() == 0:
            self._discard_unread()
            self._transport.close()  # nothing pending: an orderly FIN
        elif loop.time() - self._closing_at >= self._policy.close_linger:
            self.abort()
        else:
            self._timer = loop.call_later(DELIVERY_CHECK, self._close_when_delivered)

    def _discard_unread(self) -> None:
        """Read out what the peer sent that nobody will read (reading stopped at the
        close): a socket closed with unread data is reset (RST) by the kernel instead of
        closed (FIN), and its peer, a client still sending (a trickling head), may see the
        reset before the answer it was sent. At most a few reads: what the kernel holds."""
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return
        with contextlib.suppress(OSError):  # BlockingIOError: nothing (more) to read
            for _ in range(_MAX_DISCARD_READS):
                if not os.read(sock.fileno(), 65536):
                    return

    def _unsent(self) -> int:
        """Bytes in the kernel's send queue the peer has not acknowledged."""
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return 0
        unsent: int = struct.unpack("i", queued)[0]
        return unsent


def connection_of(scope: Mapping[str, Any]) -> GuardedTransport | None:
    """The connection an HTTP or WebSocket scope came in on, when served by these protocols."""
    connection: GuardedTransport | None = scope.get(CONNECTION_KEY)
    return connection


def _refusal(status: int, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = dumps(error_body(code, message))
    head = [
        f"HTTP/1.1 {status} {'Service Unavailable' if status == 503 else 'Request Timeout'}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


OVER_CAPACITY = _refusal(
    503, "over_capacity", "the gateway has as many connections as it takes; retry shortly", 1
)
HEADER_TIMEOUT = _refusal(408, "request_timeout", "the request head did not arrive in time")
BODY_TIMEOUT = _refusal(408, "request_timeout", "the request body did not arrive in time")


class DeadlineWheel:
    """The pending deadlines of one server's connections, in buckets of ``resolution``
    seconds, checked by one timer that ticks while any is pending: no timer per connection
    (an idle stream holds none), and arming or clearing a deadline is a set operation.
    Deadlines against slow clients need no finer precision than a tenth of a second."""

    def __init__(self, resolution: float = 0.1) -> None:
        self.resolution = resolution
        self._buckets: dict[int, set[_GatewayHttpProtocol]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, protocol: _GatewayHttpProtocol, delay: float) -> int:
        """Call ``protocol.deadline_passed()`` ``delay`` seconds from now (at most one
        ``resolution`` later); the bucket to :meth:`discard` it from."""
        loop = asyncio.get_running_loop()
        bucket = math.ceil((loop.time() + delay) / self.resolution)
        self._buckets.setdefault(bucket, set()).add(protocol)
        if self._timer is None:
            self._timer = loop.call_later(self.resolution, self._tick)
        return bucket

    def discard(self, protocol: _GatewayHttpProtocol, bucket: int) -> None:
        protocols = self._buckets.get(bucket)
        if protocols is not None:
            protocols.discard(protocol)
            if not protocols:
                del self._buckets[bucket]

    def __len__(self) -> int:
        return sum(len(protocols) for protocols in self._buckets.values())

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = math.floor(loop.time() / self.resolution)
        for bucket in sorted(bucket for bucket in self._buckets if bucket <= now):
            for protocol in self._buckets.pop(bucket):
                protocol.deadline_passed()
        self._timer = loop.call_later(self.resolution, self._tick) if self._buckets else None


class _GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines before a request is complete, a cap on
    open connections and closes that cannot hang."""

    policy: ConnectionPolicy  # set on the class made by protocol_classes()
    deadlines: DeadlineWheel  # likewise: one per server
    # Slots, not the instance dict: uvicorn's protocol has 28 attributes, and past 30 an
    # instance dict stops sharing its keys (1.5 KiB more per connection, measured).
    __slots__ = ("_due", "_due_bucket", "_guarded", "_in_head", "_refused")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The deadline in force (its reason and answer) and its bucket in the wheel.
        self._due: tuple[str, bytes] | None = None
        self._due_bucket = 0
        self._in_head = False
        self._refused = False
        self._guarded: GuardedTransport | None = None

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        policy = self.policy
        self._guarded = policy.guard(transport)
        super().connection_made(self._guarded)  # type: ignore[arg-type]
        # Refused once its head is in: a client reads an answer to its request, where an
        # answer written before it sent anything may be lost to a reset.
        self._refused = len(self.connections) > policy.max_connections
        self._arm(policy.first_byte_timeout, "first_byte", b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._guarded is not None:
            self._guarded.connection_lost()
        super().connection_lost(exc)

    # -- parser callbacks: the deadlines of a request ------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[CONNECTION_KEY] = self._guarded  # type: ignore[literal-required]
        self._in_head = True
        self._arm(self.policy.header_timeout, "header", HEADER_TIMEOUT)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._refused:
            self._let_go("over_capacity", OVER_CAPACITY)
            return
        super().on_headers_complete()
        if self._has_body() and not self.parser.should_upgrade():
            self._arm(self.policy.body_timeout, "body", BODY_TIMEOUT)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline and not self._in_head
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            # uvicorn's keep-alive timer is cancelled by any byte, a lone CRLF included:
            # this one holds until the next request begins.
            self._arm(self.policy.keep_alive_timeout, "first_byte", b"")

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        if self._refused:
            self._let_go("over_capacity", OVER_CAPACITY)
            return
        super().handle_websocket_upgrade()

    # -- deadlines -----------------------------------------------------------------------

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _arm(self, delay: float, reason: str, answer: bytes) -> None:
        self._disarm()
        self._due = (reason, answer)
        self._due_bucket = self.deadlines.add(self, delay)

    def _disarm(self) -> None:
        if self._due is not None:
            self._due = None
            self.deadlines.discard(self, self._due_bucket)

    def deadline_passed(self) -> None:
        """Called by the wheel: the deadline in force has passed."""
        due, self._due = self._due, None
        if due is not None:
            self._deadline_passed(*due)

    def _deadline_passed(self, reason: str, answer: bytes) -> None:
        cycle = self.cycle
        if reason == "body" and cycle is not None:
            if cycle.response_started:
                answer = b""  # answered already (a 413 before the whole body, say)
            else:
                cycle.disconnected = True  # the app's receive() says http.disconnect
                cycle.message_event.set()
        self._let_go(reason, answer)

    def _let_go(self, reason: str, answer: bytes) -> None:
        if self.transport.is_closing():
            return
        self.policy.stats.closed[reason] += 1
        if answer:
            self.transport.write(answer)
        self.transport.close()


class _GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol whose close frame never waits behind unread
    data and whose closing handshake is bounded."""

    policy: ConnectionPolicy
    __slots__ = ("_guarded",)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.close_timeout = self.policy.ws_close_timeout  # uvicorn's is 10 s, fixed
        self._guarded: GuardedTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # After an upgrade, the HTTP protocol's guarded transport; guard it otherwise.
        if isinstance(transport, GuardedTransport):
            guarded = transport
        else:
            guarded = self.policy.guard(transport)
        self._guarded = guarded
        super().connection_made(guarded)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guarded is not None:
            self._guarded.connection_lost()
        super().connection_lost(exc)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope[CONNECTION_KEY] = self._guarded

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete:
            # The close frame goes into the buffer now, behind what the peer has not read:
            # a peer that reads again gets everything and the close; one that never does is
            # reset once the closing handshake and the close's linger have passed.
            self.writable.set()
        await super().send(message)


def protocol_classes(policy: ConnectionPolicy) -> tuple[type[asyncio.Protocol], type[Any]]:
    """The HTTP and WebSocket protocol classes of one server, bound to its ``policy``."""
    http = type(
        "GatewayHttpProtocol",
        (_GatewayHttpProtocol,),
        {"policy": policy, "deadlines": DeadlineWheel()},
    )
    ws = type("GatewayWebSocketProtocol", (_GatewayWebSocketProtocol,), {"policy": policy})
    return http, ws
