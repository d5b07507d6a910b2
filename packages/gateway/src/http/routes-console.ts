/**
 * What the console needs besides the request API: a live feed of changes (server-sent
 * events), the loaded rules, the chain's verification, and the console's own static files.
 */
import type { KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { extname, join, normalize, sep } from "node:path";
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  checkRecordedHead,
  parseRecordedHead,
  type VerifyReport,
  verifyAudit,
} from "../audit/audit-service.js";
import type { LiveConfig } from "../config/live-config.js";
import { AirlockError } from "../errors.js";
import { type OidcService, SESSION_COOKIE } from "../identity/oidc-service.js";
import type { Redactor } from "../masking/secret-redactor.js";
import type { Store } from "../store/store.js";
import { auditVerifyQuerySchema } from "./api-schemas.js";
import { readCookie } from "./cookies.js";
import type { createRouter } from "./route.js";

const HEARTBEAT_MS = 15_000;

const MAX_STREAMS = 1000;
const MAX_STREAMS_PER_REVIEWER = 20;

export function consoleRoutes(
  router: ReturnType<typeof createRouter>,
  deps: {
    store: Store;
    live: Pick<LiveConfig, "policy">;
    /** Checks the caller again (a session may end while its stream is open). */
    reauthenticate: (request: FastifyRequest) => Promise<unknown>;
    /** Console sessions, when configured: a session's streams end with it. */
    oidc?: Pick<OidcService, "onSessionEnd"> | undefined;
    /** Rules are config text, whose `${env:}` references (in a reason, say) are resolved. */
    redactor: Redactor;
    /** With `audit.signingKey`: the keys that sign the chain, to check its checkpoints. */
    auditKeys?: { own: KeyObject; others: readonly KeyObject[] } | undefined;
  },
): void {
  const streams = new Map<string, number>();
  let open = 0;
  // The streams of each console session, ended here as soon as the session ends here;
  // a sign-out at another replica reaches them at their next heartbeat.
  const bySession = new Map<string, Set<() => void>>();
  deps.oidc?.onSessionEnd((sessionId) => {
    for (const end of bySession.get(sessionId) ?? []) end();
  });
  // A stream never ends on its own, and a stop waits for every request it serves: each one
  // open is ended at the stop, connection and all (the console reconnects, to another replica
  // or to this one once it is back). Before, one open console tab held a stop for good.
  const everyStream = new Set<(options?: { closeConnection: boolean }) => void>();
  // And one whose caller was still being authenticated then (a console session checked with
  // its identity provider takes seconds) is not opened after: it would hold the stop for good.
  let stopping = false;
  router.app.addHook("preClose", (done) => {
    stopping = true;
    for (const end of [...everyStream]) end({ closeConnection: true });
    done();
  });
  const verifications = sharedRuns<VerifyReport>();
  router.route(
    {
      method: "GET",
      url: "/v1/events",
      summary: "Server-sent events: `change` {id, status, version} whenever a request changes.",
      tag: "reviewers",
      auth: "reviewer",
      responses: {
        200: "An event stream",
        429: "Too many live streams open, this reviewer's or all together",
        503: "The gateway is stopping",
      },
    },
    async ({ reply, request, principal }) => {
      const who = principal.reviewer.email;
      if (open >= MAX_STREAMS || (streams.get(who) ?? 0) >= MAX_STREAMS_PER_REVIEWER) {
        throw new AirlockError(
          "rate_limited",
          "too many live streams are open; close some console tabs and try again",
        );
      }
      if (stopping) {
        throw new AirlockError(
          "store_unavailable",
          "the gateway is stopping; connect again (to another replica, or to this one once it is back)",
        );
      }
      reply.hijack();
      const raw = reply.raw;
      // The caller may have left while it was being authenticated: its close is past, and
      // a stream set up now would hold its place, subscription and timer for good.
      if (request.raw.destroyed || raw.destroyed) return { body: undefined };
      open++;
      streams.set(who, (streams.get(who) ?? 0) + 1);
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      raw.write("retry: 2000\n\n");
      const unsubscribeChanges = deps.store.subscribe((change) => {
        raw.write(`event: change\ndata: ${JSON.stringify(change)}\n\n`);
      });
      // Changes this replica did not hear (its PostgreSQL feed was cut): pages read again.
      const unsubscribeMissed = deps.store.onMissedChanges(() => {
        raw.write("event: resync\ndata: {}\n\n");
      });
      const unsubscribe = () => {
        unsubscribeChanges();
        unsubscribeMissed();
      };
      // Each heartbeat checks the caller again: a stream ends with its session or token.
      const heartbeat = setInterval(() => {
        deps.reauthenticate(request).then(
          () => raw.write(": keep-alive\n\n"),
          () => end(),
        );
      }, HEARTBEAT_MS);
      heartbeat.unref();
      // A caller let in by its session cookie (not a token) has the session's streams.
      const session =
        principal.tokenId === "session" ? readCookie(request, SESSION_COOKIE) : undefined;
      let stopped = false;
      const stop = () => {
        if (stopped) return;
        stopped = true;
        clearInterval(heartbeat);
        unsubscribe();
        open--;
        const left = (streams.get(who) ?? 1) - 1;
        if (left > 0) streams.set(who, left);
        else streams.delete(who);
        everyStream.delete(end);
        if (session !== undefined) {
          const ends = bySession.get(session);
          ends?.delete(end);
          if (ends?.size === 0) bySession.delete(session);
        }
      };
      // Stopped first, so that no change is written to a stream of a session that ended.
      const end = (options?: { closeConnection: boolean }) => {
        stop();
        raw.end();
        // Its last chunk is written first; kept alive, the connection would hold the stop.
        if (options?.closeConnection) raw.socket?.end();
      };
      everyStream.add(end);
      if (session !== undefined) {
        const ends = bySession.get(session) ?? new Set();
        ends.add(end);
        bySession.set(session, ends);
      }
      request.raw.once("close", stop);
      raw.once("close", stop);
      return { body: undefined };
    },
  );

  router.route(
    {
      method: "GET",
      url: "/v1/rules",
      summary: "The rules in force, in order, read-only.",
      tag: "reviewers",
      auth: "reviewer",
      responses: { 200: "The rules and the policy digest" },
    },
    async () => ({
      body: deps.redactor.redact({
        policyDigest: deps.live.policy.digest,
        rules: deps.live.policy.rules.map((rule) => ({
          name: rule.name,
          ...(rule.when === undefined ? {} : { when: rule.when }),
          decision: rule.decision,
          ...(rule.reason === undefined ? {} : { reason: rule.reason }),
          ...(rule.risk === undefined ? {} : { risk: rule.risk }),
          ...(rule.review
            ? {
                review: {
                  approvers: rule.review.approvers,
                  quorum: rule.review.quorum,
                  ...(rule.review.require ? { require: rule.review.require } : {}),
                  expiresIn: rule.review.expiresInMs,
                  stepUp: rule.review.stepUp,
                  ...(rule.review.channels ? { channels: rule.review.channels } : {}),
                },
              }
            : {}),
          mask: { input: rule.mask, ...(rule.maskResult ? { result: rule.maskResult } : {}) },
        })),
      }),
    }),
  );

  router.route(
    {
      method: "GET",
      url: "/v1/audit/verify",
      summary:
        "Verifies the whole audit chain, as `airlock audit verify` does; with `audit.signingKey`, its signed checkpoints too.",
      tag: "reviewers",
      auth: "reviewer",
      query: auditVerifyQuerySchema,
      responses: { 200: "Whether the chain verifies, and where it breaks" },
    },
    async ({ query }) => {
      // One walk of the chain serves everyone asking meanwhile; a recorded head is then
      // checked with one lookup of its event.
      const all = query.all === "true";
      // With a signing key, the checkpoints are checked too: a chain rewritten whole by
      // someone holding the database verifies as a chain, but not against them.
      const keys = deps.auditKeys;
      const walked = await verifications.run(all ? "all" : "first", () =>
        verifyAudit(deps.store, undefined, {
          all,
          ...(keys ? { publicKeys: [keys.own, ...keys.others], mustHaveSigned: [keys.own] } : {}),
        }),
      );
      const expect =
        query.expectHead === undefined ? undefined : parseRecordedHead(query.expectHead);
      const report = expect ? await checkRecordedHead(deps.store, walked, expect) : walked;
      return {
        body: {
          ok: report.ok,
          events: report.count,
          ...(report.head ? { head: report.head } : {}),
          ...(report.problem ? { problem: report.problem } : {}),
          ...(report.signed ? { signed: report.signed } : {}),
          // A table rewritten wholesale has a problem per event: the walk keeps the first
          // LISTED_PROBLEMS of them, and says how many there were.
          ...(report.problems
            ? {
                problems: report.problems,
                problemCount: report.problemCount ?? report.problems.length,
              }
            : {}),
        },
      };
    },
  );
}

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/** The console's pages: its pages fall back to index.html, its assets are served as built. */
const pages = [
  /^\/$/,
  /^\/requests\/[A-Za-z0-9_-]+$/,
  /^\/history$/,
  /^\/audit$/,
  /^\/rules$/,
  /^\/signed-out$/,
];

