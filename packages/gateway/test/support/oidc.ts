/**
 * A real OpenID provider (oidc-provider) on loopback with a login page of our own, so reviewer
 * sign-in is tested against the protocol as a real identity provider speaks it.
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type Provider from "oidc-provider";
import type { Configuration, KoaContextWithOIDC } from "oidc-provider";

export interface TestIdpUser {
  sub: string;
  email: string;
  groups: string[];
  password: string;
}

export interface TestIdpOptions {
  /** The relying party's callback URLs, registered on the one client. */
  redirectUris: string[];
  /** Defaults to alice (approvers) and bob (requesters); a password defaults to `${local part}-password`. */
  users?: { email: string; groups: string[]; password?: string }[];
}

export interface AuthorizeResult {
  /** The URL the provider sent the browser back to (code and state, or error), never fetched. */
  redirect: string;
  /** Whether the login form was shown and submitted, i.e. no provider session was reused. */
  loggedIn: boolean;
}

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Keyed by email; live, so a test may change a user's groups or add a user between logins. */
  users: Map<string, TestIdpUser>;
  /**
   * Follows an authorization URL as a browser would, logging in as `email` on the login page when
   * the provider asks, and returns the redirect to the client. Each `agent` (default "default")
   * keeps its own cookie jar, so a provider session persists across calls of the same agent.
   * Throws when the provider refuses the login (wrong password, unknown user) or shows an error page.
   */
  authorize(
    authorizationUrl: string,
    as: { email: string; agent?: string; password?: string },
  ): Promise<AuthorizeResult>;
  /** The acr the provider records for subsequent logins (reused sessions keep theirs). */
  setAcr(acr: string | undefined): void;
  /** How many refresh token grants it answered with tokens. */
  readonly refreshes: number;
  /** While down, its token endpoint answers 503 (a provider outage, for checks of sessions). */
  setTokenEndpointDown(down: boolean): void;
  /**
   * While on, each refresh token works once and is replaced by the one the grant returns
   * (rotation); presenting a replaced one again revokes the whole grant, as Auth0, Okta and
   * Keycloak (Revoke Refresh Token) do when they see a refresh token reused.
   */
  setRotateRefreshTokens(on: boolean): void;
  /** While on, a refresh grant's answer carries no ID token (the claims are userinfo's). */
  setRefreshWithoutIdToken(on: boolean): void;
  /** While down, its userinfo endpoint answers 503. */
  setUserinfoDown(down: boolean): void;
  /** While set, its token endpoint answers this many ms late (0: at once). */
  setTokenEndpointDelay(ms: number): void;
  /** While set, its userinfo endpoint answers this many ms late (0: at once). */
  setUserinfoDelay(ms: number): void;
  close(): Promise<void>;
}

/** Advertised in discovery; acr only reaches ID tokens when this list is not empty. */
export const TEST_IDP_ACR_VALUES = ["urn:airlock:password", "urn:airlock:mfa"];

const CLIENT_ID = "airlock-gateway";
const CLIENT_SECRET = "airlock-test-client-secret";
const DEFAULT_USERS: NonNullable<TestIdpOptions["users"]> = [
  { email: "alice@example.test", groups: ["approvers"] },
  { email: "bob@example.test", groups: ["requesters"] },
];

