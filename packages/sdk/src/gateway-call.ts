/**
 * One HTTP call to the gateway: a deadline, the caller's abort signal, and retries of what
 * may have failed in passing (the network, a 502, 503 or 504 from Airlock or a proxy, a 429
 * that says when to come back). Callers
 * only retry what is safe to repeat: reads, and submissions with an idempotency key.
 */
import { AirlockError } from "./airlock-error.js";

export interface GatewaySettings {
  /** The gateway's base URL, without a trailing slash. */
  baseUrl: string;
  token: string;
  fetch: typeof fetch;
  /** How long one call may take, in ms, beyond what the gateway was asked to hold it. */
  timeout: number;
  retries: number;
}

export interface GatewayCall {
  method: "GET" | "POST";
  /** The path and query, e.g. `/v1/actions/req_1?wait=25`. */
  path: string;
  body?: unknown;
  /** How long the gateway was asked to hold the call (a long poll), in ms. */
  holdMs?: number;
  signal?: AbortSignal | undefined;
}

/** What the gateway answered: its status and its JSON object, an error's included. */
export interface GatewayAnswer {
  status: number;
  body: Record<string, unknown>;
}

const RETRIED_STATUSES = new Set([502, 503, 504]);
/** A Retry-After longer than this is not waited out in a call; the caller hears the error. */
const LONGEST_RETRY_WAIT_MS = 30_000;

export async function callGateway(
  settings: GatewaySettings,
  call: GatewayCall,
): Promise<GatewayAnswer> {
  for (let attempt = 0; ; attempt++) {
    let raw: RawAnswer | undefined;
    let failure: AirlockError | undefined;
    try {
      raw = await send(settings, call);
    } catch (error) {
      if (!(error instanceof AirlockError)) throw error;
      failure = error;
    }
    const wait = raw?.retryAfterMs ?? backoff(attempt);
    const passing =
      failure !== undefined ||
      // Not what a 503 says when the action ran and only its outcome went unrecorded: a retry,
      // with the store still down, would be answered "nothing ran" and hide that it did.
      (raw !== undefined && RETRIED_STATUSES.has(raw.status) && !saysExecuted(raw.body)) ||
      // A 429 without Retry-After (agents[].maxPending) waits for reviewers, not for time.
      (raw?.status === 429 && raw.retryAfterMs !== undefined);
    if (passing && attempt < settings.retries && wait <= LONGEST_RETRY_WAIT_MS) {
      await pause(wait, call.signal);
      continue;
    }
    if (failure) throw failure;
    return answerOf(settings, call, raw!);
  }
}

/** The gateway's error in an answer, if it is one. */
export function errorOf(answer: GatewayAnswer): AirlockError | undefined {
  const error = answer.body.error;
  if (!isObject(error) || typeof error.code !== "string" || typeof error.message !== "string") {
    return undefined;
  }
  return new AirlockError(error.code, error.message, {
    status: answer.status,
    ...(error.executed === true ? { executed: true } : {}),
    ...(typeof error.field === "string" ? { field: error.field } : {}),
    ...(typeof error.requestId === "string" ? { requestId: error.requestId } : {}),
  });
}

/** Whether an error answer says the action ran (`executed: true`) despite the error. */
function saysExecuted(body: unknown): boolean {
  return isObject(body) && isObject(body.error) && body.error.executed === true;
}

interface RawAnswer {
  status: number;
  body: unknown;
  retryAfterMs: number | undefined;
}

async function send(settings: GatewaySettings, call: GatewayCall): Promise<RawAnswer> {
  const { signal } = call;
  signal?.throwIfAborted();
  // setTimeout takes at most about 24.8 days; past that it fires at once.
  const limit = Math.min(settings.timeout + (call.holdMs ?? 0), 2_147_483_647);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), limit);
  const forward = () => controller.abort();
  signal?.addEventListener("abort", forward, { once: true });
  try {
    const response = await settings.fetch(settings.baseUrl + call.path, {
      method: call.method,
      headers: {
        authorization: `Bearer ${settings.token}`,
        accept: "application/json",
        ...(call.body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
      // The agent API never redirects: one that does is not Airlock, and gets no token. Not
      // "error", which fetch reports as a network failure, retried and told as one.
      redirect: "manual",
      signal: controller.signal,
    });
    const text = await response.text();
    return {
      status: response.status,
      body: parseJson(text),
      retryAfterMs: retryAfter(response.headers.get("retry-after")),
    };
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    const what = `${call.method} ${call.path.split("?")[0]}`;
    if (controller.signal.aborted) {
      throw new AirlockError(
        "timeout",
        `Airlock at ${settings.baseUrl} did not answer ${what} within ${limit / 1000} s; raise the client's timeout if the gateway is slow`,
      );
    }
    const code = networkCode(error);
    throw new AirlockError(
      "network_error",
      `could not reach Airlock at ${settings.baseUrl} for ${what}${code === undefined ? "" : ` (${code})`}; check the url and that the gateway is running`,
      code === undefined ? {} : { cause: error },
    );
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", forward);
  }
}

function answerOf(settings: GatewaySettings, call: GatewayCall, raw: RawAnswer): GatewayAnswer {
  if (isObject(raw.body)) {
    const answer = { status: raw.status, body: raw.body };
    if (raw.status < 300 || errorOf(answer)) return answer;
  }
  if (raw.status >= 300 && raw.status < 400) {
    // Where it leads is not quoted: a redirect's address can carry anything.
    throw new AirlockError(
      "unexpected_response",
      `${settings.baseUrl} answered ${call.method} ${call.path.split("?")[0]} with a redirect (HTTP ${raw.status}), which the client does not follow so that its token goes nowhere else; give the address it redirects to (https:// rather than http://?)`,
      { status: raw.status },
    );
  }
  throw new AirlockError(
    "unexpected_response",
    `${settings.baseUrl} answered ${call.method} ${call.path.split("?")[0]} with HTTP ${raw.status} but not with Airlock's JSON; check that the url is the gateway's`,
    { status: raw.status },
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Retry-After in seconds or as an HTTP date, in ms. */
function retryAfter(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  if (header.trim() !== "" && Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Half a second, doubling, at most 8 s; jittered so that many agents do not retry in step. */
function backoff(attempt: number): number {
  return Math.min(8_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const stop = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

/**
 * The network's code for a failed fetch (ECONNREFUSED, UND_ERR_SOCKET), if it has one. Never an
 * error's text: that can quote the request, its authorization header included.
 */
function networkCode(error: unknown): string | undefined {
  const { code } = ((error as { cause?: unknown } | null)?.cause ?? {}) as { code?: unknown };
  return typeof code === "string" && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : undefined;
}