/**
 * Runs of the same costly work asked for while one is under way share its result: a whole
 * chain verification reads every event, and reviewers clicking at once need not multiply it.
 */
function sharedRuns<T>() {
  const running = new Map<string, Promise<T>>();
  return {
    run(key: string, work: () => Promise<T>): Promise<T> {
      let promise = running.get(key);
      if (!promise) {
        promise = work().finally(() => running.delete(key));
        running.set(key, promise);
      }
      return promise;
    },
  };
}

/**
 * The built console's files and pages, for the not-found handler to try before answering 404.
 * Not a `/*` route: the router would then take every URL no API route matches, among them
 * an API URL with a segment longer than any id, which is refused as bad input without it.
 * Answers nothing (undefined) for what is not the console's.
 */
export function consoleFiles(
  dir: string | undefined,
): ((request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined) | undefined {
  if (!dir) return undefined;
  const root = normalize(dir + sep);
  // The built files do not change while the gateway runs: each is read from disk once.
  const served = new Map<string, { body: Buffer; type: string }>();
  const file = (path: string): { body: Buffer; type: string } | undefined => {
    const full = normalize(join(root, path));
    if (!full.startsWith(root)) return undefined;
    const cached = served.get(full);
    if (cached) return cached;
    try {
      if (!statSync(full).isFile()) return undefined;
      const found = {
        body: readFileSync(full),
        type: contentTypes[extname(full)] ?? "application/octet-stream",
      };
      served.set(full, found);
      return found;
    } catch {
      return undefined;
    }
  };
  const securityHeaders = {
    "content-security-policy":
      "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
  };
  return (request, reply) => {
    if (request.method !== "GET" && request.method !== "HEAD") return undefined;
    const path = decodeURIComponent(request.url.split("?")[0] ?? "/");
    const asset =
      path.startsWith("/assets/") || /\.[a-z0-9]+$/i.test(path) ? file(path) : undefined;
    if (asset) {
      return reply
        .headers(securityHeaders)
        .header(
          "cache-control",
          path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
        )
        .type(asset.type)
        .send(asset.body);
    }
    if (pages.some((page) => page.test(path))) {
      const html = file("index.html");
      if (html) return reply.headers(securityHeaders).type(html.type).send(html.body);
    }
    return undefined;
  };
}
