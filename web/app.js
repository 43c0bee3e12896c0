// The console's controller: the forms, the run being followed, and its connection.
//
// It shows one run at a time. A run is followed over SSE (EventSource) or a WebSocket,
// as chosen; either way the events go through the same RunState, and from there to the
// run panel, the lanes and the event log. Dropping the connection and resuming is a new
// connection from the last seq applied, exactly as any client of the gateway would do it.

import * as api from "./api.js";
import { ApprovalView } from "./approvals.js";
import { EventLog } from "./event-log.js";
import { FetchSseFollower } from "./fetch-sse.js";
import { LaneView } from "./lanes.js";
import { RunState } from "./run-state.js";
import { RunView } from "./run-view.js";
import { SseFollower, TERMINAL } from "./sse-client.js";
import { WsChannel } from "./ws-client.js";

const $ = (id) => document.getElementById(id);

const ui = {
  startForm: $("start-form"),
  model: $("model"),
  tools: $("tools"),
  prompt: $("prompt"),
  approval: $("approval"),
  openForm: $("open-form"),
  openRunId: $("open-run-id"),
  apiKey: $("api-key"),
  error: $("error"),
  cancel: $("cancel"),
  drop: $("drop"),
  resume: $("resume"),
  connection: $("connection"),
};

const runView = new RunView({
  runId: $("run-id"),
  status: $("run-status"),
  output: $("output"),
  transport: $("m-transport"),
  ttfe: $("m-ttfe"),
  duration: $("m-duration"),
  events: $("m-events"),
  tokens: $("m-tokens"),
  producers: $("m-producers"),
});
const lanes = new LaneView($("lanes"), $("axis"));
const approvals = new ApprovalView($("approvals"), answerApproval);
const log = new EventLog({
  body: $("log-body"),
  scroller: $("log-scroll"),
  filter: $("log-filter"),
  producer: $("log-producer"),
  follow: $("log-follow"),
  summary: $("seq-check"),
});

/** The run on screen and its connection. Replaced (and its stream closed) by the next. */
class Session {
  constructor(transport) {
    this.transport = transport; // "sse" | "ws"
    this.runId = null;
    this.token = null; // the stream token for EventSource, when the gateway issues one
    this.tokenExpiresAt = null; // Date.now() ms
    this.state = null;
    this.requestedAt = performance.now(); // for "time to first event"
    this.firstEventAt = null;
    this.follower = null; // SseFollower
    this.channel = null; // WsChannel
    this.connection = "idle";
    this.reader = "EventSource"; // SSE only: "EventSource" or "fetch" (key, no token)
    this.followFrom = 0; // the cursor the current connection started after
    this.clockOffset = null; // server clock minus ours (s), from the freshest event
    this.early = []; // WebSocket events that came before the run id was known
    this.ticker = 0;
  }

  get ttfeMs() {
    return this.firstEventAt === null ? null : this.firstEventAt - this.requestedAt;
  }
}

let session = null;

// -- errors and the connection line ------------------------------------------------------

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function describe(error) {
  if (error && error.status === 401) return `${error.message} (set the API key)`;
  return error && error.message ? error.message : String(error);
}

const CONNECTION_TEXT = {
  idle: () => "Not connected",
  connecting: () => "Connecting…",
  open: (s) =>
    `Connected over ${s.transport === "ws" ? "WebSocket" : `SSE (${s.reader})`}, following after seq ${s.followFrom}`,
  reconnecting: (s) =>
    `Connection lost: EventSource is reconnecting with Last-Event-ID ${s.state?.cursor ?? 0}`,
  dropped: (s) => `Dropped on purpose after seq ${s.state?.cursor ?? 0}. Resume continues from there.`,
  ended: (s) => `Stream ended with the run's terminal event (seq ${s.state?.cursor ?? 0}).`,
  closed: (s, detail) =>
    `The gateway closed the connection (${detail}). Resume continues after seq ${s.state?.cursor ?? 0}.`,
  failed: (s, detail) => `Not connected: ${detail}`,
  error: (s, detail) => `Protocol problem: ${detail}`,
};

