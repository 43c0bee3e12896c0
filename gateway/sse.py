"""Server-sent event responses.

One task group per streamed response, in the shape of sse-starlette and Starlette's
``StreamingResponse``: a *pump* (log → encoder → socket, with heartbeats while idle) and a
*disconnect listener*. The first to finish cancels the other, and its reason (``done``,
``client``, ``slow``, ``error``) is recorded.

Shutdown comes in from the app, never a global: :class:`OpenStreams` holds a way to stop
each open stream, and the app, once it has drained (its runs have ended), gives the streams
a grace period to deliver the last events and stops them all (reason ``shutdown``). One
list for the app instead of a watcher task per stream: an idle stream costs less.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from streams.encoding import SSE_PING, encode_sse_batch, encode_stream_error
from streams.errors import GatewayError
from streams.events import Event
from streams.reader import RunReader
from streams.watchdog import Watchdog

from .errors import error_response

logger = logging.getLogger("gateway.sse")

CloseReason = Literal["done", "client", "slow", "shutdown", "error"]

SSE_HEADERS = {
    "cache-control": "no-store",
    "x-accel-buffering": "no",
    "content-type": "text/event-stream; charset=utf-8",
}


class OpenStreams:
    """How to stop each open stream of one app, so shutdown can stop them all at once."""

    def __init__(self) -> None:
        self._stops: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self.closed = False

    def add(self, stop: Callable[[], None]) -> int:
        if self.closed:  # opened while shutting down: stopped at once
            asyncio.get_running_loop().call_soon(stop)
        key = next(self._ids)
        self._stops[key] = stop
        return key

    def remove(self, key: int) -> None:
        self._stops.pop(key, None)

    def close_all(self) -> None:
        self.closed = True
        for stop in list(self._stops.values()):
            stop()

    def __len__(self) -> int:
        return len(self._stops)


class EventStreamResponse(Response):
    """Stream a run's events from a reader's cursor as SSE frames.

    ``encode`` turns each batch of events into frames (one call per batch, in order, so a
    dialect's encoder may keep state across batches); an empty result sends nothing."""

    def __init__(
        self,
        reader: RunReader,
        *,
        heartbeat: float,
        send_timeout: float,
        streams: OpenStreams,
        headers: dict[str, str] | None = None,
        on_close: Callable[[CloseReason], None] | None = None,
        encode: Callable[[list[Event]], bytes] = encode_sse_batch,
        slot: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        # Not Response.__init__: it would set a content-length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})
        self.reader = reader
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.streams = streams
        self.on_close = on_close
        self.encode = encode  # the dialect: native frames, OpenAI chunks, AG-UI events
        self.close_reason: CloseReason | None = None
        # A quota slot (the caller's open streams) held while the stream is open; taken
        # here, in the response, so that it is given back on every way the stream ends.
        self.slot = slot or _no_slot
        self.on_sent = on_sent  # counts events sent (metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = self.slot()
        try:
            await slot.__aenter__()
        except GatewayError as exc:
            await error_response(exc)(scope, receive, send)
            return
        try:
            await self._stream(scope, receive, send)
        finally:
            await slot.__aexit__(None, None, None)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.reader:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            key: int | None = None
            try:
                async with asyncio.TaskGroup() as group:
                    pump = group.create_task(self._pump(send))
                    listener = group.create_task(self._listen_for_disconnect(receive))

                    def stop(reason: CloseReason) -> None:
                        if self.close_reason is None:
                            self.close_reason = reason
                        pump.cancel()
                        listener.cancel()

                    def pump_done(task: asyncio.Task[CloseReason]) -> None:
                        failed = task.cancelled() or task.exception() is not None
                        stop("done" if failed else task.result())

                    pump.add_done_callback(pump_done)
                    listener.add_done_callback(lambda _: stop("client"))
                    key = self.streams.add(functools.partial(stop, "shutdown"))
            finally:
                if key is not None:
                    self.streams.remove(key)
        if self.on_close is not None and self.close_reason is not None:
            self.on_close(self.close_reason)

    async def _send(
        self, watchdog: Watchdog, send: Send, body: bytes, more_body: bool = True
    ) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": more_body}
        await watchdog.wait(send(message), asyncio.get_running_loop().time() + self.send_timeout)

    async def _pump(self, send: Send) -> CloseReason:
        # One timer for every send of the stream, not one armed and cancelled per send.
        watchdog = Watchdog()
        try:
            # A comment at once: proxies and clients see the stream open before the first event.
            await self._send(watchdog, send, SSE_PING)
            while self.close_reason is None:  # (stopped, should a cancel have been lost)
                batch = await self.reader.next_batch(self.heartbeat)
                if batch.events:
                    frames = self.encode(batch.events)
                    if frames:
                        await self._send(watchdog, send, frames)
                    if self.on_sent is not None:
                        self.on_sent(len(batch.events))
                elif not batch.done:
                    await self._send(watchdog, send, SSE_PING)
                if batch.done:
                    await self._send(watchdog, send, b"", more_body=False)
                    return "done"
            return self.close_reason
        except TimeoutError:
            logger.info(
                "disconnecting slow SSE reader of run %s at seq %s",
                self.reader.run.id,
                self.reader.cursor,
            )
            return "slow"
        except OSError:  # the client went away while we were sending
            return "client"
        except GatewayError as exc:
            # The run's log cannot be read (the shared store is gone): say so, typed, and
            # end; the client resumes from the last id it has once the store is back.
            logger.warning("ending SSE stream of run %s: %s", self.reader.run.id, exc)
            with contextlib.suppress(TimeoutError, OSError):
                await self._send(watchdog, send, encode_stream_error(exc.code, str(exc)))
                await self._send(watchdog, send, b"", more_body=False)
            return "error"
        finally:
            watchdog.close()

    async def _listen_for_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return


@contextlib.asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield
