/**
 * A loopback Microsoft Teams for the official Bot Framework SDK (botframework-connector and
 * MSAL): the Entra ID endpoints MSAL gets the bot's tokens from, the Bot Framework's OpenID
 * metadata and signing keys that Teams' tokens are checked against, and the Bot Connector
 * REST subset an approval bot calls. It also builds and signs what Teams sends when someone
 * clicks a card's button, so the SDK and Airlock's receiver meet for real in tests.
 *
 * What the SDK does that shapes this server (checked by teams-fake.test.ts):
 * - MSAL refuses an http:// authority (authority_uri_insecure), so the identity endpoints are
 *   https, with a certificate made at start. `trust()` adds it to https.globalAgent: MSAL's
 *   HttpClient calls https.request without an agent, and node-fetch 2 (the SDK's OpenID
 *   metadata client) passes `agent: null`, which also means the global agent.
 * - The Bot Connector client (core-rest-pipeline) makes its own keep-alive https.Agent and
 *   never reads the global one's CA, so the connector is plain http: core-client allows that
 *   for an http:// baseUri. Its pipeline retries 408 and 5xx (but 501 and 505) with
 *   exponential backoff from 1s, and 429 or 503 after Retry-After, up to 3 times.
 * - The SDK caches signing keys per metadata URL for the whole process, for 24 hours, and
 *   looks again for an unknown kid at most once an hour: the keys are fixed at start.
 * - It caches the bot's Bot Connector token per appId and scope for the whole process,
 *   whatever the secret: each server has its own appId so that tests do not share one.
 * - A key with no endorsements at all passes any channel; real keys list theirs, as here.
 */
import { execFileSync } from "node:child_process";
import {
  createHash,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
  X509Certificate,
} from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import type { Activity, TeamsChannelAccount } from "botframework-schema";
import { readBody, sendJson } from "./json-http.js";

/** The Bot Framework's issuer, and the audience of the bot's own tokens. */
const BOT_FRAMEWORK = "https://api.botframework.com";
const BOT_FRAMEWORK_SCOPE = `${BOT_FRAMEWORK}/.default`;
/** The conversation `config()` and `invokeActivity()` use unless told: a Teams channel. */
const CHANNEL = "19:approvals@thread.tacv2";
/** The team its channels belong to (Teams gives a channel activity's team in channelData). */
const TEAM = "19:team-airlock@thread.tacv2";

export interface TokenRequest {
  tenant: string;
  grantType: string | undefined;
  clientId: string | undefined;
  clientSecret: string | undefined;
  scope: string | undefined;
  /** Every form field MSAL sent (its SKU, version, and so on). */
  params: Record<string, string>;
  status: number;
  /** The token issued, when one was. */
  accessToken?: string;
}

export interface ConnectorCall {
  method: string;
  /** The path, percent-decoded. */
  path: string;
  conversationId?: string;
  activityId?: string;
  memberId?: string;
  /** The JSON body, parsed; undefined when there was none. */
  body: unknown;
  /** The bearer token sent, if any. */
  token: string | undefined;
  /** Whether that token is one this server issued. */
  authorized: boolean;
  status: number;
}

/** An activity the bot posted, as the server keeps it. */
export interface StoredActivity {
  id: string;
  /** The conversation id it was sent to (a channel's, or one of its threads'). */
  conversationId: string;
  /** The activity it replies to, for a reply. */
  replyToId?: string;
  /** The activity as last sent, with its id. */
  activity: Record<string, unknown>;
  /** 1 when posted, then one more per update. */
  version: number;
}

export interface TeamsMemberInput {
  name: string;
  email?: string;
  /** The member's UPN: their e-mail unless set. */
  userPrincipalName?: string;
  id?: string;
  aadObjectId?: string;
  /** The member's home tenant: the server's unless set (a shared channel's outsider's is not). */
  tenantId?: string;
  /** "guest" for a guest account; "user" unless set. */
  userRole?: "user" | "guest";
  givenName?: string;
  surname?: string;
}

/** Which key signs a channel token. */
export type SigningKey = "teams" | "other" | "stranger";