function setConnection(s, state, detail = "") {
  if (s !== session) return; // a stream of a run no longer on screen
  s.connection = state;
  ui.connection.dataset.state = state;
  ui.connection.textContent = (CONNECTION_TEXT[state] || (() => state))(s, detail);
  if (state === "dropped") log.marker(`connection dropped after seq ${s.state?.cursor ?? 0}`);
  if (state === "closed") log.marker(`connection closed by the gateway after seq ${s.state?.cursor ?? 0}`);
  if (state === "reconnecting") {
    s.followFrom = s.state?.cursor ?? 0; // EventSource resumes with Last-Event-ID
    log.marker(`reconnecting after seq ${s.followFrom}`);
  }
  updateTicker(s);
  updateControls();
}

function connected(s) {
  return ["connecting", "open", "reconnecting"].includes(s.connection);
}

function updateControls() {
  const s = session;
  const live = s !== null && s.state !== null && !s.state.terminal;
  ui.cancel.disabled = !live;
  ui.drop.disabled = !(live && connected(s));
  ui.resume.disabled = !(live && !connected(s) && s.connection !== "idle");
  ui.resume.textContent = live && !connected(s) ? `Resume after seq ${s.state.cursor}` : "Resume";
}

// -- events -------------------------------------------------------------------------------

function onEvent(s, event) {
  if (s !== session) return;
  if (s.runId === null) {
    s.early.push(event); // WebSocket: the events may not wait for us to read the ack
    return;
  }
  if (event.run_id && event.run_id !== s.runId) return;
  if (s.firstEventAt === null) s.firstEventAt = performance.now();
  if (typeof event.ts === "number") {
    const offset = event.ts - Date.now() / 1000;
    s.clockOffset = s.clockOffset === null ? offset : Math.max(s.clockOffset, offset);
  }
  const check = s.state.apply(event);
  log.add(event, check, s.state.t0);
  if (TERMINAL.has(event.type)) {
    // The server ends its side after the terminal event; close ours (one socket per run).
    s.channel?.close("ended");
    renderNow();
  } else {
    scheduleRender();
  }
}

/** The run id is known: from the POST answer, the WebSocket ack, or the user. */
function attach(s, runId, answer = {}) {
  s.runId = runId;
  s.token = answer.token || null;
  if (s.token && typeof answer.token_expires_in === "number") {
    s.tokenExpiresAt = Date.now() + answer.token_expires_in * 1000;
  }
  s.state = new RunState(runId);
  runView.clear(runId);
  history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  const early = s.early.splice(0);
  for (const event of early) onEvent(s, event);
  renderNow();
}

// -- rendering ----------------------------------------------------------------------------

let frame = 0;

function scheduleRender() {
  // Events can come a thousand a second; draw at most once per frame.
  if (!frame) frame = requestAnimationFrame(renderNow);
}

function renderNow() {
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  const s = session;
  if (!s || !s.state) return;
  const axisEnd = axisEndOf(s);
  runView.render(s.state, { transport: s.transport, ttfeMs: s.ttfeMs, axisEnd });
  lanes.render(s.state, axisEnd);
  approvals.render(s.state);
  log.updateSummary(s.state);
  updateControls();
}

/** Where the time axis ends: the run's end, or "now" on the gateway's clock while the run
 *  is live and followed, so running producers visibly grow between their events. */
function axisEndOf(s) {
  const state = s.state;
  if (state.tEnd !== null) return state.tEnd;
  if (state.lastTs === null) return null;
  if (connected(s) && s.clockOffset !== null) {
    return Math.max(state.lastTs, Date.now() / 1000 + s.clockOffset);
  }
  return state.lastTs;
}

function updateTicker(s) {
  const live = s === session && s.state && !s.state.terminal && connected(s);
  if (live && !s.ticker) s.ticker = setInterval(scheduleRender, 200);
  if (!live && s.ticker) {
    clearInterval(s.ticker);
    s.ticker = 0;
  }
}

// -- connections --------------------------------------------------------------------------

function newChannel(s) {
  const channel = new WsChannel({
    onEvent: (event) => onEvent(s, event),
    onState: (state, detail) => {
      if (s.channel !== channel) return; // an older socket of this run closing late
      if (state === "error") showError(`WebSocket: ${detail}`);
      else setConnection(s, state, detail);
    },
  });
  s.channel = channel;
  return channel;
}

