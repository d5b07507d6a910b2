/**
 * A loopback server that speaks Slack's Web API wire protocol, and signs interaction payloads
 * the way Slack does, so the official `@slack/web-api` client and Airlock's receiver meet for
 * real in tests.
 *
 * What `@slack/web-api` 8 throws, with `retryConfig: { retries: 0 }` (checked by
 * slack-fake.test.ts). Each is an `Error` with a stable string `code`, which the gateway
 * branches on rather than on the class:
 * - 429 with a numeric `Retry-After`, and `rejectRateLimitedCalls: true`: `WebAPIRateLimitedError`
 *   `{ code: "slack_webapi_rate_limited_error", retryAfter: <seconds, a number> }`.
 *   Without `rejectRateLimitedCalls` the client pauses its whole queue for `Retry-After`, then
 *   retries within the same call; out of retries it throws a `slack_webapi_request_error`
 *   whose `original.message` is "A rate limit was exceeded (url: …, retry-after: N)".
 * - A network failure (reset socket, refused connection, timeout): `WebAPIRequestError`
 *   `{ code: "slack_webapi_request_error", original }`, where `original` is fetch's TypeError
 *   "fetch failed" with a `cause` such as UND_ERR_SOCKET "other side closed".
 * - Any status but 200 and 429 (a 503 here): `WebAPIHTTPError` `{ code: "slack_webapi_http_error",
 *   statusCode: 503, statusMessage, headers, body }`, `body` parsed as JSON when it parses.
 * - 200 with `ok: false`: `WebAPIPlatformError` `{ code: "slack_webapi_platform_error",
 *   data: <the whole body, e.g. { ok: false, error: "invalid_auth", response_metadata: {} }> }`.
 * Request and HTTP errors also carry p-retry's `attemptNumber` and `retriesLeft`. With retries
 * configured, the client retries request, HTTP and (unrejected) rate-limit failures and throws
 * the last; a rejected rate limit and an `ok: false` are never retried.
 */
import { createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readBody, sendJson } from "./json-http.js";

export interface SlackCall {
  method: string;
  args: Record<string, unknown>;
  at: number;
}

export interface SlackUser {
  id: string;
  email?: string;
  name: string;
  deleted?: boolean;
  /** The member's workspace: the fake's own unless set (a Slack Connect member's is not). */
  teamId?: string;
  /**
   * Slack's `is_email_confirmed`; true unless set. Null leaves the field out of the answer,
   * as some of Slack's answers do.
   */
  emailConfirmed?: boolean | null;
  /** The member's Enterprise Grid organisation, if any (`enterprise_user.enterprise_id`). */
  enterpriseId?: string;
  /** A multi-channel guest (`is_restricted`), or a single-channel one (`is_ultra_restricted`). */
  guest?: "multi" | "single";
  /** A bot user (`is_bot`), as an app's bot or a custom bot is. */
  bot?: boolean;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  text?: string;
  blocks?: unknown[];
  thread_ts?: string;
  updates: number;
}

export interface SlackEphemeral {
  channel: string;
  user: string;
  text?: string;
  blocks?: unknown[];
}

/** A modal as views.open answered it: what the app sent, plus the fields Slack adds. */
export interface SlackView {
  id: string;
  type: string;
  callback_id: string;
  private_metadata: string;
  [field: string]: unknown;
}

export interface InteractOptions {
  /** Unix seconds to sign and send instead of now (for stale requests). */
  timestamp?: number;
  /** Signs with this instead of the signing secret (for forged requests). */
  secret?: string;
  /** Sends and signs this raw body instead of `payload=<json>`. */
  body?: string | Buffer;
  /** Signs this instead of the body sent (a signature over another encoding of it). */
  signOver?: string | Buffer;
}

export interface FakeSlackOptions {
  botToken?: string;
  signingSecret?: string;
}

