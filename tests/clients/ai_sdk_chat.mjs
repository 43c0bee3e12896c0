// The `ai` package's own headless chat against the gateway, as `useChat` runs it.
//
//   node ai_sdk_chat.mjs <package alias> <scenario> '<json config>'
//
// The alias is one of the npm aliases package.json pins (ai5, ai5-first, ai6, ...). The config:
//   {"url": gateway base URL, "model": "demo", "tools": ["clock", ...], "prompt": "...",
//    "chatId": "...", "apiKey": optional bearer, "dropAfter": chunks before the drop,
//    "timeoutMs": the whole scenario's bound}
// Scenarios:
//   turn              sendMessage, wait until the chat is ready, print its messages
//   drop              sendMessage; a fresh chat of the same id resumes as soon as the turn has
//                     started (the uninterrupted reader); the first chat's connection is cut after
//                     `dropAfter` chunks, then another fresh chat resumes: both rebuild the turn
//   stop              sendMessage; at the first text delta POST /v1/ai-sdk/chat/{id}/stop
//   resume-after-end  a turn, then resumeStream() once it has ended: nothing changes (204)
//   approval          (ai 6, 7) a chat that sends automatically once every approval is answered
//                     (lastAssistantMessageIsCompleteWithApprovalResponses); sendMessage, then
//                     addToolApprovalResponse({approved: config.approve, reason: config.reason})
//                     for each part in "approval-requested", and wait for the turn to finish;
//                     `approvalRequested` is the message as it stood when the first stream ended
// It prints one JSON object on stdout: per chat, its status, error, messages, every chunk the
// SDK's own transport parsed (`chunks`), every raw chunk of every response with the SDK's
// schema's verdict where the package exports that schema (`raw`), and the HTTP exchanges.
// Exit status 0 when the scenario ran to its end (the test judges the result), 2 on a timeout.

const [alias, scenario, configText] = process.argv.slice(2);
const config = JSON.parse(configText ?? "{}");
const sdk = await import(alias);
const { AbstractChat, DefaultChatTransport } = sdk;
const version = JSON.parse(
  await (await import("node:fs/promises")).readFile(
    new URL(`./node_modules/${alias}/package.json`, import.meta.url),
    "utf8",
  ),
).version;

const MAX_RECORDED = 10_000; // chunks kept per chat: a runaway stream cannot exhaust memory
const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ alias, version, scenario, timedOut: true }) + "\n");
  process.exit(2);
}, config.timeoutMs ?? 30_000);

/** The in-memory ChatState @ai-sdk/react's ReactChatState is, without React. */
class MemoryChatState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
    this.statuses = [];
  }
  set status(value) {
    this._status = value;
    this.statuses?.push(value);
    this.onStatus?.(value);
  }
  get status() {
    return this._status;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
  };
  snapshot = (value) => structuredClone(value);
}

/** Splits an SSE byte stream into the `data:` payloads of its events. */
function sseDataSplitter() {
  let buffer = "";
  const decoder = new TextDecoder();
  const payloads = (text) => {
    buffer += text;
    const out = [];
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""));
      if (data.length > 0) out.push(data.join("\n"));
    }
    return out;
  };
  return { feed: (bytes) => payloads(decoder.decode(bytes, { stream: true })) };
}

/** Records every raw chunk of a response body, checked by the SDK's schema when exported. */
async function recordRaw(stream, raw) {
  const splitter = sseDataSplitter();
  const checks = [];
  if (sdk.parseJsonEventStream && sdk.uiMessageChunkSchema) {
    const [mine, sdks] = stream.tee();
    stream = mine;
    // The SDK's own parser and schema, as DefaultChatTransport applies them.
    checks.push(
      (async () => {
        const parsed = sdk.parseJsonEventStream({ stream: sdks, schema: sdk.uiMessageChunkSchema });
        let index = 0;
        for await (const result of parsed) {
          const entry = raw.chunks[index++];
          if (entry) entry.valid = result.success;
          if (!result.success) raw.refused.push({ chunk: result.rawValue, error: String(result.error) });
        }
      })().catch((error) => raw.refused.push({ error: `parser: ${error}` })),
    );
  }
  try {
    for await (const bytes of stream) {
      for (const data of splitter.feed(bytes)) {
        if (data === "[DONE]") raw.done = true;
        else if (raw.chunks.length < MAX_RECORDED) raw.chunks.push({ chunk: JSON.parse(data) });
      }
    }
  } catch (error) {
    raw.cut = String(error);
  }
  await Promise.all(checks);
}

