"""The SSE response's body, without a server: which bytes go out in which ``send``. Every
``send`` is a write to the socket (and a wake-up of the client), so the opening comment
travels with the events already there, and the last events with the end of the body."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from gateway.streaming.disconnect import ENDED
from gateway.streaming.open_streams import OpenStreams
from gateway.streaming.sse import EventStreamResponse
from streams.connection import Connection
from streams.dialects.native import SSE_PING, encode_sse_batch
from streams.dialects.retraction import EndingEncoder
from streams.directory import LocalRunDirectory
from streams.events import Event, EventType
from streams.log import MemoryEventLog
from streams.reader import RunReader
from streams.runs.manager import RunManager
from streams.runs.run import Run
from tests.support import run_spec

SPEC = run_spec("hi")


def new_run() -> Run:
    return Run("run_1", SPEC, MemoryEventLog("run_1"), Connection("c"), "continue")


class Client:
    """The server side of one response: the messages it is sent, as they come."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self._left = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.put_nowait(message)

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def next_body(self) -> Message:
        message = await self.sent.get()
        assert message["type"] == "http.response.body"
        return message


def respond(manager: RunManager, run: Run, client: Client) -> asyncio.Task[None]:
    response = EventStreamResponse(
        RunReader(LocalRunDirectory(manager), run),
        heartbeat=60,
        send_timeout=5,
        streams=OpenStreams(),
    )
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    return asyncio.create_task(response(scope, client.receive, client.send))


async def test_a_run_that_has_ended_is_one_write_from_the_opening_comment_to_the_end(
    manager: RunManager,
) -> None:
    run = new_run()
    events = [
        await run.log.append(EventType.RUN_STARTED, None, {}),
        await run.log.append(EventType.RUN_COMPLETED, None, {"output": "ok"}),
    ]
    client = Client()
    await respond(manager, run, client)

    assert (await client.sent.get())["type"] == "http.response.start"
    assert await client.next_body() == {
        "type": "http.response.body",
        "body": SSE_PING + encode_sse_batch(events),
        "more_body": False,
    }
    assert client.sent.empty()


async def test_the_opening_comment_carries_the_events_already_in_the_log(
    manager: RunManager,
) -> None:
    run = new_run()
    started = await run.log.append(EventType.RUN_STARTED, None, {})
    client = Client()
    task = respond(manager, run, client)
    await client.sent.get()  # the head

    assert await client.next_body() == {
        "type": "http.response.body",
        "body": SSE_PING + encode_sse_batch([started]),
        "more_body": True,
    }
    completed = await run.log.append(EventType.RUN_COMPLETED, None, {"output": "ok"})
    assert await client.next_body() == {
        "type": "http.response.body",
        "body": encode_sse_batch([completed]),
        "more_body": False,
    }
    await task


async def test_an_empty_log_opens_with_the_comment_alone(manager: RunManager) -> None:
    run = new_run()
    client = Client()
    task = respond(manager, run, client)
    await client.sent.get()  # the head

    assert await client.next_body() == {
        "type": "http.response.body",
        "body": SSE_PING,
        "more_body": True,
    }
    started = await run.log.append(EventType.RUN_STARTED, None, {})
    assert (await client.next_body())["body"] == encode_sse_batch([started])
    await run.log.append(EventType.RUN_CANCELLED, None, {"reason": "test"})
    assert (await client.next_body())["more_body"] is False
    await task


class EndingAtRetraction:
    """An encoder whose dialect cannot carry a retraction: it ends there."""

    def __init__(self) -> None:
        self.ended = False

    def __call__(self, events: list[Event]) -> bytes:
        out = b""
        for event in events:
            if self.ended:
                break
            out += event.type.value.encode() + b"\n"
            self.ended = event.type is EventType.MESSAGE_RETRACTED
        return out


async def test_an_encoder_that_has_ended_ends_the_body_though_the_run_goes_on(
    manager: RunManager,
) -> None:
    run = new_run()
    closed: list[str] = []
    encoder = EndingAtRetraction()
    assert isinstance(encoder, EndingEncoder)
    response = EventStreamResponse(
        RunReader(LocalRunDirectory(manager), run),
        heartbeat=60,
        send_timeout=5,
        streams=OpenStreams(),
        encode=encoder,
        on_close=closed.append,
    )
    client = Client()
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    task = asyncio.create_task(response(scope, client.receive, client.send))
    await run.log.append(EventType.RUN_STARTED, None, {})
    await client.sent.get()  # the head
    assert (await client.next_body())["more_body"] is True
    await run.log.append(EventType.MESSAGE_DELTA, "model", {"message_id": "m", "delta": "x"})
    await run.log.append(EventType.MESSAGE_RETRACTED, "model", {"message_id": "m", "reason": "r"})
    body = b""
    while (message := await client.next_body())["more_body"]:
        body += message["body"]
    assert (body + message["body"]).endswith(b"message.delta\nmessage.retracted\n")
    await task
    assert not run.log.closed  # the run goes on; this reader has left it
    assert closed == ["ended"]
    assert response.close_reason is ENDED
