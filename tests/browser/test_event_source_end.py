"""A browser's own EventSource after a run's end, in a real Chromium: the end of the response
looks to it like a dropped connection, so it reconnects once, with ``Last-Event-ID`` = the
terminal event's seq; the gateway answers 204 and the EventSource is CLOSED for good (no
reconnect every few seconds until its token expires). The requests are counted at the
server, by their spans, and in the browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from playwright.sync_api import Page, Request
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.pages import open_console, server_run
from tests.support import RunningGateway, agent_spec, running_gateway

SPEC = agent_spec("count down from 10", ["countdown"], on_disconnect="continue")

FOLLOW = """(url) => {
    const seen = {opens: 0, errors: [], seqs: [], types: [], closed: false};
    window.seen = seen;
    const source = new EventSource(url);
    source.onopen = () => { seen.opens += 1; };
    source.onmessage = (message) => {
        const event = JSON.parse(message.data);
        seen.seqs.push(event.seq);
        seen.types.push(event.type);
    };
    source.onerror = () => {
        seen.errors.push(source.readyState);
        seen.closed = source.readyState === EventSource.CLOSED;
    };
}"""


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def gateway(spans: InMemorySpanExporter) -> Iterator[RunningGateway]:
    """The browser tests' gateway, with its request spans kept: one per request."""
    with running_gateway(
        countdown_interval=0.05, demo_token_delay=0.005, span_exporter=spans
    ) as running:
        yield running


def event_requests(spans: InMemorySpanExporter, run_id: str) -> list[int]:
    """The status of each request for the run's events the server has answered."""
    name = f"GET /v1/runs/{run_id}/events"
    return [
        int(span.attributes["http.response.status_code"])
        for span in spans.get_finished_spans()
        if span.name == name and span.attributes is not None
    ]


def wait_for_requests(spans: InMemorySpanExporter, run_id: str, count: int) -> list[int]:
    """Wait until the server has answered ``count`` requests for the run's events (a span
    ends just after its answer is out, so possibly after the browser has seen it)."""
    deadline = time.monotonic() + 5
    while len(found := event_requests(spans, run_id)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def test_an_event_source_at_the_end_of_a_run_reconnects_once_gets_204_and_closes(
    page: Page, gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    open_console(page, gateway)  # a page of the gateway's origin (the console, idle)
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        run_id = client.post("/v1/runs", json=SPEC).json()["run_id"]
    requests: list[Request] = []

    def on_request(request: Request) -> None:
        if "/events" in request.url:
            requests.append(request)

    page.on("request", on_request)

    page.evaluate(FOLLOW, f"/v1/runs/{run_id}/events")
    # EventSource's own reconnection delay is about 3 s in Chromium.
    try:
        page.wait_for_function("window.seen.closed", timeout=15_000)
    except PlaywrightTimeoutError:
        answered = event_requests(spans, run_id)
        pytest.fail(f"the EventSource never closed; the server answered it {answered}")

    terminal = server_run(gateway, run_id, wait=True)["last_seq"]
    seen: dict[str, Any] = page.evaluate("window.seen")
    assert seen["seqs"] == list(range(1, terminal + 1))  # every event once
    assert seen["types"][-1] == "run.completed"
    assert seen["opens"] == 1
    # The end of the stream: "reconnecting" (CONNECTING); the 204: CLOSED, and nothing more.
    assert seen["errors"] == [0, 2]
    assert wait_for_requests(spans, run_id, 2) == [200, 204]
    assert len(requests) == 2
    assert requests[1].all_headers().get("last-event-id") == str(terminal)
    responses = [request.response() for request in requests]
    assert [response.status for response in responses if response is not None] == [200, 204]
    # (The page fixture checks, too, that the 204 was no error of the page's.)
