// The raw event log: one row per event as it arrived, filterable, with seq problems shown
// in place. A missing seq gets its own warning row where the hole is; a duplicate is
// flagged on its row; connection drops and resumes are marker rows, so one look at the
// log around a marker shows that nothing was lost or repeated across it.

import { compactJson, el } from "./format.js";

// Fields every event has, shown in their own columns rather than in the payload.
const ENVELOPE = new Set(["seq", "run_id", "type", "ts", "producer"]);
const PAYLOAD_PREVIEW = 160;

// Each event row's lower-cased text, for the filter; notes have none and always show.
const searchText = new WeakMap();

export class EventLog {
  constructor({ body, scroller, filter, producer, follow, summary }) {
    this.body = body;
    this.scroller = scroller;
    this.filterInput = filter;
    this.producerSelect = producer;
    this.follow = follow;
    this.summary = summary;
    this.producers = new Set();
    this.query = "";
    this.scrollPending = false;
    filter.addEventListener("input", () => this.#applyFilter());
    producer.addEventListener("change", () => this.#applyFilter());
  }

  clear() {
    this.body.replaceChildren();
    this.producers.clear();
    this.producerSelect.replaceChildren(new Option("all", ""));
    this.summary.textContent = "No events yet";
    this.summary.dataset.ok = "true";
  }

  /** Add an event row; `check` is RunState.apply's verdict; `t0` the run's start (s). */
  add(event, check, t0) {
    if (check.verdict === "gap" && !check.announced) {
      this.#note(`seq ${range(check.from, check.to)} missing`, "gap-row");
    }
    const row = el("tr", "ev");
    row.dataset.seq = String(event.seq);
    row.dataset.type = event.type;
    row.dataset.producer = event.producer || "";
    if (check.verdict === "duplicate") row.classList.add("duplicate");
    if (event.type === "stream.gap") row.classList.add("announced-gap");
    if (/^run\./u.test(event.type)) row.classList.add("run-event");

    const seq = el("td", "seq", String(event.seq));
    if (check.verdict === "duplicate") seq.append(el("span", "flag", " duplicate"));
    const offset = el("td", "time", t0 === null ? "" : `+${((event.ts - t0) * 1000).toFixed(1)}`);
    if (typeof event.ts === "number") offset.title = new Date(event.ts * 1000).toISOString();
    const type = el("td", "type");
    type.append(el("code", `t-${event.type.split(".")[0]}`, event.type));
    const producer = el("td", "producer", event.producer || "");
    const payload = el("td", "payload");
    payload.append(renderPayload(event));
    row.append(seq, offset, type, producer, payload);
    const text = `${event.seq} ${event.type} ${event.producer || ""} ${payloadText(event)}`;
    searchText.set(row, text.toLowerCase());
    row.hidden = !this.#matches(row);
    this.body.append(row);

    if (event.producer && !this.producers.has(event.producer)) {
      this.producers.add(event.producer);
      this.producerSelect.append(new Option(event.producer, event.producer));
    }
    this.#scrollSoon();
  }

  /** A marker row (connection dropped, resumed, ended …). */
  marker(text, kind = "marker") {
    this.#note(text, kind);
    this.#scrollSoon();
  }

  /** The seq check, in one line: the first thing to read after a resume. */
  updateSummary(state) {
    const missing = state.gaps.filter((gap) => !gap.announced);
    const announced = state.gaps.filter((gap) => gap.announced);
    const parts = [`${state.count} event${state.count === 1 ? "" : "s"}`];
    if (state.count) parts.push(`last seq ${state.cursor}`);
    parts.push(
      missing.length ? `${missing.length} gap${missing.length === 1 ? "" : "s"}` : "no gaps",
      state.duplicates.length ? `${state.duplicates.length} duplicated` : "no duplicates",
    );
    if (announced.length) parts.push(`${announced.length} stream.gap (not retained)`);
    this.summary.textContent = parts.join(" · ");
    this.summary.dataset.ok = String(!missing.length && !state.duplicates.length);
  }

  #note(text, kind) {
    const row = el("tr", kind);
    const cell = el("td", "", text);
    cell.colSpan = 5;
    row.append(cell);
    this.body.append(row);
  }

  #matches(row) {
    const text = searchText.get(row);
    if (text === undefined) return true;
    const producer = this.producerSelect.value;
    if (producer && row.dataset.producer !== producer) return false;
    return !this.query || text.includes(this.query);
  }

  #applyFilter() {
    this.query = this.filterInput.value.trim().toLowerCase();
    for (const row of this.body.children) row.hidden = !this.#matches(row);
  }

  #scrollSoon() {
    // Many events can arrive in one frame; scroll once per frame, and only when following.
    if (!this.follow.checked || this.scrollPending) return;
    this.scrollPending = true;
    requestAnimationFrame(() => {
      this.scrollPending = false;
      this.scroller.scrollTop = this.scroller.scrollHeight;
    });
  }
}

// Ids that mostly repeat the producer column go last, so a one-line preview starts with
// what changed (the delta, the output); the fields themselves are all kept.
const LAST = ["message_id", "call_id"];

function payloadOf(event) {
  const payload = {};
  const keys = Object.keys(event).filter((key) => !ENVELOPE.has(key));
  const ordered = [...keys.filter((key) => !LAST.includes(key)), ...keys.filter((key) => LAST.includes(key))];
  for (const key of ordered) payload[key] = event[key];
  return payload;
}

function payloadText(event) {
  return compactJson(payloadOf(event));
}

/** A short payload inline; a long one as a disclosure with the whole JSON, pretty-printed. */
function renderPayload(event) {
  const payload = payloadOf(event);
  const text = compactJson(payload);
  if (text.length <= PAYLOAD_PREVIEW) return el("code", "json", text);
  const details = el("details");
  details.append(
    el("summary", "", `${text.slice(0, PAYLOAD_PREVIEW)}…`),
    el("pre", "json", JSON.stringify(payload, null, 2)),
  );
  return details;
}

function range(from, to) {
  return from === to ? String(from) : `${from}–${to}`;
}
