"""Opening a run's event stream over SSE, in any dialect."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

from starlette.requests import Request

from gateway.state import GatewayState, StreamSlot
from gateway.streaming.sse import EventStreamResponse
from streams.dialects.native import SSE_PING, encode_sse_batch, encode_stream_error
from streams.dialects.registry import Dialect, PrimableEncoder
from streams.errors import InvalidRequestError
from streams.events import Event
from streams.reader import RunReader
from streams.runs.run import Run
from streams.view import RunView

__all__ = [
    "StartStreamed",
    "cursor_from",
    "dialect_stream",
    "event_stream",
    "read_to_the_end",
    "start_streamed",
    "wait_unless_disconnected",
]


class StartStreamed(Protocol):
    """Starts a run, taking ``stream`` with its quotas (as
    :func:`gateway.admission.start_run` does)."""

    def __call__(self, *, stream: StreamSlot) -> Awaitable[Run]: ...


async def start_streamed(
    state: GatewayState, owner: str | None, start: StartStreamed
) -> tuple[Run, StreamSlot]:
    """Start the run with a stream slot for its reader, taken with the run's own quotas (one
    round trip with a shared store), the stream's first: a stream refused for the caller's
    limit starts nothing (no run without a reader, no run-rate token spent)."""
    slot = state.stream_slot(owner, "sse")
    try:
        return await start(stream=slot), slot
    except BaseException:
        await slot.release()  # if it was taken
        raise


def event_stream(
    state: GatewayState,
    run: RunView,
    after: int,
    encode: Callable[[list[Event]], bytes] = encode_sse_batch,
    slot: StreamSlot | None = None,
    *,
    ping: bytes = SSE_PING,
    error_frame: Callable[[str, str], bytes] = encode_stream_error,
    headers: Mapping[str, str] | None = None,
) -> EventStreamResponse:
    """The SSE response for ``run`` from cursor ``after``, in the dialect ``encode`` makes
    (with its heartbeat ``ping``, its ``error_frame`` and the dialect's own ``headers``
    beside ``x-run-id``). It counts as one of the run
    owner's open streams while it is open (``slot``, if the caller took it already)."""
    settings = state.settings
    return EventStreamResponse(
        RunReader(state.runs, run, after),
        heartbeat=settings.heartbeat_interval,
        send_timeout=settings.send_timeout,
        streams=state.sse_streams,
        headers={**(headers or {}), "x-run-id": run.id},
        on_close=functools.partial(state.record_close, "sse"),
        encode=encode,
        slot=slot or state.stream_slot(run.owner, "sse"),
        on_sent=state.metrics.events_sent.labels("sse").inc,
        ping=ping,
        error_frame=error_frame,
    )


async def dialect_stream(
    state: GatewayState, run: RunView, after: int, dialect: Dialect
) -> EventStreamResponse:
    """The run's events in ``dialect`` after cursor ``after`` (with its heartbeat, error
    frame and headers).

    A stateful dialect's events depend on what came before (AG-UI's: which message is open,
    which tool call was announced), so a resumed stream's encoder is first primed with the
    events the client already has. If they are no longer retained, it starts fresh: the
    reader sends a ``stream.gap`` and what follows is encoded from there.
    """
    encoder = dialect.encoder_for(run.id, run.spec)
    # A cursor out of range is left for the reader to refuse, with the usual 400.
    if isinstance(encoder, PrimableEncoder) and 0 < after <= run.log.last_seq:
        batch = await run.log.read(0, limit=after, timeout=0)
        if batch.gap is None and batch.last_seq == after:
            encoder.prime(batch.events)
    return event_stream(
        state,
        run,
        after,
        encode=encoder,
        ping=dialect.ping,
        error_frame=dialect.error_frame,
        headers=dialect.headers,
    )


def cursor_from(last_event_id: str | None, after: int | None) -> int:
    """The reader's cursor: ``Last-Event-ID`` (EventSource's own reconnect, newer than the
    URL's ``?after=``) or ``after``."""
    if last_event_id is not None:
        try:
            return int(last_event_id.strip())
        except ValueError:
            raise InvalidRequestError(
                f"Last-Event-ID must be an event's seq (a whole number), not {last_event_id!r}"
            ) from None
    return after or 0


def read_to_the_end(run: RunView, cursor: int) -> bool:
    """Whether a reader at ``cursor`` has every event ``run`` will ever have: its log is
    closed (its terminal event is visible, here or, for a run of another instance, in the
    shared store) and the cursor is at or past that event."""
    return run.log.closed and cursor >= run.log.last_seq


async def wait_unless_disconnected(
    request: Request, run: RunView, until: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> bool:
    """Wait for the run to end (or for ``until()``: the part of it the answer is) while its
    client waits for a whole answer; False if the client left first (the caller then
    cancels the run, as the faces' clients expect)."""

    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async with asyncio.TaskGroup() as tasks:
        finished = tasks.create_task(run.wait() if until is None else until())
        left = tasks.create_task(client_left())
        await asyncio.wait([finished, left], return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        left.cancel()
    return finished.done() and not finished.cancelled()
