// What the console knows about one run, built from its events alone (no DOM here).
//
// Every event goes through `apply`, which first checks its seq against the cursor: the
// gateway promises seq 1, 2, 3 … with none missing and none twice, also across a resume,
// so anything else is shown as a problem rather than quietly absorbed. A `stream.gap`
// event is the gateway saying "these were no longer retained": an announced gap, with the
// run's snapshot to catch up from.

// The producer states of the snapshot (`GET /v1/runs/{id}`) in the console's words.
const SNAPSHOT_STATUS = {
  queued: "pending",
  running: "running",
  completed: "done",
  failed: "failed",
  cancelled: "cancelled",
};

export class RunState {
  constructor(runId) {
    this.runId = runId;
    this.status = "queued";
    this.kind = null;
    this.model = null;
    this.cursor = 0; // the last seq applied: where a resume starts from
    this.count = 0; // events applied (duplicates not counted)
    this.t0 = null; // server time (s) of run.started: the origin of the shared time axis
    this.tEnd = null; // server time (s) of the terminal event
    this.lastTs = null;
    this.lanes = new Map(); // producer key -> lane (see #lane)
    this.messages = new Map(); // message_id -> {step, producer, text, done, calls, notes}
    this.usage = null; // the run's total, once known
    this.stepUsage = { input_tokens: 0, output_tokens: 0 }; // summed from message.completed
    this.output = null;
    this.error = null;
    this.cancelReason = null;
    this.gaps = []; // [{from, to, announced}] seqs missing (announced: by a stream.gap)
    this.duplicates = []; // seqs received again
    // call_id -> {callId, name, arguments, expiresAt, status, by, reason, edited, error}:
    // status "pending" (waiting for a person), "approved", "denied", "expired" (the call
    // failed unanswered) or "ended" (the run ended while it waited).
    this.approvals = new Map();
  }

  get terminal() {
    return ["completed", "failed", "cancelled"].includes(this.status);
  }

  /** Apply one event. Returns `{verdict: "ok" | "duplicate" | "gap", from?, to?}`. */
  apply(event) {
    const seq = event.seq;
    if (seq <= this.cursor) {
      this.duplicates.push(seq);
      return { verdict: "duplicate" };
    }
    let result = { verdict: "ok" };
    if (event.type === "stream.gap") {
      // Its seq is next_seq - 1: everything after `after` up to it is announced missing.
      if (seq > event.after) this.gaps.push({ from: event.after + 1, to: seq, announced: true });
      result = { verdict: "gap", from: event.after + 1, to: seq, announced: true };
    } else if (seq > this.cursor + 1) {
      this.gaps.push({ from: this.cursor + 1, to: seq - 1, announced: false });
      result = { verdict: "gap", from: this.cursor + 1, to: seq - 1, announced: false };
    }
    this.cursor = seq;
    this.count += 1;
    if (typeof event.ts === "number") {
      this.lastTs = this.lastTs === null ? event.ts : Math.max(this.lastTs, event.ts);
      if (this.t0 === null) this.t0 = event.ts;
    }
    this.#update(event);
    return result;
  }

