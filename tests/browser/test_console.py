"""The browser console (``web/``, served at ``/``) in a real Chromium, against a real
gateway: runs stream into lanes and the event log, cancel, drop and resume, open by id.

Every check waits on a condition in the page (``expect``, ``wait_for``), never a sleep;
the ``page`` fixture fails the test on any console error or uncaught exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    ConsoleErrors,
    expect_every_seq_once,
    expect_run_status,
    logged_seqs,
    open_console,
    server_run,
    start_run,
    wait_server_seq,
)
from tests.support import RunningGateway, agent_spec

TRANSPORTS = ["sse", "ws"]
WEB = Path(__file__).resolve().parents[2] / "web"


# -- serving --------------------------------------------------------------------------------


def test_console_is_served_at_the_root_with_its_modules(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.base_url) as client:
        index = client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/web/app.js">' in index.text
        for name in sorted(path.name for path in WEB.glob("*.js")):
            module = client.get(f"/web/{name}")
            assert module.status_code == 200, name
            # Browsers refuse an ES module served with a non-JavaScript type.
            assert "javascript" in module.headers["content-type"], name
        assert client.get("/web/style.css").headers["content-type"].startswith("text/css")


def test_console_needs_nothing_from_another_origin() -> None:
    """No CDN, no web font, no remote script: the page works offline."""
    for path in WEB.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text), path.name
        assert not re.search(r"(?:import|from)\s*[\"'](?:https?:)?//", text), path.name
        assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", text), path.name


# -- runs in the page -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_run_with_two_tools_shows_overlapping_lanes_and_the_final_text(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_console(page, gateway)
    run_id = start_run(
        page,
        "Count down from 6 and sleep 0.3 seconds.",
        ["countdown", "sleep"],
        transport=transport,
    )
    expect_run_status(page, "completed")
    run = server_run(gateway, run_id, wait=True)

    # The model's final text, as the gateway has it.
    expect(page.locator("#output .step.answer .step-text")).to_have_text(run["output"])
    assert "countdown from 6 reached liftoff" in run["output"]

    # One lane per tool call, both done, overlapping in time and on screen.
    tools = page.locator("#lanes li[data-kind=tool]")
    expect(tools).to_have_count(2)
    expect(page.locator("#lanes li[data-kind=tool][data-status=done]")).to_have_count(2)
    spans = tools.evaluate_all(
        "lanes => lanes.map(l => [Number(l.dataset.startMs), Number(l.dataset.endMs)])"
    )
    (start_a, end_a), (start_b, end_b) = spans
    assert max(start_a, start_b) < min(end_a, end_b), f"no overlap in time: {spans}"
    box_a = tools.nth(0).locator(".bar-exec").bounding_box()
    box_b = tools.nth(1).locator(".bar-exec").bounding_box()
    assert box_a is not None and box_b is not None
    assert box_a["x"] < box_b["x"] + box_b["width"] and box_b["x"] < box_a["x"] + box_a["width"]
    assert box_a["width"] > 50 and box_b["width"] > 50  # visibly long, not slivers
    # Two model steps around them, and the tools' streamed output in their lanes.
    expect(page.locator("#lanes li[data-kind=model][data-status=done]")).to_have_count(2)
    countdown = page.locator("#lanes li[data-kind=tool]", has_text="countdown")
    expect(countdown.locator(".lane-args")).to_have_text('({"start": 6})')
    expect(countdown.locator(".lane-output")).to_contain_text("1")

    expect_every_seq_once(page, run["last_seq"])
    expect(page.locator("#m-tokens")).to_have_text(
        f"{run['usage']['input_tokens']} / {run['usage']['output_tokens']}"
    )
    expect(page.locator("#m-ttfe")).to_have_text(re.compile(r"\d"))
    # Everything the page loaded came from the gateway itself.
    assert requests and all(url.startswith(gateway.base_url) for url in requests), requests


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_ends_the_run_as_cancelled_in_the_page(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    open_console(page, gateway)
    run_id = start_run(page, "Please sleep 30 seconds.", ["sleep"], transport=transport)
    expect(page.locator("#lanes li[data-kind=tool][data-status=running]")).to_have_count(1)

    page.get_by_role("button", name="Cancel run").click()

    expect_run_status(page, "cancelled")
    expect(page.locator("#lanes li[data-kind=tool]")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#output .final-cancelled")).to_have_text(
        "Run cancelled: cancelled by client"
    )
    expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
    run = server_run(gateway, run_id, wait=True)
    assert run["status"] == "cancelled"
    expect(page.locator("#log-body tr.ev").last).to_have_attribute("data-type", "run.cancelled")
    expect_every_seq_once(page, run["last_seq"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cancel_while_disconnected_resumes_to_show_how_the_run_ended(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    open_console(page, gateway)
    run_id = start_run(page, "Please sleep 30 seconds.", ["sleep"], transport=transport)
    expect(page.locator("#lanes li[data-kind=tool][data-status=running]")).to_have_count(1)
    page.get_by_role("button", name="Drop connection").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "dropped")

    page.get_by_role("button", name="Cancel run").click()  # over HTTP: there is no socket

    expect_run_status(page, "cancelled")
    run = server_run(gateway, run_id, wait=True)
    assert run["cancel_reason"] == "cancelled by client"
    expect_every_seq_once(page, run["last_seq"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dropped_connection_resumes_from_the_last_seq_without_loss_or_repeat(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    open_console(page, gateway)
    run_id = start_run(page, "Count down from 24.", ["countdown"], transport=transport)
    page.locator("#log-body tr.ev[data-type='tool.delta']").nth(2).wait_for()

    page.get_by_role("button", name="Drop connection").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "dropped")
    dropped_at = max(logged_seqs(page))
    # The run goes on without us (on_disconnect: continue): let it log events we miss.
    wait_server_seq(gateway, run_id, dropped_at + 5)
    assert max(logged_seqs(page)) == dropped_at  # nothing arrives while disconnected

    resume = page.get_by_role("button", name=f"Resume after seq {dropped_at}")
    resume.click()

    expect_run_status(page, "completed")
    run = server_run(gateway, run_id, wait=True)
    expect_every_seq_once(page, run["last_seq"])
    markers = page.locator("#log-body tr.marker")
    expect(markers.nth(0)).to_have_text(f"connection dropped after seq {dropped_at}")
    expect(markers.nth(1)).to_have_text(f"resuming after seq {dropped_at}")
    # The first event after the markers is the one right after the cursor.
    first_resumed = page.locator("#log-body tr.marker + tr.ev").last
    expect(first_resumed).to_have_attribute("data-seq", str(dropped_at + 1))
    expect(page.locator("#connection")).to_have_attribute("data-state", "ended")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_existing_run_opens_by_id_and_replays_in_full(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    spec = agent_spec("What time is it? Count down from 3.", ["clock", "countdown"])
    with httpx.Client(base_url=gateway.base_url) as client:
        run_id = client.post("/v1/runs", json=spec).json()["run_id"]
    run = server_run(gateway, run_id, wait=True)
    open_console(page, gateway)
    page.check(f"input[name=transport][value={transport}]")

    page.get_by_label("Open a run by id").fill(run_id)
    page.get_by_role("button", name="Open", exact=True).click()

    expect_run_status(page, "completed")
    expect(page.locator("#run-id")).to_have_text(run_id)
    expect(page.locator("#lanes li")).to_have_count(4)  # two model steps, two tools
    expect(page.locator("#output .step.answer .step-text")).to_have_text(run["output"])
    expect_every_seq_once(page, run["last_seq"])


def test_opening_an_unknown_run_says_so(
    page: Page, gateway: RunningGateway, console_errors: ConsoleErrors
) -> None:
    open_console(page, gateway)
    page.get_by_label("Open a run by id").fill("run_0000000000000000")
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "There is no run run_0000000000000000 (or it has expired)."
    )
    expect(page.locator("#connection")).to_have_attribute("data-state", "failed")
    # Chromium logs the lookup's 404 itself; the page handled it.
    console_errors.allow(r"status of 404")


def test_the_event_log_filters_by_text_and_producer(page: Page, gateway: RunningGateway) -> None:
    open_console(page, gateway)
    start_run(page, "Count down from 3 and sleep 0.1 seconds.", ["countdown", "sleep"])
    expect_run_status(page, "completed")
    rows = page.locator("#log-body tr.ev:visible")

    page.get_by_label("Filter").fill("tool.completed")
    expect(rows).to_have_count(2)
    page.get_by_label("Filter").fill("")
    countdown_call = page.locator("#lanes li[data-kind=tool]", has_text="countdown").get_attribute(
        "data-producer"
    )
    assert countdown_call is not None
    page.get_by_label("Producer", exact=True).select_option(countdown_call)
    producers = rows.evaluate_all("rows => [...new Set(rows.map(r => r.dataset.producer))]")
    assert producers == [countdown_call]
    expect(rows.first).to_have_attribute("data-type", "tool.started")
    expect(rows.last).to_have_attribute("data-type", "tool.completed")


def test_a_run_starts_from_the_keyboard_with_visible_focus(
    page: Page, gateway: RunningGateway
) -> None:
    open_console(page, gateway)
    prompt = page.get_by_label("Prompt")
    prompt.fill("Count down from 2.")
    prompt.press("Control+Enter")  # starts the run from the prompt
    expect_run_status(page, "completed")

    # Tab from the prompt goes through the two radio groups to the Start button.
    prompt.focus()
    for expected in ("transport", "on_disconnect"):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.name") == expected
    page.keyboard.press("Tab")
    start = page.get_by_role("button", name="Start run")
    expect(start).to_be_focused()
    outline = start.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline not in ("none", ""), "keyboard focus must be visible"
    first_run = page.locator("#run-id").inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("#run-id")).not_to_have_text(first_run)
    expect_run_status(page, "completed")


def test_the_page_fits_a_phone_screen(page: Page, gateway: RunningGateway) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_console(page, gateway)
    start_run(page, "Count down from 3.", ["countdown"])
    expect_run_status(page, "completed")
    # Nothing wider than the screen: no sideways scrolling of the page itself.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
