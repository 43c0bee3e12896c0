"""What the console tests do in the page and ask the gateway, shared by the test modules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

from playwright.sync_api import Page, expect

from tests.support import RunningGateway

T = TypeVar("T")


class ConsoleErrors(list[str]):
    """What the page reported as errors: console.error, failed loads, uncaught exceptions."""

    def allow(self, pattern: str) -> None:
        """Forget errors a test expects (e.g. a 401 before the API key is entered)."""
        self[:] = [message for message in self if not re.search(pattern, message)]


def on_server(gateway: RunningGateway, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
    """Run ``coro`` on the gateway's loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, gateway.loop).result(timeout)


def server_run(gateway: RunningGateway, run_id: str, *, wait: bool = False) -> dict[str, Any]:
    """The run's snapshot as the gateway has it (after it ended, with ``wait``)."""

    async def snapshot() -> dict[str, Any]:
        run = gateway.state.manager.get_unchecked(run_id)
        if wait:
            await run.wait()
        return run.snapshot()

    return on_server(gateway, snapshot())


def wait_server_seq(gateway: RunningGateway, run_id: str, seq: int) -> None:
    """Wait until the run's log on the gateway holds event ``seq``."""

    async def advanced() -> None:
        log = gateway.state.manager.get_unchecked(run_id).log
        while log.last_seq < seq:
            await log.read(log.last_seq, timeout=5)

    on_server(gateway, advanced())


def open_console(page: Page, gateway: RunningGateway) -> None:
    page.goto(f"{gateway.base_url}/")
    expect(page.locator("#tools input[value=countdown]")).to_be_attached()
    expect(page.locator("#model")).to_have_value("demo")


def start_run(
    page: Page,
    prompt: str,
    tools: list[str],
    *,
    transport: str = "sse",
    on_disconnect: str = "continue",
) -> str:
    """Fill the form, start the run, return its id once the page shows it."""
    page.get_by_label("Prompt").fill(prompt)
    for box in page.locator("#tools input").all():
        box.set_checked(box.get_attribute("value") in tools)
    page.check(f"input[name=transport][value={transport}]")
    page.check(f"input[name=on_disconnect][value={on_disconnect}]")
    page.get_by_role("button", name="Start run").click()
    run_id = page.locator("#run-id")
    expect(run_id).to_have_text(re.compile(r"^run_\w+$"))
    return run_id.inner_text()


def expect_run_status(page: Page, status: str) -> None:
    expect(page.locator("#run-status")).to_have_attribute("data-status", status)


def logged_seqs(page: Page) -> list[int]:
    """The seq of every event row in the log, in the order the rows were added."""
    seqs: list[int] = page.locator("#log-body tr.ev").evaluate_all(
        "rows => rows.map(row => Number(row.dataset.seq))"
    )
    return seqs


def expect_every_seq_once(page: Page, last_seq: int) -> None:
    assert logged_seqs(page) == list(range(1, last_seq + 1))
    check = page.locator("#seq-check")
    expect(check).to_have_attribute("data-ok", "true")
    expect(check).to_contain_text(f"{last_seq} events · last seq {last_seq} · no gaps")
