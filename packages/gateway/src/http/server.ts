/**
 * The HTTP server: fastify, the routes by domain, and the one error handler that turns every
 * failure into `{error: {code, message, field?}}`. Unknown errors become a 500 with a request
 * id; their details go to the log only.
 */

import { type KeyObject, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import { randomHex } from "../common/ids.js";
import type { LiveConfig } from "../config/live-config.js";
import type { Connector } from "../connectors/connector.js";
import { AirlockError, callerMessage } from "../errors.js";
import type { IdentityService, Principal } from "../identity/identity-service.js";
import { type OidcService, SESSION_COOKIE } from "../identity/oidc-service.js";
import type { Redactor } from "../masking/secret-redactor.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { RequestService } from "../requests/request-service.js";
import type { Store } from "../store/store.js";
import { readCookie } from "./cookies.js";
import { toAirlockError } from "./fastify-errors.js";
import { jsonText, parseJsonBody } from "./json-body.js";
import { openApiDocument } from "./openapi.js";
import { createRouter } from "./route.js";
import { actionRoutes } from "./routes-actions.js";
import { auditRoutes } from "./routes-audit.js";
import { authRoutes } from "./routes-auth.js";
import { consoleFiles, consoleRoutes } from "./routes-console.js";
import { mcpRouteSpec, mcpRoutes } from "./routes-mcp.js";
import { requestRoutes } from "./routes-requests.js";
import { terminalReviewPage } from "./terminal-review-page.js";

export interface ServerDeps {
  store: Store;
  requests: RequestService;
  identity: IdentityService;
  /** The rules in force (a reload replaces them). */
  live: Pick<LiveConfig, "policy">;
  /** The console's built files (index.html and assets), served at `/` when present. */
  consoleDir: string | undefined;
  /** Console sessions through the identity provider, when configured. */
  oidc: OidcService | undefined;
  logger: Logger;
  metrics: Metrics;
  publicUrl: string;
  maxBodyBytes: number;
  /** Proxies whose X-Forwarded-For names the client (addresses or CIDR ranges). */
  trustProxy?: string[] | undefined;
  maxWaitSeconds: number;
  /** How long an MCP tool call waits for a decision (`server.mcpToolWait`). */
  mcpToolWaitMs: number;
  /** The connections, whose operations `/mcp` lists as tools. */
  connectors: ReadonlyMap<string, Connector>;
  /** How long a request's body may take to arrive (`server.requestTimeout`). */
  requestTimeoutMs: number;
  version: string;
  /** Scrubs known secrets out of error messages before they are sent. */
  redactor: Redactor;
  /** The store's time (Store.now): what the routes judge expiry by, as every replica does. */
  clock: () => number;
  /**
   * The public halves of the audit signing keys (`audit.signingKey`'s own and
   * `audit.publicKeys`): `GET /v1/audit/verify` checks the signed checkpoints with them.
   */
  auditKeys?: { own: KeyObject; others: readonly KeyObject[] } | undefined;
  /** Extra routes (channels' decision endpoints). */
  extend?: (app: FastifyInstance) => void;
}

/**
 * A client that sends headers and part of a body, then stalls, would hold its connection
 * (and a slot of the body parser) for good; Node's own requestTimeout does not reach a
 * request Fastify is already reading. Long-polls wait after the body is in: not bounded.
 */
function bodyDeadline(raw: IncomingMessage, ms: number): void {
  const timer = setTimeout(() => {
    if (raw.complete) return;
    answerRaw(
      raw.socket,
      [408, "Request Timeout"],
      `the request's body was not received within ${ms / 1000} s (server.requestTimeout)`,
    );
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  raw.once("end", clear);
  raw.once("close", clear);
}

/** Malformed HTTP (a bad Content-Length, both it and Transfer-Encoding, headers too large or too slow). */
function clientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === "ECONNRESET") return;
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    answerRaw(
      socket,
      [408, "Request Timeout"],
      "the request's headers were not received in time",
      error,
    );
  } else if (error.code === "HPE_HEADER_OVERFLOW") {
    answerRaw(
      socket,
      [431, "Request Header Fields Too Large"],
      "the request's headers are too large",
      error,
      "payload_too_large",
    );
  } else {
    answerRaw(
      socket,
      [400, "Bad Request"],
      "the request is not valid HTTP/1.1 (check its Content-Length and Transfer-Encoding)",
      error,
    );
  }
}

/** An answer in the contract's shape, written on the socket itself, which is then closed. */
function answerRaw(
  socket: Duplex,
  [status, reason]: [number, string],
  message: string,
  cause?: Error,
  code = "invalid_request",
): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(cause);
}

/**
 * At close, Node ends the keep-alive connections idle at that moment, but not those that
 * never sent a request (a balancer's or a client's spare connection), nor those on which the
 * next request has begun to arrive (its headers not all in), nor those whose answer was still
 * under way (an action running, a long-poll): kept alive after it, they would hold the stop
 * for the keep-alive timeout, 72 s. Those with no request under way are ended here, and each
 * of the others once its last answer is out; answers sent from then on say
 * `Connection: close`. A request whose body is still coming has started nothing: it is
 * answered 503 at once, and its client sends it again (to another replica). Before, a client
 * sending its body slowly held the stop until server.requestTimeout (30 s by default).
 */
