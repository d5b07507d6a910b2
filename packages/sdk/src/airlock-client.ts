/**
 * The agent's side of Airlock: submit an action, wait while people review it, read how it
 * ended. Every duration here is in milliseconds.
 */
import { type Action, type ActionInput, type ActionStatus, isFinal } from "./action-types.js";
import { AirlockError } from "./airlock-error.js";
import {
  callGateway,
  errorOf,
  type GatewayCall,
  type GatewaySettings,
  isObject,
  pause,
} from "./gateway-call.js";

export interface AirlockClientOptions {
  /** The gateway's address, e.g. `https://airlock.example.com`, with no user name or password. */
  url: string;
  /** The agent's token (`airlock token create --agent NAME`): visible ASCII, no spaces. */
  token: string;
  /**
   * How long one call may take before it is given up, beyond any wait asked for: 30 s by
   * default, finite (a signal ends a wait without limit).
   */
  timeout?: number;
  /**
   * How many times a call that failed in passing is tried again: the network, a 502, 503 or
   * 504, a 429 with Retry-After (one without, such as `agents[].maxPending`, waits for
   * reviewers and is thrown at once). 2 by default, at most 10. Submissions carry an
   * idempotency key, so a retry never makes a second request.
   */
  retries?: number;
  /**
   * How long the gateway holds one call while waiting for an outcome: 25 s by default, at
   * most the gateway's `server.maxWaitSeconds` (an hour at most). With 0 the client asks once
   * a second, as it does after a call the gateway let go early with nothing new (when it
   * shuts down, say).
   */
  longPoll?: number;
  /** Another fetch, e.g. one with a proxy or client certificate. */
  fetch?: typeof fetch;
}

export interface WaitOptions {
  /**
   * Give up waiting after this long and return the action as it then is. No limit by default
   * (or with Infinity).
   */
  timeout?: number;
  signal?: AbortSignal;
  /**
   * Called with the action each time it is seen changed, e.g. after a reviewer's vote; by `run`
   * first with the action as submitted, before any wait.
   */
  onUpdate?: (action: Action) => void;
}

export interface ListOptions {
  /** One status, several, or `"all"` (the default). */
  status?: ActionStatus | "all" | ActionStatus[];
  /** Only actions on this connection. */
  connection?: string;
  /** Only actions older than this id: a page's `next`. */
  before?: string;
  /** At most this many (1 to 200; 50 by default). */
  limit?: number;
  signal?: AbortSignal;
}

export interface ActionPage {
  actions: Action[];
  /** Set while more may follow: pass it as `before` for the next page. */
  next?: string;
}

export class AirlockClient {
  readonly #gateway: GatewaySettings;
  readonly #longPoll: number;