/** Follow the run's events after `after`, over the session's transport. */
async function follow(s, after) {
  s.followFrom = after;
  setConnection(s, "connecting");
  if (s.transport === "sse") {
    const options = {
      after,
      token: s.token,
      onEvent: (event) => onEvent(s, event),
      onState: (state, detail) => setConnection(s, state, detail),
    };
    // EventSource cannot send the key: it needs the run's stream token. Without a valid
    // one (a run opened by id, an expired token) the key goes in a fetch() instead.
    const tokenValid = s.token && (s.tokenExpiresAt === null || Date.now() < s.tokenExpiresAt - 5000);
    s.reader = api.hasApiKey() && !tokenValid ? "fetch" : "EventSource";
    s.follower =
      s.reader === "fetch" ? new FetchSseFollower(s.runId, options) : new SseFollower(s.runId, options);
    return;
  }
  const channel = newChannel(s);
  await channel.open();
  await channel.command("subscribe", { run_id: s.runId, after });
}

/** Close the current run's stream (on purpose, or because another run takes the screen). */
function disconnect(s, reason = "dropped") {
  if (s.follower) s.follower.close(reason);
  if (s.channel) s.channel.close(reason);
}

/** On a phone the run is below the form: bring it into view (focus stays where it is). */
function showRun() {
  if (!matchMedia("(max-width: 760px)").matches) return;
  const smooth = !matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("run-heading").scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
}

function newSession(transport) {
  if (session) {
    const old = session;
    session = null; // its late callbacks are ignored from now on
    disconnect(old, "closed");
    if (old.ticker) clearInterval(old.ticker);
  }
  clearError();
  session = new Session(transport);
  runView.clear();
  lanes.clear();
  approvals.clear();
  log.clear();
  setConnection(session, "idle");
  showRun();
  return session;
}

// -- the forms and buttons ----------------------------------------------------------------

function chosen(name) {
  return ui.startForm.querySelector(`input[name="${name}"]:checked`).value;
}

function specFromForm() {
  const model = ui.model.value;
  const prompt = ui.prompt.value.trim();
  if (!model) throw new Error("Choose a model.");
  if (!prompt) {
    ui.prompt.focus();
    throw new Error("Write a prompt.");
  }
  const tools = [...ui.tools.querySelectorAll("input:checked")].map((box) => box.value);
  const spec = {
    model,
    messages: [{ role: "user", content: prompt }],
    tools,
    on_disconnect: chosen("on_disconnect"),
    metadata: { client: "console" },
  };
  if (ui.approval.checked) spec.approval = "all";
  return spec;
}

async function startRun(event) {
  event.preventDefault();
  let spec;
  try {
    spec = specFromForm();
  } catch (error) {
    showError(error.message);
    return;
  }
  const s = newSession(chosen("transport"));
  try {
    if (s.transport === "sse") {
      const answer = await api.startRun(spec);
      if (s !== session) return;
      attach(s, answer.run_id, answer);
      await follow(s, 0);
    } else {
      setConnection(s, "connecting");
      s.followFrom = 0;
      const channel = newChannel(s);
      await channel.open();
      const ack = await channel.command("run.start", { run: spec });
      if (s !== session) return;
      attach(s, ack.run_id);
    }
  } catch (error) {
    if (s !== session) return;
    setConnection(s, "failed", describe(error));
    showError(`Could not start the run: ${describe(error)}`);
  }
}

async function openRun(runId) {
  const s = newSession(chosen("transport"));
  try {
    const snapshot = await api.getRun(runId);
    if (s !== session) return;
    attach(s, snapshot.run_id, snapshot);
    await follow(s, 0); // from the start: the whole run, replayed from its log
  } catch (error) {
    if (s !== session) return;
    const message =
      error.status === 404 ? `There is no run ${runId} (or it has expired).` : describe(error);
    setConnection(s, "failed", message);
    showError(message);
  }
}

