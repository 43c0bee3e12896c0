// AG-UI's own HttpAgent (@ag-ui/client) through an approval interrupt round trip against the
// gateway, driven by tests/integration/test_agui_interrupts.py:
//
//   node agui_interrupt.mjs '<settings JSON>'
//
// settings: {url, prompt, forwardedProps, answer, timeoutMs}; answer is the response given to
// every interrupt the first run finishes with ({status, payload?}, as buildResumeArray takes).
// The agent runs once (the run finishes with the interrupt), then again with `resume` built by
// the SDK's buildResumeArray (the run the gateway kept waiting goes on). The last stdout line
// is the JSON result: per run its events (as the SDK applied them) and how it finished, then
// the agent's messages and pendingInterrupts.
import { HttpAgent, buildResumeArray } from "@ag-ui/client";

const settings = JSON.parse(process.argv[2]);
const timer = setTimeout(() => {
  console.error(`timed out after ${settings.timeoutMs} ms`);
  process.exit(3);
}, settings.timeoutMs);

function recorder() {
  const record = { runId: null, events: [], finished: null, errors: [] };
  const subscriber = {
    onEvent({ event }) {
      record.events.push(event);
    },
    onRunFinishedEvent({ outcome, interrupts }) {
      record.finished = { outcome, interrupts: interrupts ?? null };
    },
    onRunErrorEvent({ event }) {
      record.errors.push(event);
    },
  };
  return { record, subscriber };
}

const agent = new HttpAgent({ url: `${settings.url}/v1/ag-ui`, threadId: "thread_approval" });
agent.addMessage({ id: "u1", role: "user", content: settings.prompt });

const first = recorder();
first.record.runId = "agui_run_1";
await agent.runAgent(
  { runId: first.record.runId, forwardedProps: settings.forwardedProps },
  first.subscriber,
);
const interrupts = structuredClone(agent.pendingInterrupts);

const responses = Object.fromEntries(interrupts.map((i) => [i.id, settings.answer]));
const resume = buildResumeArray(interrupts, responses);
const second = recorder();
second.record.runId = "agui_run_2";
await agent.runAgent(
  { runId: second.record.runId, forwardedProps: settings.forwardedProps, resume },
  second.subscriber,
);

clearTimeout(timer);
console.log(
  JSON.stringify({
    interrupts,
    resume,
    runs: [first.record, second.record],
    messages: agent.messages,
    pendingInterrupts: agent.pendingInterrupts,
  }),
);
