"""The WebSocket channel ``/v1/ws``: several runs multiplexed on one socket.

A session is one task group: the command loop, one forwarding task per subscription, and a
shutdown watcher. Every send goes through one lock with a timeout; a peer that cannot keep
up is closed with 1013 ("try again later") and may resume each run from its cursor.
A bad command gets an error message and the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from streams.connection import Connection
from streams.encoding import encode_ws_ack, encode_ws_error, encode_ws_event
from streams.errors import GatewayError, InvalidRequestError
from streams.reader import RunReader
from streams.runs import Run

from .state import GatewayState
from .ws_protocol import (
    CancelRun,
    CommandError,
    Ping,
    StartRun,
    Subscribe,
    ToolResult,
    Unsubscribe,
    parse_command,
)

logger = logging.getLogger("gateway.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


class _SessionClosed(Exception):
    """The peer is gone or was closed by us; stop the session."""


class WebSocketSession:
    """One client's socket: its commands, its subscriptions and its connection limits."""

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.websocket = websocket
        self.state = state
        self.connection: Connection = state.new_ws_connection()
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.started: set[str] = set()  # runs this session started
        self._readers: set[RunReader] = set()  # attached readers, detached at the latest on exit
        self._send_lock = asyncio.Lock()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.close_code: int | None = None
        self.close_reason = ""

    async def serve(self) -> None:
        await self.websocket.accept()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._spawn(self._command_loop())
                self._spawn(self._watch_shutdown())
        finally:
            # Leaving the group cancelled every subscription. A forwarding task cancelled
            # before it ever ran could not detach its reader, so detach what is left here:
            # runs whose on_disconnect is "cancel" lose their last reader and are cancelled.
            for reader in list(self._readers):
                self._detach(reader)
            reason = {CLOSE_TRY_AGAIN_LATER: "slow", CLOSE_GOING_AWAY: "shutdown"}
            self.state.record_close("ws", reason.get(self.close_code or 0, "client"))
            await self._close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _stop(self, code: int | None = None, reason: str = "") -> None:
        """End the session: cancel the command loop, the watcher and every subscription."""
        if self.close_code is None and code is not None:
            self.close_code, self.close_reason = code, reason
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

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
                await self.websocket.close(self.close_code or 1000, self.close_reason)
        except (TimeoutError, OSError, RuntimeError):
            pass

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            try:
                async with asyncio.timeout(self.state.settings.send_timeout):
                    await self.websocket.send_text(text)
            except TimeoutError:
                logger.info("closing slow WebSocket reader %s", self.connection.key)
                self._stop(CLOSE_TRY_AGAIN_LATER, "slow reader: resume with subscribe/after")
                raise _SessionClosed from None
            except (OSError, RuntimeError) as exc:
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
                if len(text) > self.state.settings.ws_max_message_bytes:
                    await self._send(
                        encode_ws_error(None, "message_too_large", "the command is too large")
                    )
                    continue
                await self._handle(text)
        except _SessionClosed:
            pass
        self._stop()

    async def _handle(self, text: str) -> None:
        command = parse_command(text)
        if isinstance(command, CommandError):
            await self._send(encode_ws_error(command.id, command.code, command.message))
            return
        try:
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
                run = self.state.manager.cancel(command.run_id, command.reason)
                await self._send(encode_ws_ack(command.id, command="run.cancel", run_id=run.id))
            elif isinstance(command, ToolResult):
                run = self.state.manager.get(command.run_id)
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
            elif isinstance(command, Ping):
                await self._send(encode_ws_ack(command.id, command="ping"))
        except GatewayError as exc:
            await self._send(encode_ws_error(command.id, exc.code, str(exc)))

    async def _start(self, command: StartRun) -> None:
        run = self.state.manager.start(command.run, self.connection, default_on_disconnect="cancel")
        self.started.add(run.id)
        # The reader attaches before the ack goes out, so the run cannot lose its only
        # reader in between.
        reader = self._attach(run, 0)
        await self._send(encode_ws_ack(command.id, command="run.start", run_id=run.id))
        self.subscriptions[run.id] = self._spawn(self._forward(reader))

    async def _subscribe(self, command_id: Any, run_id: str, after: int) -> None:
        run: Run = self.state.manager.get(run_id)
        if run_id in self.subscriptions:
            raise InvalidRequestError(f"already subscribed to run {run_id}")
        reader = self._attach(run, after)
        await self._send(encode_ws_ack(command_id, command="subscribe", run_id=run_id, after=after))
        self.subscriptions[run_id] = self._spawn(self._forward(reader))

    def _attach(self, run: Run, after: int) -> RunReader:
        # Attached before the ack goes out, so a run cannot lose its only reader in between;
        # if the ack fails, the session's exit detaches it.
        reader = RunReader(self.state.manager, run, after)
        reader.__enter__()
        self._readers.add(reader)
        return reader

    def _detach(self, reader: RunReader) -> None:
        self._readers.discard(reader)
        reader.__exit__(None, None, None)

    async def _forward(self, reader: RunReader) -> None:
        """Send one run's events, in order, until its terminal event or unsubscribe."""
        run_id = reader.run.id
        try:
            while True:
                batch = await reader.next_batch(None)
                for event in batch.events:
                    await self._send(encode_ws_event(event))
                if batch.done:
                    break
        except _SessionClosed:
            pass
        finally:
            self._detach(reader)
            if self.subscriptions.get(run_id) is asyncio.current_task():
                del self.subscriptions[run_id]

    async def _watch_shutdown(self) -> None:
        await self.state.shutdown.wait()
        await asyncio.sleep(self.state.settings.shutdown_grace)
        self._stop(CLOSE_GOING_AWAY, "the gateway is shutting down")


router = APIRouter()


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Bidirectional sessions: start, cancel and subscribe to runs; answer client tools."""
    state: GatewayState = websocket.app.state.gateway
    await WebSocketSession(websocket, state).serve()
