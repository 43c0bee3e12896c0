// Tool calls waiting for a person: each shows the call's name and arguments with Approve and
// Deny buttons while it waits, and how it was answered once the answer is in the run's log.
//
// What shows is the RunState's `approvals`, built from the events alone, so a reload (which
// replays the run's events) shows a still-pending call with its buttons again, and an
// answer given from another client shows here as soon as its event arrives. The buttons
// POST /v1/runs/{id}/approvals/{call_id}; the page changes when the event comes, not when
// the POST answers.

import { compactJson, el } from "./format.js";

const MAX_ARGS_TEXT = 4000; // the event log has the whole call

export class ApprovalView {
  /** @param {HTMLElement} container @param {(callId: string, decision: string, reason: string) => Promise<void>} answer */
  constructor(container, answer) {
    this.container = container;
    this.answer = answer;
    this.rows = new Map(); // call_id -> {item, …}
  }

  clear() {
    this.rows.clear();
    this.container.replaceChildren();
    this.container.hidden = true;
  }

  render(state) {
    for (const approval of state.approvals.values()) {
      const row = this.rows.get(approval.callId) || this.#add(approval);
      this.#update(row, approval);
    }
    this.container.hidden = this.rows.size === 0;
  }

  #add(approval) {
    const item = el("section", "approval");
    item.dataset.callId = approval.callId;
    item.setAttribute("aria-label", `Approval of ${approval.name}`);
    const head = el("h4", "approval-head");
    head.append(el("span", "approval-name", approval.name), el("code", "lane-id", approval.callId));
    const args = el("pre", "approval-args");
    const text = compactJson(approval.arguments);
    args.textContent = text.length > MAX_ARGS_TEXT ? `${text.slice(0, MAX_ARGS_TEXT)}…` : text;
    const reasonLabel = el("label", "approval-reason-label small", "Reason (optional)");
    const reason = el("input", "approval-reason");
    reason.type = "text";
    reason.maxLength = 1000; // the gateway's MAX_REASON_LENGTH
    reason.id = `reason-${approval.callId}`;
    reasonLabel.htmlFor = reason.id;
    const approve = el("button", "primary", "Approve");
    const deny = el("button", "danger", "Deny");
    approve.type = deny.type = "button";
    const buttons = el("div", "approval-actions");
    buttons.append(approve, deny);
    const form = el("div", "approval-form");
    form.append(reasonLabel, reason, buttons);
    const outcome = el("p", "approval-outcome small");
    outcome.setAttribute("role", "status");
    item.append(head, args, form, outcome);
    this.container.append(item);
    const row = { item, form, reason, approve, deny, outcome, busy: false };
    const send = async (decision) => {
      row.busy = true;
      approve.disabled = deny.disabled = true;
      try {
        await this.answer(approval.callId, decision, reason.value.trim());
      } finally {
        row.busy = false;
        // Still pending (the answer failed): the buttons work again.
        approve.disabled = deny.disabled = item.dataset.status !== "pending";
      }
    };
    approve.addEventListener("click", () => send("approve"));
    deny.addEventListener("click", () => send("deny"));
    this.rows.set(approval.callId, row);
    return row;
  }

  #update(row, approval) {
    row.item.dataset.status = approval.status;
    const pending = approval.status === "pending";
    row.form.hidden = !pending;
    if (!row.busy) row.approve.disabled = row.deny.disabled = !pending;
    row.outcome.textContent = outcomeText(approval);
    row.outcome.hidden = pending;
  }
}

function outcomeText(approval) {
  const why = approval.reason ? `: ${approval.reason}` : "";
  switch (approval.status) {
    case "approved":
      return `Approved by ${approval.by}${why}${approval.edited ? " (arguments edited)" : ""}`;
    case "denied":
      return approval.by === "timeout" ? `Denied: no answer in time${why}` : `Denied by ${approval.by}${why}`;
    case "expired":
      return `No answer in time: ${approval.error || "the call failed"}`;
    case "ended":
      return "Not answered: the run ended first";
    default:
      return "";
  }
}