/** A fetch that records each exchange and tees its body into `recordRaw`. With `dropAfter`,
 * the first POST's connection is cut (aborted, as a lost network is) after that many chunks. */
function recordingFetch(record, { dropAfter } = {}) {
  return async (url, init = {}) => {
    const controller = new AbortController();
    init.signal?.addEventListener("abort", () => controller.abort(init.signal.reason));
    const response = await fetch(url, { ...init, signal: controller.signal });
    const exchange = {
      method: init.method ?? "GET",
      url: String(url),
      status: response.status,
      runId: response.headers.get("x-run-id"),
      streamHeader: response.headers.get("x-vercel-ai-ui-message-stream"),
      raw: { chunks: [], refused: [], done: false },
    };
    record.exchanges.push(exchange);
    if (!response.body) return response;
    const [forSdk, forRecord] = response.body.tee();
    exchange.recorded = recordRaw(forRecord, exchange.raw);
    let body = forSdk;
    if (dropAfter != null && exchange.method === "POST") {
      body = cutAfter(forSdk, dropAfter, controller, exchange);
    }
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

/** The SDK's view of a body that is cut after `limit` complete SSE events. */
function cutAfter(stream, limit, controller, exchange) {
  const reader = stream.getReader();
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let buffer = "";
  let sent = 0;
  return new ReadableStream({
    async pull(out) {
      const { done, value } = await reader.read();
      if (done) {
        out.close();
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end + 2);
        buffer = buffer.slice(end + 2);
        if (!block.includes("data:")) continue;
        out.enqueue(encoder.encode(block));
        if (++sent >= limit) {
          exchange.droppedAfter = sent;
          controller.abort(); // the gateway sees the connection go
          out.error(new TypeError("network error (dropped by the test)"));
          return;
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** A DefaultChatTransport that also records what the SDK's own parser let through. */
function transportFor(record, options) {
  class RecordingTransport extends DefaultChatTransport {
    processResponseStream(stream) {
      return super.processResponseStream(stream).pipeThrough(
        new TransformStream({
          transform(chunk, controller) {
            if (record.chunks.length < MAX_RECORDED) record.chunks.push(chunk);
            record.onChunk?.(chunk);
            controller.enqueue(chunk);
          },
        }),
      );
    }
  }
  const headers = config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : undefined;
  return new RecordingTransport({
    api: `${config.url}/v1/ai-sdk/chat`,
    headers,
    body: { model: config.model ?? "demo", tools: config.tools ?? [], ...(config.body ?? {}) },
    fetch: recordingFetch(record, options),
  });
}

class HeadlessChat extends AbstractChat {
  constructor({ messages, ...options }) {
    const state = new MemoryChatState(messages);
    super({ ...options, state });
    this.memory = state;
  }
}

/** A chat of `config.chatId` with its record: what it saw, for the printout. */
function newChat(name, { messages = [], dropAfter, sendAutomaticallyWhen } = {}) {
  const record = { name, chunks: [], exchanges: [], errors: [], finished: [] };
  const chat = new HeadlessChat({
    id: config.chatId,
    messages,
    transport: transportFor(record, { dropAfter }),
    sendAutomaticallyWhen,
    onError: (error) => record.errors.push(String(error?.message ?? error)),
    onFinish: (event) => {
      record.finished.push(event?.message?.id ?? null);
      record.onFinish?.();
    },
  });
  record.chat = chat;
  return record;
}

async function settle(record) {
  await Promise.all(record.exchanges.map((exchange) => exchange.recorded));
  const { chat } = record;
  return {
    name: record.name,
    status: chat.status,
    statuses: chat.memory.statuses,
    error: chat.error ? String(chat.error.message ?? chat.error) : null,
    errors: record.errors,
    finished: record.finished,
    messages: chat.messages,
    chunks: record.chunks,
    exchanges: record.exchanges.map(({ recorded, ...exchange }) => exchange),
  };
}

const userMessage = () => ({ text: config.prompt ?? "hello" });

async function turn() {
  const a = newChat("turn");
  await a.chat.sendMessage(userMessage());
  return [await settle(a)];
}

async function drop() {
  const a = newChat("dropped", { dropAfter: config.dropAfter ?? 3 });
  let started;
  const turnStarted = new Promise((resolve) => (started = resolve));
  a.onChunk = (chunk) => chunk.type === "start" && started();
  const sending = a.chat.sendMessage(userMessage());
  await Promise.race([turnStarted, sending]);
  const user = a.chat.messages.filter((message) => message.role === "user");
  // The uninterrupted reader: a second tab that resumes while the turn is young.
  const b = newChat("uninterrupted", { messages: structuredClone(user) });
  const following = b.chat.resumeStream();
  await sending; // ends in an error: the connection was cut
  // A reload after the drop: a fresh chat with the persisted user message resumes the turn.
  const c = newChat("resumed", { messages: structuredClone(user) });
  await c.chat.resumeStream();
  await following;
  return [await settle(a), await settle(b), await settle(c)];
}

async function stop() {
  const a = newChat("stopped");
  let stopping;
  a.onChunk = (chunk) => {
    if (chunk.type === "text-delta" && stopping == null) {
      stopping = fetch(`${config.url}/v1/ai-sdk/chat/${encodeURIComponent(config.chatId)}/stop`, {
        method: "POST",
        headers: config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {},
      }).then(async (response) => ({ status: response.status, body: await response.text() }));
    }
  };
  await a.chat.sendMessage(userMessage());
  const result = await settle(a);
  result.stop = stopping ? await stopping : null;
  return [result];
}

async function resumeAfterEnd() {
  const a = newChat("turn");
  await a.chat.sendMessage(userMessage());
  const before = structuredClone(a.chat.messages);
  await a.chat.resumeStream();
  const result = await settle(a);
  result.before = before;
  return [result];
}

async function approval() {
  const a = newChat("approval", {
    sendAutomaticallyWhen: sdk.lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  let finishedAgain;
  const secondFinish = new Promise((resolve) => (finishedAgain = resolve));
  a.onFinish = () => a.finished.length >= 2 && finishedAgain();
  await a.chat.sendMessage(userMessage());
  const approvalRequested = structuredClone(a.chat.lastMessage);
  const waiting = (approvalRequested?.parts ?? []).filter(
    (part) => part.state === "approval-requested",
  );
  for (const part of waiting) {
    await a.chat.addToolApprovalResponse({
      id: part.approval.id,
      approved: config.approve ?? true,
      ...(config.reason != null ? { reason: config.reason } : {}),
    });
  }
  if (waiting.length > 0 && a.errors.length === 0) await secondFinish;
  // The SDK sets the status after onFinish: wait for it to say the chat is idle again.
  const busy = () => a.chat.status === "submitted" || a.chat.status === "streaming";
  if (busy()) await new Promise((resolve) => (a.chat.memory.onStatus = () => busy() || resolve()));
  const result = await settle(a);
  result.approvalRequested = approvalRequested;
  return [result];
}

const scenarios = { turn, drop, stop, "resume-after-end": resumeAfterEnd, approval };
if (!(scenario in scenarios)) {
  console.error(`unknown scenario ${scenario}: one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(64);
}
const chats = await scenarios[scenario]();
clearTimeout(deadline);
process.stdout.write(JSON.stringify({ alias, version, scenario, chats }) + "\n");
