// Following a run over Server-Sent Events with the browser's own EventSource.
//
// Why EventSource rather than fetch() and a hand-written parser: it is what most browser
// clients of the gateway will use, so the console shows that it is enough. It keeps the
// last `id:` and, when the connection breaks, reconnects by itself with `Last-Event-ID`,
// which the gateway resumes from (no event lost or repeated). Its one limit is that it
// cannot send headers, hence the stream token in the URL when auth is on (see api.js).
//
// A deliberate drop is `close()`; a resume is a new follower whose URL says `?after=<seq>`.

import { eventsUrl } from "./api.js";

export const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled"]);

export class SseFollower {
  /**
   * @param {string} runId
   * @param {{after?: number, token?: string|null,
   *          onEvent: (event: object) => void,
   *          onState: (state: string, detail?: string) => void}} options
   */
  constructor(runId, { after = 0, token = null, onEvent, onState }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.closed = false;
    this.url = eventsUrl(runId, { after, token });
    this.source = new EventSource(this.url);
    this.source.onopen = () => this.onState("open");
    this.source.onmessage = (message) => this.#message(message);
    this.source.onerror = () => this.#error();
  }

  #message(message) {
    if (this.closed) return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      this.onState("error", `a frame that is not JSON: ${message.data.slice(0, 80)}`);
      return;
    }
    this.onEvent(event);
    // The gateway ends the stream after the terminal event. Close first, or EventSource
    // would take the end of the response for a dropped connection and reconnect.
    if (TERMINAL.has(event.type)) this.close("ended");
  }

  #error() {
    if (this.closed) return;
    if (this.source.readyState === EventSource.CONNECTING) {
      // EventSource is already retrying, with Last-Event-ID: the gateway resumes there.
      this.onState("reconnecting");
    } else {
      // CLOSED: an HTTP error answer (404 unknown run, 401 …); EventSource gives no details.
      this.closed = true;
      this.onState("failed", "the event stream was refused");
    }
  }

  /** Close the stream; `reason` is reported as the new state ("dropped", "ended"). */
  close(reason = "closed") {
    if (this.closed) return;
    this.closed = true;
    this.source.close();
    this.onState(reason);
  }
}
