"""DNS rebinding in a real Chromium: a page served under a name that later resolves to
127.0.0.1 is same-origin with an open gateway there. Chromium resolves ``rebound.test`` to
127.0.0.1 (``--host-resolver-rules``), and the attacker's page is served to it under that
name by the test (``page.route``), as it would have been by the attacker's server before
the DNS answer changed; everything the page then asks goes to the gateway.

Chromium (since 141) has Local Network Access checks of its own, which keep a page of a
public address from reaching loopback at all; other browsers (and older Chromiums) do not.
The browser here plays one of those, with the checks off, so the gateway's check is the
only one between the page and the gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect

from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.pages import expect_run_status, start_run
from tests.support import RunningGateway

REBOUND = "rebound.test"
ATTACK_PAGE = "<!doctype html><title>cute cats</title><p>nothing to see here</p>"
SPEC = {
    "model": "demo",
    "messages": [{"role": "user", "content": "count down from 3"}],
    "tools": ["countdown"],
    "on_disconnect": "continue",
}


@pytest.fixture(scope="module")
def rebinding_browser(chromium: str, playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
            "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets",
        ],
    )
    yield browser
    browser.close()


@pytest.fixture
def rebound_page(rebinding_browser: Browser) -> Iterator[Page]:
    context = rebinding_browser.new_context()
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def open_attack_page(page: Page, gateway: RunningGateway) -> None:
    origin = f"http://{REBOUND}:{gateway.port}"

    def serve_attack(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=ATTACK_PAGE)

    page.route(f"{origin}/attack", serve_attack)
    page.goto(f"{origin}/attack")


def test_a_rebound_page_cannot_start_a_run(rebound_page: Page, gateway: RunningGateway) -> None:
    open_attack_page(rebound_page, gateway)
    before = gateway.state.manager.statistics().retained_runs
    answer = rebound_page.evaluate(
        """async (spec) => {
            const response = await fetch("/v1/runs", {
                method: "POST",
                headers: {"content-type": "application/json"},
                body: JSON.stringify(spec),
            });
            return {status: response.status, body: await response.text()};
        }""",
        SPEC,
    )
    assert answer["status"] == 400, answer
    assert json.loads(answer["body"])["error"]["code"] == "host_not_allowed"
    assert gateway.state.manager.statistics().retained_runs == before


def test_a_rebound_page_cannot_open_a_websocket(
    rebound_page: Page, gateway: RunningGateway
) -> None:
    open_attack_page(rebound_page, gateway)
    outcome = rebound_page.evaluate(
        """() => new Promise((resolve) => {
            const socket = new WebSocket(`ws://${location.host}/v1/ws`);
            socket.onopen = () => { resolve("open"); socket.close(); };
            socket.onclose = (event) => resolve(`closed ${event.code}`);
        })"""
    )
    assert outcome == "closed 1006"  # the handshake was refused: no session


def test_the_console_under_a_rebound_name_is_refused(
    rebound_page: Page, gateway: RunningGateway
) -> None:
    response = rebound_page.goto(f"http://{REBOUND}:{gateway.port}/")
    assert response is not None
    assert response.status == 400
    assert json.loads(response.text())["error"]["code"] == "host_not_allowed"


@pytest.mark.gateway(allowed_hosts=[REBOUND])
@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_the_console_works_under_a_configured_name(
    rebound_page: Page, gateway: RunningGateway, transport: str
) -> None:
    rebound_page.goto(f"http://{REBOUND}:{gateway.port}/")
    expect(rebound_page.locator("#model")).to_have_value("demo")
    run_id = start_run(rebound_page, "Count down from 3.", ["countdown"], transport=transport)
    expect_run_status(rebound_page, "completed")
    assert re.fullmatch(r"run_\w+", run_id)


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_the_console_works_at_localhost(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    page.goto(f"http://localhost:{gateway.port}/")
    expect(page.locator("#model")).to_have_value("demo")
    start_run(page, "Count down from 3.", ["countdown"], transport=transport)
    expect_run_status(page, "completed")
