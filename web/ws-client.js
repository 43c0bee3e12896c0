// The WebSocket channel `/v1/ws`: JSON commands with our own ids, answered by `ack` or
// `error` carrying the same id, and run events (each with its `run_id` and `seq`) in
// between. Several runs may share one socket; the console uses one socket per run it
// follows, so that "drop the connection" drops exactly that run's reader.

import { currentApiKey, wsUrl } from "./api.js";

export class CommandRefused extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CommandRefused";
    this.code = code;
  }
}

export class WsChannel {
  /**
   * @param {{onEvent: (event: object) => void,
   *          onState: (state: string, detail?: string) => void}} handlers
   */
  constructor({ onEvent, onState }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.nextId = 1;
    this.pending = new Map(); // command id -> {resolve, reject}
    this.socket = null;
    this.closeReason = null; // set when we close the socket ourselves
    this.silent = false;
  }

  /** Connect; resolves once the socket is open (and authenticated, when a key is set). */
  open() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(wsUrl());
      this.socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        // A browser WebSocket cannot carry an Authorization header: with a key set, the
        // session's first command is `auth`, and nothing else goes out before its ack.
        const key = currentApiKey();
        const authenticated = key ? this.command("auth", { key }) : Promise.resolve();
        authenticated.then(
          () => {
            this.onState("open");
            resolve();
          },
          (error) => {
            this.silent = true; // the caller reports the refusal; the close says no more
            this.close();
            reject(error);
          },
        );
      };
      socket.onmessage = (message) => this.#message(message);
      socket.onclose = (close) => {
        const detail = close.reason || `close code ${close.code}`;
        for (const { reject: fail } of this.pending.values()) {
          fail(new CommandRefused("closed", `the socket closed (${detail})`));
        }
        this.pending.clear();
        if (!opened) {
          reject(new CommandRefused("connect_failed", "could not open the WebSocket"));
          return;
        }
        // 1013 is the gateway's "slow reader, resume from your cursor".
        if (this.silent) return;
        if (this.closeReason) this.onState(this.closeReason);
        else this.onState("closed", detail);
      };
      // onerror is always followed by onclose, which says what happened.
      socket.onerror = () => {};
    });
  }

  #message(message) {
    if (typeof message.data !== "string") return;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      this.onState("error", "a message that is not JSON");
      return;
    }
    if (data.type === "ack" || data.type === "error") {
      const waiter = this.pending.get(data.id);
      if (!waiter) {
        if (data.type === "error") this.onState("error", data.message);
        return;
      }
      this.pending.delete(data.id);
      if (data.type === "ack") waiter.resolve(data);
      else waiter.reject(new CommandRefused(data.code, data.message));
      return;
    }
    // Anything else with a seq is a run event.
    if (typeof data.seq === "number") this.onEvent(data);
  }

  /** Send a command; resolves with its ack, rejects with the gateway's error. */
  command(type, fields = {}) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new CommandRefused("not_connected", "the WebSocket is not open"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /**
   * Close on purpose; `reason` is reported as the state once closed ("dropped", "ended").
   * The gateway detaches this socket's readers: a run goes on or is cancelled according
   * to its `on_disconnect`.
   */
  close(reason = "dropped") {
    if (!this.socket || this.socket.readyState >= WebSocket.CLOSING) return;
    this.closeReason = reason;
    this.socket.close(1000, "closed by the console");
  }
}
