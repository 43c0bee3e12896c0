"""The console shows a tool call waiting for a person with Approve / Deny buttons, the answer
arriving (also one given by another client), and after a reload a still-pending call with
its buttons again. In a real Chromium, against a real gateway."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import expect_run_status, open_console, server_run, start_run
from tests.support import RunningGateway

TRANSPORTS = ["sse", "ws"]


def start_gated_run(page: Page, gateway: RunningGateway, transport: str = "sse") -> str:
    open_console(page, gateway)
    page.get_by_label("ask me before each tool call").check()
    return start_run(page, "What time is it?", ["clock"], transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_approve_from_the_console_runs_the_call(
    page: Page, gateway: RunningGateway, transport: str
) -> None:
    run_id = start_gated_run(page, gateway, transport)
    approval = page.locator("#approvals .approval")
    expect(approval).to_have_attribute("data-status", "pending")
    expect(approval.locator(".approval-name")).to_have_text("clock")
    expect(approval.locator(".approval-args")).to_have_text("{}")
    expect(page.locator("#lanes .lane[data-kind=tool] .badge")).to_have_text("waiting for approval")
    approval.get_by_label("Reason (optional)").fill("go ahead")
    approval.get_by_role("button", name="Approve").click()
    expect(approval).to_have_attribute("data-status", "approved")
    expect(approval.locator(".approval-outcome")).to_have_text("Approved by anonymous: go ahead")
    expect(approval.get_by_role("button", name="Approve")).to_be_hidden()
    expect_run_status(page, "completed")
    run = server_run(gateway, run_id, wait=True)
    expect(page.locator("#output .step.answer .step-text")).to_have_text(run["output"])
    expect(page.locator("#log-body tr.ev[data-type='tool.approved']")).to_have_count(1)
    expect(page.locator("#log-body tr.ev[data-type='tool.started']")).to_have_count(1)


def test_deny_from_the_console_shows_the_refusal(page: Page, gateway: RunningGateway) -> None:
    run_id = start_gated_run(page, gateway)
    approval = page.locator("#approvals .approval")
    approval.get_by_label("Reason (optional)").fill("not today")
    approval.get_by_role("button", name="Deny").click()
    expect(approval).to_have_attribute("data-status", "denied")
    expect(approval.locator(".approval-outcome")).to_have_text("Denied by anonymous: not today")
    expect_run_status(page, "completed")
    run = server_run(gateway, run_id, wait=True)
    assert "the user denied this tool call: not today" in run["output"]
    expect(page.locator("#log-body tr.ev[data-type='tool.started']")).to_have_count(0)
    expect(page.locator("#lanes .lane[data-kind=tool]")).to_have_attribute(
        "data-status", "cancelled"
    )


def test_after_a_reload_the_pending_call_has_its_buttons_and_another_clients_answer_shows(
    page: Page, gateway: RunningGateway
) -> None:
    run_id = start_gated_run(page, gateway)
    expect(page.locator("#approvals .approval")).to_have_attribute("data-status", "pending")
    page.reload()  # the link (#run=…) opens the run again, replaying its events
    expect(page.locator("#run-id")).to_have_text(run_id)
    approval = page.locator("#approvals .approval")
    expect(approval).to_have_attribute("data-status", "pending")
    expect(approval.get_by_role("button", name="Approve")).to_be_enabled()
    expect(approval.get_by_role("button", name="Deny")).to_be_enabled()
    call_id = approval.get_attribute("data-call-id")
    assert call_id and re.fullmatch(r"\S+", call_id)
    # Answered elsewhere (curl, another tab): the page shows it when the event comes.
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        answer = client.post(f"/v1/runs/{run_id}/approvals/{call_id}", json={"decision": "approve"})
        assert answer.status_code == 200, answer.text
    expect(approval).to_have_attribute("data-status", "approved")
    expect_run_status(page, "completed")
    # A click now would be a second answer: the buttons are gone.
    expect(approval.get_by_role("button", name="Approve")).to_be_hidden()