function closeConnectionsAtStop(app: FastifyInstance): void {
  // The requests each connection has under way; none: it is between two, or unused.
  const underWay = new Map<Socket, Set<IncomingMessage>>();
  let stopping = false;
  app.server.on("connection", (socket: Socket) => {
    underWay.set(socket, new Set());
    socket.once("close", () => underWay.delete(socket));
  });
  app.server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    const requests = underWay.get(socket);
    if (!requests) return;
    requests.add(request);
    // Emitted once the answer is out (handed to the system) or the connection is gone.
    response.once("close", () => {
      requests.delete(request);
      // Ended, not cut: what the client sent meanwhile must not turn the close into a reset.
      if (requests.size === 0 && stopping && underWay.has(socket)) {
        socket.end(() => socket.destroy());
      }
    });
  });
  app.addHook("preClose", (done) => {
    stopping = true;
    for (const [socket, requests] of underWay) {
      if (requests.size === 0) socket.destroy();
      for (const request of requests) {
        if (request.complete) continue;
        answerRaw(
          socket,
          [503, "Service Unavailable"],
          "the gateway is stopping and the request's body had not all arrived; nothing was done: send it again",
          undefined,
          "store_unavailable",
        );
      }
    }
    done();
  });
  app.addHook("onSend", (_request, reply, payload, done) => {
    if (stopping) reply.header("connection", "close");
    done(null, payload);
  });
}