  #lane(key, kind, name, ts) {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = {
        key,
        kind,
        name: name || key,
        status: "pending",
        argsStart: null, // the model began streaming this call's arguments
        start: null, // the producer began running
        end: null,
        args: "",
        output: "",
        error: null,
      };
      this.lanes.set(key, lane);
    }
    if (name) lane.name = name;
    if (lane.start === null && lane.argsStart === null && ts !== undefined) lane.argsStart = ts;
    return lane;
  }

  #finish(lane, status, ts) {
    lane.status = status;
    lane.end = ts;
    if (lane.start === null) lane.start = lane.argsStart ?? ts;
  }

  #update(event) {
    const ts = event.ts;
    switch (event.type) {
      case "run.started":
        this.status = "running";
        this.kind = event.kind;
        this.model = event.model;
        this.t0 = ts;
        break;
      case "message.started": {
        const lane = this.#lane(event.producer, "model", event.model);
        lane.name = `${event.model} · step ${event.step}`;
        lane.status = "running";
        lane.start = ts;
        this.messages.set(event.message_id, newMessage(event.step, event.producer));
        break;
      }
      case "message.delta": {
        const message = this.#message(event);
        message.text += event.delta;
        this.#lane(event.producer, "model").output += event.delta;
        break;
      }
      case "message.completed": {
        const message = this.#message(event);
        message.text = event.text;
        message.done = true;
        this.#finish(this.#lane(event.producer, "model"), "done", ts);
        if (event.usage) {
          this.stepUsage.input_tokens += event.usage.input_tokens || 0;
          this.stepUsage.output_tokens += event.usage.output_tokens || 0;
        }
        break;
      }
      case "message.failed": {
        const lane = this.#lane(event.producer, "model");
        lane.error = describeError(event.error);
        this.#finish(lane, "failed", ts);
        this.#message(event).done = true;
        break;
      }
      // A model group moved the step to another route: informational, noted on the message.
      case "message.rerouted":
        this.#message(event).notes.push(`rerouted ${event.from} → ${event.to} (${event.reason})`);
        break;
      // The step restarts on another route: what the message had shown (its text, its tool
      // calls) is void, and the new attempt's deltas follow under the same message_id.
      case "message.retracted": {
        const message = this.#message(event);
        message.text = "";
        for (const callId of message.calls) this.lanes.delete(callId);
        message.calls = [];
        message.notes.push(`retracted (${event.reason})`);
        const lane = this.lanes.get(event.producer);
        if (lane) lane.output = "";
        break;
      }
      // The model streams a call's arguments: they belong in the call's own lane, which
      // starts here, before the tool runs.
      case "tool_call.started":
        this.#lane(event.call_id, "tool", event.name, ts);
        if (event.message_id !== undefined) this.#message(event).calls.push(event.call_id);
        break;
      case "tool_call.delta":
        this.#lane(event.call_id, "tool", null, ts).args += event.delta;
        break;
      case "tool_call.completed": {
        const lane = this.#lane(event.call_id, "tool", event.name, ts);
        if (typeof event.arguments === "string") lane.args = event.arguments;
        break;
      }
      case "tool.started": {
        const lane = this.#lane(event.call_id, "tool", event.name);
        lane.status = "running";
        lane.start = ts;
        if (!lane.args) lane.args = JSON.stringify(event.arguments ?? {});
        break;
      }
      case "tool.delta":
        this.#lane(event.call_id, "tool").output += event.delta;
        break;
      case "tool.completed":
        this.#finish(this.#lane(event.call_id, "tool"), "done", ts);
        break;
      case "tool.failed": {
        const approval = this.approvals.get(event.call_id);
        if (approval?.status === "pending") {
          approval.status = "expired";
          approval.error = describeError(event.error);
        }
        const lane = this.#lane(event.call_id, "tool");
        lane.error = describeError(event.error);
        this.#finish(lane, "failed", ts);
        break;
      }
      case "client_tool.requested": {
        const lane = this.#lane(event.call_id, "client_tool", event.name);
        lane.kind = "client_tool";
        lane.status = "waiting";
        lane.start = ts;
        lane.args = JSON.stringify(event.arguments ?? {});
        break;
      }
      case "tool.approval_requested": {
        this.#approvalRequested(event);
        const lane = this.#lane(event.call_id, "tool", event.name, ts);
        lane.status = "approval";
        if (!lane.args) lane.args = JSON.stringify(event.arguments ?? {});
        break;
      }
      case "tool.approved":
      case "tool.denied": {
        const approval = this.approvals.get(event.call_id);
        if (approval) {
          approval.status = event.type === "tool.approved" ? "approved" : "denied";
          approval.by = event.by;
          approval.reason = event.reason || null;
          approval.edited = event.arguments !== undefined;
        }
        const lane = this.#lane(event.call_id, "tool");
        if (event.type === "tool.denied") {
          lane.error = `denied by ${event.by}${event.reason ? `: ${event.reason}` : ""}`;
          this.#finish(lane, "cancelled", ts);
        } else {
          lane.status = "pending";
          if (event.arguments !== undefined) lane.args = JSON.stringify(event.arguments);
        }
        break;
      }
      case "run.completed":
        this.status = "completed";
        this.output = event.output;
        this.usage = event.usage || null;
        this.#end(ts, "done");
        break;
      case "run.failed":
        this.status = "failed";
        this.error = describeError(event.error);
        this.#end(ts, "cancelled");
        break;
      case "run.cancelled":
        this.status = "cancelled";
        this.cancelReason = event.reason || null;
        this.#end(ts, "cancelled");
        break;
      case "stream.gap":
        this.#applySnapshot(event.snapshot);
        break;
      default:
        // A type this console does not know yet still shows in the log.
        break;
    }
  }

  #message(event) {
    let message = this.messages.get(event.message_id);
    if (!message) {
      // Its message.started was not seen (opened mid-run after a gap): start it here.
      message = newMessage(null, event.producer);
      this.messages.set(event.message_id, message);
    }
    return message;
  }

  #approvalRequested(request) {
    if (this.approvals.has(request.call_id)) return;
    this.approvals.set(request.call_id, {
      callId: request.call_id,
      name: request.name,
      arguments: request.arguments,
      expiresAt: request.expires_at,
      status: "pending",
      by: null,
      reason: null,
      edited: false,
      error: null,
    });
  }

  /** The calls still waiting for a person. */
  get pendingApprovals() {
    return [...this.approvals.values()].filter((approval) => approval.status === "pending");
  }

  /** The run ended: producers still open were cut short by it. */
  #end(ts, openStatus) {
    this.tEnd = ts;
    for (const approval of this.approvals.values()) {
      if (approval.status === "pending") approval.status = "ended";
    }
    for (const lane of this.lanes.values()) {
      if (["pending", "running", "waiting", "approval"].includes(lane.status)) {
        this.#finish(lane, openStatus, ts);
      }
    }
  }

  #applySnapshot(snapshot) {
    if (!snapshot) return;
    this.status = snapshot.status;
    this.kind = snapshot.kind ?? this.kind;
    this.model = snapshot.model ?? this.model;
    if (snapshot.started_at) this.t0 = Math.min(this.t0 ?? Infinity, snapshot.started_at);
    if (snapshot.ended_at) this.tEnd = snapshot.ended_at;
    if (snapshot.output !== null && snapshot.output !== undefined) this.output = snapshot.output;
    if (snapshot.error) this.error = describeError(snapshot.error);
    if (snapshot.cancel_reason) this.cancelReason = snapshot.cancel_reason;
    if (snapshot.usage && Object.keys(snapshot.usage).length) this.usage = snapshot.usage;
    // The calls the snapshot says wait: their requests may be among the events not retained.
    for (const request of snapshot.pending_approvals || []) this.#approvalRequested(request);
    for (const producer of snapshot.producers || []) {
      const lane = this.#lane(producer.id, producer.kind, producer.name);
      lane.status = SNAPSHOT_STATUS[producer.status] || producer.status;
      lane.start = producer.started_at ?? lane.start;
      lane.end = producer.ended_at ?? lane.end;
    }
  }

  /** Token usage: the run's total once it is known, else the sum of the finished steps. */
  get tokens() {
    return this.usage || this.stepUsage;
  }
}

/** A message as the console holds it: `calls` are the ids of the tool calls it streamed (a
 *  retraction removes them), `notes` what happened to it on the way (reroutes, retractions). */
function newMessage(step, producer) {
  return { step, producer, text: "", done: false, calls: [], notes: [] };
}

export function describeError(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message ? `${error.code ? `${error.code}: ` : ""}${error.message}` : JSON.stringify(error);
}