export interface FakeSlack {
  /** Pass as WebClient's `slackApiUrl`. */
  apiUrl: string;
  botToken: string;
  signingSecret: string;
  /** Every call that passed authentication to a known method, whatever it answered. */
  calls: SlackCall[];
  callsTo(method: string): SlackCall[];
  users: Map<string, SlackUser>;
  /** Adds a workspace member and returns their user id. */
  addUser(email: string | undefined, name?: string): string;
  /** The channel id that `#name`, a channel id or a user id (a DM) resolves to. */
  channelId(channel: string): string;
  /** Keyed by `${channel}:${ts}`; a thread reply is its own message with `thread_ts`. */
  messages: Map<string, SlackMessage>;
  ephemerals: SlackEphemeral[];
  views: { trigger_id: string; view: SlackView }[];
  /** The methods of the calls that were answered 429, in order. */
  limited: string[];
  /** Overrides fields of `auth.test`'s answer (an org-wide Enterprise Grid install, say). */
  setAuthTest(fields: Record<string, unknown>): void;
  /** The next n calls (to any method, or only `method`) answer 429 with Retry-After: seconds. */
  rateLimit(n: number, retryAfterSeconds?: number, method?: string): void;
  /** While down, every request has its socket destroyed (a network failure), or gets a 503. */
  setDown(down: boolean, mode?: "reset" | "503"): void;
  /** Holds every answer to `method` back by `ms` (0: answers at once again). */
  delay(method: string, ms: number): void;
  /**
   * Signs and POSTs an interaction payload to `url` as Slack does: a form body
   * `payload=<json>`, `X-Slack-Request-Timestamp`, and `X-Slack-Signature` v0, an
   * HMAC-SHA256 over `v0:${timestamp}:${rawBody}` with the signing secret.
   */
  interact(
    url: string,
    payload: object,
    options?: InteractOptions,
  ): Promise<{ status: number; text: string }>;
  /** A block_actions payload for a click on a button of a message. */
  click(args: {
    user: string;
    channel: string;
    ts: string;
    actionId: string;
    value: string;
    triggerId?: string;
    responseUrl?: string;
  }): object;
  /** A view_submission payload for a modal opened with views.open. */
  submitView(args: {
    user: string;
    callbackId: string;
    privateMetadata: string;
    values: Record<string, Record<string, { type: "plain_text_input"; value: string }>>;
  }): object;
  close(): Promise<void>;
}

type Args = Record<string, unknown>;
type Answer = Record<string, unknown>;

const TEAM_ID = "T0AIRLOCK1";
const TEAM_DOMAIN = "airlock-test";
const APP_ID = "A0AIRLOCK1";
const BOT_ID = "B0AIRLOCK1";
const BOT_USER_ID = "U0AIRLOCKB";
/** Form fields the client JSON-encodes because they hold objects or arrays. */
const JSON_FIELDS = new Set(["blocks", "attachments", "view", "metadata"]);

const fail = (error: string): Answer => ({ ok: false, error });

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A string argument; Slack takes numbers as strings too. */
function str(args: Args, key: string): string | undefined {
  const value = args[key];
  if (typeof value === "string" && value !== "") return value;
  if (typeof value === "number") return String(value);
  return undefined;
}

function decodeArgs(raw: string, contentType: string, query: URLSearchParams): Args | undefined {
  const args: Args = {};
  const put = (key: string, value: unknown) => {
    if (JSON_FIELDS.has(key) && typeof value === "string") {
      try {
        args[key] = JSON.parse(value);
        return;
      } catch {
        // Kept as sent, so the method answers with the error Slack would give.
      }
    }
    args[key] = value;
  };
  for (const [key, value] of query) put(key, value);
  if (raw === "") return args;
  if (contentType.startsWith("application/json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return undefined;
    }
    if (!isRecord(parsed)) return undefined;
    for (const [key, value] of Object.entries(parsed)) put(key, value);
    return args;
  }
  if (contentType.startsWith("application/x-www-form-urlencoded")) {
    for (const [key, value] of new URLSearchParams(raw)) put(key, value);
    return args;
  }
  return undefined;
}

