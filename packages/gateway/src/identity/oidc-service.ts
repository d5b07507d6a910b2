/**
 * Sign-in through the company's identity provider: OpenID Connect authorization code with
 * PKCE, sessions kept server-side (the cookie holds a random id, the store its hash), and
 * the proof of a fresh authentication that step-up approvals need.
 */
import { createHash } from "node:crypto";
import * as oidc from "openid-client";
import { randomHex } from "../common/ids.js";
import { AirlockError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { Reviewer } from "../requests/request-transitions.js";
import type { SessionRecord, Store } from "../store/store.js";
import type { OidcConfig } from "./oidc-config.js";

export const SESSION_COOKIE = "airlock_session";
const SIGN_IN_TTL_MS = 10 * 60_000;

export interface OidcService {
  /** Where to send the browser to sign in; the sign-in returns to `returnTo` (a local path). */
  signIn(args: { returnTo: string; stepUp: boolean }): Promise<string>;
  /** Completes a sign-in from the callback URL; returns the new session's id and where to go. */
  complete(callbackUrl: URL): Promise<{ sessionId: string; returnTo: string; expiresAt: number }>;
  /** The reviewer a session cookie stands for; throws `unauthenticated` when there is none. */
  reviewer(sessionId: string): Promise<{ reviewer: Reviewer; session: SessionRecord }>;
  signOut(sessionId: string): Promise<void>;
  /** The CSRF token that state-changing calls made with this session must send. */
  csrfToken(sessionId: string): string;
  /** Whether a session's authentication is fresh enough, and strong enough, for step-up. */
  steppedUp(session: SessionRecord): boolean;
  readonly stepUpMaxAgeMs: number;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Only a path on this gateway: never `//host` or a full URL (no open redirect). */
export function safeReturnTo(value: string | undefined): string {
  if (!value?.startsWith("/") || value.startsWith("//") || value.includes("\\")) return "/";
  return value.length > 2048 ? "/" : value;
}

export function createOidcService(deps: {
  config: OidcConfig;
  publicUrl: string;
  store: Store;
  clock: () => number;
  logger: Logger;
  /** A configured reviewer's groups, when the e-mail is one. */
  configured: (email: string) => { groups: readonly string[] } | undefined;
}): OidcService {
  const { config, store, clock, logger } = deps;
  const redirectUri = `${deps.publicUrl}/auth/callback`;
  let discovered: Promise<oidc.Configuration> | undefined;

  const provider = (): Promise<oidc.Configuration> => {
    discovered ??= oidc
      .discovery(new URL(config.issuer), config.clientId, config.clientSecret, undefined, {
        // A provider on plain http is only for development and tests on loopback.
        ...(config.issuer.startsWith("http:") ? { execute: [oidc.allowInsecureRequests] } : {}),
        timeout: 10,
      })
      .catch((error: unknown) => {
        discovered = undefined;
        throw new AirlockError(
          "identity_provider_unavailable",
          `the identity provider at ${config.issuer} cannot be reached (${error instanceof Error ? error.message : String(error)}); try again shortly`,
          { cause: error },
        );
      });
    return discovered;
  };

  const steppedUp = (session: SessionRecord): boolean =>
    clock() - session.authTime <= config.stepUpMaxAge &&
    (config.acr === undefined || session.acr === config.acr);

  return {
    stepUpMaxAgeMs: config.stepUpMaxAge,
    steppedUp,

    async signIn({ returnTo, stepUp }) {
      const configuration = await provider();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const verifier = oidc.randomPKCECodeVerifier();
      const now = clock();
      await store.insertSignIn(
        {
          stateHash: sha256(state),
          verifier,
          nonce,
          returnTo: safeReturnTo(returnTo),
          stepUp,
          expiresAt: now + SIGN_IN_TTL_MS,
        },
        now,
      );
      const params: Record<string, string> = {
        redirect_uri: redirectUri,
        scope: config.scopes.join(" "),
        state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: "S256",
      };
      if (stepUp) {
        // A step-up must be a new authentication, not the provider's remembered session.
        params.prompt = "login";
        params.max_age = "0";
      }
      if (config.acr) params.acr_values = config.acr;
      return oidc.buildAuthorizationUrl(configuration, params).href;
    },

    async complete(callbackUrl) {
      const state = callbackUrl.searchParams.get("state") ?? "";
      const signIn = state ? await store.takeSignIn(sha256(state), clock()) : undefined;
      if (!signIn) {
        throw new AirlockError(
          "unauthenticated",
          "this sign-in is unknown, used or expired; start again at /auth/login",
        );
      }
      const failure = callbackUrl.searchParams.get("error");
      if (failure) {
        const description = callbackUrl.searchParams.get("error_description");
        throw new AirlockError(
          "unauthenticated",
          `the identity provider refused the sign-in: ${failure}${description ? ` (${description.slice(0, 300)})` : ""}`,
        );
      }
      let claims: oidc.IDToken;
      try {
        const tokens = await oidc.authorizationCodeGrant(await provider(), callbackUrl, {
          pkceCodeVerifier: signIn.verifier,
          expectedState: state,
          expectedNonce: signIn.nonce,
          idTokenExpected: true,
          ...(signIn.stepUp ? { maxAge: Math.floor(config.stepUpMaxAge / 1000) } : {}),
        });
        const found = tokens.claims();
        if (!found) throw new Error("no ID token");
        claims = found;
      } catch (error) {
        if (error instanceof AirlockError) throw error;
        logger.warn({ err: error }, "a sign-in could not be completed");
        throw new AirlockError(
          "unauthenticated",
          `the sign-in could not be completed (${error instanceof Error ? error.message : String(error)}); start again at /auth/login`,
        );
      }
      const email = typeof claims.email === "string" ? claims.email.toLowerCase() : undefined;
      if (!email || claims.email_verified === false) {
        throw new AirlockError(
          "unauthenticated",
          "the identity provider gave no verified e-mail address; Airlock identifies reviewers by it",
        );
      }
      const claimed = claims[config.groupsClaim];
      const groups = Array.isArray(claimed)
        ? claimed.filter((g): g is string => typeof g === "string").slice(0, 200)
        : [];
      if (!deps.configured(email) && groups.length === 0) {
        throw new AirlockError(
          "forbidden",
          `${email} is not a reviewer: not in the config's reviewers, and in no group from the identity provider`,
        );
      }
      const now = clock();
      const sessionId = randomHex(32);
      const session: SessionRecord = {
        idHash: sha256(sessionId),
        email,
        issuer: claims.iss,
        subject: claims.sub,
        groups,
        authTime:
          typeof claims.auth_time === "number" ? claims.auth_time * 1000 : claims.iat * 1000,
        acr: typeof claims.acr === "string" ? claims.acr : null,
        createdAt: now,
        expiresAt: now + config.sessionTtl,
      };
      await store.insertSession(session, {
        type: "reviewer.signed_in",
        requestId: null,
        actor: { type: "reviewer", id: email },
        at: now,
        data: {
          issuer: session.issuer,
          subject: session.subject,
          authTime: new Date(session.authTime).toISOString(),
          acr: session.acr,
          groups,
          stepUp: signIn.stepUp,
        },
      });
      return { sessionId, returnTo: signIn.returnTo, expiresAt: session.expiresAt };
    },

    async reviewer(sessionId) {
      const session = await store.findSession(sha256(sessionId), clock());
      if (!session) {
        throw new AirlockError(
          "unauthenticated",
          "your session has ended; sign in again at /auth/login",
        );
      }
      const groups = [
        ...new Set([...session.groups, ...(deps.configured(session.email)?.groups ?? [])]),
      ];
      return {
        session,
        reviewer: {
          email: session.email,
          groups,
          evidence: {
            method: "oidc",
            issuer: session.issuer,
            subject: session.subject,
            authTime: new Date(session.authTime).toISOString(),
            acr: session.acr,
            idpGroups: session.groups,
            stepUp: steppedUp(session),
          },
        },
      };
    },

    async signOut(sessionId) {
      const idHash = sha256(sessionId);
      const session = await store.findSession(idHash, clock());
      await store.deleteSession(
        idHash,
        session && {
          type: "reviewer.signed_out",
          requestId: null,
          actor: { type: "reviewer", id: session.email },
          at: clock(),
          data: {},
        },
      );
    },

    csrfToken: (sessionId) => sha256(`csrf:${sessionId}`).slice(0, 43),
  };
}