/** Claims to set (or, with undefined, to leave out), and how to sign. */
export interface ChannelTokenOverrides {
  /**
   * "teams" (default): the published key endorsed for msteams; "other": the `otherKey` one;
   * "stranger": a key never published, under the kid of the "teams" one unless `kid` says.
   */
  key?: SigningKey;
  /** The header's kid (and x5t) instead of the signing key's. */
  kid?: string;
  [claim: string]: unknown;
}

/** What to put in an Action.Execute invoke; any other field overrides the activity's own. */
export interface InvokeOptions {
  verb: string;
  data?: Record<string, unknown>;
  /** The card's activity id (what the button was clicked on). */
  replyToId: string;
  /** Who clicked: a member, or the parts of one to use. A new unknown user unless set. */
  from?: Partial<TeamsChannelAccount>;
  /** The conversation the card was posted to: `config()`'s default unless set. */
  conversation?: string;
  [field: string]: unknown;
}

export interface TeamsServerOptions {
  /** Also publishes a second signing key, endorsed for these channels only (not msteams). */
  otherKey?: { endorsements: string[] };
}

export interface TeamsServer {
  appId: string;
  appPassword: string;
  tenantId: string;
  /** The identity server's certificate (PEM), which `trust()` trusts. */
  ca: string;
  /** Makes this process's https.globalAgent trust `ca`; returns the undo. */
  trust(): () => void;
  serviceUrl: string;
  loginUrl: string;
  openIdMetadataUrl: string;
  /** The input for `teamsSchema`. */
  config(conversation?: string): {
    appId: string;
    appPassword: string;
    tenantId: string;
    conversation: string;
    serviceUrl: string;
    loginUrl: string;
    openIdMetadataUrl: string;
  };
  tokenRequests: TokenRequest[];
  /** Every access token the token endpoint issued. */
  issuedTokens: Set<string>;
  /** Every request to the identity server, as "METHOD /path". */
  identityRequests: string[];
  calls: ConnectorCall[];
  /** The latest version of each activity the bot posted, by id. */
  activities: Map<string, StoredActivity>;
  /** Every version of every activity, in the order they came. */
  history: StoredActivity[];
  /**
   * Members by id; `GET …/members/{id}` also finds them by aadObjectId or UPN, and
   * `GET …/pagedmembers` lists them (`pageSize`, `continuationToken`).
   */
  members: Map<string, TeamsChannelAccount>;
  /** One-to-one conversations the bot started (`POST /v3/conversations`), with whom. */
  created: { id: string; memberId: string; tenantId: unknown }[];
  addMember(member: TeamsMemberInput): TeamsChannelAccount;
  /**
   * The next n Bot Connector calls answer `status` (with `headers`), whatever they were, or
   * only those that `when` picks.
   */
  failNext(
    n: number,
    status: number,
    headers?: Record<string, string>,
    when?: (call: ConnectorCall) => boolean,
  ): void;
  /**
   * The next n Bot Connector calls that `when` picks are carried out, then answered `status`
   * instead of their own answer: what the bot sees when a gateway in front of the Bot
   * Connector gives up waiting for a call that went through (Teams' 502 and 504).
   */
  failAfterNext(n: number, status: number, when?: (call: ConnectorCall) => boolean): void;
  /**
   * How the token endpoint misbehaves: "silent" never answers, "drip" sends a good answer a
   * byte every 500 ms, "html" answers 502 with a proxy's HTML page. Undefined: it works.
   */
  tokenFault: "silent" | "drip" | "html" | undefined;
  /**
   * Holds the next Bot Connector call that `when` picks until `release` is called; `arrived`
   * resolves once it has come.
   */
  holdNext(when: (call: ConnectorCall) => boolean): { arrived: Promise<void>; release(): void };
  /** True: the Bot Framework's OpenID metadata and keys are never answered. */
  keysSilent: boolean;
  /** How long each answer about the Bot Framework's metadata and keys is held back. */
  keysDelayMs: number;
  /** A channel-to-bot token as the Bot Framework signs it, with `overrides` applied. */
  channelToken(overrides?: ChannelTokenOverrides): string;
  /** The invoke Teams sends for a click on an Adaptive Card Action.Execute button. */
  invokeActivity(options: InvokeOptions): Partial<Activity>;
  /** POSTs `activity` to the gateway's Teams endpoint, as the Bot Framework does. */
  post(
    gatewayBaseUrl: string,
    activity: Partial<Activity>,
    token?: string,
  ): Promise<{ status: number; body: unknown }>;
  close(): Promise<void>;
}

