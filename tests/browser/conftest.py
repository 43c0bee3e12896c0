"""Fixtures for the console's tests in a real browser: Debian's Chromium driven by
Playwright (its own browser download is not reachable here), and a real gateway on
127.0.0.1 in its thread.

The tests use Playwright's sync API: the gateway serves from its own thread and loop, so
a test needs no event loop of its own, and Playwright's waits (``expect``, ``wait_for``)
read naturally. One browser per test module, a fresh context (no storage, no cache) and
page per test. Not wider than a module: while sync Playwright is started its event loop
counts as running in the main thread, which the asyncio tests elsewhere cannot share.

Every page collects its console errors and uncaught exceptions, and a test fails if there
are any; its last screenshot goes to ``test-output/browser/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.browser.pages import ConsoleErrors
from tests.conftest import require_binary
from tests.support import RunningGateway, running_gateway

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_binary("chromium", "apt-get install chromium")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(chromium: str, playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def gateway(request: pytest.FixtureRequest) -> Iterator[RunningGateway]:
    """A gateway with producers slow enough to be seen overlapping (a countdown tick every
    50 ms); a test may override settings with ``@pytest.mark.gateway(**settings)``."""
    marker = request.node.get_closest_marker("gateway")
    overrides: dict[str, Any] = {"countdown_interval": 0.05, "demo_token_delay": 0.005}
    if marker is not None:
        overrides.update(marker.kwargs)
    with running_gateway(**overrides) as running:
        yield running


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def page(
    browser: Browser,
    gateway: RunningGateway,
    console_errors: ConsoleErrors,
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    # Depends on the gateway so it closes first: a gateway stopping under a page's open
    # connections waits for them.
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    context.set_default_timeout(10_000)
    page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(f"console.error: {message.text}")

    def on_page_error(error: Error) -> None:
        console_errors.append(f"uncaught: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    yield page
    OUTPUT.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    try:
        page.screenshot(path=OUTPUT / f"{name}.png", full_page=True)
    finally:
        context.close()
    assert list(console_errors) == [], "the page reported errors"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway(**settings): settings for the browser tests' gateway fixture"
    )
