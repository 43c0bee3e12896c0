"""The handoff layer: a body detached inside the middleware stack runs after the stack has
unwound, on the server's own receive and send. Pure ASGI plumbing, no server: these tests
assert on the order of things and on the messages the server is given."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.streaming.handoff import Handoff, HandoffLayer, handoff_of
from gateway.telemetry.request_context import RequestContext
from tests.support import captured_logs

HEAD: Message = {"type": "http.response.start", "status": 200, "headers": []}


def http_scope() -> Scope:
    return {"type": "http", "method": "GET", "path": "/stream", "headers": [], "server_key": 1}


class Server:
    """The server side of one request: what it was sent, and a receive that says the client
    has gone."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def receive(self) -> Message:
        return {"type": "http.disconnect"}


class Body:
    """A detached body that records what it saw."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.ran_with: tuple[Receive, Send] | None = None
        self.abandoned = False

    async def run(self, receive: Receive, send: Send) -> None:
        self.journal.append("body runs")
        self.ran_with = (receive, send)
        await send({"type": "http.response.body", "body": b"data", "more_body": False})

    async def abandon(self) -> None:
        self.abandoned = True


class Wrapping:
    """A middleware that wraps send (as the stack's layers do) and notes when it exits."""

    def __init__(self, app: ASGIApp, journal: list[str]) -> None:
        self.app, self.journal = app, journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            await send({**message, "wrapped": True})

        try:
            await self.app(scope, receive, wrapped)
        finally:
            self.journal.append("middleware exits")


def detaching_endpoint(body: Body, *, then_fail: bool = False) -> ASGIApp:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        scope["router_key"] = object()  # as routers and exit stacks add to the scope
        await send(HEAD)
        handoff = handoff_of(scope)
        assert handoff is not None
        handoff.detach(body)
        if then_fail:
            raise RuntimeError("failed after detaching")

    return endpoint


async def test_a_detached_body_runs_after_the_stack_has_unwound() -> None:
    journal: list[str] = []
    body, server = Body(journal), Server()
    app = HandoffLayer(Wrapping(detaching_endpoint(body), journal))
    await app(http_scope(), server.receive, server.send)
    assert journal == ["middleware exits", "body runs"]


async def test_the_head_goes_through_the_stack_and_the_body_straight_to_the_server() -> None:
    journal: list[str] = []
    body, server = Body(journal), Server()
    app = HandoffLayer(Wrapping(detaching_endpoint(body), journal))
    await app(http_scope(), server.receive, server.send)
    assert [message.get("wrapped", False) for message in server.sent] == [True, False]
    assert body.ran_with == (server.receive, server.send)


async def test_what_the_layers_added_to_the_scope_is_dropped_before_the_body_runs() -> None:
    journal: list[str] = []
    scope = http_scope()
    app = HandoffLayer(detaching_endpoint(Body(journal)))
    await app(scope, Server().receive, Server().send)
    assert set(scope) == set(http_scope())


async def test_a_body_detached_by_a_request_that_then_fails_is_abandoned() -> None:
    journal: list[str] = []
    body = Body(journal)
    ends: list[BaseException | None] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        handoff = handoff_of(scope)
        assert handoff is not None
        handoff.on_end(ends.append)
        await detaching_endpoint(body, then_fail=True)(scope, receive, send)

    with pytest.raises(RuntimeError, match="failed after detaching"):
        await HandoffLayer(endpoint)(http_scope(), Server().receive, Server().send)
    assert body.abandoned
    assert journal == []  # never ran
    assert [type(error) for error in ends] == [RuntimeError]


async def test_the_request_ends_after_its_body_with_the_bodys_error() -> None:
    ends: list[tuple[str, BaseException | None]] = []

    class FailingBody(Body):
        async def run(self, receive: Receive, send: Send) -> None:
            self.journal.append("body runs")
            raise ConnectionResetError("peer gone")

    journal: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        handoff = handoff_of(scope)
        assert handoff is not None
        handoff.on_end(lambda error: ends.append(("first registered", error)))
        handoff.on_end(lambda error: ends.append(("last registered", error)))
        await detaching_endpoint(FailingBody(journal))(scope, receive, send)

    with pytest.raises(ConnectionResetError):
        await HandoffLayer(endpoint)(http_scope(), Server().receive, Server().send)
    assert journal == ["body runs"]
    # Outer layers registered first end last, as they would unwinding a stack.
    assert [name for name, _ in ends] == ["last registered", "first registered"]
    assert all(isinstance(error, ConnectionResetError) for _, error in ends)


async def test_a_request_that_detaches_nothing_ends_with_the_app() -> None:
    ends: list[BaseException | None] = []
    server = Server()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        handoff = handoff_of(scope)
        assert handoff is not None
        handoff.on_end(ends.append)
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"whole"})
        assert not handoff.detached

    await HandoffLayer(endpoint)(http_scope(), server.receive, server.send)
    assert ends == [None]
    assert [message["type"] for message in server.sent] == [
        "http.response.start",
        "http.response.body",
    ]


async def test_a_request_may_detach_one_body_only() -> None:
    handoff = Handoff()
    handoff.detach(Body([]))
    with pytest.raises(RuntimeError, match="detached a body already"):
        handoff.detach(Body([]))


async def test_lifespan_passes_through_untouched() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    await HandoffLayer(app)({"type": "lifespan"}, Server().receive, Server().send)
    assert seen == [{"type": "lifespan"}]


async def test_a_detached_stream_logs_under_its_request_id_and_its_request_line_comes_last() -> (
    None
):
    """The request context (id on log lines, the access log line) spans the detached body."""
    log = structlog.get_logger("test.body")

    class LoggingBody(Body):
        async def run(self, receive: Receive, send: Send) -> None:
            log.info("sending from the body")
            await super().run(receive, send)

    scope = {**http_scope(), "headers": [(b"x-request-id", b"stream-7")]}
    with captured_logs() as output:
        app = HandoffLayer(
            RequestContext(detaching_endpoint(LoggingBody([])), trace.get_tracer("test"))
        )
        await app(scope, Server().receive, Server().send)
        log.info("after the request")
    lines: list[dict[str, Any]] = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(line["event"], line.get("request_id")) for line in lines] == [
        ("sending from the body", "stream-7"),
        ("request", "stream-7"),
        ("after the request", None),
    ]
    assert lines[1]["status"] == 200
