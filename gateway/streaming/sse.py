"""Server-sent event responses.

One task group per streamed response, in the shape of sse-starlette and Starlette's
``StreamingResponse``: a *pump* (log → encoder → socket, with heartbeats while idle) and a
*disconnect listener*. The first to finish cancels the other, and its reason (a row of
:mod:`gateway.streaming.disconnect`: ``DONE``, ``ENDED``, ``CLIENT``, ``SLOW``, ``ERROR``) is
recorded.

Shutdown comes in from the app, never a global: each response adds a way to stop itself to
the app's :class:`~gateway.streaming.open_streams.OpenStreams`, which stops them all once the
app has drained (``SHUTDOWN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import error_response
from gateway.streaming.disconnect import CLIENT, DONE, ENDED, ERROR, SHUTDOWN, SLOW, Disconnect
from gateway.streaming.handoff import handoff_of
from gateway.streaming.open_streams import OpenStreams
from gateway.transport.connections import GuardedTransport, connection_of
from streams.dialects.native import SSE_PING, encode_sse_batch, encode_stream_error
from streams.dialects.retraction import EndingEncoder
from streams.errors import GatewayError
from streams.events import Event
from streams.reader import RunReader
from streams.watchdog import Watchdog

__all__ = ["SSE_RAW_HEADERS", "EventStreamResponse", "Slot"]

logger = logging.getLogger("gateway.sse")

SSE_RAW_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)


class Slot(Protocol):
    """A quota slot an open stream holds (one of its owner's open streams)."""

    held: bool

    async def take(self) -> None: ...

    async def release(self) -> None:
        """Give the slot back; a slot not held is left alone."""


class EventStreamResponse(Response):
    """Stream a run's events from a reader's cursor as SSE frames.

    ``encode`` turns each batch of events into frames (one call per batch, in order, so a
    dialect's encoder may keep state across batches); an empty result sends nothing. An
    encoder that has ``ended`` (an :class:`~streams.dialects.retraction.EndingEncoder`: it
    said its last, e.g. an error for a retraction its dialect cannot carry) ends the body
    with that batch, though the run goes on (``ENDED``): a client reading on after its
    dialect's end would wait for events it will never be sent.

    The head (status and headers) goes out through the middleware stack; the body is a
    :class:`~gateway.handoff.DetachedBody`, run after the stack has unwound when the app
    has a handoff layer, in place otherwise."""

    def __init__(
        self,
        reader: RunReader,
        *,
        heartbeat: float,
        send_timeout: float,
        streams: OpenStreams,
        headers: dict[str, str] | None = None,
        on_close: Callable[[str], None] | None = None,
        encode: Callable[[list[Event]], bytes] = encode_sse_batch,
        slot: Slot | None = None,
        on_sent: Callable[[int], None] | None = None,
        ping: bytes = SSE_PING,
        error_frame: Callable[[str, str], bytes] = encode_stream_error,
    ) -> None:
        # Not Response.__init__: it would set a content-length for an empty body.
        self.status_code = 200
        self.background = None
        extra = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        names = {name for name, _ in extra}
        self.raw_headers = [*(h for h in SSE_RAW_HEADERS if h[0] not in names), *extra]
        self.reader = reader
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.streams = streams
        self.on_close = on_close
        self.encode = encode  # the dialect: native frames, OpenAI chunks, AG-UI events
        self.close_reason: Disconnect | None = None
        # A quota slot (the caller's open streams) held while the stream is open: taken
        # here unless the caller took it already, and given back on every way it ends.
        self.slot = slot
        self.on_sent = on_sent  # counts events sent (metrics)
        # The dialect's heartbeat (a comment, or an event of its own where the client wants
        # one: Anthropic's ``ping``) and its frame for an error that ends the stream.
        self.ping = ping
        self.error_frame = error_frame
        self._pump_task: asyncio.Task[Disconnect] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._complete = False  # the body's last byte was sent
        # The dialect may end the stream before the run's log does (see the class).
        self._ending = encode if isinstance(encode, EndingEncoder) else None
        self._connection: GuardedTransport | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.slot is not None and not self.slot.held:
            try:
                await self.slot.take()
            except GatewayError as exc:
                await error_response(exc, scope.get("path", ""))(scope, receive, send)
                return
        self.reader.__enter__()
        self._connection = connection_of(scope)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            handoff = handoff_of(scope)
            if handoff is not None:
                handoff.detach(self)
                return
        except BaseException:
            await self.abandon()
            raise
        await self.run(receive, send)

    async def run(self, receive: Receive, send: Send) -> None:
        """The body: events until the run's log ends, the client leaves, the client is
        too slow, or the app shuts down."""
        try:
            key = self.streams.add(self._shut_down)
            try:
                async with asyncio.TaskGroup() as group:
                    self._pump_task = group.create_task(self._pump(send))
                    self._listener_task = group.create_task(self._listen_for_disconnect(receive))
                    self._pump_task.add_done_callback(self._pump_done)
                    self._listener_task.add_done_callback(self._listener_done)
            finally:
                self.streams.remove(key)
                self._pump_task = self._listener_task = None
        finally:
            try:
                if not self._complete:
                    await self._end_connection()
            finally:
                await self.abandon()
        if self.on_close is not None and self.close_reason is not None:
            self.on_close(self.close_reason.label)

    async def _end_connection(self) -> None:
        """The body ended unfinished (a slow reader, shutdown): end the connection too, for
        real. A reader that stopped reading never drains what is buffered for it, so the
        close resets the connection once its linger has passed (gateway.connections)."""
        connection = self._connection
        if connection is None or connection.lost:
            return
        connection.close()
        await connection.wait_lost()

    async def abandon(self) -> None:
        """Detach the reader and give the stream slot back (idempotent)."""
        self.reader.__exit__(None, None, None)
        if self.slot is not None:
            await self.slot.release()

    # The first of pump and listener to finish stops the other; the first reason stays.

    def _stop(self, reason: Disconnect) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        for task in (self._pump_task, self._listener_task):
            if task is not None:
                task.cancel()

    def _pump_done(self, task: asyncio.Task[Disconnect]) -> None:
        failed = task.cancelled() or task.exception() is not None
        self._stop(DONE if failed else task.result())

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        self._stop(CLIENT)

    def _shut_down(self) -> None:
        self._stop(SHUTDOWN)

    async def _send(
        self, watchdog: Watchdog, send: Send, body: bytes, more_body: bool = True
    ) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": more_body}
        await watchdog.wait(send(message), asyncio.get_running_loop().time() + self.send_timeout)
        if not more_body:
            self._complete = True

    async def _pump(self, send: Send) -> Disconnect:
        # One timer for every send of the stream, not one armed and cancelled per send.
        watchdog = Watchdog()
        try:
            # A comment at once, so proxies and clients see the stream open before the first
            # event; with it, the events there are already (one write, not two).
            ended = await self._deliver_next(watchdog, send, 0, SSE_PING)
            while ended is None:
                if self.close_reason is not None:  # (stopped, should a cancel have been lost)
                    return self.close_reason
                ended = await self._deliver_next(watchdog, send, self.heartbeat)
            return ended
        except TimeoutError:
            logger.info(
                "disconnecting slow SSE reader of run %s at seq %s",
                self.reader.run.id,
                self.reader.cursor,
            )
            return SLOW
        except OSError:  # the client went away while we were sending
            return CLIENT
        except GatewayError as exc:
            # The run's log cannot be read (the shared store is gone): say so, typed, and
            # end; the client resumes from the last id it has once the store is back.
            logger.warning("ending SSE stream of run %s: %s", self.reader.run.id, exc)
            with contextlib.suppress(TimeoutError, OSError):
                await self._send(
                    watchdog, send, self.error_frame(exc.code, str(exc)), more_body=False
                )
            return ERROR
        finally:
            watchdog.close()

    async def _deliver_next(
        self, watchdog: Watchdog, send: Send, wait: float, opening: bytes = b""
    ) -> Disconnect | None:
        """Send the next batch (after ``opening``), or a ping if none came within ``wait``
        seconds; how the stream has ended (``DONE`` with the log, ``ENDED`` by its encoder:
        the body then ends with this same write), or None. (A call of its own, so that an
        idle stream's wait keeps no batch.)"""
        batch = await self.reader.next_batch(wait)
        frames = opening
        if batch.events:
            frames += self.encode(batch.events)
            if self.on_sent is not None:
                self.on_sent(len(batch.events))
        elif not batch.done and not frames:
            frames = self.ping  # nothing came within the wait: a heartbeat
        ended = (
            DONE
            if batch.done
            else ENDED
            if self._ending is not None and self._ending.ended
            else None
        )
        if frames or ended is not None:
            await self._send(watchdog, send, frames, more_body=ended is None)
        return ended

    async def _listen_for_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
