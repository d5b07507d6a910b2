/**
 * Sign-in through a real OpenID provider on loopback: sessions in httpOnly cookies, CSRF on
 * every change, groups from the provider's claim, and step-up approvals that need a fresh
 * authentication.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/cli.js";
import {
  api,
  onPostgres,
  refund,
  removeDir,
  startGateway,
  storeSql,
  type TestGateway,
  until,
} from "./support/gateway.js";
import { startOidcProvider, type TestIdp } from "./support/oidc.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

interface Session {
  cookie: string;
  csrf: string;
}

describe("sign-in through the identity provider", () => {
  let upstream: Upstream;
  let idp: TestIdp;
  let gw: TestGateway;
  let agent: string;
  let base: string;
  let strictBase: string;
  let stoppingBase: string;
  /**
   * Ports held from the start for gateways that start late in the file: registered with the
   * provider, they must not go to another test's server meanwhile.
   */
  let stoppingPort: Server | undefined;
  let movedPort: Server | undefined;
  let movedBase: string;
  let gatewayConfig: (port: number, extra?: string) => string;

  beforeAll(async () => {
    upstream = await startUpstream();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    strictBase = `http://127.0.0.1:${await freePort()}`;
    const hold = async (): Promise<[Server, string]> => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return [server, `http://127.0.0.1:${(server.address() as { port: number }).port}`];
    };
    [stoppingPort, stoppingBase] = await hold();
    [movedPort, movedBase] = await hold();
    idp = await startOidcProvider({
      redirectUris: [
        `${base}/auth/callback`,
        `${strictBase}/auth/callback`,
        `${stoppingBase}/auth/callback`,
        `${movedBase}/auth/callback`,
      ],
      users: [
        { email: "carol@example.com", groups: ["finance"] },
        { email: "alice@example.com", groups: ["finance"] },
        { email: "erin@example.com", groups: ["eng"] },
        { email: "nobody@example.com", groups: [] },
        { email: "rita@example.com", groups: ["requesters"] },
      ],
    });
    gatewayConfig = (port: number, extra = "") => `
server: { port: ${port}, publicUrl: "http://127.0.0.1:${port}" }
storage: sqlite:./airlock.db
agents: [{ name: support-bot, owner: alice@example.com }]
reviewers: [{ email: alice@example.com, groups: [] }]
identity:
  oidc:
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecret: ${idp.clientSecret}
    scopes: [openid, email, groups]
    stepUpMaxAge: 2s${extra}
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: big refunds need step-up
    when: http.path == "/refunds/big"
    decision: review
    review: { approvers: [finance], stepUp: true }
  - name: refunds need finance
    when: http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance] }
  - name: deploys need eng
    when: http.path.startsWith("/deploys")
    decision: review
    review: { approvers: [eng] }
  - name: nothing else
    decision: deny
`;
    gw = await startGateway(gatewayConfig(port), { gateway: { port } });
    agent = await gw.token("agent", "support-bot");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    for (const held of [stoppingPort, movedPort]) {
      if (held?.listening) await new Promise((resolve) => held.close(resolve));
    }
    await idp?.close();
    await upstream?.close();
  });

  /**
   * The browser's part of a sign-in, without a browser: redirects followed by hand. `cookie`
   * is a session cookie the browser already holds.
   */
  async function signIn(
    email: string,
    options: { stepUp?: boolean; returnTo?: string; at?: string; cookie?: string } = {},
  ): Promise<Session & { loggedIn: boolean; location: string; setCookie: string }> {
    const base = options.at ?? baseUrl();
    const query = new URLSearchParams({ returnTo: options.returnTo ?? "/" });
    if (options.stepUp) query.set("stepUp", "1");
    const start = await fetch(`${base}/auth/login?${query}`, { redirect: "manual" });
    expect(start.status).toBe(302);
    const binding = start.headers.get("set-cookie")!.split(";")[0]!;
    const { redirect, loggedIn } = await idp.authorize(start.headers.get("location")!, {
      email,
      agent: email,
    });
    const back = await fetch(redirect, {
      redirect: "manual",
      headers: { cookie: options.cookie ? `${options.cookie}; ${binding}` : binding },
    });
    expect(back.status).toBe(302);
    const setCookie = back.headers.getSetCookie().find((c) => c.startsWith("airlock_session="))!;
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    const cookie = setCookie.split(";")[0]!;
    const session = await fetch(`${base}/auth/session`, { headers: { cookie } });
    const body = (await session.json()) as { csrfToken: string };
    return {
      cookie,
      csrf: body.csrfToken,
      loggedIn,
      location: back.headers.get("location")!,
      setCookie,
    };
  }

  const baseUrl = () => base;

  async function vote(
    session: Session,
    id: string,
    csrf: string | null = session.csrf,
    at = baseUrl(),
  ) {
    const res = await fetch(`${at}/v1/requests/${id}/reviews`, {
      method: "POST",
      headers: {
        cookie: session.cookie,
        "content-type": "application/json",
        ...(csrf === null ? {} : { "x-csrf-token": csrf }),
      },
      body: JSON.stringify({ decision: "approve", comment: "checked the invoice" }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the API answers
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  /** What a live feed sends until `enough`, its end, or `ms`. */
  async function readFeed(res: Response, enough: (text: string) => boolean, ms = 5000) {
    const reader = res.body!.getReader();
    const deadline = Date.now() + ms;
    let text = "";
    while (!enough(text)) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), deadline - Date.now())),
      ]);
      if (!chunk) break;
      if (chunk.done) return { text, ended: true };
      text += new TextDecoder().decode(chunk.value);
    }
    return { text, ended: false };
  }

  const submit = async (path = "/refunds") => {
    const res = await api(base, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { ...refund().input, path } },
    });
    expect(res.status).toBe(202);
    return res.body.id as string;
  };

  it("signs in, returns where it started, and knows the provider's groups", async () => {
    const carol = await signIn("carol@example.com", { returnTo: "/requests/req_x" });
    expect(carol.location).toBe("/requests/req_x");
    const session = await fetch(`${base}/auth/session`, { headers: { cookie: carol.cookie } });
    expect(await session.json()).toMatchObject({ email: "carol@example.com", groups: ["finance"] });
    const list = await fetch(`${base}/v1/requests?status=pending`, {
      headers: { cookie: carol.cookie },
    });
    expect(list.status).toBe(200);
  });

  it("never redirects off the gateway after a sign-in", async () => {
    for (const returnTo of [
      "//evil.example/steal",
      "/\t/evil.example/x",
      "/x\r\nSet-Cookie: a=b",
    ]) {
      const evil = await signIn("carol@example.com", { returnTo });
      expect(evil.location).toBe("/");
    }
  });

  it("completes a sign-in only in the browser that started it", async () => {
    const start = await fetch(`${base}/auth/login`, { redirect: "manual" });
    const { redirect } = await idp.authorize(start.headers.get("location")!, {
      email: "carol@example.com",
      agent: "someone-else",
    });
    // The callback URL alone, in another browser (no binding cookie), opens no session.
    const elsewhere = await fetch(redirect, { redirect: "manual" });
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.headers.getSetCookie().some((c) => c.startsWith("airlock_session="))).toBe(
      false,
    );
  });

  it("refuses a change without the session's CSRF token, and takes it with the token", async () => {
    const id = await submit();
    const carol = await signIn("carol@example.com");
    const none = await vote(carol, id, null);
    expect(none.status).toBe(403);
    expect(none.body.error).toMatchObject({ code: "forbidden", field: "x-csrf-token" });
    const wrong = await vote(carol, id, "0".repeat(43));
    expect(wrong.status).toBe(403);
    const pending = await api(base, "GET", `/v1/actions/${id}`, { token: agent });
    expect(pending.body.reviews).toEqual([]);
    const ok = await vote(carol, id);
    expect(ok.status).toBe(200);
    const done = await api(base, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(done.body.reviews[0]).toMatchObject({
      reviewer: "carol@example.com",
      verifiedBy: "oidc",
    });
  });

  it("refuses the agent's owner and people outside the approver groups", async () => {
    const id = await submit();
    const alice = await signIn("alice@example.com");
    expect((await vote(alice, id)).body.error.code).toBe("self_approval");
    const erin = await signIn("erin@example.com");
    expect((await vote(erin, id)).body.error.code).toBe("not_an_approver");
  });

  it("refuses a session to anyone neither configured nor in a rule's approver group", async () => {
    for (const email of ["nobody@example.com", "rita@example.com"]) {
      const start = await fetch(`${base}/auth/login`, { redirect: "manual" });
      const binding = start.headers.get("set-cookie")!.split(";")[0]!;
      const { redirect } = await idp.authorize(start.headers.get("location")!, {
        email,
        agent: email,
      });
      const back = await fetch(redirect, { redirect: "manual", headers: { cookie: binding } });
      expect(back.status).toBe(403);
      expect(back.headers.getSetCookie().some((c) => c.startsWith("airlock_session="))).toBe(false);
    }
  });

  it("ends the session on sign-out", async () => {
    const carol = await signIn("carol@example.com");
    const out = await fetch(`${base}/auth/logout`, {
      method: "POST",
      headers: { cookie: carol.cookie, "x-csrf-token": carol.csrf },
    });
    expect(out.status).toBe(204);
    const after = await fetch(`${base}/auth/session`, { headers: { cookie: carol.cookie } });
    expect(after.status).toBe(401);
  });

  it("ends the session's live feeds at sign-out, and only them", async () => {
    const carol = await signIn("carol@example.com");
    const alice = await signIn("alice@example.com");
    const controller = new AbortController();
    try {
      const feed = (session: Session) =>
        fetch(`${base}/v1/events`, {
          headers: { cookie: session.cookie },
          signal: controller.signal,
        });
      const [carolFeed, aliceFeed] = await Promise.all([feed(carol), feed(alice)]);
      expect([carolFeed.status, aliceFeed.status]).toEqual([200, 200]);
      const out = await fetch(`${base}/auth/logout`, {
        method: "POST",
        headers: { cookie: carol.cookie, "x-csrf-token": carol.csrf },
      });
      expect(out.status).toBe(204);
      const id = await submit();
      const alices = await readFeed(aliceFeed, (text) => text.includes(id));
      expect(alices.text).toContain(id);
      // Well before the heartbeat would have checked the session again.
      const carols = await readFeed(carolFeed, () => false, 2000);
      expect(carols).toEqual({ text: "retry: 2000\n\n", ended: true });
    } finally {
      controller.abort();
    }
  });

  it("ends the browser's earlier session when it signs in again", async () => {
    const first = await signIn("carol@example.com");
    // The step-up sign-in, in the same browser: its new cookie overwrites the first.
    const stepped = await signIn("carol@example.com", { stepUp: true, cookie: first.cookie });
    expect(stepped.cookie).not.toBe(first.cookie);
    const earlier = await fetch(`${base}/auth/session`, { headers: { cookie: first.cookie } });
    expect(earlier.status).toBe(401);
    const now = await fetch(`${base}/auth/session`, { headers: { cookie: stepped.cookie } });
    expect(now.status).toBe(200);
  });

  it("needs a fresh authentication to approve a step-up rule, and records it", async () => {
    const id = await submit("/refunds/big");
    const carol = await signIn("carol@example.com");
    await new Promise((r) => setTimeout(r, 2200));
    const stale = await vote(carol, id);
    expect(stale.status).toBe(403);
    expect(stale.body.error.code).toBe("step_up_required");
    expect(stale.body.error.login).toBe(`/auth/login?stepUp=1&returnTo=%2Frequests%2F${id}`);

    const fresh = await signIn("carol@example.com", { stepUp: true });
    // The provider remembered carol, but a step-up asks her to authenticate again.
    expect(fresh.loggedIn).toBe(true);
    const approved = await vote(fresh, id);
    expect(approved.status).toBe(200);
    const audit = await api(base, "GET", `/v1/audit?requestId=${id}`, {
      token: await gw.token("reviewer", "alice@example.com"),
    });
    const reviewed = audit.body.events.find((e: { type: string }) => e.type === "request.reviewed");
    expect(reviewed.data.evidence).toMatchObject({ method: "oidc", stepUp: true });
    expect(Date.now() - Date.parse(reviewed.data.evidence.authTime)).toBeLessThan(60_000);
  });

  it("needs the configured acr for a step-up approval, and records it", async () => {
    const port = Number(new URL(strictBase).port);
    const strict = await startGateway(gatewayConfig(port, "\n    acr: urn:airlock:mfa"), {
      gateway: { port },
    });
    try {
      const token = await strict.token("agent", "support-bot");
      const held = await api(strictBase, "POST", "/v1/actions", {
        token,
        body: { ...refund(), input: { ...refund().input, path: "/refunds/big" } },
      });
      idp.setAcr("urn:airlock:password");
      const weak = await signIn("carol@example.com", { stepUp: true, at: strictBase });
      const refused = await vote(weak, held.body.id, weak.csrf, strictBase);
      expect(refused.body.error?.code).toBe("step_up_required");
      // The console is told this sign-in never counts, not when a fresh one would stop.
      const sessionOf = async (who: Session) =>
        (await (
          await fetch(`${strictBase}/auth/session`, { headers: { cookie: who.cookie } })
        ).json()) as { steppedUp: boolean; stepUpUntil: string };
      expect(await sessionOf(weak)).toMatchObject({ steppedUp: false, stepUpUntil: null });
      idp.setAcr("urn:airlock:mfa");
      const strong = await signIn("carol@example.com", { stepUp: true, at: strictBase });
      const counted = await sessionOf(strong);
      expect(counted.steppedUp).toBe(true);
      // stepUpMaxAge (2 s) after the sign-in.
      const until = Date.parse(counted.stepUpUntil);
      expect(until - Date.now()).toBeGreaterThan(0);
      expect(until - Date.now()).toBeLessThanOrEqual(2000);
      const accepted = await vote(strong, held.body.id, strong.csrf, strictBase);
      expect(accepted.status).toBe(200);
      expect(accepted.body.reviews[0]).toMatchObject({ reviewer: "carol@example.com" });
      const audit = await api(strictBase, "GET", `/v1/audit?requestId=${held.body.id}`, {
        token: await strict.token("reviewer", "alice@example.com"),
      });
      const reviewed = audit.body.events.find(
        (e: { type: string }) => e.type === "request.reviewed",
      );
      expect(reviewed.data.evidence).toMatchObject({ acr: "urn:airlock:mfa", stepUp: true });
    } finally {
      idp.setAcr(undefined);
      await strict.close();
      removeDir(strict.dir);
    }
  });

  it("counts a step-up from the sign-in at the latest, when the provider's auth_time is ahead", async () => {
    const port = Number(new URL(strictBase).port);
    const skewed = await startGateway(gatewayConfig(port), { gateway: { port } });
    try {
      const token = await skewed.token("agent", "support-bot");
      const held = async () => {
        const res = await api(strictBase, "POST", "/v1/actions", {
          token,
          body: { ...refund(), input: { ...refund().input, path: "/refunds/big" } },
        });
        expect(res.status).toBe(202);
        return res.body.id as string;
      };
      const carol = await signIn("carol@example.com", { stepUp: true, at: strictBase });
      expect((await vote(carol, await held(), carol.csrf, strictBase)).status).toBe(200);
      // The provider's clock ten minutes ahead of the gateway's (the store's: on PostgreSQL
      // the database's), so the auth_time it gave is in the gateway's future; and a minute
      // since that sign-in, far past stepUpMaxAge (2 s).
      await storeSql(
        skewed,
        "UPDATE sessions SET auth_time = auth_time + 600000, created_at = created_at - 60000",
      );
      const stale = await vote(carol, await held(), carol.csrf, strictBase);
      expect(stale.body.error?.code).toBe("step_up_required");
      const session = await fetch(`${strictBase}/auth/session`, {
        headers: { cookie: carol.cookie },
      });
      const judged = (await session.json()) as { stepUpUntil: string; authTime: string };
      expect(judged).toMatchObject({ steppedUp: false });
      // Counted from the sign-in, by the gateway's clock, not from the provider's auth_time.
      expect(Date.parse(judged.stepUpUntil)).toBeLessThan(Date.now());
      expect(Date.parse(judged.stepUpUntil)).toBeLessThan(Date.parse(judged.authTime));
    } finally {
      await skewed.close();
      removeDir(skewed.dir);
    }
  });

  it("ends a session signed in through the identity provider the gateway had before", async () => {
    const port = Number(new URL(movedBase).port);
    await new Promise((resolve) => movedPort!.close(resolve));
    const before = await startGateway(gatewayConfig(port), { gateway: { port } });
    const carol = await signIn("carol@example.com", { at: movedBase });
    await before.close();
    // The same store, restarted with oidc.issuer moved to another provider.
    const other = `http://127.0.0.1:${await freePort()}/other-provider`;
    const after = await startGateway(gatewayConfig(port).replace(idp.issuer, other), {
      dir: before.dir,
      gateway: { port },
    });
    try {
      const session = await fetch(`${movedBase}/auth/session`, {
        headers: { cookie: carol.cookie },
      });
      expect(session.status).toBe(401);
      const reader = await after.token("reviewer", "alice@example.com");
      const out = await api(movedBase, "GET", "/v1/audit?type=reviewer.signed_out", {
        token: reader,
      });
      expect(out.body.events).toEqual([
        expect.objectContaining({
          actor: { type: "reviewer", id: "carol@example.com" },
          data: {
            by: "gateway",
            reason: `it was signed in through another identity provider (${idp.issuer})`,
          },
        }),
      ]);
      expect(after.logs.join("")).toContain("signed in through another identity provider");
    } finally {
      await after.close();
      removeDir(before.dir);
    }
  });

  it("signs out a live session only with its CSRF token, and clears an expired one's cookie", async () => {
    const port = Number(new URL(strictBase).port);
    // An hour ahead of this process's clock (on SQLite, the store's time too).
    const later = await startGateway(gatewayConfig(port), {
      gateway: { port, clock: () => Date.now() + 3_600_000 },
    });
    try {
      const signOut = (session: Session, csrf?: string) =>
        fetch(`${strictBase}/auth/logout`, {
          method: "POST",
          headers: { cookie: session.cookie, ...(csrf ? { "x-csrf-token": csrf } : {}) },
        });
      const carol = await signIn("carol@example.com", { at: strictBase });
      // The cookie lasts as long as the session, its 12 h, whatever this process's clock says.
      expect(Number(/Max-Age=(\d+)/.exec(carol.setCookie)?.[1])).toBeGreaterThan(43_190);
      expect(Number(/Max-Age=(\d+)/.exec(carol.setCookie)?.[1])).toBeLessThanOrEqual(43_200);
      const forged = await signOut(carol);
      expect(forged.status).toBe(403);
      expect(forged.headers.get("set-cookie")).toBeNull();
      const still = await fetch(`${strictBase}/auth/session`, {
        headers: { cookie: carol.cookie },
      });
      expect(still.status).toBe(200);
      // Past the session's 12 h: the console, told it is signed out, signs out to drop the cookie.
      await storeSql(later, "UPDATE sessions SET expires_at = expires_at - 13 * 3600000");
      for (const csrf of [carol.csrf, undefined]) {
        const out = await signOut(carol, csrf);
        expect(out.status).toBe(204);
        expect(out.headers.get("set-cookie")).toMatch(/^airlock_session=0+; .*Max-Age=0/);
      }
    } finally {
      await later.close();
      removeDir(later.dir);
    }
  });

  describe("checked again with the identity provider (recheckEvery)", () => {
    let checked: TestGateway;
    let at: string;
    let reader: string;
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const sessionOf = (who: Session) =>
      fetch(`${at}/auth/session`, { headers: { cookie: who.cookie } });
    const events = async (type: string) =>
      (
        await api(at, "GET", `/v1/audit?type=${type}&limit=1000`, { token: reader })
      ).body.events.filter((e: { actor: { id: string } }) => e.actor.id !== "alice@example.com");
    const submitHere = async (path: string) => {
      const res = await api(at, "POST", "/v1/actions", {
        token: await checked.token("agent", "support-bot"),
        body: { ...refund(), input: { ...refund().input, path } },
      });
      expect(res.status).toBe(202);
      return res.body.id as string;
    };

    beforeAll(async () => {
      at = strictBase;
      const port = Number(new URL(strictBase).port);
      checked = await startGateway(gatewayConfig(port, "\n    recheckEvery: 1s"), {
        gateway: { port },
      });
      reader = await checked.token("reviewer", "alice@example.com");
    });
    afterAll(async () => {
      idp.setTokenEndpointDown(false);
      await checked?.close();
      if (checked) removeDir(checked.dir);
    });

    it("follows the provider's groups: one gained counts, and with the last one lost the session ends", async () => {
      idp.users.set("gina@example.com", {
        ...idp.users.get("erin@example.com")!,
        sub: "gina-subject-0001",
        email: "gina@example.com",
        groups: ["eng"],
        password: "gina-password",
      });
      try {
        const gina = await signIn("gina@example.com", { at });
        const id = await submitHere("/refunds");
        expect((await vote(gina, id, gina.csrf, at)).body.error?.code).toBe("not_an_approver");
        idp.users.get("gina@example.com")!.groups = ["eng", "finance"];
        await pause(1100);
        const counted = await vote(gina, id, gina.csrf, at);
        expect(counted.status).toBe(200);
        const changed = await events("reviewer.groups_changed");
        expect(changed.at(-1)).toMatchObject({
          actor: { id: "gina@example.com" },
          data: { from: ["eng"], to: ["eng", "finance"], by: "identity provider" },
        });
        const audit = await api(at, "GET", `/v1/audit?requestId=${id}`, { token: reader });
        const reviewed = audit.body.events.find(
          (e: { type: string }) => e.type === "request.reviewed",
        );
        expect(reviewed.data.evidence.idpGroups).toEqual(["eng", "finance"]);

        idp.users.get("gina@example.com")!.groups = [];
        await pause(1100);
        expect((await sessionOf(gina)).status).toBe(401);
        const out = await events("reviewer.signed_out");
        expect(out.at(-1)).toMatchObject({
          actor: { id: "gina@example.com" },
          data: { by: "identity provider", reason: expect.stringMatching(/no longer a reviewer/) },
        });
      } finally {
        idp.users.delete("gina@example.com");
      }
    });

    it("ends the session of someone the provider disabled", async () => {
      idp.users.set("hal@example.com", {
        sub: "hal-subject-0001",
        email: "hal@example.com",
        groups: ["finance"],
        password: "hal-password",
      });
      const hal = await signIn("hal@example.com", { at });
      expect((await sessionOf(hal)).status).toBe(200);
      idp.users.delete("hal@example.com");
      // Within recheckEvery the session is as it was; after it, the provider is asked.
      expect((await sessionOf(hal)).status).toBe(200);
      await pause(1100);
      const id = await submitHere("/refunds");
      const refused = await vote(hal, id, hal.csrf, at);
      expect(refused.status).toBe(401);
      expect((await sessionOf(hal)).status).toBe(401);
      const out = await events("reviewer.signed_out");
      expect(out.at(-1)).toMatchObject({
        actor: { id: "hal@example.com" },
        data: { by: "identity provider", reason: expect.stringMatching(/refused/) },
      });
    });

    it("ends a session whose e-mail the provider changed into one that only folds to it", async () => {
      idp.users.set("kim@example.com", {
        sub: "kim-subject-0001",
        email: "kim@example.com",
        groups: ["finance"],
        password: "kim-password",
      });
      try {
        const kim = await signIn("kim@example.com", { at });
        // A change of case is the same address: the session goes on.
        idp.users.get("kim@example.com")!.email = "Kim@Example.com";
        await pause(1100);
        expect((await sessionOf(kim)).status).toBe(200);
        // The Kelvin sign lowercases to k: another address, which names someone else.
        idp.users.get("kim@example.com")!.email = "\u212Aim@example.com";
        await pause(1100);
        expect((await sessionOf(kim)).status).toBe(401);
        const out = await events("reviewer.signed_out");
        expect(out.at(-1)).toMatchObject({
          actor: { id: "kim@example.com" },
          data: { by: "identity provider", reason: "it now names someone else" },
        });
      } finally {
        idp.users.delete("kim@example.com");
      }
    });

    it("opens no live feed once a stop has begun, though its session was being checked then", async () => {
      const port = Number(new URL(stoppingBase).port);
      await new Promise((resolve) => stoppingPort!.close(resolve));
      const stopping = await startGateway(gatewayConfig(port, "\n    recheckEvery: 1s"), {
        gateway: { port },
      });
      try {
        const carol = await signIn("carol@example.com", { at: stoppingBase });
        await pause(1100);
        // The console reconnects its feed as the stop begins, and its session's check with the
        // provider is under way for a while.
        idp.setTokenEndpointDelay(1500);
        const feed = fetch(`${stoppingBase}/v1/events`, { headers: { cookie: carol.cookie } });
        await pause(300);
        // Before, the feed opened once the check was done, after the stop had ended every
        // feed open, and held the stop for good.
        await stopping.close();
        const answer = await feed;
        expect(answer.status).toBe(503);
        expect(((await answer.json()) as { error: { code: string } }).error.code).toBe(
          "store_unavailable",
        );
      } finally {
        idp.setTokenEndpointDelay(0);
        await stopping.close();
        removeDir(stopping.dir);
      }
    });

    it("asks once for many calls at once", async () => {
      const carol = await signIn("carol@example.com", { at });
      await pause(1100);
      const before = idp.refreshes;
      const answers = await Promise.all(
        Array.from({ length: 8 }, () =>
          fetch(`${at}/v1/requests?status=pending`, { headers: { cookie: carol.cookie } }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
      expect(idp.refreshes).toBe(before + 1);
    });

    it("waits out a provider outage for one more interval, then serves nothing until it answers", async () => {
      const carol = await signIn("carol@example.com", { at });
      idp.setTokenEndpointDown(true);
      try {
        await pause(1100);
        // Asked and unanswered, within the grace of one more interval: still served.
        expect((await sessionOf(carol)).status).toBe(200);
        await pause(1000);
        const cut = await sessionOf(carol);
        expect(cut.status).toBe(503);
        expect(((await cut.json()) as { error: { code: string } }).error.code).toBe(
          "identity_provider_unavailable",
        );
        const id = await submitHere("/refunds");
        expect((await vote(carol, id, carol.csrf, at)).status).toBe(503);
      } finally {
        idp.setTokenEndpointDown(false);
      }
      // Answered again: served at once, no claim of the failed check left to wait out.
      expect((await sessionOf(carol)).status).toBe(200);
    });

    it("keeps a refresh token the database alone cannot use", async () => {
      const carol = await signIn("carol@example.com", { at });
      const id = carol.cookie.slice(carol.cookie.indexOf("=") + 1);
      const stored = await checked.gateway.store.findSession(
        createHash("sha256").update(id).digest("hex"),
        Date.now(),
      );
      expect(stored?.refreshToken).toEqual(expect.any(String));
      const tried = await fetch(`${idp.issuer}/token`, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization: `Basic ${Buffer.from(`${idp.clientId}:${idp.clientSecret}`).toString("base64")}`,
        },
        body: new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: stored!.refreshToken!,
        }),
      });
      expect(tried.status).toBe(400);
      expect(((await tried.json()) as { error: string }).error).toBe("invalid_grant");
    });

    it("keeps the token a rotating provider gave, when userinfo fails after the refresh", async () => {
      const carol = await signIn("carol@example.com", { at });
      // The refresh answers without an ID token, so the groups must come from userinfo.
      idp.setRotateRefreshTokens(true);
      idp.setRefreshWithoutIdToken(true);
      idp.setUserinfoDown(true);
      try {
        await pause(1100);
        const before = idp.refreshes;
        // Refreshed (the provider replaced the token), but unconfirmed: within the grace.
        expect((await sessionOf(carol)).status).toBe(200);
        expect(idp.refreshes).toBe(before + 1);
        idp.setUserinfoDown(false);
        // Asked again with the token the provider gave last, not the one it replaced.
        expect((await sessionOf(carol)).status).toBe(200);
        expect(idp.refreshes).toBe(before + 2);
        expect((await sessionOf(carol)).status).toBe(200);
      } finally {
        idp.setRotateRefreshTokens(false);
        idp.setRefreshWithoutIdToken(false);
        idp.setUserinfoDown(false);
      }
    });

    it("does not ask again with a token that another call's check has replaced", async () => {
      const carol = await signIn("carol@example.com", { at });
      idp.setRotateRefreshTokens(true);
      const store = checked.gateway.store;
      const find = store.findSession.bind(store);
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      let slowRead = false;
      // The first look-up is answered late, as over a slow link: read before the other
      // call's check is recorded, handed over after it.
      store.findSession = async (...args) => {
        const found = await find(...args);
        if (!slowRead) {
          slowRead = true;
          await held;
        }
        return found;
      };
      try {
        await pause(1100);
        const before = idp.refreshes;
        const slow = sessionOf(carol);
        await until(() => slowRead);
        store.findSession = find;
        expect((await sessionOf(carol)).status).toBe(200);
        expect(idp.refreshes).toBe(before + 1);
        release();
        expect((await slow).status).toBe(200);
        expect((await sessionOf(carol)).status).toBe(200);
        expect(idp.refreshes).toBe(before + 1);
      } finally {
        store.findSession = find;
        release();
        idp.setRotateRefreshTokens(false);
      }
    });

    it.skipIf(!onPostgres)(
      "judges a session by the database's time on every replica: one whose clock runs ahead neither ends it, nor takes its step-up for stale, nor asks the provider early",
      async () => {
        // Thirteen hours ahead: past the session's 12 h, its step-up's hour and recheckEvery.
        const ahead = await startGateway(
          gatewayConfig(0, "\n    recheckEvery: 1h").replace(
            "stepUpMaxAge: 2s",
            "stepUpMaxAge: 1h",
          ),
          { dir: checked.dir, gateway: { clock: () => Date.now() + 13 * 3_600_000 } },
        );
        try {
          const carol = await signIn("carol@example.com", { stepUp: true, at });
          const refreshes = idp.refreshes;
          const there = await fetch(`${ahead.url}/auth/session`, {
            headers: { cookie: carol.cookie },
          });
          expect(there.status).toBe(200);
          expect(await there.json()).toMatchObject({ steppedUp: true });
          expect(idp.refreshes).toBe(refreshes);
          // Signed out there, in the database's time too.
          const out = await fetch(`${ahead.url}/auth/logout`, {
            method: "POST",
            headers: { cookie: carol.cookie, "x-csrf-token": carol.csrf },
          });
          expect(out.status).toBe(204);
          const [event] = (await events("reviewer.signed_out")).slice(-1);
          expect(event.actor.id).toBe("carol@example.com");
          expect(Math.abs(Date.parse(event.ts) - Date.now())).toBeLessThan(60_000);
        } finally {
          await ahead.close();
        }
      },
    );

    it.skipIf(!onPostgres)(
      "leaves a slow check to the replica that started it, however long its provider takes",
      async () => {
        const other = await startGateway(gatewayConfig(0, "\n    recheckEvery: 1s"), {
          dir: checked.dir,
        });
        const carol = await signIn("carol@example.com", { at });
        // A rotating provider, slow enough that one check outlasts 15 s: two requests of 8 s.
        idp.setRotateRefreshTokens(true);
        idp.setRefreshWithoutIdToken(true);
        idp.setTokenEndpointDelay(8000);
        idp.setUserinfoDelay(8000);
        try {
          await pause(2100);
          const before = idp.refreshes;
          const here = sessionOf(carol);
          await pause(15_500);
          // The other replica must not refresh with the token this one is still using.
          const there = await fetch(`${other.url}/auth/session`, {
            headers: { cookie: carol.cookie },
          });
          const asked = await here;
          await Promise.all([there.arrayBuffer(), asked.arrayBuffer()]);
          expect(asked.status).toBe(200);
          expect(there.status).toBe(200);
          expect(idp.refreshes).toBe(before + 1);
          idp.setTokenEndpointDelay(0);
          idp.setUserinfoDelay(0);
          expect((await sessionOf(carol)).status).toBe(200);
        } finally {
          idp.setRotateRefreshTokens(false);
          idp.setRefreshWithoutIdToken(false);
          idp.setTokenEndpointDelay(0);
          idp.setUserinfoDelay(0);
          await other.close();
        }
      },
      60_000,
    );

    it.skipIf(!onPostgres)(
      "answers a call on another replica while one asks, after two idle intervals, without a 503",
      async () => {
        const other = await startGateway(gatewayConfig(0, "\n    recheckEvery: 1s"), {
          dir: checked.dir,
        });
        const carol = await signIn("carol@example.com", { at });
        idp.setTokenEndpointDelay(600);
        try {
          // Not used for two intervals: the first call asks, the others wait for its answer.
          await pause(2100);
          const here = sessionOf(carol);
          await pause(200);
          const there = await fetch(`${other.url}/auth/session`, {
            headers: { cookie: carol.cookie },
          });
          const asked = await here;
          await Promise.all([there.arrayBuffer(), asked.arrayBuffer()]);
          expect([asked.status, there.status]).toEqual([200, 200]);
        } finally {
          idp.setTokenEndpointDelay(0);
          await other.close();
        }
      },
    );
  });

  // Last: it spends this address's sign-in budget on the shared gateway.
  it("answers 503 identity_provider_unavailable when the provider cannot be reached, as documented", async () => {
    const port = await freePort();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const cut = await startGateway(gatewayConfig(port).replace(idp.issuer, dead), {
      gateway: { port },
    });
    try {
      const login = await api(cut.url, "GET", "/auth/login");
      expect(login.status).toBe(503);
      expect(login.body.error.code).toBe("identity_provider_unavailable");
      const doc = (await api(cut.url, "GET", "/openapi.json")).body;
      expect(Object.keys(doc.paths["/auth/login"].get.responses)).toContain("503");
    } finally {
      await cut.close();
      removeDir(cut.dir);
    }
  });

  it("limits the sign-ins one address may start, which each write a row", async () => {
    const answers: Response[] = [];
    for (let i = 0; i < 40; i++) {
      answers.push(await fetch(`${base}/auth/login`, { redirect: "manual" }));
    }
    const statuses = answers.map((a) => a.status);
    // The budget refills at one a second, so a slow run may see a 302 after a 429.
    expect(statuses.every((status) => status === 302 || status === 429)).toBe(true);
    const firstRefused = statuses.indexOf(429);
    expect(firstRefused).toBeGreaterThanOrEqual(0);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(5);
    const refused = answers[firstRefused]!;
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("set-cookie")).toBeNull();
    const body = (await refused.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("rate_limited");
    expect(body.error.message).toMatch(/try again in \d+ s/);
    // A client cannot name itself someone else: X-Forwarded-For is not trusted by default.
    const spoofed = await fetch(`${base}/auth/login`, {
      redirect: "manual",
      headers: { "x-forwarded-for": "203.0.113.9" },
    });
    expect(spoofed.status).toBe(429);
  });

  it("counts each client behind a trusted proxy on its own", async () => {
    const port = Number(new URL(strictBase).port);
    const behind = await startGateway(
      gatewayConfig(port).replace(
        `publicUrl: "http://127.0.0.1:${port}" }`,
        `publicUrl: "http://127.0.0.1:${port}", trustProxy: [127.0.0.1/32] }`,
      ),
      { gateway: { port } },
    );
    try {
      const login = (client: string) =>
        fetch(`${strictBase}/auth/login`, {
          redirect: "manual",
          headers: { "x-forwarded-for": client },
        });
      // Each run of calls is counted against a budget of 30 that refills at one a second.
      const statuses = async (clients: string[]) => {
        const out: number[] = [];
        for (const client of clients) out.push((await login(client)).status);
        return out;
      };
      const first = await statuses(Array(40).fill("198.51.100.7"));
      expect(first.slice(0, 30)).toEqual(Array(30).fill(302));
      expect(first.filter((status) => status === 429).length).toBeGreaterThan(5);
      // Another client has a budget of its own.
      expect((await login("198.51.100.8")).status).toBe(302);
      // IPv6 addresses of one /64 share a budget; another /64 has its own.
      const neighbours = await statuses(
        Array.from({ length: 40 }, (_, i) => `2001:db8:1:2::${(i + 1).toString(16)}`),
      );
      expect(neighbours.slice(0, 30)).toEqual(Array(30).fill(302));
      expect(neighbours.filter((status) => status === 429).length).toBeGreaterThan(5);
      expect((await login("2001:db8:1:3::1")).status).toBe(302);

      // Many addresses together are limited too: a thousand at once, then fifty a second.
      let everywhere: Response | undefined;
      for (let i = 0; i < 5000 && !everywhere; i++) {
        const answer = await login(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
        if (answer.status === 429) everywhere = answer;
        else expect(answer.status).toBe(302);
      }
      expect(everywhere).toBeDefined();
      const body = (await everywhere!.json()) as { error: { code: string; message: string } };
      expect(body.error).toMatchObject({ code: "rate_limited" });
      expect(body.error.message).toMatch(/from everywhere at once; try again in \d+ s/);
    } finally {
      await behind.close();
      removeDir(behind.dir);
    }
  });
});