export function buildServer(deps: ServerDeps): FastifyInstance {
  const { logger, metrics } = deps;
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.maxBodyBytes,
    // From the pooled CSPRNG: a randomBytes call per request cost 3% of the loop under load.
    genReqId: () => randomHex(8),
    return503OnClosing: true,
    forceCloseConnections: "idle",
    routerOptions: { ignoreTrailingSlash: true },
    // A URL the router cannot read (a bad percent-escape, a segment too long) gets the
    // contract's error shape like any other bad input.
    frameworkErrors: (error, _request, reply) =>
      (reply as FastifyReply).code(400).send({
        error: {
          code: "invalid_request",
          message:
            error.code === "FST_ERR_MAX_PARAM_LENGTH"
              ? "the URL has a path segment longer than 100 characters; no id is that long"
              : "the URL could not be read (a malformed percent-escape?); encode it as UTF-8, with % followed by two hex digits",
        },
      }),
    // Malformed HTTP (a bad Content-Length, both it and Transfer-Encoding, headers too large
    // or too slow) never reaches a route: answered here, in the same shape.
    clientErrorHandler: clientError,
    ...(deps.trustProxy ? { trustProxy: deps.trustProxy } : {}),
  });

  closeConnectionsAtStop(app);
  // JSON only: fastify's text/plain parser would take a body no route can read (415 instead),
  // and its JSON errors say neither where nor why.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, bytes, done) => {
    try {
      done(null, parseJsonBody(jsonText(bytes as Buffer, request.headers["content-type"])));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  // Callback hooks, not async ones: they run on every request and a promise each adds up.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    reply.header("cache-control", "no-store");
    // Most bodies arrive with their headers; one still coming must come within the limit.
    if (!request.raw.complete) bodyDeadline(request.raw, deps.requestTimeoutMs);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    const route = request.routeOptions.url ?? "unmatched";
    metrics.httpSeconds.observe(
      { method: request.method, route, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    if (reply.statusCode >= 500) {
      logger.warn(
        { reqId: request.id, method: request.method, route, status: reply.statusCode },
        "request failed",
      );
    } else {
      logger.debug(
        {
          reqId: request.id,
          method: request.method,
          route,
          status: reply.statusCode,
          ms: reply.elapsedTime,
        },
        "request",
      );
    }
    done();
  });

  app.setErrorHandler((error: FastifyError | AirlockError | Error, request, reply) => {
    const known = toAirlockError(error, deps.maxBodyBytes);
    // An `internal` one (the store refused what was asked) says what failed, never the
    // details, which are in its cause: as for an unknown error, they go to the log, under
    // the request id the caller is given (unless it names an action request: one that ran).
    if (known?.code === "internal") {
      logger.error({ reqId: request.id, err: error }, known.message);
      return reply
        .code(known.status)
        .send(deps.redactor.redact({ error: { requestId: request.id, ...known.toJSON() } }));
    }
    if (known) {
      // What the store said is logged here; the caller is told to try again (callerMessage).
      if (known.code === "store_unavailable")
        logger.error({ reqId: request.id, err: error }, known.message);
      const retryAfter = known.details?.retryAfter;
      if (typeof retryAfter === "number") reply.header("retry-after", String(retryAfter));
      return reply
        .code(known.status)
        .send(
          deps.redactor.redact({ error: { ...known.toJSON(), message: callerMessage(known) } }),
        );
    }
    logger.error({ reqId: request.id, err: error }, "unexpected error");
    return reply.code(500).send({
      error: {
        code: "internal",
        message: `something went wrong on Airlock's side; the log has the details under request id ${request.id}`,
        requestId: request.id,
      },
    });
  });
  const consoleFile = consoleFiles(deps.consoleDir);
  app.setNotFoundHandler(
    (request, reply) =>
      consoleFile?.(request, reply) ??
      reply.code(404).send({
        error: {
          code: "not_found",
          message: `no route ${request.method} ${request.url.split("?")[0]}; see /openapi.json`,
        },
      }),
  );

  const router = createRouter(app, (request) => authenticate(request, deps));
  actionRoutes(router, deps);
  authRoutes(router, deps);
  consoleRoutes(router, { ...deps, reauthenticate: (request) => authenticate(request, deps) });
  requestRoutes(router, deps);
  auditRoutes(router, deps);
  mcpRoutes(app, { ...deps, toolWaitMs: deps.mcpToolWaitMs });
  router.specs.push(mcpRouteSpec);

  router.route(
    {
      method: "GET",
      url: "/healthz",
      summary: "Liveness.",
      tag: "operations",
      auth: "none",
      responses: { 200: "Alive" },
    },
    async () => ({ body: { status: "ok" } }),
  );
  /** Why the store last failed a readiness probe, while it does. */
  let unready: string | undefined;
  router.route(
    {
      method: "GET",
      url: "/readyz",
      summary: "Readiness: the store answers.",
      tag: "operations",
      auth: "none",
      responses: { 200: "Ready", 503: "The store cannot be reached" },
    },
    async () => {
      try {
        await deps.store.ping();
        unready = undefined;
        return { body: { status: "ready" } };
      } catch (error) {
        // Anyone may ask, and what the database said names its host, its user and more: the
        // log has it (once per change, as probes ask every few seconds), the answer does not.
        const why = error instanceof Error ? error.message : String(error);
        if (why !== unready) logger.warn({ err: error }, "not ready: the store cannot be used");
        unready = why;
        return {
          status: 503,
          body: {
            status: "unavailable",
            error: {
              code: "store_unavailable",
              message: "the store cannot be reached or used; the gateway's log says why",
            },
          },
        };
      }
    },
  );
  router.route(
    {
      method: "GET",
      url: "/metrics",
      summary: "Prometheus metrics.",
      tag: "operations",
      auth: "none",
      responses: { 200: "Metrics" },
    },
    async ({ reply }) => {
      try {
        const [counts, outbox] = await Promise.all([
          deps.store.countByStatus(),
          deps.store.countOutbox(),
        ]);
        metrics.requests.reset();
        for (const [status, n] of Object.entries(counts)) metrics.requests.set({ status }, n);
        for (const [state, n] of Object.entries(outbox)) metrics.outbox.set({ state }, n);
      } catch {
        // the scrape still shows everything else; /readyz reports the store
      }
      reply.type(metrics.registry.contentType);
      return { body: await metrics.registry.metrics() };
    },
  );
  // Without the built console, approval links still say how to review from a terminal.
  if (!deps.consoleDir)
    router.route(
      {
        method: "GET",
        url: "/requests/:id",
        summary: "Where approval links lead: how to review the request.",
        tag: "reviewers",
        auth: "none",
        responses: { 200: "A page" },
      },
      async ({ request, reply }) => {
        const id = String((request.params as { id: string }).id).replace(/[^A-Za-z0-9_]/g, "");
        reply.type("text/html; charset=utf-8");
        return {
          body: terminalReviewPage(
            "The web console is not built in this installation (<code>npm run build</code> builds it).",
            id,
          ),
        };
      },
    );
  deps.extend?.(app);

  let document: unknown;
  app.get("/openapi.json", async () => {
    document ??= openApiDocument(router.specs, {
      version: deps.version,
      publicUrl: deps.publicUrl,
    });
    return document;
  });
  return app;
}

/**
 * A bearer token when one is sent; otherwise the console's session cookie, whose
 * state-changing calls must also carry the session's CSRF token (a cookie alone rides
 * along on cross-site requests; a header read from /auth/session cannot).
 */
async function authenticate(
  request: FastifyRequest,
  deps: Pick<ServerDeps, "identity" | "oidc">,
): Promise<Principal> {
  const session = deps.oidc && readCookie(request, SESSION_COOKIE);
  if (request.headers.authorization !== undefined || !session || !deps.oidc) {
    return deps.identity.authenticate(request.headers.authorization);
  }
  const { reviewer } = await deps.oidc.reviewer(session);
  if (request.method !== "GET" && request.method !== "HEAD") {
    const sent = request.headers["x-csrf-token"];
    const expected = Buffer.from(deps.oidc.csrfToken(session));
    const given = Buffer.from(typeof sent === "string" ? sent : "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new AirlockError(
        "forbidden",
        "x-csrf-token: missing or wrong; send the csrfToken from GET /auth/session with every change",
        { field: "x-csrf-token" },
      );
    }
  }
  return { kind: "reviewer", reviewer, tokenId: "session" };
}
