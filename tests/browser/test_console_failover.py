"""The console shows a model group's failover: a step restarted on another route after its
output had started loses the text it had shown (``message.retracted``), says so, and says
where it went (``message.rerouted``); the restarted answer is the step's only text."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import expect_run_status, open_console, server_run, start_run
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import RESET, Reply, UpstreamServer, chat_chunk, route, text_reply


@pytest.fixture
def gateway() -> Iterator[RunningGateway]:
    """A gateway whose model ``smart`` is a group of two routes, ``a`` then ``b``, that
    restarts a step when ``a`` breaks after some text: ``a`` says "Hel" then resets,
    ``b`` answers "Hi there"."""
    with UpstreamServer() as primary, UpstreamServer() as secondary:
        primary.script(
            Reply(
                steps=[
                    chat_chunk({"role": "assistant", "content": ""}),
                    chat_chunk({"content": "Hel"}),
                    RESET,
                ]
            )
        )
        secondary.script(text_reply("Hi", " there"))
        with running_gateway(
            routes={"a": route(primary, max_attempts=1), "b": route(secondary, max_attempts=1)},
            groups={"smart": {"routes": ["a", "b"], "policy": "restart"}},
        ) as running:
            yield running


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_a_retracted_step_shows_only_the_restarted_answer_and_notes_why(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    open_console(page, gateway)
    page.select_option("#model", "smart")
    run_id = start_run(page, "Say hi.", [], transport=transport)
    expect_run_status(page, "completed")
    assert server_run(gateway, run_id, wait=True)["output"] == "Hi there"
    step = page.locator("#output .step")
    expect(step).to_have_count(1)
    expect(step.locator(".step-text")).to_have_text("Hi there")
    expect(step.locator(".step-note")).to_have_text(
        [re.compile(r"^retracted \(\w+\)$"), re.compile(r"^rerouted a → b \(\w+\)$")]
    )
