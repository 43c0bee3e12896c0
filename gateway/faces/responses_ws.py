"""The Responses API's WebSocket mode: ``WS /v1/responses``, as the openai SDK's
``client.responses.connect()`` speaks it.

The client sends ``response.create`` messages (the fields of ``POST /v1/responses``, always
streamed, never in the background; ``stream_id`` names a *lane*); the server answers with the
response's stream events as JSON messages, each echoing its lane's ``stream_id``. Responses of
one lane are made one after the other (FIFO), lanes side by side. Each response is a run
read through the same dialect as over SSE, so it is the same log, resumable over HTTP
(``GET /v1/responses/{id}?stream=true&starting_after=N``) and stoppable
(``POST /v1/responses/{id}/cancel``). A bad message gets an ``error`` message and the socket
goes on; a socket that closes cancels the responses it was streaming, as a closed SSE stream
does. A ``response.create`` with ``mcp_approval_response`` items answers the approvals of its
``previous_response_id`` and streams the run's next response (as over HTTP).
``response.steer`` is refused (``response.steer.failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from gateway.admission import start_run
from gateway.auth import Principal, key_from_headers
from gateway.errors import status_for
from gateway.faces.responses import (
    ResponsesRequest,
    answer_approvals,
    approval_answers,
    spec_of,
)
from gateway.faces.ws import origin_allowed
from gateway.state import GatewayState, StreamSlot
from gateway.streaming.disconnect import (
    CLIENT,
    FOREIGN_ORIGIN,
    REFUSED,
    SLOW,
    UNAUTHORIZED,
    Disconnect,
)
from streams.approvals import answered_by
from streams.connection import Connection
from streams.dialects.responses import ResponsesEncoder
from streams.errors import AuthenticationError, GatewayError, InvalidRequestError
from streams.events import dumps
from streams.reader import RunReader
from streams.view import RunView

__all__ = ["MAX_LANES", "MAX_QUEUED", "ResponsesSocket", "responses_socket"]

logger = logging.getLogger("gateway.responses_ws")

MAX_LANES = 16  # lanes one socket may have at once
MAX_QUEUED = 8  # responses waiting in one lane

router = APIRouter()


class _Closed(Exception):
    """The socket can no longer be sent to."""


class ResponsesSocket:
    """One WebSocket-mode connection: its lanes, each a task with a bounded queue."""

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.websocket = websocket
        self.state = state
        self.connection: Connection = state.new_ws_connection()
        self.principal: Principal | None = None
        self._slot: StreamSlot | None = None
        self._send_lock = asyncio.Lock()
        self._lanes: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self.disconnect: Disconnect | None = None

    async def serve(self) -> None:
        """Accept, authenticate, then read messages until either side closes."""
        if not origin_allowed(self.websocket, self.state.settings.cors_origins):
            await self.websocket.close(FOREIGN_ORIGIN.ws_close_code, FOREIGN_ORIGIN.ws_reason_for())
            self.state.record_close("ws", FOREIGN_ORIGIN.label)
            return
        await self.websocket.accept()
        try:
            presented = key_from_headers(
                self.websocket.headers.get("authorization"),
                self.websocket.headers.get("x-api-key"),
            )
            self.principal = self.state.keys.authenticate(presented)
            slot = self.state.stream_slot(self.principal.owner, "ws")
            await slot.take()
            self._slot = slot
        except (AuthenticationError, GatewayError) as exc:
            with contextlib.suppress(_Closed):
                await self._send_error(exc, None)
            code = UNAUTHORIZED if isinstance(exc, AuthenticationError) else REFUSED
            await self._close(code, exc.code)
            return
        stop = self.state.ws_sessions.add(self._shut_down)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._reader = group.create_task(self._read())
        except* _Closed:
            pass
        finally:
            self.state.ws_sessions.remove(stop)
            if self._slot is not None:
                await self._slot.release()
            self.state.record_close("ws", (self.disconnect or CLIENT).label)
            await self._close(self.disconnect or CLIENT, "")

    def _shut_down(self) -> None:
        """Stop reading and every lane (the app is shutting down, or the peer is gone)."""
        for task in [self._reader, *self._lane_tasks]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _read(self) -> None:
        while True:
            try:
                text = await self.websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                self._shut_down()
                return
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
            if not isinstance(message, dict):
                raise InvalidRequestError("a message is a JSON object")
        except orjson.JSONDecodeError:
            await self._send_error(InvalidRequestError("a message is one JSON object"), None)
            return
        except InvalidRequestError as exc:
            await self._send_error(exc, None)
            return
        lane = message.get("stream_id")
        lane = lane if isinstance(lane, str) else None
        kind = message.get("type")
        if kind == "response.steer":
            error = {
                "type": "invalid_request_error",
                "code": "unsupported",
                "message": "steering is not supported by this gateway",
                "param": None,
            }
            await self._send_json(
                {"type": "response.steer.failed", "stream_id": lane, "error": error}
            )
            return
        if kind != "response.create":
            await self._send_error(InvalidRequestError(f"unknown message type {kind!r}"), lane)
            return
        queue = self._lanes.get(lane)
        if queue is None:
            if len(self._lanes) >= MAX_LANES:
                await self._send_error(
                    InvalidRequestError(f"at most {MAX_LANES} lanes a socket"), lane
                )
                return
            queue = self._lanes[lane] = asyncio.Queue(MAX_QUEUED)
            assert self._group is not None
            task = self._group.create_task(self._lane(lane, queue))
            self._lane_tasks.add(task)
            task.add_done_callback(self._lane_tasks.discard)
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            await self._send_error(
                InvalidRequestError(f"at most {MAX_QUEUED} responses wait in a lane"), lane
            )

    async def _lane(self, lane: str | None, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            message = await queue.get()
            try:
                await self._respond(message, lane)
            except GatewayError as exc:
                await self._send_error(exc, lane)

    async def _respond(self, message: dict[str, Any], lane: str | None) -> None:
        """Make one response and send its events."""
        fields = {k: v for k, v in message.items() if k not in ("type", "stream_id")}
        if fields.get("background"):
            raise InvalidRequestError("background responses are not supported over WebSocket")
        fields["stream"] = True
        try:
            body = ResponsesRequest.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequestError(f"{where}: {first['msg']}") from None
        assert self.principal is not None
        owner = self.principal.owner
        answers = approval_answers(body.input, by=answered_by(owner))
        run: RunView
        if answers is not None:
            # The next response of the run whose approvals these answer.
            run, cut = await answer_approvals(self.state, body.previous_response_id, owner, answers)
            encoder = ResponsesEncoder.for_run(run.id, run.spec, cut)
        else:
            spec = await spec_of(self.state, body, owner)
            run = await start_run(
                self.state, spec, self.connection, self.principal, default_on_disconnect="cancel"
            )
            encoder = ResponsesEncoder.for_run(run.id, spec)
        with RunReader(self.state.runs, run) as reader:
            # An ended encoder (a retraction it cannot carry: response.failed) ends the
            # response here; its reader gone, the run (on_disconnect "cancel") is cancelled.
            while not reader.done and not encoder.ended:
                batch = await reader.next_batch(None)
                for event in batch.events:
                    for item in encoder.translate(event):
                        if lane is not None:
                            item["stream_id"] = lane
                        await self._send_json(item)

    async def _send_error(self, exc: GatewayError, lane: str | None) -> None:
        status = status_for(exc)
        error = {
            "type": "invalid_request_error" if status < 500 else "server_error",
            "code": exc.code,
            "message": str(exc),
            "param": None,
        }
        message: dict[str, Any] = {"type": "error", "error": error, "status": status}
        if lane is not None:
            message["stream_id"] = lane
        await self._send_json(message)

    async def _send_json(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            try:
                async with asyncio.timeout(self.state.settings.send_timeout):
                    await self.websocket.send_text(dumps(message).decode())
            except TimeoutError:
                self.disconnect = SLOW
                self._shut_down()
                raise _Closed from None
            except (OSError, RuntimeError, WebSocketDisconnect):
                self._shut_down()
                raise _Closed from None

    async def _close(self, disconnect: Disconnect, code: str) -> None:
        with contextlib.suppress(TimeoutError, OSError, RuntimeError):
            async with asyncio.timeout(self.state.settings.ws_close_timeout):
                await self.websocket.close(disconnect.ws_close_code, disconnect.ws_reason_for(code))


@router.websocket("/v1/responses")
async def responses_socket(websocket: WebSocket) -> None:
    """The Responses API over one WebSocket (``client.responses.connect()``)."""
    await ResponsesSocket(websocket, websocket.app.state.gateway).serve()