/** The message content of a post or update, or the error Slack gives for it. */
function contentOf(args: Args): { text?: string; blocks?: unknown[] } | { error: string } {
  const text = str(args, "text");
  const blocks = args.blocks;
  if (blocks !== undefined && !Array.isArray(blocks)) return { error: "invalid_blocks" };
  if (text === undefined && (blocks === undefined || blocks.length === 0)) {
    return { error: "no_text" };
  }
  return { text, blocks };
}

/** The button with `actionId` in a message's blocks, and the block holding it. */
function findElement(
  blocks: unknown[] | undefined,
  actionId: string,
): { blockId: unknown; element: Record<string, unknown> } | undefined {
  for (const block of blocks ?? []) {
    if (!isRecord(block)) continue;
    const elements = Array.isArray(block.elements) ? [...block.elements] : [];
    if (block.accessory !== undefined) elements.push(block.accessory);
    for (const element of elements) {
      if (isRecord(element) && element.action_id === actionId) {
        return { blockId: block.block_id, element };
      }
    }
  }
  return undefined;
}

export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const botToken = options.botToken ?? `xoxb-test-${randomBytes(12).toString("hex")}`;
  const signingSecret = options.signingSecret ?? randomBytes(16).toString("hex");
  // Slack's deprecated verification token still rides in every payload; nothing should use it.
  const verificationToken = randomBytes(12).toString("base64url");

  const calls: SlackCall[] = [];
  const limited: string[] = [];
  const users = new Map<string, SlackUser>();
  let authTest: Record<string, unknown> = {};
  const messages = new Map<string, SlackMessage>();
  const ephemerals: SlackEphemeral[] = [];
  const views: { trigger_id: string; view: SlackView }[] = [];
  const channelsByName = new Map<string, string>();
  const namesByChannel = new Map<string, string>();
  const dms = new Map<string, string>();
  const dmIds = new Set<string>();
  // Slack only opens a modal for a trigger it issued (with a click), and only once.
  const triggers = new Map<string, "issued" | "used">();
  const limits: { remaining: number; retryAfter: number; method: string | undefined }[] = [];
  let down: false | "reset" | "503" = false;
  let sequence = 0;
  let lastMicros = 0;

  const newId = (prefix: string) => {
    sequence += 1;
    return `${prefix}0${sequence.toString(36).toUpperCase().padStart(8, "0")}`;
  };

  /** Unique and increasing, in Slack's `seconds.micros` form, as close to now as it can be. */
  const nextTs = () => {
    lastMicros = Math.max(Date.now() * 1000, lastMicros + 100);
    const seconds = Math.floor(lastMicros / 1_000_000);
    return `${seconds}.${String(lastMicros % 1_000_000).padStart(6, "0")}`;
  };

  const newTrigger = () => {
    sequence += 1;
    const trigger = `${Date.now()}${sequence}.${1000 + sequence}.${randomBytes(16).toString("hex")}`;
    triggers.set(trigger, "issued");
    return trigger;
  };

  const dmOf = (user: string) => {
    let id = dms.get(user);
    if (!id) {
      id = newId("D");
      dms.set(user, id);
      dmIds.add(id);
    }
    return id;
  };

  /** Where a `channel` argument points, or undefined where Slack says channel_not_found. */
  const resolveChannel = (channel: string | undefined): string | undefined => {
    if (channel === undefined) return undefined;
    if (/^[CG][A-Z0-9]{2,}$/.test(channel)) return channel;
    if (/^D[A-Z0-9]{2,}$/.test(channel)) return dmIds.has(channel) ? channel : undefined;
    if (/^[UW][A-Z0-9]{2,}$/.test(channel)) return users.has(channel) ? dmOf(channel) : undefined;
    const name = channel.replace(/^#/, "");
    let id = channelsByName.get(name);
    if (!id) {
      id = newId("C");
      channelsByName.set(name, id);
      namesByChannel.set(id, name);
    }
    return id;
  };

  const wireMessage = (message: SlackMessage): Answer => ({
    type: "message",
    user: BOT_USER_ID,
    bot_id: BOT_ID,
    app_id: APP_ID,
    team: TEAM_ID,
    text: message.text ?? "",
    blocks: message.blocks,
    ts: message.ts,
    thread_ts: message.thread_ts,
    parent_user_id: message.thread_ts === undefined ? undefined : BOT_USER_ID,
  });

  const wireUser = (user: SlackUser): Answer => ({
    id: user.id,
    team_id: user.teamId ?? TEAM_ID,
    ...(user.emailConfirmed === null ? {} : { is_email_confirmed: user.emailConfirmed ?? true }),
    ...(user.enterpriseId
      ? { enterprise_user: { enterprise_id: user.enterpriseId, id: user.id } }
      : {}),
    name: user.name,
    deleted: user.deleted ?? false,
    real_name: user.name,
    is_bot: user.bot ?? false,
    is_app_user: false,
    is_admin: false,
    is_restricted: user.guest !== undefined,
    is_ultra_restricted: user.guest === "single",
    profile: {
      real_name: user.name,
      display_name: user.name,
      email: user.email,
      team: user.teamId ?? TEAM_ID,
    },
  });

  /** As a payload names the clicker: a Slack Connect member with their own workspace's id. */
  const payloadUser = (id: string) => {
    const user = users.get(id);
    const name = user?.name ?? id;
    return { id, username: name, name, team_id: user?.teamId ?? TEAM_ID };
  };

  const methods: Record<string, (args: Args) => Answer> = {
    "auth.test": () => ({
      ok: true,
      url: `https://${TEAM_DOMAIN}.slack.com/`,
      team: "Airlock Test",
      user: "airlock",
      team_id: TEAM_ID,
      user_id: BOT_USER_ID,
      bot_id: BOT_ID,
      is_enterprise_install: false,
      ...authTest,
    }),

    "chat.postMessage": (args) => {
      const channel = resolveChannel(str(args, "channel"));
      if (!channel) return fail("channel_not_found");
      const content = contentOf(args);
      if ("error" in content) return fail(content.error);
      let thread = str(args, "thread_ts");
      if (thread !== undefined) {
        const parent = messages.get(`${channel}:${thread}`);
        if (!parent) return fail("thread_not_found");
        // Threads are one level deep: a reply to a reply joins the parent's thread.
        thread = parent.thread_ts ?? parent.ts;
      }
      const message: SlackMessage = { channel, ts: nextTs(), ...content, updates: 0 };
      if (thread !== undefined) message.thread_ts = thread;
      messages.set(`${channel}:${message.ts}`, message);
      return { ok: true, channel, ts: message.ts, message: wireMessage(message) };
    },

    "chat.update": (args) => {
      const channel = resolveChannel(str(args, "channel"));
      if (!channel) return fail("channel_not_found");
      const message = messages.get(`${channel}:${str(args, "ts")}`);
      if (!message) return fail("message_not_found");
      const content = contentOf(args);
      if ("error" in content) return fail(content.error);
      // As in Slack, a field left out keeps its old value.
      if (content.text !== undefined) message.text = content.text;
      if (content.blocks !== undefined) message.blocks = content.blocks;
      message.updates += 1;
      const { ts: _ts, ...wire } = wireMessage(message);
      return { ok: true, channel, ts: message.ts, text: message.text ?? "", message: wire };
    },

    "chat.postEphemeral": (args) => {
      const channel = resolveChannel(str(args, "channel"));
      if (!channel) return fail("channel_not_found");
      const user = str(args, "user");
      if (user === undefined || !users.has(user)) return fail("user_not_found");
      const content = contentOf(args);
      if ("error" in content) return fail(content.error);
      ephemerals.push({ channel, user, ...content });
      return { ok: true, message_ts: nextTs() };
    },

    "users.info": (args) => {
      const user = users.get(str(args, "user") ?? "");
      return user ? { ok: true, user: wireUser(user) } : fail("user_not_found");
    },

    "users.lookupByEmail": (args) => {
      const email = str(args, "email")?.toLowerCase();
      // Deactivated members are still found, marked `deleted`, so the caller must check.
      const user = [...users.values()].find((u) => email && u.email?.toLowerCase() === email);
      return user ? { ok: true, user: wireUser(user) } : fail("users_not_found");
    },

    "conversations.open": (args) => {
      const channel = str(args, "channel");
      if (channel !== undefined) {
        const id = resolveChannel(channel);
        return id ? { ok: true, channel: { id } } : fail("channel_not_found");
      }
      const ids = (str(args, "users") ?? "").split(",").filter((u) => u !== "");
      if (ids.length === 0) return fail("users_list_not_supplied");
      if (ids.some((u) => !users.has(u))) return fail("user_not_found");
      if (ids.length > 1) {
        // A group DM: stable for the same set of people.
        return { ok: true, channel: { id: resolveChannel(`mpdm-${[...ids].sort().join("--")}`) } };
      }
      const user = ids[0]!;
      const opened = dms.has(user);
      const id = dmOf(user);
      return opened
        ? { ok: true, no_op: true, already_open: true, channel: { id } }
        : { ok: true, channel: { id } };
    },

    "views.open": (args) => {
      const trigger = str(args, "trigger_id");
      const view = args.view;
      if (trigger === undefined || !isRecord(view) || typeof view.type !== "string") {
        return fail("invalid_arguments");
      }
      const state = triggers.get(trigger);
      if (state === undefined) return fail("invalid_trigger_id");
      if (state === "used") return fail("exchanged_trigger_id");
      triggers.set(trigger, "used");
      const id = newId("V");
      const opened: SlackView = {
        ...view,
        id,
        team_id: TEAM_ID,
        type: view.type,
        callback_id: typeof view.callback_id === "string" ? view.callback_id : "",
        private_metadata: typeof view.private_metadata === "string" ? view.private_metadata : "",
        state: { values: {} },
        hash: `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString("hex")}`,
        root_view_id: id,
        previous_view_id: null,
        app_id: APP_ID,
        bot_id: BOT_ID,
        external_id: typeof view.external_id === "string" ? view.external_id : "",
      };
      views.push({ trigger_id: trigger, view: opened });
      return { ok: true, view: opened };
    },
  };

  const delays = new Map<string, number>();

  const takeRateLimit = (method: string): number | undefined => {
    const limit = limits.find((l) => l.remaining > 0 && (l.method ?? method) === method);
    if (!limit) return undefined;
    limit.remaining -= 1;
    return limit.retryAfter;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    if (down === "reset") {
      request.socket.destroy();
      return;
    }
    const raw = await readBody(request);
    if (down === "503") {
      sendJson(response, 503, { ok: false, error: "service_unavailable" });
      return;
    }
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    if (!url.pathname.startsWith("/api/")) {
      // Airlock answers clicks through the Web API; a response_url is never meant to be
      // used, so a use fails loudly here instead of reaching for hooks.slack.com.
      sendJson(response, 404, { ok: false, error: "not_served_by_fake_slack" });
      return;
    }
    const method = url.pathname.slice("/api/".length);
    const held = delays.get(method);
    if (held) await new Promise((resolve) => setTimeout(resolve, held));
    const retryAfter = takeRateLimit(method);
    if (retryAfter !== undefined) {
      limited.push(method);
      sendJson(response, 429, fail("ratelimited"), { "retry-after": String(retryAfter) });
      return;
    }
    const args = decodeArgs(raw, request.headers["content-type"] ?? "", url.searchParams);
    if (!args) {
      sendJson(response, 200, fail("invalid_form_data"));
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1];
    const token = bearer ?? str(args, "token");
    delete args.token;
    if (token === undefined) {
      sendJson(response, 200, fail("not_authed"));
      return;
    }
    if (token !== botToken) {
      sendJson(response, 200, fail("invalid_auth"));
      return;
    }
    const answer = methods[method];
    if (!answer) {
      sendJson(response, 200, { ...fail("unknown_method"), req_method: method });
      return;
    }
    calls.push({ method, args, at: Date.now() });
    sendJson(response, 200, answer(args));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch(() => {
      // Only a broken request stream lands here; the client then sees a network failure.
      request.socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    apiUrl: `${origin}/api/`,
    botToken,
    signingSecret,
    calls,
    limited,
    callsTo: (method) => calls.filter((c) => c.method === method),
    users,
    addUser(email, name) {
      const id = newId("U");
      const user: SlackUser = { id, name: name ?? email?.split("@")[0] ?? id.toLowerCase() };
      if (email !== undefined) user.email = email;
      users.set(id, user);
      return id;
    },
    channelId(channel) {
      const id = resolveChannel(channel);
      if (!id) throw new Error(`fake Slack has no channel or user ${channel}`);
      return id;
    },
    messages,
    ephemerals,
    views,
    setAuthTest(fields) {
      authTest = fields;
    },
    rateLimit(n, retryAfterSeconds = 1, method) {
      limits.push({ remaining: n, retryAfter: retryAfterSeconds, method });
    },
    setDown(isDown, mode = "reset") {
      down = isDown ? mode : false;
    },
    delay(method, ms) {
      if (ms > 0) delays.set(method, ms);
      else delays.delete(method);
    },
    async interact(url, payload, options = {}) {
      const body =
        options.body ?? new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
      const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
      const signature = createHmac("sha256", options.secret ?? signingSecret)
        .update(`v0:${timestamp}:`)
        .update(options.signOver ?? body)
        .digest("hex");
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
          "x-slack-request-timestamp": timestamp,
          "x-slack-signature": `v0=${signature}`,
        },
        body,
      });
      return { status: response.status, text: await response.text() };
    },
    click(args) {
      const triggerId = args.triggerId ?? newTrigger();
      triggers.set(triggerId, "issued");
      const message = messages.get(`${args.channel}:${args.ts}`);
      const found = findElement(message?.blocks, args.actionId);
      const micros = Date.now() * 1000;
      return {
        type: "block_actions",
        user: payloadUser(args.user),
        api_app_id: APP_ID,
        token: verificationToken,
        container: {
          type: "message",
          message_ts: args.ts,
          channel_id: args.channel,
          is_ephemeral: false,
          ...(message?.thread_ts === undefined ? {} : { thread_ts: message.thread_ts }),
        },
        trigger_id: triggerId,
        team: { id: TEAM_ID, domain: TEAM_DOMAIN },
        enterprise: null,
        is_enterprise_install: false,
        channel: { id: args.channel, name: namesByChannel.get(args.channel) ?? "directmessage" },
        // Slack sends the message as it stands when clicked; a click on a message this fake
        // never saw (a forgery test) still carries its coordinates.
        message: message ? wireMessage(message) : { type: "message", ts: args.ts },
        state: { values: {} },
        response_url:
          args.responseUrl ??
          `${origin}/actions/${TEAM_ID}/${sequence}/${randomBytes(12).toString("hex")}`,
        actions: [
          {
            type: found?.element.type ?? "button",
            action_id: args.actionId,
            block_id: found?.blockId ?? "actions",
            text: found?.element.text ?? { type: "plain_text", text: args.actionId, emoji: true },
            value: args.value,
            ...(found?.element.style === undefined ? {} : { style: found.element.style }),
            action_ts: `${Math.floor(micros / 1_000_000)}.${String(micros % 1_000_000).padStart(6, "0")}`,
          },
        ],
      };
    },
    submitView(args) {
      const opened = views.findLast(
        (v) =>
          v.view.callback_id === args.callbackId &&
          v.view.private_metadata === args.privateMetadata,
      )?.view;
      const id = opened?.id ?? newId("V");
      return {
        type: "view_submission",
        team: { id: TEAM_ID, domain: TEAM_DOMAIN },
        user: payloadUser(args.user),
        api_app_id: APP_ID,
        token: verificationToken,
        trigger_id: newTrigger(),
        view: {
          type: "modal",
          blocks: [],
          ...opened,
          id,
          team_id: TEAM_ID,
          callback_id: args.callbackId,
          private_metadata: args.privateMetadata,
          state: { values: args.values },
          root_view_id: opened?.root_view_id ?? id,
          app_id: APP_ID,
          bot_id: BOT_ID,
        },
        response_urls: [],
        is_enterprise_install: false,
        enterprise: null,
      };
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // The client keeps connections alive; without this, close would wait for them.
        server.closeAllConnections();
      });
    },
  };
}