interface SigningPair {
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
  kid: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Copies `fields` over `base`; a field set to undefined is removed. */
function overlay(base: Record<string, unknown>, fields: Record<string, unknown>) {
  const out = { ...base };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) delete out[key];
    else out[key] = value;
  }
  return out;
}

/** A self-signed certificate for `privateKey`, by the openssl CLI (node cannot make one). */
function selfSigned(dir: string, name: string, privateKey: KeyObject, extra: string[] = []) {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  writeFileSync(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-new",
      "-key",
      keyFile,
      "-sha256",
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      ...extra,
      "-out",
      certFile,
    ],
    { stdio: "pipe" },
  );
  return readFileSync(certFile, "utf8");
}

/**
 * An RS256 key published as the Bot Framework publishes its own: kid and x5t are the
 * certificate's SHA-1 thumbprint, with the certificate itself in x5c.
 */
function signingPair(dir: string, name: string, endorsements: string[]): SigningPair {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const der = new X509Certificate(selfSigned(dir, name, privateKey)).raw;
  const kid = createHash("sha1").update(der).digest("base64url");
  const { n, e } = publicKey.export({ format: "jwk" });
  return {
    privateKey,
    kid,
    jwk: {
      kty: "RSA",
      use: "sig",
      kid,
      x5t: kid,
      n,
      e,
      x5c: [der.toString("base64")],
      endorsements,
    },
  };
}

function listen(server: Server | https.Server): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function stop(server: Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // The SDK's clients keep connections alive; a closed fake must not wait for them.
    server.closeAllConnections();
  });
}

/** A thread's conversation id is its channel's with `;messageid=<root>`: both name the channel. */
const channelOf = (conversationId: string) => conversationId.split(";")[0] ?? conversationId;