  constructor(options: AirlockClientOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      // Not quoted: a mistyped url can still hold a password.
      throw new TypeError(
        "url is not a URL: give the gateway's address, e.g. https://airlock.example.com",
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError("url must be an http:// or https:// address");
    }
    // They would be sent to the gateway, and printed in every error that names the url.
    if (url.username !== "" || url.password !== "") {
      throw new TypeError("url must not hold a user name or password: the token is the credential");
    }
    if (typeof options.token !== "string" || options.token === "") {
      throw new TypeError("token is missing: make one with `airlock token create --agent NAME`");
    }
    // Said without the token, which fetch would quote in its header error. Tokens are ASCII.
    if (!/^[\x21-\x7e]+$/.test(options.token)) {
      throw new TypeError(
        "token has a character a token cannot have (a space, a line break, a control or non-ASCII character); check how it was copied",
      );
    }
    this.#longPoll = checked(
      "longPoll",
      options.longPoll ?? 25_000,
      (n) => n >= 0 && n <= MAX_LONG_POLL,
      "0 to 3600000 milliseconds (the gateway holds a call for an hour at most)",
    );
    this.#gateway = {
      baseUrl: url.href.replace(/\/+$/, ""),
      token: options.token,
      fetch: options.fetch ?? globalThis.fetch,
      timeout: checked(
        "timeout",
        options.timeout ?? 30_000,
        (n) => n > 0 && Number.isFinite(n),
        "a finite number of milliseconds above 0",
      ),
      retries: checked(
        "retries",
        options.retries ?? 2,
        (n) => Number.isInteger(n) && n >= 0 && n <= MAX_RETRIES,
        `a whole number from 0 to ${MAX_RETRIES}`,
      ),
    };
  }

  /**
   * Submits an action and answers with it as the policy left it: `succeeded` or `failed` when
   * allowed (it has run), `denied`, or `pending` while reviewers decide. With `wait`, the
   * gateway holds the call that long for a final state.
   *
   * An action found under way (`approved` or `executing`: a retry that met its first try still
   * running, a reused key whose request was approved) is followed until it has run, for up to
   * the client's `timeout` more; one still running then is answered as it is.
   */
  async submit(
    action: ActionInput,
    options: { wait?: number; signal?: AbortSignal } = {},
  ): Promise<Action> {
    const submitted = await this.#submit(action, options.wait, options.signal);
    if (submitted.status !== "approved" && submitted.status !== "executing") return submitted;
    return this.#follow(submitted, { timeout: this.#gateway.timeout, signal: options.signal });
  }

  /**
   * The action as it is now; with `wait`, held that long for a final state, or, given the
   * `version` you have, for any change from it (a vote, say).
   */
  async get(
    id: string,
    options: { wait?: number; version?: number; signal?: AbortSignal } = {},
  ): Promise<Action> {
    const version = options.version === undefined ? "" : `&version=${options.version}`;
    const query = waitQuery(options.wait);
    return this.#action({
      method: "GET",
      path: `/v1/actions/${encodeURIComponent(id)}${query}${query ? version : ""}`,
      holdMs: heldMs(options.wait),
      signal: options.signal,
    });
  }

  /** Waits until the action is final (or `timeout` passes), long-polling the gateway. */
  async wait(id: string, options: WaitOptions = {}): Promise<Action> {
    checkWaitTimeout(options.timeout);
    return this.#follow(await this.get(id, { signal: options.signal }), options);
  }

  /**
   * Submits an action and waits for how it ends: run, denied, expired or cancelled. `timeout`
   * ends the wait earlier, with the action as it then is; the signal rejects with its reason.
   *
   * `onUpdate` hears the action as submitted before any wait: keep its id to cancel a request
   * you stop waiting for. A signal that aborts before the gateway answered the submission
   * leaves no id; submitting again with the same `idempotencyKey` finds that request.
   */
  async run(action: ActionInput, options: WaitOptions = {}): Promise<Action> {
    checkWaitTimeout(options.timeout);
    const started = Date.now();
    // Not held, so that the id is known before any wait; an allowed action has run by then.
    const submitted = await this.#submit(action, undefined, options.signal);
    const timeout =
      options.timeout === undefined ? undefined : options.timeout - (Date.now() - started);
    return this.#follow(
      submitted,
      { ...options, ...(timeout === undefined ? {} : { timeout }) },
      true,
    );
  }

  /**
   * This agent's actions, newest first: every status, or those named. A page holds up to
   * `limit` (50 by default, at most 200); while more may follow, `next` is where the next page
   * starts (`before: page.next`).
   */
  async list(options: ListOptions = {}): Promise<ActionPage> {
    const query = new URLSearchParams();
    if (options.status !== undefined) {
      const statuses = typeof options.status === "string" ? [options.status] : options.status;
      if (statuses.length === 0) throw new TypeError("status must name at least one status");
      query.set("status", statuses.join(","));
    }
    if (options.connection !== undefined) query.set("connection", options.connection);
    if (options.before !== undefined) query.set("before", options.before);
    if (options.limit !== undefined) {
      query.set(
        "limit",
        String(
          checked(
            "limit",
            options.limit,
            (n) => Number.isInteger(n) && n >= 1 && n <= 200,
            "a whole number from 1 to 200",
          ),
        ),
      );
    }
    const path = `/v1/actions${query.size > 0 ? `?${query}` : ""}`;
    const answer = await callGateway(this.#gateway, {
      method: "GET",
      path,
      signal: options.signal,
    });
    const error = errorOf(answer);
    if (error) throw error;
    const { actions, next } = answer.body;
    if (!Array.isArray(actions) || !actions.every(isAction)) {
      throw new AirlockError(
        "unexpected_response",
        `${this.#gateway.baseUrl} answered GET /v1/actions with something that is not a list of actions; check that the url is the gateway's, and that it is recent enough to list them`,
        { status: answer.status },
      );
    }
    return typeof next === "string" ? { actions, next } : { actions };
  }

  /** Cancels a pending action of this agent's. */
  async cancel(id: string, options: { signal?: AbortSignal } = {}): Promise<Action> {
    const path = `/v1/actions/${encodeURIComponent(id)}/cancel`;
    try {
      return await this.#action({ method: "POST", path, signal: options.signal });
    } catch (error) {
      // A retry after a lost answer finds the request cancelled by the first try.
      if (!(error instanceof AirlockError) || error.code !== "not_pending") throw error;
      const now = await this.get(id, { signal: options.signal });
      if (now.status === "cancelled") return now;
      throw error;
    }
  }

  async #submit(action: ActionInput, wait?: number, signal?: AbortSignal): Promise<Action> {
    const body = { ...action, idempotencyKey: action.idempotencyKey ?? crypto.randomUUID() };
    try {
      return await this.#action({
        method: "POST",
        path: `/v1/actions${waitQuery(wait)}`,
        body,
        holdMs: heldMs(wait),
        signal,
      });
    } catch (error) {
      if (!(error instanceof AirlockError)) throw error;
      // The key goes with the error: a submission that may have arrived is found again by it.
      throw new AirlockError(error.code, error.message, {
        ...(error.field === undefined ? {} : { field: error.field }),
        ...(error.status === undefined ? {} : { status: error.status }),
        ...(error.requestId === undefined ? {} : { requestId: error.requestId }),
        executed: error.executed,
        idempotencyKey: body.idempotencyKey,
        ...(error.cause === undefined ? {} : { cause: error.cause }),
      });
    }
  }

  async #follow(first: Action, options: WaitOptions, announce = false): Promise<Action> {
    const deadline =
      options.timeout === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeout;
    let action = first;
    let early = false;
    if (announce) options.onUpdate?.(action);
    while (!isFinal(action.status)) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      // Asked again at once, a gateway that holds no calls would answer at once again.
      if (this.#longPoll === 0 || early) await pause(Math.min(1_000, left), options.signal);
      const wait = Math.max(0, Math.min(this.#longPoll, deadline - Date.now()));
      const asked = Date.now();
      // A gateway that numbers versions answers at each change, so votes are heard as cast.
      const version = action.version;
      const next = await this.get(action.id, { wait, version, signal: options.signal });
      const changed =
        next.version !== action.version ||
        next.updatedAt !== action.updatedAt ||
        next.status !== action.status;
      if (changed) options.onUpdate?.(next);
      // Back before its time with nothing new: a closing gateway lets go of the calls it holds.
      early = !changed && Date.now() - asked < wait;
      action = next;
    }
    return action;
  }

  async #action(call: GatewayCall): Promise<Action> {
    const answer = await callGateway(this.#gateway, call);
    const error = errorOf(answer);
    // A denial is how the action ended, not a failure of the call.
    if (error?.code === "denied" && isAction(answer.body.action)) return answer.body.action;
    if (error) throw error.field === "wait" ? waitRefused(error) : error;
    if (!isAction(answer.body)) {
      throw new AirlockError(
        "unexpected_response",
        `${this.#gateway.baseUrl} answered ${call.method} ${call.path.split("?")[0]} with something that is not an action; check that the url is the gateway's`,
        { status: answer.status },
      );
    }
    return answer.body;
  }
}

