"""The WebSocket channel ``/v1/ws``: several runs multiplexed on one socket.

A session is one task group: the command loop and one forwarding task per subscription.
Every send goes through one lock with a timeout; a peer that cannot keep up is closed with
1013 ("try again later") and may resume each run from its cursor. A bad command gets an
error message and the session goes on. The accepted session runs after the middleware
stack has unwound (:mod:`gateway.handoff`). Every close code and its reason text come from
the table shared with SSE (:mod:`gateway.streaming.disconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.types import Receive, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.admission import check_arguments_size, check_json_input, start_run
from gateway.auth import Principal, key_from_headers
from gateway.faces.ws_protocol import (
    Authenticate,
    CancelRun,
    CommandError,
    Ping,
    StartRun,
    Subscribe,
    ToolApprove,
    ToolDeny,
    ToolResult,
    Unsubscribe,
    parse_command,
)
from gateway.limits.quotas import TokenBucket
from gateway.state import GatewayState, StreamSlot
from gateway.streaming.disconnect import (
    AUTH_FAILURES,
    CLIENT,
    FOREIGN_ORIGIN,
    REFUSED,
    SHUTDOWN,
    SLOW,
    UNAUTHORIZED,
    Disconnect,
)
from gateway.streaming.handoff import handoff_of
from streams.connection import Connection
from streams.dialects.native import encode_ws_ack, encode_ws_error, encode_ws_event
from streams.errors import AuthenticationError, GatewayError, InvalidRequestError
from streams.events import dumps
from streams.reader import RunReader
from streams.view import RunView

__all__ = ["MAX_AUTH_FAILURES", "WebSocketSession", "origin_allowed", "websocket_endpoint"]

logger = logging.getLogger("gateway.ws")

MAX_AUTH_FAILURES = 3


class _SessionClosed(Exception):
    """The peer is gone or was closed by us; stop the session."""


class WebSocketSession:
    """One client's socket: its commands, its subscriptions and its connection limits."""

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.websocket = websocket
        self.state = state
        self._connection: Connection | None = None  # made when the session starts a run
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.started: set[str] = set()  # runs this session started
        self._readers: set[RunReader] = set()  # attached readers, detached at the latest on exit
        self._send_lock = asyncio.Lock()
        self._group: asyncio.TaskGroup | None = None
        self._command_task: asyncio.Task[None] | None = None
        # Why the session ends (None: not decided yet, the peer's own close at the end) and
        # the close frame's reason text.
        self.disconnect: Disconnect | None = None
        self.close_reason = ""
        self.principal: Principal | None = None  # None until authenticated
        self._auth_failures = 0
        # The owner's stream slot, held while the session is open.
        self._slot: StreamSlot | None = None
        settings = state.settings
        self._rate = TokenBucket.full(
            settings.ws_messages_per_second, settings.ws_message_burst, time.monotonic()
        )

    async def open(self) -> bool:
        """The handshake: accepted, or refused (HTTP 403) for a page of another origin."""
        if not origin_allowed(self.websocket, self.state.settings.cors_origins):
            # Before accepting: the handshake is refused (HTTP 403), no session exists.
            await self.websocket.close(FOREIGN_ORIGIN.ws_close_code, FOREIGN_ORIGIN.ws_reason_for())
            self.state.record_close("ws", FOREIGN_ORIGIN.label)
            return False
        await self.websocket.accept()
        return True

    async def run(self, receive: Receive, send: Send) -> None:
        """The accepted session, run after the middleware stack has unwound, on the
        server's own ``receive`` and ``send`` (see :mod:`gateway.handoff`)."""
        self.websocket = _rebound(self.websocket, receive, send)
        await self.serve()

    async def abandon(self) -> None:
        """Nothing to give back: the session takes its slot and readers once it runs."""

    async def serve(self) -> None:
        """The accepted session: authentication, then commands until either side ends it."""
        try:
            presented = key_from_headers(
                self.websocket.headers.get("authorization"),
                self.websocket.headers.get("x-api-key"),
            )
            if presented is not None or not self.state.keys.enabled:
                await self._authenticate(presented)
        except AuthenticationError as exc:
            await self._send_error_and_close(exc, UNAUTHORIZED)
            return
        except GatewayError as exc:  # the key's stream limit, or the shared store is gone
            await self._send_error_and_close(exc, REFUSED)
            return
        # Stopped with the app's other streams once the gateway has drained (1012).
        key = self.state.ws_sessions.add(self._shut_down)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._command_task = self._spawn(self._command_loop())
        finally:
            self.state.ws_sessions.remove(key)
            # Leaving the group cancelled every subscription. A forwarding task cancelled
            # before it ever ran could not detach its reader, so detach what is left here:
            # runs whose on_disconnect is "cancel" lose their last reader and are cancelled.
            for reader in list(self._readers):
                self._detach(reader)
            if self._slot is not None:
                await self._slot.release()
            self.state.record_close("ws", (self.disconnect or CLIENT).label)
            await self._close()

    async def _authenticate(self, key: str | None) -> None:
        """Become ``key``'s principal and take one of its stream slots."""
        principal = self.state.keys.authenticate(key)
        slot = self.state.stream_slot(principal.owner, "ws")
        await slot.take()
        self._slot = slot
        self.principal = principal

    async def _send_error_and_close(self, exc: GatewayError, disconnect: Disconnect) -> None:
        with contextlib.suppress(_SessionClosed):
            await self._send(encode_ws_error(None, exc.code, str(exc)))
        self.disconnect, self.close_reason = disconnect, disconnect.ws_reason_for(exc.code)
        self.state.record_close("ws", disconnect.label)
        await self._close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._group is not None
        return self._group.create_task(coro)

    def _stop(self, disconnect: Disconnect | None = None) -> None:
        """End the session: cancel the command loop and every subscription. The first
        ``disconnect`` given is the one the close says."""
        if self.disconnect is None and disconnect is not None:
            self.disconnect, self.close_reason = disconnect, disconnect.ws_reason_for()
        current = asyncio.current_task()
        for task in [self._command_task, *self.subscriptions.values()]:
            if task is not None and task is not current:
                task.cancel()

    def _shut_down(self) -> None:
        self._stop(SHUTDOWN)

    async def _close(self) -> None:
        if self.websocket.application_state != WebSocketState.CONNECTED:
            return
        if self.websocket.client_state == WebSocketState.DISCONNECTED:
            return
        # A slow peer's close frame waits behind what it has not read yet: give it as long
        # as a send, then drop the connection.
        timeout = self.state.settings.ws_close_timeout
        try:
            async with asyncio.timeout(timeout):
                code = (self.disconnect or CLIENT).ws_close_code
                await self.websocket.close(code, self.close_reason)
        except (TimeoutError, OSError, RuntimeError):
            pass

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            try:
                async with asyncio.timeout(self.state.settings.send_timeout):
                    await self.websocket.send_text(text)
            except TimeoutError:
                logger.info("closing slow WebSocket reader %s", self.websocket.client)
                self._stop(SLOW)
                raise _SessionClosed from None
            except (OSError, RuntimeError, WebSocketDisconnect) as exc:
                self._stop()
                raise _SessionClosed from exc

    # -- the command loop -------------------------------------------------------------------

    async def _command_loop(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await self._send(
                        encode_ws_error(
                            None,
                            "binary_not_supported",
                            "send commands as JSON in text frames, not binary",
                        )
                    )
                    continue
                limit = self.state.settings.ws_max_message_bytes
                if len(text) > limit:
                    await self._send(
                        encode_ws_error(
                            None,
                            "message_too_large",
                            f"the message has {len(text)} characters; the limit is {limit}",
                        )
                    )
                    continue
                wait = self._rate.take(time.monotonic())
                if wait:
                    await self._send(
                        encode_ws_error(
                            None,
                            "rate_limited",
                            f"too many messages; this one was dropped, retry in {wait:.2f}s",
                            retry_after=round(wait, 3),
                        )
                    )
                    continue
                await self._handle(text)
                if self.disconnect is not None:  # a command ended the session
                    break
        except _SessionClosed:
            pass
        self._stop()

    async def _handle(self, text: str) -> None:
        command = parse_command(text)
        if isinstance(command, CommandError):
            await self._send(encode_ws_error(command.id, command.code, command.message))
            return
        try:
            if isinstance(command, Authenticate):
                await self._auth_command(command)
                return
            if self.principal is None:
                raise AuthenticationError(
                    'authenticate first: send {"type": "auth", "key": ...} or an '
                    "Authorization header on the handshake"
                )
            if isinstance(command, StartRun):
                await self._start(command)
            elif isinstance(command, Subscribe):
                await self._subscribe(command.id, command.run_id, command.after)
            elif isinstance(command, Unsubscribe):
                task = self.subscriptions.pop(command.run_id, None)
                if task is None:
                    raise InvalidRequestError(f"not subscribed to run {command.run_id!r}")
                task.cancel()
                await self._send(
                    encode_ws_ack(command.id, command="unsubscribe", run_id=command.run_id)
                )
            elif isinstance(command, CancelRun):
                run = await self.state.cancel_run(command.run_id, command.reason, self.owner)
                await self._send(encode_ws_ack(command.id, command="run.cancel", run_id=run.id))
            elif isinstance(command, ToolResult):
                run = await self.state.find_run(command.run_id, self.owner)
                check_json_input(command.output, "the tool output")
                check_arguments_size(len(dumps(command.output)), self.state)
                if run.id not in self.started and run.id not in self.subscriptions:
                    raise InvalidRequestError(
                        f"subscribe to run {run.id} before sending its tool results"
                    )
                run.resolve_client_tool(command.call_id, command.output, command.error)
                await self._send(
                    encode_ws_ack(
                        command.id, command="tool.result", run_id=run.id, call_id=command.call_id
                    )
                )
            elif isinstance(command, ToolApprove | ToolDeny):
                await self._answer_approval(command)
            elif isinstance(command, Ping):
                await self._send(encode_ws_ack(command.id, command="ping"))
        except GatewayError as exc:
            await self._send(encode_ws_error(command.id, exc.code, str(exc)))

    async def _answer_approval(self, command: ToolApprove | ToolDeny) -> None:
        """Answer a call waiting for approval, as ``POST /v1/runs/{id}/approvals/{call_id}``
        does (the same check of who may, the same errors)."""
        arguments = None
        if isinstance(command, ToolApprove):
            decision: Literal["approve", "deny"] = "approve"
            arguments = command.arguments
            if arguments is not None:
                check_json_input(arguments, "the edited arguments")
                check_arguments_size(len(dumps(arguments)), self.state)
        else:
            decision = "deny"
        await self.state.answer_approval(
            command.run_id, command.call_id, self.owner, decision, command.reason, arguments
        )
        await self._send(
            encode_ws_ack(
                command.id,
                command=command.type,
                run_id=command.run_id,
                call_id=command.call_id,
                decision=decision,
            )
        )

    @property
    def connection(self) -> Connection:
        """The session's :class:`Connection` (its producer semaphore), made on first use:
        a session that only subscribes never needs one."""
        if self._connection is None:
            self._connection = self.state.new_ws_connection()
        return self._connection

    @property
    def owner(self) -> str | None:
        assert self.principal is not None
        return self.principal.owner

    async def _auth_command(self, command: Authenticate) -> None:
        if self.principal is not None:
            raise InvalidRequestError("this session is already authenticated")
        try:
            await self._authenticate(command.key)
        except AuthenticationError:
            self._auth_failures += 1
            if self._auth_failures >= MAX_AUTH_FAILURES:
                self._stop(AUTH_FAILURES)
            raise
        await self._send(encode_ws_ack(command.id, command="auth"))

    async def _start(self, command: StartRun) -> None:
        assert self.principal is not None
        run = await start_run(
            self.state,
            command.run,
            self.connection,
            self.principal,
            default_on_disconnect="cancel",
        )
        self.started.add(run.id)
        # The reader attaches before the ack goes out, so the run cannot lose its only
        # reader in between.
        reader = self._attach(run, 0)
        await self._send(encode_ws_ack(command.id, command="run.start", run_id=run.id))
        self.subscriptions[run.id] = self._spawn(self._forward(reader))

    async def _subscribe(self, command_id: Any, run_id: str, after: int) -> None:
        run = await self.state.find_run(run_id, self.owner)
        if run_id in self.subscriptions:
            raise InvalidRequestError(f"already subscribed to run {run_id}")
        reader = self._attach(run, after)
        await self._send(encode_ws_ack(command_id, command="subscribe", run_id=run_id, after=after))
        self.subscriptions[run_id] = self._spawn(self._forward(reader))

    def _attach(self, run: RunView, after: int) -> RunReader:
        # Attached before the ack goes out, so a run cannot lose its only reader in between;
        # if the ack fails, the session's exit detaches it.
        reader = RunReader(self.state.runs, run, after)
        reader.__enter__()
        self._readers.add(reader)
        return reader

    async def _forward_next(self, reader: RunReader) -> bool:
        """Send the run's next events; whether its log has ended. (A call of its own, so
        that an idle subscription's wait keeps no batch.)"""
        batch = await reader.next_batch(None)
        for event in batch.events:
            await self._send(encode_ws_event(event))
        self.state.metrics.events_sent.labels("ws").inc(len(batch.events))
        return batch.done

    def _detach(self, reader: RunReader) -> None:
        self._readers.discard(reader)
        reader.__exit__(None, None, None)

    async def _forward(self, reader: RunReader) -> None:
        """Send one run's events, in order, until its terminal event or unsubscribe."""
        run_id = reader.run.id
        try:
            while not await self._forward_next(reader):
                pass
        except _SessionClosed:
            pass
        except GatewayError as exc:
            # The run's log cannot be read (the shared store is gone): this subscription
            # ends with a typed error; the session and its other runs go on.
            with contextlib.suppress(_SessionClosed):
                await self._send(encode_ws_error(None, exc.code, str(exc), run_id=run_id))
        finally:
            self._detach(reader)
            if self.subscriptions.get(run_id) is asyncio.current_task():
                del self.subscriptions[run_id]


def _rebound(accepted: WebSocket, receive: Receive, send: Send) -> WebSocket:
    """The same accepted socket on other ``receive`` and ``send`` callables. (A function of
    its own: a local in the long-running caller would keep the old object alive.)"""
    websocket = WebSocket(accepted.scope, receive, send)
    websocket.client_state = accepted.client_state
    websocket.application_state = accepted.application_state
    return websocket


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Browsers send ``Origin``; other clients do not. Same-origin pages and the configured
    CORS origins may open a socket; any other page may not (cross-site WebSocket
    hijacking)."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


router = APIRouter()


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Bidirectional sessions: start, cancel and subscribe to runs; answer client tools and
    approvals (`tool.approve`, `tool.deny`)."""
    state: GatewayState = websocket.app.state.gateway
    session = WebSocketSession(websocket, state)
    if not await session.open():
        return
    handoff = handoff_of(websocket.scope)
    if handoff is not None:
        handoff.detach(session)  # the session runs once the stack has unwound
    else:
        await session.serve()