export async function startTeamsServer(options: TeamsServerOptions = {}): Promise<TeamsServer> {
  const appId = randomUUID();
  const appPassword = randomBytes(30).toString("base64url");
  const tenantId = randomUUID();

  const dir = mkdtempSync(join(tmpdir(), "airlock-teams-"));
  let tlsKey: KeyObject;
  let ca: string;
  let teamsKey: SigningPair;
  let otherKey: SigningPair | undefined;
  try {
    tlsKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    ca = selfSigned(dir, "127.0.0.1", tlsKey, ["-addext", "subjectAltName=IP:127.0.0.1"]);
    teamsKey = signingPair(dir, "teams-signing", ["msteams"]);
    otherKey = options.otherKey
      ? signingPair(dir, "other-signing", options.otherKey.endorsements)
      : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const strangerKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;

  const tokenRequests: TokenRequest[] = [];
  const issuedTokens = new Set<string>();
  const identityRequests: string[] = [];
  const calls: ConnectorCall[] = [];
  const activities = new Map<string, StoredActivity>();
  const history: StoredActivity[] = [];
  /** Conversations activities were sent to the bot from: Teams sends none from elsewhere. */
  const joined = new Set<string>();
  const members = new Map<string, TeamsChannelAccount>();
  const created: { id: string; memberId: string; tenantId: unknown }[] = [];
  const holds: {
    when: (call: ConnectorCall) => boolean;
    arrive: () => void;
    released: Promise<void>;
  }[] = [];
  const failures: {
    remaining: number;
    status: number;
    headers: Record<string, string>;
    when: (call: ConnectorCall) => boolean;
  }[] = [];
  const lateFailures: {
    remaining: number;
    status: number;
    when: (call: ConnectorCall) => boolean;
  }[] = [];
  let lastActivityId = 0;

  const identity = https.createServer({
    key: tlsKey.export({ type: "pkcs8", format: "pem" }),
    cert: ca,
  });
  const connector = createServer();
  const [identityPort, connectorPort] = await Promise.all([listen(identity), listen(connector)]);
  const identityBase = `https://127.0.0.1:${identityPort}`;
  const loginUrl = `${identityBase}/login`;
  const openIdMetadataUrl = `${identityBase}/botframework/v1/.well-known/openidconfiguration`;
  const serviceUrl = `http://127.0.0.1:${connectorPort}/teams/`;

  /** An Entra ID error body, with the AADSTS code in front of the description as it sends it. */
  const aadError = (error: string, code: number, description: string, correlation: string) => {
    const timestamp = new Date()
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, "Z");
    const traceId = randomUUID();
    return {
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlation} Timestamp: ${timestamp}`,
      error_codes: [code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlation,
      error_uri: `${loginUrl}/error?code=${code}`,
    };
  };

  /** The v2.0 OpenID configuration of a tenant, with the fields Entra ID publishes. */
  const aadMetadata = (tenant: string) => {
    const base = `${loginUrl}/${tenant}`;
    return {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
      ],
      jwks_uri: `${base}/discovery/v2.0/keys`,
      response_modes_supported: ["query", "fragment", "form_post"],
      subject_types_supported: ["pairwise"],
      id_token_signing_alg_values_supported: ["RS256"],
      response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      issuer: `${base}/v2.0`,
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${identityBase}/oidc/userinfo`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      claims_supported: ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid", "ver"],
      tenant_region_scope: "EU",
      cloud_instance_name: "microsoftonline.com",
      cloud_graph_host_name: "graph.windows.net",
      msgraph_host: "graph.microsoft.com",
      rbac_url: "https://pas.windows.net",
    };
  };

  const token = async (request: IncomingMessage, response: ServerResponse, tenant: string) => {
    const params = Object.fromEntries(new URLSearchParams(await readBody(request)));
    // MSAL sends its correlation id as a form field; Entra ID echoes it in errors.
    const correlation = params["client-request-id"] ?? randomUUID();
    const record: TokenRequest = {
      tenant,
      grantType: params.grant_type,
      clientId: params.client_id,
      clientSecret: params.client_secret,
      scope: params.scope,
      params,
      status: 200,
    };
    tokenRequests.push(record);
    const refuse = (status: number, error: string, code: number, description: string) => {
      record.status = status;
      sendJson(response, status, aadError(error, code, description, correlation));
    };
    if (params.grant_type !== "client_credentials") {
      return refuse(
        400,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type.",
      );
    }
    if (tenant !== tenantId) {
      return refuse(400, "invalid_request", 90002, `Tenant '${tenant}' not found.`);
    }
    if (params.client_id !== appId) {
      return refuse(
        400,
        "unauthorized_client",
        700016,
        `Application with identifier '${params.client_id}' was not found in the directory '${tenant}'.`,
      );
    }
    if (params.client_secret !== appPassword) {
      return refuse(
        401,
        "invalid_client",
        7000215,
        `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${appId}'.`,
      );
    }
    if (params.scope !== BOT_FRAMEWORK_SCOPE) {
      return refuse(
        400,
        "invalid_resource",
        500011,
        `The resource principal named ${params.scope} was not found in the tenant named ${tenant}.`,
      );
    }
    const accessToken = randomBytes(32).toString("base64url");
    issuedTokens.add(accessToken);
    record.accessToken = accessToken;
    sendJson(response, 200, {
      token_type: "Bearer",
      expires_in: 3600,
      ext_expires_in: 3600,
      access_token: accessToken,
    });
  };

  identity.on("request", async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", identityBase);
    identityRequests.push(`${request.method} ${url.pathname}`);
    const login = /^\/login\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (login) {
      const tenant = decodeURIComponent(login[1]!);
      const rest = login[2];
      if (request.method === "GET" && rest === "v2.0/.well-known/openid-configuration") {
        if (tenant !== tenantId) {
          return sendJson(
            response,
            400,
            aadError("invalid_tenant", 90002, `Tenant '${tenant}' not found.`, randomUUID()),
          );
        }
        return sendJson(response, 200, aadMetadata(tenant));
      }
      if (request.method === "POST" && rest === "oauth2/v2.0/token") {
        const fault = server.tokenFault;
        if (fault) {
          tokenRequests.push({
            tenant,
            grantType: undefined,
            clientId: undefined,
            clientSecret: undefined,
            scope: undefined,
            params: {},
            status: fault === "html" ? 502 : 0,
          });
          request.resume();
          if (fault === "html") {
            response.writeHead(502, { "content-type": "text/html" });
            response.end("<html><body>Bad Gateway</body></html>");
          } else if (fault === "drip") {
            const answer = JSON.stringify({
              token_type: "Bearer",
              expires_in: 3600,
              access_token: "dripped",
            });
            response.writeHead(200, { "content-type": "application/json" });
            let at = 0;
            const drip = setInterval(() => {
              if (at >= answer.length || response.destroyed) {
                clearInterval(drip);
                response.end();
                return;
              }
              response.write(answer[at++]);
            }, 500);
            response.once("close", () => clearInterval(drip));
          }
          return;
        }
        return token(request, response, tenant);
      }
      // Entra ID's own signing keys: the bot never checks a token of its own, so none here.
      if (request.method === "GET" && rest === "discovery/v2.0/keys") {
        return sendJson(response, 200, { keys: [] });
      }
    }
    if (url.pathname.startsWith("/botframework/v1/.well-known/")) {
      if (server.keysSilent) return;
      if (server.keysDelayMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, server.keysDelayMs));
      }
    }
    if (
      request.method === "GET" &&
      url.pathname === "/botframework/v1/.well-known/openidconfiguration"
    ) {
      // What login.botframework.com publishes: the SDK reads only jwks_uri.
      return sendJson(response, 200, {
        issuer: BOT_FRAMEWORK,
        authorization_endpoint: "https://invalid.botframework.com",
        jwks_uri: `${identityBase}/botframework/v1/.well-known/keys`,
        id_token_signing_alg_values_supported: ["RS256"],
        token_endpoint_auth_methods_supported: ["private_key_jwt"],
      });
    }
    if (request.method === "GET" && url.pathname === "/botframework/v1/.well-known/keys") {
      return sendJson(response, 200, { keys: [teamsKey.jwk, ...(otherKey ? [otherKey.jwk] : [])] });
    }
    sendJson(response, 404, { error: "not_found", error_description: `no ${url.pathname} here` });
  });

  /** Increasing, in the form of Teams' channel message ids (milliseconds since the epoch). */
  const newActivityId = () => {
    lastActivityId = Math.max(Date.now(), lastActivityId + 1);
    return String(lastActivityId);
  };

  const store = (entry: Omit<StoredActivity, "version">) => {
    const version = (activities.get(entry.id)?.version ?? 0) + 1;
    const stored = { ...entry, activity: { ...entry.activity, id: entry.id }, version };
    activities.set(entry.id, stored);
    history.push(stored);
    return stored;
  };

  /** The activity named in a path, if it is in that conversation (or one of its threads). */
  const findActivity = (conversationId: string, activityId: string) => {
    const stored = activities.get(activityId);
    return stored && channelOf(stored.conversationId) === channelOf(conversationId)
      ? stored
      : undefined;
  };

  const connectorError = (code: string, message: string) => ({ error: { code, message } });

  connector.on("request", async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", serviceUrl);
    // Conversation ids hold ':' '@' ';', which the client percent-encodes.
    const segments = url.pathname.split("/").map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        return segment;
      }
    });
    const raw = await readBody(request);
    const authorization = request.headers.authorization;
    const bearer = authorization?.startsWith("Bearer ") ? authorization.slice(7) : undefined;
    const call: ConnectorCall = {
      method: request.method ?? "GET",
      path: segments.join("/"),
      body: undefined,
      token: bearer,
      authorized: bearer !== undefined && issuedTokens.has(bearer),
      status: 0,
    };
    calls.push(call);
    /** Set when the call is to be carried out, and its answer lost on the way back. */
    let lost: number | undefined;
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      if (lost !== undefined) {
        call.status = lost;
        return sendJson(
          response,
          lost,
          connectorError("GatewayTimeout", `carried out, then failed on purpose (${lost})`),
        );
      }
      call.status = status;
      sendJson(response, status, body, headers);
    };

    if (raw !== "") {
      try {
        call.body = JSON.parse(raw);
      } catch {
        return answer(400, connectorError("BadSyntax", "The request body is not JSON."));
      }
    }
    // /teams/v3/conversations/{conversationId}/activities[/{activityId}] or …/members/{memberId}
    const [, prefix, version, conversations, conversationId, kind, id, ...more] = segments;
    const known =
      prefix === "teams" &&
      version === "v3" &&
      conversations === "conversations" &&
      conversationId !== undefined &&
      conversationId !== "" &&
      (kind === "activities" || kind === "members" || kind === "pagedmembers") &&
      more.length === 0;
    if (known) {
      call.conversationId = conversationId;
      if (kind === "activities" && id !== undefined) call.activityId = id;
      if (kind === "members") call.memberId = id;
    }

    const hold = holds.find((h) => h.when(call));
    if (hold) {
      holds.splice(holds.indexOf(hold), 1);
      hold.arrive();
      await hold.released;
    }
    const failure = failures.find((f) => f.when(call));
    if (failure) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) failures.splice(failures.indexOf(failure), 1);
      return answer(
        failure.status,
        connectorError("ServiceError", `failed on purpose (${failure.status})`),
        failure.headers,
      );
    }
    if (!call.authorized) {
      return answer(401, { message: "Authorization has been denied for this request." });
    }
    const late = lateFailures.find((f) => f.when(call));
    if (late) {
      late.remaining -= 1;
      if (late.remaining <= 0) lateFailures.splice(lateFailures.indexOf(late), 1);
      lost = late.status;
    }
    // POST /teams/v3/conversations: a one-to-one conversation with a member, for a message.
    if (
      request.method === "POST" &&
      prefix === "teams" &&
      version === "v3" &&
      conversations === "conversations" &&
      (conversationId ?? "") === ""
    ) {
      const parameters = isRecord(call.body) ? call.body : {};
      const wanted = Array.isArray(parameters.members) ? parameters.members : [];
      const memberId = isRecord(wanted[0]) ? String(wanted[0].id) : "";
      if (wanted.length !== 1 || !members.has(memberId) || parameters.isGroup !== false) {
        return answer(400, connectorError("BadArgument", "One known member, and isGroup false."));
      }
      const conversation = {
        id: `a:${randomBytes(8).toString("hex")}`,
        memberId,
        tenantId: parameters.tenantId,
      };
      created.push(conversation);
      return answer(201, { id: conversation.id });
    }
    if (!known) {
      return answer(404, connectorError("NotFound", `no ${request.method} ${call.path} here`));
    }

    const activity = isRecord(call.body) ? call.body : undefined;
    const badActivity = () =>
      answer(400, connectorError("BadArgument", "An activity with a type is required."));

    if (kind === "activities" && request.method === "POST" && id === undefined) {
      if (typeof activity?.type !== "string") return badActivity();
      const stored = store({ id: newActivityId(), conversationId, activity });
      return answer(201, { id: stored.id });
    }
    if (kind === "activities" && request.method === "POST" && id) {
      if (typeof activity?.type !== "string") return badActivity();
      // Stricter than may be needed: a reply to nothing is a bug in the bot.
      if (!findActivity(conversationId, id)) {
        return answer(404, connectorError("ActivityNotFound", `Activity ${id} not found.`));
      }
      const stored = store({ id: newActivityId(), conversationId, replyToId: id, activity });
      return answer(201, { id: stored.id });
    }
    if (kind === "activities" && request.method === "PUT" && id) {
      if (typeof activity?.type !== "string") return badActivity();
      const existing = findActivity(conversationId, id);
      if (!existing) {
        return answer(404, connectorError("ActivityNotFound", `Activity ${id} not found.`));
      }
      store({ ...existing, activity });
      return answer(200, { id });
    }
    // Members are found in the team, or in a conversation the bot is in (it has posted
    // there, even if that message was deleted since, or was sent an activity from there, as a
    // personal chat's click): nowhere else, so a lookup in the wrong conversation fails as it
    // would.
    const where = conversationId.split(";")[0]!;
    const inside =
      where === TEAM ||
      joined.has(where) ||
      history.some((a) => a.conversationId.split(";")[0] === where);
    const notInside = () =>
      answer(
        404,
        connectorError("ConversationNotFound", `The bot is not in conversation ${where}.`),
      );
    if (kind === "pagedmembers" && request.method === "GET" && id === undefined) {
      if (!inside) return notInside();
      // Teams pages 50 to 500 members at a time; its continuation token is opaque.
      const size = Number(url.searchParams.get("pageSize") ?? 200);
      if (!Number.isInteger(size) || size < 1) {
        return answer(400, connectorError("BadArgument", "pageSize must be a whole number."));
      }
      const token = url.searchParams.get("continuationToken");
      const from = token === null ? 0 : Number(/^page:(\d+)$/.exec(token)?.[1] ?? Number.NaN);
      if (!Number.isInteger(from)) {
        return answer(400, connectorError("BadArgument", "Unknown continuation token."));
      }
      const all = [...members.values()];
      const to = from + Math.min(Math.max(size, 50), 500);
      return answer(200, {
        members: all.slice(from, to),
        ...(to < all.length ? { continuationToken: `page:${to}` } : {}),
      });
    }
    if (kind === "members" && request.method === "GET" && id) {
      if (!inside) return notInside();
      // Teams finds a member by their 29: id, their Entra object id or their UPN.
      const member =
        members.get(id) ??
        [...members.values()].find(
          (m) => m.aadObjectId === id || m.userPrincipalName?.toLowerCase() === id.toLowerCase(),
        );
      if (!member) {
        return answer(
          404,
          connectorError(
            "MemberNotFoundInConversation",
            `The member ${id} was not found in the conversation.`,
          ),
        );
      }
      return answer(200, member);
    }
    answer(405, connectorError("MethodNotAllowed", `${request.method} is not supported here.`));
  });

  const sign256 = (header: object, payload: object, key: KeyObject) => {
    const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString("base64url");
    const input = `${encode(header)}.${encode(payload)}`;
    return `${input}.${sign("sha256", Buffer.from(input), key).toString("base64url")}`;
  };

  const server: TeamsServer = {
    appId,
    appPassword,
    tenantId,
    ca,
    trust() {
      const options = https.globalAgent.options;
      const before = options.ca;
      const trusted = before === undefined ? [...tls.rootCertificates] : [before].flat();
      options.ca = [...trusted, ca];
      return () => {
        if (before === undefined) delete options.ca;
        else options.ca = before;
      };
    },
    serviceUrl,
    loginUrl,
    openIdMetadataUrl,
    config: (conversation = CHANNEL) => ({
      appId,
      appPassword,
      tenantId,
      conversation,
      serviceUrl,
      loginUrl,
      openIdMetadataUrl,
    }),
    tokenRequests,
    issuedTokens,
    identityRequests,
    calls,
    activities,
    history,
    members,
    created,
    addMember(input) {
      const [givenName, ...rest] = input.name.split(" ");
      const member: TeamsChannelAccount = {
        id: input.id ?? `29:1${randomBytes(24).toString("base64url")}`,
        name: input.name,
        aadObjectId: input.aadObjectId ?? randomUUID(),
        givenName: input.givenName ?? givenName,
        surname: input.surname ?? rest.join(" "),
        tenantId: input.tenantId ?? tenantId,
        userRole: input.userRole ?? "user",
      };
      if (input.email !== undefined) member.email = input.email;
      const upn = input.userPrincipalName ?? input.email;
      if (upn !== undefined) member.userPrincipalName = upn;
      members.set(member.id, member);
      return member;
    },
    tokenFault: undefined,
    keysSilent: false,
    keysDelayMs: 0,
    holdNext(when) {
      let arrive!: () => void;
      let release!: () => void;
      const arrived = new Promise<void>((resolve) => {
        arrive = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.push({ when, arrive, released });
      return { arrived, release };
    },
    failNext(n, status, headers = {}, when = () => true) {
      if (n > 0) failures.push({ remaining: n, status, headers, when });
    },
    failAfterNext(n, status, when = () => true) {
      if (n > 0) lateFailures.push({ remaining: n, status, when });
    },
    channelToken(overrides = {}) {
      const { key = "teams", kid, ...claims } = overrides;
      const now = Math.floor(Date.now() / 1000);
      const payload = overlay(
        {
          serviceurl: serviceUrl,
          nbf: now - 5,
          exp: now + 3600,
          iss: BOT_FRAMEWORK,
          aud: appId,
          iat: now - 5,
        },
        claims,
      );
      if (key === "other" && !otherKey) throw new Error("started without options.otherKey");
      const pair = key === "other" ? otherKey! : teamsKey;
      const signer = key === "stranger" ? strangerKey : pair.privateKey;
      const headerKid = kid ?? pair.kid;
      return sign256({ alg: "RS256", typ: "JWT", kid: headerKid, x5t: headerKid }, payload, signer);
    },
    invokeActivity(invoke) {
      const { verb, data = {}, replyToId, from = {}, conversation, ...fields } = invoke;
      // A thread's id (`;messageid=<root>`) is clicked in as it is: the card is in that thread.
      const base = conversation ?? CHANNEL;
      const isChannel = /@thread\.(tacv2|skype)$/.test(channelOf(base));
      const conversationType = isChannel
        ? "channel"
        : base.endsWith("@thread.v2")
          ? "groupChat"
          : "personal";
      const now = new Date();
      const activity: Record<string, unknown> = {
        type: "invoke",
        name: "adaptiveCard/action",
        id: `f:${randomBytes(8).readBigUInt64BE()}`,
        channelId: "msteams",
        serviceUrl,
        timestamp: now.toISOString(),
        localTimestamp: now.toISOString(),
        localTimezone: "Europe/London",
        locale: "en-GB",
        from: {
          id: from.id ?? `29:1${randomBytes(24).toString("base64url")}`,
          name: from.name ?? "Someone",
          // An explicit undefined sends none, as a client may.
          aadObjectId: "aadObjectId" in from ? from.aadObjectId : randomUUID(),
        },
        recipient: { id: `28:${appId}`, name: "Airlock" },
        // A card posted to a channel starts a thread, and Teams names the thread's conversation.
        conversation: {
          isGroup: conversationType !== "personal",
          conversationType,
          tenantId,
          id: isChannel && base === channelOf(base) ? `${base};messageid=${replyToId}` : base,
        },
        entities: [
          {
            type: "clientInfo",
            locale: "en-GB",
            country: "GB",
            platform: "Web",
            timezone: "Europe/London",
          },
        ],
        channelData: {
          ...(isChannel ? { channel: { id: channelOf(base) }, team: { id: TEAM } } : {}),
          tenant: { id: tenantId },
          source: { name: "message" },
          legacy: { replyToId },
        },
        replyToId,
        value: { action: { type: "Action.Execute", verb, data }, trigger: "manual" },
      };
      return overlay(activity, fields) as Partial<Activity>;
    },
    async post(gatewayBaseUrl, activity, bearer = server.channelToken()) {
      const from = (activity.conversation as { id?: unknown } | undefined)?.id;
      if (typeof from === "string") joined.add(from.split(";")[0]!);
      const response = await fetch(
        `${gatewayBaseUrl.replace(/\/+$/, "")}/integrations/teams/messages`,
        {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
          body: JSON.stringify(activity),
        },
      );
      const text = await response.text();
      let body: unknown = text === "" ? undefined : text;
      if (text !== "") {
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON: the text as it came.
        }
      }
      return { status: response.status, body };
    },
    async close() {
      await Promise.all([stop(identity), stop(connector)]);
    },
  };
  return server;
}