/** The most the gateway's `server.maxWaitSeconds` can be, in ms. */
const MAX_LONG_POLL = 3_600_000;
/** Each retry waits up to 8 s: ten of them are already more than a minute. */
const MAX_RETRIES = 10;

function checked(
  name: string,
  value: unknown,
  valid: (n: number) => boolean,
  rule: string,
): number {
  if (typeof value !== "number" || !valid(value)) throw new TypeError(`${name} must be ${rule}`);
  return value;
}

function checkWaitTimeout(timeout: number | undefined): void {
  if (timeout === undefined) return;
  checked("timeout", timeout, (n) => n >= 0, "0 or more milliseconds, or Infinity for no limit");
}

/** Whole seconds, as the gateway takes them; a part of a second waits the whole second. */
function waitQuery(ms: number | undefined): string {
  if (ms === undefined) return "";
  checked(
    "wait",
    ms,
    (n) => n >= 0 && Number.isFinite(n),
    "a finite number of milliseconds, 0 or more",
  );
  if (ms === 0) return "";
  return `?wait=${Math.ceil(ms / 1000)}`;
}

/**
 * How long the gateway holds a call asked to wait `ms`: the whole seconds `waitQuery` asks for,
 * so that the call's deadline is not reached before the gateway answers.
 */
function heldMs(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.ceil(ms / 1000) * 1000;
}

function waitRefused(error: AirlockError): AirlockError {
  return new AirlockError(
    error.code,
    `${error.message}: the gateway holds calls for at most its server.maxWaitSeconds; set the client's longPoll (or wait) to no more than that`,
    { field: "wait", ...(error.status === undefined ? {} : { status: error.status }) },
  );
}

function isAction(value: unknown): value is Action {
  return (
    isObject(value) &&
    typeof value.id === "string" &&
    typeof value.status === "string" &&
    Array.isArray(value.reviews)
  );
}
