"""Opening a run's event stream over SSE, in any dialect."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

from streams.encoding import encode_sse_batch
from streams.errors import InvalidRequestError
from streams.events import Event
from streams.reader import RunReader
from streams.runs import Run

from .sse import EventStreamResponse
from .state import GatewayState


class HeldSlot:
    """A stream slot taken before the response exists (a run started with its stream must
    not start when the stream would be refused); the response gives it back."""

    def __init__(self, slot: contextlib.AbstractAsyncContextManager[None]) -> None:
        self._slot = slot
        self._held = True

    @classmethod
    async def take(cls, state: GatewayState, owner: str | None) -> HeldSlot:
        slot = state.stream_slot(owner, "sse")
        await slot.__aenter__()
        return cls(slot)

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._slot.__aexit__(None, None, None)


async def start_streamed(
    state: GatewayState, owner: str | None, start: Callable[[], Awaitable[Run]]
) -> tuple[Run, HeldSlot]:
    """Take a stream slot, then start the run: a stream refused for the caller's limit
    starts nothing (no run without a reader, no run-rate token spent)."""
    slot = await HeldSlot.take(state, owner)
    try:
        return await start(), slot
    except BaseException:
        await slot.release()
        raise


def event_stream(
    state: GatewayState,
    run: Run,
    after: int,
    encode: Callable[[list[Event]], bytes] = encode_sse_batch,
    slot: HeldSlot | None = None,
) -> EventStreamResponse:
    """The SSE response for ``run`` from cursor ``after``, in the dialect ``encode`` makes.
    It counts as one of the run owner's open streams while it is open (``slot``, if the
    caller took it already)."""
    settings = state.settings
    return EventStreamResponse(
        RunReader(state.manager, run, after),
        heartbeat=settings.heartbeat_interval,
        send_timeout=settings.send_timeout,
        streams=state.sse_streams,
        headers={"x-run-id": run.id},
        on_close=functools.partial(state.record_close, "sse"),
        encode=encode,
        slot=(lambda: slot)
        if slot is not None
        else functools.partial(state.stream_slot, run.owner, "sse"),
        on_sent=state.metrics.events_sent.labels("sse").inc,
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
