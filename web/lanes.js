// One lane per producer (each model step, each tool call) on a shared time axis.
//
// Positions come from the events' server timestamps (`ts`), relative to `run.started`, so
// the picture is the same live, after a resume, or when an old run is opened and replayed
// in a burst: two producers that ran at the same time overlap on screen because they
// overlapped in the gateway, not because their events arrived together.
//
// A tool call's lane has two segments: the model streaming its arguments (light), then the
// tool running (solid). Lanes are updated in place, keyed by producer, so focus and
// scrolling inside a lane survive the many re-renders of a streaming run.

import { el, formatMs } from "./format.js";

const STATUS_LABEL = {
  pending: "pending",
  running: "running",
  waiting: "waiting for client",
  approval: "waiting for approval",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
};

// The longest text a lane keeps on screen; the event log has everything.
const MAX_LANE_TEXT = 2000;
const MAX_ARGS_TEXT = 200;

export class LaneView {
  /** @param {HTMLOListElement} list @param {HTMLElement} axis */
  constructor(list, axis) {
    this.list = list;
    this.axis = axis;
    this.rows = new Map(); // lane key -> {item, parts…}
  }

  clear() {
    this.rows.clear();
    this.list.replaceChildren();
    this.axis.replaceChildren();
  }

  /**
   * Draw `state`'s lanes on an axis from `state.t0` to `axisEnd` (server seconds): the run's
   * end once it has one, else "now" as estimated from the events' arrival.
   */
  render(state, axisEnd) {
    if (state.t0 === null) return;
    const span = Math.max(axisEnd - state.t0, 0.001); // seconds; never divide by zero
    this.#renderAxis(span);
    for (const lane of state.lanes.values()) {
      const row = this.rows.get(lane.key) || this.#add(lane);
      this.#update(row, lane, state.t0, span, axisEnd);
    }
    // A lane the state dropped (a retracted message's tool calls) leaves the screen too.
    for (const [key, row] of this.rows) {
      if (!state.lanes.has(key)) {
        row.item.remove();
        this.rows.delete(key);
      }
    }
  }

  #renderAxis(span) {
    const ticks = [0, 0.25, 0.5, 0.75, 1];
    if (this.axis.childElementCount !== ticks.length) {
      this.axis.replaceChildren(...ticks.map(() => el("span", "tick")));
    }
    ticks.forEach((fraction, index) => {
      const tick = this.axis.children[index];
      tick.style.left = `${fraction * 100}%`;
      tick.textContent = formatMs(fraction * span * 1000);
    });
  }

  #add(lane) {
    const item = el("li", "lane");
    item.dataset.producer = lane.key;
    const head = el("div", "lane-head");
    const call = el("span", "lane-call");
    const name = el("span", "lane-name");
    // A tool's arguments right after its name, as in a call: countdown({"start": 6}).
    const args = el("code", "lane-args");
    call.append(name, args);
    const id = el("code", "lane-id", lane.key);
    const badge = el("span", "badge");
    const time = el("span", "lane-time");
    head.append(call, id, badge, time);
    const track = el("div", "track");
    const argsBar = el("div", "bar bar-args");
    const execBar = el("div", "bar bar-exec");
    track.append(argsBar, execBar);
    const text = el("div", "lane-text");
    const output = el("div", "lane-output");
    const error = el("div", "lane-error");
    text.append(output, error);
    item.append(head, track, text);
    this.list.append(item);
    const row = { item, name, badge, time, argsBar, execBar, text, args, output, error };
    this.rows.set(lane.key, row);
    return row;
  }

  #update(row, lane, t0, span, axisEnd) {
    const { item } = row;
    const ms = (ts) => (ts - t0) * 1000;
    const start = lane.start ?? lane.argsStart;
    const end = lane.end ?? (["running", "waiting", "approval", "pending"].includes(lane.status) ? axisEnd : start);

    item.dataset.kind = lane.kind;
    item.dataset.status = lane.status;
    // Machine-readable times (ms after run.started) for tests and for anyone inspecting.
    item.dataset.startMs = start === null ? "" : ms(start).toFixed(3);
    item.dataset.endMs = lane.end === null ? "" : ms(lane.end).toFixed(3);

    row.name.textContent = lane.kind === "model" ? lane.name : `${lane.name}`;
    row.badge.dataset.status = lane.status;
    row.badge.textContent = STATUS_LABEL[lane.status] || lane.status;
    const kind = { model: "model step", tool: "tool call", client_tool: "client tool" }[lane.kind];
    const timing =
      start === null
        ? ""
        : lane.end === null
          ? `from ${formatMs(ms(start))}`
          : `${formatMs(ms(start))} → ${formatMs(ms(lane.end))} (${formatMs(ms(lane.end) - ms(start))})`;
    row.time.textContent = timing;
    // One sentence for screen readers instead of a picture they cannot see.
    item.setAttribute(
      "aria-label",
      `${lane.name}, ${kind}, ${STATUS_LABEL[lane.status] || lane.status}${timing ? `, ${timing}` : ""}`,
    );

    place(row.argsBar, lane.argsStart, lane.start ?? end, t0, span);
    place(row.execBar, lane.start, lane.start === null ? null : end, t0, span);

    // Keep the newest output in view while it streams, unless the user scrolled up.
    const box = row.text;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    row.args.textContent = lane.args ? `(${clip(lane.args, MAX_ARGS_TEXT)})` : "";
    row.args.title = lane.args;
    row.args.hidden = !lane.args;
    const out = lane.kind === "model" ? lane.output : lane.output.replace(/\n+$/u, "");
    row.output.textContent = out ? clip(out) : "";
    row.output.hidden = !out;
    row.error.textContent = lane.error ? `error ${lane.error}` : "";
    row.error.hidden = !lane.error;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }
}

/** Position a bar from `from` to `to` (server seconds) on an axis of `span` seconds. */
function place(bar, from, to, t0, span) {
  if (from === null || from === undefined || to === null || to === undefined) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  const left = Math.min(Math.max((from - t0) / span, 0), 1);
  const width = Math.min(Math.max((to - from) / span, 0), 1 - left);
  bar.style.left = `${(left * 100).toFixed(3)}%`;
  // A producer of a few microseconds still gets a visible sliver (min-width in the CSS).
  bar.style.width = `${(width * 100).toFixed(3)}%`;
}

/** The end of a long text (the newest output), or the start of long arguments. */
function clip(text, max = MAX_LANE_TEXT) {
  if (text.length <= max) return text;
  return max === MAX_ARGS_TEXT ? `${text.slice(0, max)}…` : `…${text.slice(-max)}`;
}
