// Reading a run's SSE stream with fetch(), for the one case EventSource cannot handle: an
// API key is set but there is no valid stream token (a run opened by id, whose token only
// its POST answer carried, or a token that has expired). fetch() can send the
// Authorization header; it does not reconnect by itself, so a broken stream is reported
// and "Resume" continues with `?after=<last seq>`.
//
// Same interface as SseFollower: onEvent, onState, close(reason).

import { authHeaders, errorOf, eventsUrl } from "./api.js";
import { TERMINAL } from "./sse-client.js";

export class FetchSseFollower {
  constructor(runId, { after = 0, onEvent, onState }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.closed = false;
    this.controller = new AbortController();
    this.url = eventsUrl(runId, { after });
    this.#read();
  }

  async #read() {
    let response;
    try {
      response = await fetch(this.url, {
        headers: { accept: "text/event-stream", ...authHeaders() },
        cache: "no-store",
        signal: this.controller.signal,
      });
      if (!response.ok) throw await errorOf(response, "the event stream");
    } catch (error) {
      this.#fail(error.message);
      return;
    }
    this.onState("open");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        // The gateway's frames end with a blank line, LF only (see the wire rules).
        let end = buffer.indexOf("\n\n");
        while (end >= 0 && !this.closed) {
          this.#frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
        }
        if (this.closed) return;
      }
    } catch (error) {
      this.#fail(error.message);
      return;
    }
    if (!this.closed) {
      this.closed = true;
      this.onState("closed", "the stream ended before the run's terminal event");
    }
  }

  #frame(frame) {
    // `: ping` comments and `id:` lines are skipped: the seq is in the data too.
    const data = frame
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
      .join("\n");
    if (!data) return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      this.onState("error", `a frame that is not JSON: ${data.slice(0, 80)}`);
      return;
    }
    this.onEvent(event);
    if (TERMINAL.has(event.type)) this.close("ended");
  }

  #fail(message) {
    if (this.closed) return; // our own abort
    this.closed = true;
    this.onState("failed", message);
  }

  close(reason = "closed") {
    if (this.closed) return;
    this.closed = true;
    this.controller.abort();
    this.onState(reason);
  }
}