async function cancelRun() {
  const s = session;
  if (!s || !s.runId) return;
  ui.cancel.disabled = true;
  try {
    if (s.transport === "ws" && s.channel?.isOpen) {
      await s.channel.command("run.cancel", { run_id: s.runId });
    } else {
      await api.cancelRun(s.runId);
    }
    // The run's own stream brings run.cancelled. Disconnected, there is no stream: resume,
    // so the page shows how the run ended rather than a stale "running".
    if (s === session && !connected(s)) await resume();
  } catch (error) {
    if (s !== session) return;
    showError(error.status === 409 ? "The run had already finished." : describe(error));
    updateControls();
  }
}

/** A person's answer to a call waiting for approval. What changes on screen comes with
 *  the run's tool.approved / tool.denied event, over whichever stream follows the run. */
async function answerApproval(callId, decision, reason) {
  const s = session;
  if (!s || !s.runId) return;
  clearError();
  try {
    await api.answerApproval(s.runId, callId, decision, reason);
  } catch (error) {
    if (s !== session) return;
    showError(
      error.status === 409
        ? "That call was answered already."
        : `Could not ${decision} the call: ${describe(error)}`,
    );
  }
}

async function resume() {
  const s = session;
  if (!s || !s.state || connected(s)) return;
  clearError();
  log.marker(`resuming after seq ${s.state.cursor}`, "marker resume");
  try {
    await follow(s, s.state.cursor);
  } catch (error) {
    if (s !== session) return;
    setConnection(s, "failed", describe(error));
  }
}

// -- models and tools ---------------------------------------------------------------------

const DEFAULT_TOOLS = new Set(["clock", "countdown"]);

async function loadCatalog() {
  try {
    const [models, tools] = await Promise.all([api.listModels(), api.listTools()]);
    const previous = ui.model.value;
    ui.model.replaceChildren(
      ...models.map((model) => {
        const option = new Option(model.id, model.id);
        if (model.description) option.title = model.description;
        return option;
      }),
    );
    const names = models.map((model) => model.id);
    ui.model.value = names.includes(previous) ? previous : names.includes("demo") ? "demo" : names[0] || "";

    // A reload (after the API key changed) keeps the user's choice of tools.
    const boxes = [...ui.tools.querySelectorAll("input")];
    const keep = boxes.length
      ? new Set(boxes.filter((box) => box.checked).map((box) => box.value))
      : DEFAULT_TOOLS;
    ui.tools.replaceChildren(
      ...tools.map((tool) => {
        const label = document.createElement("label");
        label.className = "check";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = "tools";
        box.value = tool.name;
        box.checked = keep.has(tool.name);
        const name = document.createElement("span");
        name.className = "check-name";
        name.textContent = tool.name;
        const description = document.createElement("span");
        description.className = "check-help";
        description.textContent = tool.description || "";
        label.append(box, name, description);
        return label;
      }),
    );
    if (!tools.length) ui.tools.textContent = "No tools on this gateway.";
  } catch (error) {
    showError(`Could not load the models and tools: ${describe(error)}`);
  }
}

// -- wiring -------------------------------------------------------------------------------

ui.startForm.addEventListener("submit", startRun);
ui.prompt.addEventListener("keydown", (event) => {
  // Ctrl+Enter (Cmd+Enter) starts the run from the prompt, as in most chat tools.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ui.startForm.requestSubmit();
});
ui.openForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const runId = ui.openRunId.value.trim();
  if (!runId || !ui.openRunId.checkValidity()) {
    showError("Enter a run id, such as run_5d0e….");
    ui.openRunId.focus();
    return;
  }
  openRun(runId);
});
ui.cancel.addEventListener("click", cancelRun);
ui.drop.addEventListener("click", () => session && disconnect(session, "dropped"));
ui.resume.addEventListener("click", resume);
// Enter in the key field applies it (as leaving the field does), never a page load.
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  ui.apiKey.dispatchEvent(new Event("change"));
});
ui.apiKey.addEventListener("change", () => {
  api.setApiKey(ui.apiKey.value);
  clearError();
  loadCatalog();
});

loadCatalog();
updateControls();

// A link to a run (`/#run=run_…`) opens it.
const linked = /^#run=([A-Za-z0-9_.:-]+)$/u.exec(location.hash);
if (linked) {
  ui.openRunId.value = decodeURIComponent(linked[1]);
  openRun(ui.openRunId.value);
}
