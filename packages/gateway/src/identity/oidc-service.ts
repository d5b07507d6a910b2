/**
 * Sign-in through the company's identity provider: OpenID Connect authorization code with
 * PKCE, sessions kept server-side (the cookie holds a random id, the store its hash), and
 * the proof of a fresh authentication that step-up approvals need.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import * as oidc from "openid-client";
import { randomHex } from "../common/ids.js";
import { AirlockError, errorMessage } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { Reviewer } from "../requests/request-transitions.js";
import type { AuditEventInput } from "../requests/request-types.js";
import type { SessionRecord, Store } from "../store/store.js";
import { emailKey } from "./email-key.js";
import type { OidcConfig } from "./oidc-config.js";
import { openForSession, sealForSession } from "./session-seal.js";

export const SESSION_COOKIE = "airlock_session";
const SIGN_IN_TTL_MS = 10 * 60_000;
/** Each request to the identity provider gives up after this many seconds. */
const PROVIDER_TIMEOUT_S = 10;
/**
 * How long one replica holds a session's check before another may take it over (a replica
 * that stopped midway): longer than the longest check, up to four requests to the provider
 * (discovery, refresh, its keys, userinfo). Shorter, a slow provider let a second replica
 * refresh with the token the first was still using, and a provider that rotates refresh
 * tokens takes that for a stolen copy and ends the sign-in.
 */
const CHECK_LEASE_MS = 4 * PROVIDER_TIMEOUT_S * 1000 + 5_000;
/** How long a call whose session is overdue waits for another's check before answering 503. */
const ANSWER_WAIT_MS = 15_000;
/** How often a call waiting for another's check of its session looks for the answer. */
const ANSWER_POLL_MS = 100;

