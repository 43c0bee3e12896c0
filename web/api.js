// The gateway's public HTTP API, and the API key.
//
// The key lives in this module's variable and nowhere else: not localStorage, not a cookie,
// not the URL. A reload forgets it, which is what an operator's debugging page should do
// with a secret. With no key set, requests carry nothing extra.

let apiKey = "";

export function setApiKey(value) {
  apiKey = value.trim();
}

export function hasApiKey() {
  return apiKey !== "";
}

/** The key, for the one transport that needs it in a message body (the WebSocket). */
export function currentApiKey() {
  return apiKey;
}

/** The Authorization header for a fetch(), or none when no key is set. */
export function authHeaders() {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

/** An error answer of the gateway: OpenAI's error shape, `{error: {code, message, …}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The error an answer carries, as an ApiError (also used by the fetch event reader). */
export async function errorOf(response, what) {
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch {
    error = {};
  }
  return new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `${what} answered ${response.status}`,
  );
}

async function request(method, path, body) {
  const headers = { accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "network_error", `the gateway is unreachable (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response, `${method} ${path}`);
  return response.json();
}

export const listModels = async () => (await request("GET", "/v1/models")).data;
export const listTools = async () => (await request("GET", "/v1/tools")).data;

/** `POST /v1/runs` with a JSON answer: `{run_id, status, events_url, cancel_url}`, and
 *  with auth on, `token` and `token_expires_in` (seconds) for EventSource. */
export const startRun = (spec) => request("POST", "/v1/runs", spec);

export const getRun = (runId) => request("GET", `/v1/runs/${encodeURIComponent(runId)}`);

export const cancelRun = (runId) =>
  request("POST", `/v1/runs/${encodeURIComponent(runId)}/cancel`);

/** Answer a tool call waiting for approval: `decision` "approve" or "deny", with an
 *  optional reason. */
export const answerApproval = (runId, callId, decision, reason = "") =>
  request(
    "POST",
    `/v1/runs/${encodeURIComponent(runId)}/approvals/${encodeURIComponent(callId)}`,
    reason ? { decision, reason } : { decision },
  );

/**
 * The URL of a run's event stream for EventSource, from cursor `after`.
 *
 * EventSource cannot send an Authorization header, so when the gateway hands out a stream
 * token (with the run, once auth exists) it goes in the query string; without one, nothing
 * is added.
 */
export function eventsUrl(runId, { after = 0, token = null } = {}) {
  const url = new URL(`/v1/runs/${encodeURIComponent(runId)}/events`, location.origin);
  if (after > 0) url.searchParams.set("after", String(after));
  if (token) url.searchParams.set("token", token);
  return url.pathname + url.search;
}

/** The WebSocket endpoint on this page's origin. */
export function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}
