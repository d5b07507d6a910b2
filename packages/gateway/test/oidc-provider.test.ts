/**
 * The test identity provider against openid-client: if these hold, the gateway's sign-in tests
 * meet a provider that behaves as a real one does (PKCE, sessions, max_age, prompt, acr).
 */
import { setTimeout as sleep } from "node:timers/promises";
import * as client from "openid-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOidcProvider, type TestIdp } from "./support/oidc.js";

const REDIRECT_URI = "http://127.0.0.1:9/auth/callback";
const SCOPE = "openid email groups";

describe("test OpenID provider", () => {
  let idp: TestIdp;
  let config: client.Configuration;

  beforeAll(async () => {
    idp = await startOidcProvider({
      redirectUris: [REDIRECT_URI],
      users: [
        { email: "rita@example.test", groups: ["approvers", "dba"], password: "rita-secret" },
        { email: "sam@example.test", groups: [] },
      ],
    });
    config = await client.discovery(
      new URL(idp.issuer),
      idp.clientId,
      idp.clientSecret,
      client.ClientSecretBasic(idp.clientSecret),
      { execute: [client.allowInsecureRequests] },
    );
  });
  afterAll(async () => {
    await idp?.close();
  });

  /** An authorization request as the gateway will make it, with PKCE and state. */
  async function startLogin(extra: Record<string, string> = {}) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      ...extra,
    });
    return { url: url.href, verifier, state };
  }

  async function signIn(
    as: { email: string; agent?: string; password?: string },
    extra: Record<string, string> = {},
  ) {
    const login = await startLogin(extra);
    const { redirect, loggedIn } = await idp.authorize(login.url, as);
    const tokens = await client.authorizationCodeGrant(config, new URL(redirect), {
      pkceCodeVerifier: login.verifier,
      expectedState: login.state,
    });
    const claims = tokens.claims();
    if (!claims) throw new Error("no ID token");
    return { claims, loggedIn };
  }

  it("publishes a discovery document with the endpoints and what it supports", async () => {
    const response = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
    expect(response.status).toBe(200);
    const discovery = (await response.json()) as Record<string, unknown>;
    expect(discovery.issuer).toBe(idp.issuer);
    for (const endpoint of ["authorization_endpoint", "token_endpoint", "jwks_uri"]) {
      expect(String(discovery[endpoint])).toMatch(new RegExp(`^${idp.issuer}/`));
    }
    expect(discovery.code_challenge_methods_supported).toEqual(["S256"]);
    expect(discovery.scopes_supported).toEqual(
      expect.arrayContaining(["openid", "email", "groups"]),
    );
    expect(discovery.claims_supported).toEqual(
      expect.arrayContaining(["email", "email_verified", "groups", "auth_time", "acr"]),
    );
    expect(discovery.acr_values_supported).toContain("urn:airlock:mfa");
    expect(discovery.token_endpoint_auth_methods_supported).toEqual(
      expect.arrayContaining(["client_secret_basic", "client_secret_post"]),
    );
    expect(config.serverMetadata().authorization_endpoint).toBe(discovery.authorization_endpoint);
  });

  it("serves a login page a browser can fill by id", async () => {
    const { url } = await startLogin();
    const start = await fetch(url, { redirect: "manual" });
    expect(start.status).toBe(303);
    const location = new URL(start.headers.get("location") ?? "", url);
    expect(location.pathname).toMatch(/^\/interaction\/[\w-]+$/);
    const cookie = start.headers
      .getSetCookie()
      .map((line) => line.split(";")[0])
      .join("; ");
    const page = await fetch(location, { headers: { cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/<form method="post" action="\/interaction\/[\w-]+\/login">/);
    expect(html).toMatch(/<input id="login" name="login"/);
    expect(html).toMatch(/<input id="password" name="password" type="password"/);
    expect(html).toMatch(/<button id="submit" type="submit"/);
  });

  it("completes a code flow with PKCE to an ID token carrying email, groups and auth_time", async () => {
    const before = Math.floor(Date.now() / 1000);
    const { claims, loggedIn } = await signIn({ email: "rita@example.test", agent: "flow" });
    expect(loggedIn).toBe(true);
    const rita = idp.users.get("rita@example.test");
    expect(claims).toMatchObject({
      iss: idp.issuer,
      aud: idp.clientId,
      sub: rita?.sub,
      email: "rita@example.test",
      email_verified: true,
      groups: ["approvers", "dba"],
    });
    expect(claims.sub).not.toBe("rita@example.test");
    expect(claims.auth_time).toBeGreaterThanOrEqual(before);
    expect(claims.acr).toBeUndefined();
  });

  it("gates email and groups behind their scopes", async () => {
    const { claims } = await signIn(
      { email: "rita@example.test", agent: "scopes" },
      { scope: "openid" },
    );
    expect(claims.sub).toBe(idp.users.get("rita@example.test")?.sub);
    expect(claims.email).toBeUndefined();
    expect(claims.groups).toBeUndefined();
    expect(typeof claims.auth_time).toBe("number");
  });

  it("reuses the provider session of the same agent, and logs in again on prompt=login or max_age=0", async () => {
    const as = { email: "rita@example.test", agent: "sessions" };
    const first = await signIn(as);
    expect(first.loggedIn).toBe(true);

    const reused = await signIn(as);
    expect(reused.loggedIn).toBe(false);
    expect(reused.claims.auth_time).toBe(first.claims.auth_time);

    const otherBrowser = await signIn({ ...as, agent: "sessions-elsewhere" });
    expect(otherBrowser.loggedIn).toBe(true);

    // auth_time counts whole seconds: wait so a fresh login is visibly newer.
    await sleep(1_100);
    const forced = await signIn(as, { prompt: "login" });
    expect(forced.loggedIn).toBe(true);
    expect(forced.claims.auth_time).toBeGreaterThan(first.claims.auth_time ?? 0);

    await sleep(1_100);
    const aged = await signIn(as, { max_age: "0" });
    expect(aged.loggedIn).toBe(true);
    expect(aged.claims.auth_time).toBeGreaterThan(forced.claims.auth_time ?? 0);

    const recent = await signIn(as, { max_age: "3600" });
    expect(recent.loggedIn).toBe(false);
    expect(recent.claims.auth_time).toBe(aged.claims.auth_time);
  });

  it("puts the acr set for the next login into the ID token", async () => {
    const as = { email: "sam@example.test", agent: "acr" };
    try {
      idp.setAcr("urn:airlock:mfa");
      const stepUp = await signIn(as, { acr_values: "urn:airlock:mfa" });
      expect(stepUp.loggedIn).toBe(true);
      expect(stepUp.claims.acr).toBe("urn:airlock:mfa");
      expect(stepUp.claims.groups).toEqual([]);

      idp.setAcr(undefined);
      const plain = await signIn(as, { prompt: "login" });
      expect(plain.loggedIn).toBe(true);
      expect(plain.claims.acr).toBeUndefined();
    } finally {
      idp.setAcr(undefined);
    }
  });

  it("refuses a wrong password or an unknown user, and keeps no session from it", async () => {
    const { url } = await startLogin();
    await expect(
      idp.authorize(url, { email: "rita@example.test", agent: "wrong", password: "guess" }),
    ).rejects.toThrow(/refused the login/);
    const again = await startLogin();
    await expect(
      idp.authorize(again.url, { email: "nobody@example.test", agent: "wrong" }),
    ).rejects.toThrow(/refused the login/);

    const honest = await signIn({ email: "rita@example.test", agent: "wrong" });
    expect(honest.loggedIn).toBe(true);
  });

  it("requires PKCE: no challenge gets an error, a wrong verifier gets no tokens", async () => {
    const noPkce = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      state: "s1",
    });
    const { redirect } = await idp.authorize(noPkce.href, { email: "rita@example.test" });
    const answer = new URL(redirect);
    expect(`${answer.origin}${answer.pathname}`).toBe(REDIRECT_URI);
    expect(answer.searchParams.get("error")).toBe("invalid_request");
    expect(answer.searchParams.get("code")).toBeNull();

    const login = await startLogin();
    const granted = await idp.authorize(login.url, { email: "rita@example.test" });
    await expect(
      client.authorizationCodeGrant(config, new URL(granted.redirect), {
        pkceCodeVerifier: client.randomPKCECodeVerifier(),
        expectedState: login.state,
      }),
    ).rejects.toMatchObject({ error: "invalid_grant" });
  });

  it("accepts client_secret_post at the token endpoint as well as basic", async () => {
    const login = await startLogin();
    const { redirect } = await idp.authorize(login.url, { email: "rita@example.test" });
    const code = new URL(redirect).searchParams.get("code");
    expect(code).toBeTruthy();
    const tokenEndpoint = config.serverMetadata().token_endpoint ?? "";
    const response = await fetch(tokenEndpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: code ?? "",
        redirect_uri: REDIRECT_URI,
        code_verifier: login.verifier,
        client_id: idp.clientId,
        client_secret: idp.clientSecret,
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { id_token?: string };
    const payload = JSON.parse(
      Buffer.from(body.id_token?.split(".")[1] ?? "", "base64url").toString("utf8"),
    ) as Record<string, unknown>;
    expect(payload.email).toBe("rita@example.test");
  });
});