export interface OidcService {
  /**
   * Where to send the browser to sign in, and the value of the cookie that binds the sign-in
   * to this browser; it returns to `returnTo` (a local path).
   */
  signIn(args: { returnTo: string; stepUp: boolean }): Promise<{ url: string; binding: string }>;
  /**
   * Completes a sign-in from the callback URL, in the browser that started it (its binding
   * cookie); returns the new session's id and where to go. The session the browser held
   * before (`replaces`, from its cookie) ends: the new cookie takes its place.
   */
  complete(
    callbackUrl: URL,
    binding: string | undefined,
    replaces: string | undefined,
  ): Promise<{ sessionId: string; returnTo: string; expiresAt: number }>;
  /** The reviewer a session cookie stands for; throws `unauthenticated` when there is none. */
  reviewer(sessionId: string): Promise<{ reviewer: Reviewer; session: SessionRecord }>;
  /**
   * Ends a session. One that lasts only with its CSRF token (a cross-site form could sign
   * people out otherwise); one that has ended already (expired, signed out) needs none.
   */
  signOut(sessionId: string, csrfToken: string | undefined): Promise<void>;
  /**
   * Calls `listener` with a session's id when this gateway ends it (sign-out, or a new
   * sign-in in its browser), once the store has forgotten it.
   */
  onSessionEnd(listener: (sessionId: string) => void): () => void;
  /** The CSRF token that state-changing calls made with this session must send. */
  csrfToken(sessionId: string): string;
  /** Whether a session's authentication is fresh enough, and strong enough, for step-up. */
  steppedUp(session: SessionRecord): boolean;
  /**
   * Until when the session's authentication counts for step-up (epoch ms), as `steppedUp`
   * judges it; undefined when it never does (not the configured acr).
   */
  stepUpUntil(session: SessionRecord): number | undefined;
  readonly stepUpMaxAgeMs: number;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const csrfTokenOf = (sessionId: string) => sha256(`csrf:${sessionId}`).slice(0, 43);

/** Only a path on this gateway: never `//host` or a full URL (no open redirect). */
export function safeReturnTo(value: string | undefined): string {
  // Printable ASCII only: browsers drop tabs and newlines from a URL, so "/\t/evil.example"
  // would leave the gateway, and CR/LF would not belong in a Location header anyway.
  if (value && !/^[\x21-\x7e]+$/.test(value)) return "/";
  if (!value?.startsWith("/") || value.startsWith("//") || value.includes("\\")) return "/";
  return value.length > 2048 ? "/" : value;
}

export function createOidcService(deps: {
  config: OidcConfig;
  publicUrl: string;
  store: Store;
  /**
   * The store's time (Store.now): what sessions and sign-ins are stamped and judged by, so
   * that every replica ends a session, asks the provider again and counts a step-up alike.
   */
  clock: () => number;
  logger: Logger;
  /** A configured reviewer's groups, when the e-mail is one. */
  configured: (email: string) => { groups: readonly string[] } | undefined;
  /** Every group that some rule names as approvers: the only IdP groups that admit anyone. */
  approverGroups: () => ReadonlySet<string>;
}): OidcService {
  const { config, store, clock, logger } = deps;
  const redirectUri = `${deps.publicUrl}/auth/callback`;
  let discovered: Promise<oidc.Configuration> | undefined;

  const provider = (): Promise<oidc.Configuration> => {
    discovered ??= oidc
      .discovery(new URL(config.issuer), config.clientId, config.clientSecret, undefined, {
        // A provider on plain http is only for development and tests on loopback.
        ...(config.issuer.startsWith("http:") ? { execute: [oidc.allowInsecureRequests] } : {}),
        timeout: PROVIDER_TIMEOUT_S,
      })
      .catch((error: unknown) => {
        discovered = undefined;
        throw new AirlockError(
          "identity_provider_unavailable",
          `the identity provider at ${config.issuer} cannot be reached (${errorMessage(error)}); try again shortly`,
          { cause: error },
        );
      });
    return discovered;
  };

  /** A configured reviewer, or a member of a group some rule names as approvers. */
  const admitted = (email: string, groups: readonly string[]): boolean =>
    deps.configured(email) !== undefined ||
    groups.some((group) => deps.approverGroups().has(group));

  const endListeners = new Set<(sessionId: string) => void>();
  const ended = (sessionId: string) => {
    for (const listener of endListeners) listener(sessionId);
  };

  // An authentication is no later than the sign-in that reported it: an auth_time ahead of
  // this gateway's clock (the provider's runs fast) would keep the session fresh far longer.
  const stepUpUntil = (session: SessionRecord): number | undefined =>
    config.acr === undefined || session.acr === config.acr
      ? Math.min(session.authTime, session.createdAt) + config.stepUpMaxAge
      : undefined;
  const steppedUp = (session: SessionRecord): boolean => {
    const until = stepUpUntil(session);
    return until !== undefined && clock() <= until;
  };

  const groupsIn = (claims: Record<string, unknown>): string[] => {
    const claimed = claims[config.groupsClaim];
    return Array.isArray(claimed)
      ? claimed.filter((g): g is string => typeof g === "string").slice(0, 200)
      : [];
  };
  let warnedNoRefresh = false;

  /**
   * Forgets a session, with `reviewer.signed_out` when it was still live, and ends its live
   * feeds on this gateway.
   */
  const endSession = async (
    sessionId: string,
    session: SessionRecord | undefined,
    data: Record<string, string> = {},
  ): Promise<void> => {
    await store.deleteSession(
      sha256(sessionId),
      session && {
        type: "reviewer.signed_out",
        requestId: null,
        actor: { type: "reviewer", id: session.email },
        at: clock(),
        data,
      },
    );
    ended(sessionId);
  };

  /** The session ends: the identity provider no longer vouches for the person. */
  const endByProvider = async (sessionId: string, session: SessionRecord, why: string) => {
    logger.warn({ reviewer: session.email, why }, "the identity provider ended a console session");
    await endSession(sessionId, session, { by: "identity provider", reason: why });
    return undefined;
  };

  /**
   * Asks the identity provider again, with the session's refresh token, whether the person
   * still signs in and in which groups. A refusal ends the session; an outage is waited out
   * for one more `recheckEvery`, after which the session serves nothing until it is answered.
   */
  const askAgain = async (
    sessionId: string,
    session: SessionRecord,
  ): Promise<SessionRecord | undefined> => {
    const now = clock();
    const overdue = now - session.checkedAt >= 2 * config.recheckEvery;
    const unconfirmed = (detail: string) =>
      new AirlockError(
        "identity_provider_unavailable",
        `your session could not be confirmed with the identity provider at ${config.issuer} (${detail}); try again shortly`,
      );
    // Only with the token the session holds now: a call that read the session before another
    // call's check was recorded holds a token the provider may have replaced, and a provider
    // that rotates them takes a replaced one for a stolen copy and ends the whole sign-in.
    let sealed = session.refreshToken ?? "";
    const waitUntil = now + ANSWER_WAIT_MS;
    while (!(await store.claimSessionCheck(session.idHash, clock(), CHECK_LEASE_MS, sealed))) {
      // Another call is asking (here or on another replica), or has answered since the read.
      const current = await store.findSession(session.idHash, clock());
      if (!current) return undefined;
      if (current.checkedAt !== session.checkedAt || !overdue) return current;
      // Past the grace its answer is waited for: a page's calls that other replicas took
      // would otherwise all fail while one of them asks.
      if (clock() >= waitUntil) throw unconfirmed("another gateway is asking it");
      sealed = current.refreshToken ?? "";
      await new Promise((resolve) => setTimeout(resolve, ANSWER_POLL_MS));
    }
    const refreshToken = openForSession(sessionId, sealed);
    if (!refreshToken) return endByProvider(sessionId, session, "its refresh token cannot be read");
    let claims: Record<string, unknown>;
    let next: string | undefined;
    try {
      const configuration = await provider();
      const tokens = await oidc.refreshTokenGrant(configuration, refreshToken);
      next = tokens.refresh_token;
      claims = tokens.claims() ?? {};
      // Some providers put groups in the ID token of a sign-in only: userinfo has them.
      if (!(config.groupsClaim in claims)) {
        claims = {
          ...claims,
          ...(await oidc.fetchUserInfo(configuration, tokens.access_token, session.subject)),
        };
      }
    } catch (error) {
      if (error instanceof oidc.ResponseBodyError && error.error === "invalid_grant") {
        return endByProvider(sessionId, session, `it refused the refresh token (${error.error})`);
      }
      logger.warn(
        { err: error, reviewer: session.email },
        "could not check a console session with the identity provider; will try again",
      );
      if (next === undefined) {
        await store.releaseSessionCheck(session.idHash);
        if (overdue) throw unconfirmed(errorMessage(error));
        return session;
      }
      // The refresh went through before the failure (userinfo's, say): the token it gave is
      // recorded, since a provider that rotates refresh tokens takes the old one, presented
      // again, for a stolen copy and ends the whole sign-in. The groups and checkedAt stay as
      // they were: the check is still unanswered.
      const kept = {
        groups: session.groups,
        refreshToken: sealForSession(sessionId, next),
        checkedAt: session.checkedAt,
      };
      if (!(await store.recordSessionCheck(session.idHash, kept, undefined))) return undefined;
      if (overdue) throw unconfirmed(errorMessage(error));
      return { ...session, ...kept };
    }
    // An address that only lowercasing makes the session's (the Kelvin sign for k) is another.
    const email = typeof claims.email === "string" ? (emailKey(claims.email) ?? "") : undefined;
    if (claims.sub !== session.subject || (email !== undefined && email !== session.email)) {
      return endByProvider(sessionId, session, "it now names someone else");
    }
    if (claims.email_verified === false) {
      return endByProvider(sessionId, session, "the e-mail is no longer verified");
    }
    const groups = groupsIn(claims);
    if (!admitted(session.email, groups)) {
      return endByProvider(sessionId, session, "no longer a reviewer: in no approver group");
    }
    const changed =
      groups.length !== session.groups.length || groups.some((g) => !session.groups.includes(g));
    const event: AuditEventInput | undefined = changed
      ? {
          type: "reviewer.groups_changed",
          requestId: null,
          actor: { type: "reviewer", id: session.email },
          at: clock(),
          data: { from: session.groups, to: groups, by: "identity provider" },
        }
      : undefined;
    const check = {
      groups,
      refreshToken: next ? sealForSession(sessionId, next) : sealed,
      checkedAt: clock(),
    };
    if (!(await store.recordSessionCheck(session.idHash, check, event))) return undefined;
    return { ...session, ...check };
  };

  // One question at a time per session in this process: a page load makes several calls.
  const asking = new Map<string, Promise<SessionRecord | undefined>>();
  const recheck = (sessionId: string, session: SessionRecord) => {
    let answer = asking.get(session.idHash);
    if (!answer) {
      answer = askAgain(sessionId, session).finally(() => asking.delete(session.idHash));
      asking.set(session.idHash, answer);
    }
    return answer;
  };

  return {
    stepUpMaxAgeMs: config.stepUpMaxAge,
    steppedUp,
    stepUpUntil,

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
      // The state doubles as the browser's binding: a callback URL alone (leaked, or handed
      // to someone to sign them in as another person) completes nothing.
      return { url: oidc.buildAuthorizationUrl(configuration, params).href, binding: state };
    },

    async complete(callbackUrl, binding, replaces) {
      const state = callbackUrl.searchParams.get("state") ?? "";
      if (!binding || binding !== state) {
        throw new AirlockError(
          "unauthenticated",
          "this sign-in was started in another browser (or its cookie is gone); start again at /auth/login",
        );
      }
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
      let refreshToken: string | undefined;
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
        refreshToken = tokens.refresh_token;
      } catch (error) {
        if (error instanceof AirlockError) throw error;
        logger.warn({ err: error }, "a sign-in could not be completed");
        throw new AirlockError(
          "unauthenticated",
          `the sign-in could not be completed (${errorMessage(error)}); start again at /auth/login`,
        );
      }
      const raw = typeof claims.email === "string" ? claims.email : undefined;
      // Reviewers are known by e-mail, so only one the provider verified, in plain ASCII
      // (case folding of other scripts can turn one address into another), identifies them.
      const email = raw && /^[\x21-\x7e]+@[\x21-\x7e]+$/.test(raw) ? raw.toLowerCase() : undefined;
      if (!email || claims.email_verified !== true) {
        throw new AirlockError(
          "unauthenticated",
          "the identity provider gave no verified e-mail address; Airlock identifies reviewers by it",
        );
      }
      const groups = groupsIn(claims);
      if (!admitted(email, groups)) {
        throw new AirlockError(
          "forbidden",
          `${email} is not a reviewer: not in the config's reviewers, and in no approver group of any rule`,
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
        // Without auth_time nobody knows when the person last authenticated: never fresh.
        authTime: typeof claims.auth_time === "number" ? claims.auth_time * 1000 : 0,
        acr: typeof claims.acr === "string" ? claims.acr : null,
        createdAt: now,
        expiresAt: now + config.sessionTtl,
        refreshToken: refreshToken ? sealForSession(sessionId, refreshToken) : null,
        checkedAt: now,
      };
      if (!refreshToken && !warnedNoRefresh) {
        warnedNoRefresh = true;
        logger.warn(
          { issuer: config.issuer },
          "the identity provider gave no refresh token: a console session keeps the groups of its sign-in until it ends (oidc.sessionTtl); add offline_access to oidc.scopes if the provider needs it asked for",
        );
      }
      // The browser's earlier session goes with the same write: once its cookie is
      // overwritten nobody signs it out, and a copy of it would last its whole lifetime.
      await store.insertSession(
        session,
        {
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
        },
        replaces === undefined ? undefined : sha256(replaces),
      );
      if (replaces !== undefined) ended(replaces);
      return { sessionId, returnTo: signIn.returnTo, expiresAt: session.expiresAt };
    },

    async reviewer(sessionId) {
      let session = await store.findSession(sha256(sessionId), clock());
      if (session && !sameIssuer(session.issuer, config.issuer)) {
        // Signed in through the provider this gateway had before (oidc.issuer changed): the
        // one it trusts now never vouched for the person, and the old one is no longer asked.
        logger.warn(
          { reviewer: session.email, issuer: session.issuer },
          "ended a console session signed in through another identity provider",
        );
        await endSession(sessionId, session, {
          by: "gateway",
          reason: `it was signed in through another identity provider (${session.issuer})`,
        });
        session = undefined;
      }
      if (session?.refreshToken && clock() - session.checkedAt >= config.recheckEvery) {
        session = await recheck(sessionId, session);
      }
      if (!session || !admitted(session.email, session.groups)) {
        throw new AirlockError(
          "unauthenticated",
          "your session has ended (or you are no longer a reviewer); sign in again at /auth/login",
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
          configured: deps.configured(session.email) !== undefined,
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

    async signOut(sessionId, csrfToken) {
      const idHash = sha256(sessionId);
      const session = await store.findSession(idHash, clock());
      const expected = Buffer.from(csrfTokenOf(sessionId));
      const given = Buffer.from(csrfToken ?? "");
      if (session && (given.length !== expected.length || !timingSafeEqual(given, expected))) {
        throw new AirlockError(
          "forbidden",
          "x-csrf-token: missing or wrong; send the csrfToken from GET /auth/session to sign out",
          { field: "x-csrf-token" },
        );
      }
      await endSession(sessionId, session);
    },

    onSessionEnd(listener) {
      endListeners.add(listener);
      return () => endListeners.delete(listener);
    },

    csrfToken: csrfTokenOf,
  };
}

/** Issuers compare as the client library compares them to discovery: as parsed URLs. */
function sameIssuer(a: string, b: string): boolean {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return false;
  }
}
