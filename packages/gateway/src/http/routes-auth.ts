/** Sign-in through the identity provider, the session it opens, and sign-out. */
import { z } from "zod";
import { createRateLimiter } from "../common/rate-limiter.js";
import { AirlockError } from "../errors.js";
import { type OidcService, SESSION_COOKIE } from "../identity/oidc-service.js";
import { readCookie, sessionCookie } from "./cookies.js";
import { clientKey } from "./rate-limit.js";
import type { createRouter, Reply } from "./route.js";
import { terminalReviewPage } from "./terminal-review-page.js";

/** Binds a sign-in to the browser that started it, until the provider sends it back. */
const SIGN_IN_COOKIE = "airlock_sign_in";

const loginQuerySchema = z.strictObject({
  returnTo: z.string().max(2048).optional(),
  stepUp: z.enum(["0", "1", "true", "false"]).optional(),
});

const callbackQuerySchema = z
  .object({
    state: z.string().max(512).optional(),
    code: z.string().max(4096).optional(),
    error: z.string().max(256).optional(),
  })
  .passthrough();

export function authRoutes(
  router: ReturnType<typeof createRouter>,
  deps: {
    oidc: OidcService | undefined;
    publicUrl: string;
    /** The store's time, which sessions end by. */
    clock: () => number;
  },
): void {
  const { route } = router;
  const secure = deps.publicUrl.startsWith("https:");
  // Each sign-in started is a row in the store until it completes or expires: anyone may
  // start one, so each address gets a few at once and one a second after that, and all of
  // them together (many addresses are cheap to come by) a bounded number.
  const signIns = createRateLimiter({ burst: 30, perSecond: 1 });
  const allSignIns = createRateLimiter({ burst: 1000, perSecond: 50 });
  const oidc = (): OidcService => {
    if (!deps.oidc) {
      throw new AirlockError(
        "not_found",
        "sign-in is not configured: add identity.oidc (issuer, clientId, clientSecret) to the config",
      );
    }
    return deps.oidc;
  };

  route(
    {
      method: "GET",
      url: "/auth/login",
      summary: "Starts a sign-in at the identity provider (a redirect).",
      tag: "auth",
      auth: "none",
      query: loginQuerySchema,
      responses: {
        302: "To the identity provider",
        404: "Sign-in is not configured",
        429: "Too many sign-ins started from this address, or from all together",
        503: "identity_provider_unavailable: the identity provider cannot be reached",
      },
    },
    async ({ query, request }): Promise<Reply> => {
      // The console sends a reviewer who is not signed in here: in a browser, the error is a
      // page that says how to review from a terminal rather than a line of JSON.
      if (!deps.oidc && request.headers.accept?.includes("text/html")) {
        const id = /^\/requests\/([A-Za-z0-9_]+)$/.exec(query.returnTo ?? "")?.[1];
        return {
          status: 404,
          headers: { "content-type": "text/html; charset=utf-8" },
          body: terminalReviewPage(
            "Sign-in to the web console is not configured on this gateway (its config has no <code>identity.oidc</code>).",
            id,
          ),
        };
      }
      const provider = oidc();
      const own = signIns.take(clientKey(request.ip));
      const wait = own ?? allSignIns.take("all");
      if (wait !== undefined) {
        return {
          status: 429,
          headers: { "retry-after": String(wait) },
          body: {
            error: {
              code: "rate_limited",
              message: `too many sign-ins started ${own === undefined ? "from everywhere at once" : "from this address"}; try again in ${wait} s`,
            },
          },
        };
      }
      const { url, binding } = await provider.signIn({
        returnTo: query.returnTo ?? "/",
        stepUp: query.stepUp === "1" || query.stepUp === "true",
      });
      return {
        status: 302,
        body: "",
        headers: {
          location: url,
          "set-cookie": sessionCookie(SIGN_IN_COOKIE, binding, { maxAgeSeconds: 600, secure }),
        },
      };
    },
  );

  route(
    {
      method: "GET",
      url: "/auth/callback",
      summary: "Where the identity provider returns; opens a session.",
      tag: "auth",
      auth: "none",
      query: callbackQuerySchema,
      responses: {
        302: "Back to where the sign-in started",
        401: "The sign-in failed",
        503: "identity_provider_unavailable: the identity provider cannot be reached",
      },
    },
    async ({ request, reply }) => {
      const url = new URL(request.url, deps.publicUrl);
      const { sessionId, returnTo, expiresAt } = await oidc().complete(
        new URL(`${deps.publicUrl}/auth/callback${url.search}`),
        readCookie(request, SIGN_IN_COOKIE, /^[A-Za-z0-9_-]{16,128}$/),
        readCookie(request, SESSION_COOKIE),
      );
      reply.header("set-cookie", [
        sessionCookie(SESSION_COOKIE, sessionId, {
          // As long as the session lasts by the clock it ends by, whatever this process's says.
          maxAgeSeconds: Math.max(1, Math.floor((expiresAt - deps.clock()) / 1000)),
          secure,
        }),
        sessionCookie(SIGN_IN_COOKIE, "0".repeat(16), { maxAgeSeconds: 0, secure }),
      ]);
      return { status: 302, body: "", headers: { location: returnTo } };
    },
  );

  route(
    {
      method: "GET",
      url: "/auth/session",
      summary: "Who is signed in, and the CSRF token their state-changing calls must send.",
      tag: "auth",
      auth: "none",
      responses: { 200: "The session", 401: "Not signed in" },
    },
    async ({ request }) => {
      const id = readCookie(request, SESSION_COOKIE);
      if (!id) throw new AirlockError("unauthenticated", "not signed in; go to /auth/login");
      const service = oidc();
      const { session, reviewer } = await service.reviewer(id);
      return {
        body: {
          email: reviewer.email,
          groups: reviewer.groups,
          csrfToken: service.csrfToken(id),
          authTime: new Date(session.authTime).toISOString(),
          acr: session.acr,
          stepUpMaxAgeSeconds: Math.floor(service.stepUpMaxAgeMs / 1000),
          steppedUp: service.steppedUp(session),
          // What the console shows: its own sum of authTime and the maximum age would ignore
          // the acr, and an authTime ahead of the gateway's clock.
          stepUpUntil: isoOrNull(service.stepUpUntil(session)),
          expiresAt: new Date(session.expiresAt).toISOString(),
        },
      };
    },
  );

  route(
    {
      method: "POST",
      url: "/auth/logout",
      summary: "Ends the session (send x-csrf-token) and clears its cookie.",
      tag: "auth",
      // Not "reviewer": the cookie of a session that has expired must be cleared too.
      auth: "none",
      responses: {
        204: "Signed out, or the session had ended already",
        403: "The session lasts, and x-csrf-token is not its CSRF token",
      },
    },
    async ({ request }) => {
      const id = readCookie(request, SESSION_COOKIE);
      const sent = request.headers["x-csrf-token"];
      if (id) await oidc().signOut(id, typeof sent === "string" ? sent : undefined);
      return {
        status: 204,
        body: "",
        headers: {
          "set-cookie": sessionCookie(SESSION_COOKIE, "0".repeat(16), { maxAgeSeconds: 0, secure }),
        },
      };
    },
  );
}

function isoOrNull(epochMs: number | undefined): string | null {
  return epochMs === undefined ? null : new Date(epochMs).toISOString();
}