export async function startOidcProvider(options: TestIdpOptions): Promise<TestIdp> {
  const users = new Map<string, TestIdpUser>();
  for (const user of options.users ?? DEFAULT_USERS) {
    users.set(user.email, {
      // Derived from the email so it is stable across restarts yet never equal to the email.
      sub: createHash("sha256").update(user.email).digest("hex").slice(0, 24),
      email: user.email,
      groups: [...user.groups],
      password: user.password ?? defaultPassword(user.email),
    });
  }
  let acr: string | undefined;
  let rotateRefreshTokens = false;

  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const configuration: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: options.redirectUris,
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        // client_secret_post is accepted too: the provider treats the two as interchangeable.
        token_endpoint_auth_method: "client_secret_basic",
        // So every ID token says when the user logged in, not only those asked with max_age.
        require_auth_time: true,
      },
    ],
    pkce: { required: () => true },
    rotateRefreshToken: () => rotateRefreshTokens,
    // As Keycloak does, and Okta or Entra ID when asked for offline_access.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    // Scope-gated claims go into the ID token too, so a relying party needs no userinfo call.
    conformIdTokenClaims: false,
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name"],
      groups: ["groups"],
      acr: null,
      auth_time: null,
      sid: null,
      iss: null,
    },
    acrValues: TEST_IDP_ACR_VALUES,
    findAccount: (_ctx, sub) => {
      const user = [...users.values()].find((candidate) => candidate.sub === sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        claims: () => ({
          sub: user.sub,
          email: user.email,
          email_verified: true,
          name: user.email.split("@")[0],
          groups: [...user.groups],
        }),
      };
    },
    // Consent is granted on the user's behalf, so the login form is the only page a test drives.
    loadExistingGrant: async (ctx) => grantAll(ctx),
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: {
      // Fixed keys: the jar and the browser must survive nothing but this process anyway.
      keys: ["airlock-test-cookie-key"],
      // Over plain http on loopback the provider leaves `secure` off by itself; lax lets the
      // top-level redirects carry the session as a browser would.
      long: { httpOnly: true, sameSite: "lax" },
      short: { httpOnly: true, sameSite: "lax" },
    },
    jwks: { keys: [signingKey()] },
    // Every ttl given, so the provider prints no "you SHOULD change it" notice at request time.
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: 600,
      Interaction: 600,
      PreAuthorizedCode: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = "html";
      ctx.body = page(
        "Error",
        `<h1 id="error">${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description ?? "")}</p>`,
      );
    },
  };

  const provider = await quietly(async () => {
    // Imported here, not at the top, so the "unsupported runtime" notice it prints on Node 20
    // at import time falls inside the quiet window.
    const { default: OidcProvider } = await import("oidc-provider");
    return new OidcProvider(issuer, configuration);
  });
  let tokenEndpointDown = false;
  let refreshWithoutIdToken = false;
  let userinfoDown = false;
  let tokenEndpointDelay = 0;
  let userinfoDelay = 0;
  // Before callback(), which composes the middleware there is.
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as Record<string, unknown> | undefined;
    if (
      refreshWithoutIdToken &&
      ctx.path === "/token" &&
      ctx.oidc?.params?.grant_type === "refresh_token" &&
      body &&
      typeof body === "object"
    ) {
      delete body.id_token;
    }
  });

  const providerHandler = provider.callback();
  let refreshes = 0;
  provider.on("grant.success", (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc.params?.grant_type === "refresh_token") refreshes += 1;
  });

  server.on("request", async (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? "/", issuer).pathname;
    const delay = path === "/token" ? tokenEndpointDelay : path === "/me" ? userinfoDelay : 0;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (tokenEndpointDown && path === "/token") {
      response.writeHead(503, { "content-type": "text/plain" }).end("down on purpose");
      return;
    }
    if (userinfoDown && path === "/me") {
      response.writeHead(503, { "content-type": "text/plain" }).end("down on purpose");
      return;
    }
    if (!path.startsWith("/interaction/")) {
      providerHandler(request, response);
      return;
    }
    handleInteraction(provider, request, response, path, users, () => acr).catch(
      (error: unknown) => {
        if (!response.headersSent) response.writeHead(400, { "content-type": "text/plain" });
        response.end(
          `interaction failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      },
    );
  });

  const jars = new Map<string, CookieJar>();
  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    users,
    async authorize(authorizationUrl, as) {
      const agent = as.agent ?? "default";
      let jar = jars.get(agent);
      if (!jar) {
        jar = createCookieJar();
        jars.set(agent, jar);
      }
      const password = as.password ?? users.get(as.email)?.password ?? "";
      return followAsBrowser(issuer, authorizationUrl, jar, as.email, password);
    },
    setAcr(value) {
      acr = value;
    },
    get refreshes() {
      return refreshes;
    },
    setTokenEndpointDown(down) {
      tokenEndpointDown = down;
    },
    setRotateRefreshTokens(on) {
      rotateRefreshTokens = on;
    },
    setRefreshWithoutIdToken(on) {
      refreshWithoutIdToken = on;
    },
    setUserinfoDown(down) {
      userinfoDown = down;
    },
    setTokenEndpointDelay(ms) {
      tokenEndpointDelay = ms;
    },
    setUserinfoDelay(ms) {
      userinfoDelay = ms;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

function defaultPassword(email: string): string {
  return `${email.split("@")[0]}-password`;
}

/** A grant covering whatever the client asked for, kept on the session like a real consent. */
async function grantAll(ctx: KoaContextWithOIDC) {
  const { oidc } = ctx;
  const accountId = oidc.session?.accountId;
  const clientId = oidc.client?.clientId;
  if (!accountId || !clientId) return undefined;
  const grantId = oidc.result?.consent?.grantId ?? oidc.session?.grantIdFor(clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new oidc.provider.Grant({ accountId, clientId });
  }
  grant.addOIDCScope(oidc.requestParamOIDCScopes);
  grant.addOIDCClaims(oidc.requestParamClaims);
  await grant.save();
  return grant;
}

/** GET /interaction/:uid shows the login form; POST /interaction/:uid/login checks it. */
async function handleInteraction(
  provider: Provider,
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
  users: Map<string, TestIdpUser>,
  currentAcr: () => string | undefined,
): Promise<void> {
  const [, , uid, action] = path.split("/");
  const details = await provider.interactionDetails(request, response);
  if (details.uid !== uid) throw new Error("interaction does not match its cookie");

  if (details.prompt.name === "consent") {
    // Reached only when the client insists (prompt=consent): grant as loadExistingGrant would.
    const accountId = details.session?.accountId;
    if (!accountId) throw new Error("consent without a login");
    const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope ?? "openid"));
    const missing = details.prompt.details.missingOIDCClaims;
    if (Array.isArray(missing)) grant.addOIDCClaims(missing.map(String));
    await provider.interactionFinished(
      request,
      response,
      { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true },
    );
    return;
  }
  if (details.prompt.name !== "login") throw new Error(`unsupported prompt ${details.prompt.name}`);

  const hint = typeof details.params.login_hint === "string" ? details.params.login_hint : "";
  if (request.method === "GET" && action === undefined) {
    sendLoginForm(response, uid ?? "", hint, undefined);
    return;
  }
  if (request.method !== "POST" || action !== "login") throw new Error("no such interaction route");

  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
  const login = form.get("login") ?? "";
  const user = users.get(login);
  if (!user || user.password !== form.get("password")) {
    sendLoginForm(response, uid ?? "", login, "Wrong email or password.");
    return;
  }
  const acr = currentAcr();
  await provider.interactionFinished(
    request,
    response,
    { login: { accountId: user.sub, ...(acr === undefined ? {} : { acr }) } },
    { mergeWithLastSubmission: false },
  );
}

function sendLoginForm(
  response: ServerResponse,
  uid: string,
  login: string,
  error: string | undefined,
): void {
  const body = `<h1>Sign in</h1>
${error === undefined ? "" : `<p id="login-error" role="alert">${escapeHtml(error)}</p>`}
<form method="post" action="/interaction/${encodeURIComponent(uid)}/login">
  <label for="login">Email</label>
  <input id="login" name="login" type="text" autocomplete="username" value="${escapeHtml(login)}" required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button id="submit" type="submit">Sign in</button>
</form>`;
  response.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
  });
  response.end(page("Sign in", body));
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

function signingKey() {
  // Made per start: tokens need not outlive the provider, and no key sits in the repository.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { ...privateKey.export({ format: "jwk" }), kid: "test-rs256", alg: "RS256", use: "sig" };
}

/**
 * Runs `work` with oidc-provider's own notices (development defaults, unsupported runtime)
 * dropped from the console; everything else still prints.
 */
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const { info, warn } = console;
  const filter =
    (print: (...args: unknown[]) => void) =>
    (...args: unknown[]) => {
      if (typeof args[0] === "string" && args[0].includes("oidc-provider ")) return;
      print.apply(console, args);
    };
  console.info = filter(info);
  console.warn = filter(warn);
  try {
    return await work();
  } finally {
    console.info = info;
    console.warn = warn;
  }
}

interface CookieJar {
  header(url: URL): string;
  store(setCookies: string[]): void;
}

/** Enough of RFC 6265 for one host: names, paths and expiry. */
function createCookieJar(): CookieJar {
  const cookies = new Map<string, { name: string; value: string; path: string; expires: number }>();
  const onPath = (requestPath: string, cookiePath: string) =>
    requestPath === cookiePath ||
    (requestPath.startsWith(cookiePath) &&
      (cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/"));
  return {
    header(url) {
      const now = Date.now();
      return [...cookies.values()]
        .filter((cookie) => cookie.expires > now && onPath(url.pathname, cookie.path))
        .map((cookie) => `${cookie.name}=${cookie.value}`)
        .join("; ");
    },
    store(setCookies) {
      for (const line of setCookies) {
        const [pair = "", ...attributes] = line.split(";");
        const equals = pair.indexOf("=");
        if (equals <= 0) continue;
        const name = pair.slice(0, equals).trim();
        const value = pair.slice(equals + 1).trim();
        let path = "/";
        let expires = Number.POSITIVE_INFINITY;
        for (const attribute of attributes) {
          const [key = "", ...rest] = attribute.split("=");
          const attributeValue = rest.join("=").trim();
          switch (key.trim().toLowerCase()) {
            case "path":
              path = attributeValue || "/";
              break;
            case "expires":
              expires = Math.min(expires, Date.parse(attributeValue));
              break;
            case "max-age":
              expires = Date.now() + Number(attributeValue) * 1000;
              break;
          }
        }
        const key = `${path}\n${name}`;
        if (expires > Date.now()) cookies.set(key, { name, value, path, expires });
        else cookies.delete(key);
      }
    },
  };
}

/**
 * Redirects are followed by hand so the jar sees every Set-Cookie and the walk stops at the
 * first redirect that leaves the provider: that one belongs to the client and is not fetched.
 */
async function followAsBrowser(
  issuer: string,
  authorizationUrl: string,
  jar: CookieJar,
  email: string,
  password: string,
): Promise<AuthorizeResult> {
  const origin = new URL(issuer).origin;
  let url = new URL(authorizationUrl);
  if (url.origin !== origin) throw new Error(`${url.href} is not at the provider ${issuer}`);
  let submit: { body: URLSearchParams } | undefined;
  let loggedIn = false;
  for (let hop = 0; hop < 20; hop++) {
    if (url.origin !== origin) return { redirect: url.href, loggedIn };
    const headers: Record<string, string> = {};
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    if (submit) headers["content-type"] = "application/x-www-form-urlencoded";
    const response = await fetch(url, {
      method: submit ? "POST" : "GET",
      headers,
      ...(submit ? { body: submit.body } : {}),
      redirect: "manual",
    });
    jar.store(response.headers.getSetCookie());
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url);
      submit = undefined;
      continue;
    }
    const html = await response.text();
    const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
    if (response.status === 200 && action && !submit) {
      url = new URL(action, url);
      submit = { body: new URLSearchParams({ login: email, password }) };
      loggedIn = true;
      continue;
    }
    if (submit && action) throw new Error(`the provider refused the login of ${email}`);
    throw new Error(
      `the provider answered ${response.status} at ${url.pathname}: ${html
        .replace(/<[^>]*>/g, " ")
        .trim()
        .slice(0, 300)}`,
    );
  }
  throw new Error("too many redirects at the provider");
}
