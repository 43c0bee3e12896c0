// The run panel: the run's status badge, its numbers, and the model's text as it streams.

import { el, formatMs } from "./format.js";

export class RunView {
  constructor(elements) {
    this.e = elements;
    this.blocks = new Map(); // message_id -> {block, text}
    this.final = null;
  }

  clear(runId = null) {
    this.blocks.clear();
    this.final = null;
    this.e.runId.textContent = runId || "—";
    this.e.output.replaceChildren(
      el("p", "muted small placeholder", "The model's text appears here as it streams."),
    );
    this.setStatus(runId ? "queued" : "idle");
    for (const key of ["ttfe", "duration", "tokens"]) this.e[key].textContent = "—";
    this.e.events.textContent = "0";
    this.e.producers.textContent = "0";
    this.e.transport.textContent = "—";
  }

  /** The run's badge; it is a live region, so a screen reader hears each change once. */
  setStatus(status) {
    if (this.e.status.dataset.status === status) return;
    this.e.status.dataset.status = status;
    this.e.status.textContent = status;
  }

  render(state, { transport, ttfeMs, axisEnd }) {
    this.setStatus(state.status);
    this.e.transport.textContent = transport === "ws" ? "WebSocket" : "SSE";
    this.e.ttfe.textContent = formatMs(ttfeMs);
    const end = state.tEnd ?? axisEnd;
    const duration = state.t0 === null || end === null ? null : (end - state.t0) * 1000;
    this.e.duration.textContent =
      duration === null ? "—" : state.terminal ? formatMs(duration) : `${formatMs(duration)} …`;
    this.e.events.textContent = String(state.count);
    const tokens = state.tokens;
    this.e.tokens.textContent =
      tokens.input_tokens || tokens.output_tokens
        ? `${tokens.input_tokens ?? 0} / ${tokens.output_tokens ?? 0}${state.usage ? "" : " …"}`
        : "—";
    this.e.producers.textContent = String(state.lanes.size);
    this.#renderOutput(state);
  }

  #renderOutput(state) {
    const output = this.e.output;
    if (state.messages.size && output.querySelector(".placeholder")) output.replaceChildren();
    const ids = [...state.messages.keys()];
    ids.forEach((id, index) => {
      const message = state.messages.get(id);
      let entry = this.blocks.get(id);
      if (!entry) {
        const block = el("section", "step");
        block.dataset.messageId = id;
        const label = el("h4", "step-label", message.step ? `step ${message.step}` : "step");
        const notes = el("ul", "step-notes");
        const text = el("p", "step-text");
        block.append(label, notes, text);
        output.append(block);
        entry = { block, notes, text, noted: 0 };
        this.blocks.set(id, entry);
      }
      // Reroutes and retractions, in order (only ever appended to).
      for (const note of message.notes.slice(entry.noted)) {
        entry.notes.append(el("li", "step-note", note));
      }
      entry.noted = message.notes.length;
      entry.text.textContent = message.text;
      entry.block.dataset.streaming = String(!message.done);
      // The run's answer is the last step's text once the run completed.
      const isAnswer = state.status === "completed" && index === ids.length - 1;
      entry.block.classList.toggle("answer", isAnswer);
    });
    this.#renderFinal(state);
  }

  /** What ended the run: the output when it is not plain text (parallel runs), or why it
   *  failed or was cancelled. */
  #renderFinal(state) {
    let text = null;
    let kind = "";
    if (state.status === "completed" && state.output !== null && typeof state.output !== "string") {
      text = JSON.stringify(state.output, null, 2);
      kind = "final-json";
    } else if (state.status === "completed" && typeof state.output === "string" && !state.messages.size) {
      text = state.output;
      kind = "final-text";
    } else if (state.status === "failed") {
      text = `Run failed: ${state.error || "no reason given"}`;
      kind = "final-failed";
    } else if (state.status === "cancelled") {
      text = `Run cancelled: ${state.cancelReason || "no reason given"}`;
      kind = "final-cancelled";
    }
    if (text === null) {
      this.final?.remove();
      this.final = null;
      return;
    }
    if (!this.final) {
      this.final = el(kind === "final-json" ? "pre" : "p");
      this.e.output.querySelector(".placeholder")?.remove();
      this.e.output.append(this.final);
    }
    this.final.className = `final ${kind}`;
    this.final.textContent = text;
  }
}
