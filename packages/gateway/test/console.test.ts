/**
 * The console in a real browser (Debian's Chromium driven by playwright-core), signed in
 * through a real OpenID provider: a request appears live, is approved with a comment and
 * runs; a non-approver sees no Approve button; masked values never reach the page.
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/cli.js";
import { api, read, refund, removeDir, startGateway, type TestGateway } from "./support/gateway.js";
import { startOidcProvider, type TestIdp } from "./support/oidc.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const CARD = "4000056655665556";
const screenshots = fileURLToPath(new URL("../../../docs/screenshots/", import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveChromium = existsSync(chromiumPath);
if (!haveChromium && process.env.CI === "true") {
  throw new Error(`${chromiumPath} is missing; .ci/run installs Debian's chromium`);
}

describe.skipIf(!haveChromium)("the console in a browser", () => {
  let upstream: Upstream;
  let idp: TestIdp;
  let gw: TestGateway;
  let browser: Browser;
  let agent: string;
  let base: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    idp = await startOidcProvider({
      redirectUris: [`${base}/auth/callback`],
      users: [
        { email: "carol@example.com", groups: ["finance"] },
        { email: "erin@example.com", groups: ["eng"] },
        { email: "dave@example.com", groups: ["finance"] },
      ],
    });
    gw = await startGateway(
      `
server: { port: ${port}, publicUrl: "${base}" }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
  - { name: deploy-bot, owner: alice@example.com }
identity:
  oidc:
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecret: ${idp.clientSecret}
    scopes: [openid, email, groups]
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: refunds need finance
    when: http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance], risk: high }
    mask: { input: [body.card_number] }
  - name: deploys need eng
    when: http.path.startsWith("/deploys")
    decision: review
    review: { approvers: [eng] }
  - name: payouts need eng among two
    when: http.path.startsWith("/payouts")
    decision: review
    review: { approvers: [finance, eng], quorum: 2, require: { eng: 1 } }
  - name: nothing else
    decision: deny
audit:
  signingKey: |
${generateKeyPairSync("ed25519")
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString()
  .replace(/^/gm, "    ")}
  checkpointEvery: 1s
`,
      { gateway: { port } },
    );
    agent = await gw.token("agent", "support-bot");
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    mkdirSync(screenshots, { recursive: true });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await idp?.close();
    await upstream?.close();
  });

  /** Opens the console signed in as `email`, recording every response body it receives. */
  async function signedIn(email: string, viewport = { width: 1280, height: 860 }, start = "/") {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    const bodies: string[] = [];
    page.on("response", async (response) => {
      if (response.url().startsWith(base) && response.request().resourceType() !== "eventsource") {
        bodies.push(await response.text().catch(() => ""));
      }
    });
    await page.goto(`${base}${start}`);
    await page.waitForSelector("#login");
    await page.fill("#login", email);
    await page.fill("#password", `${email.split("@")[0]}-password`);
    await page.click("#submit");
    // Back where the sign-in started: an approval link lands on its request.
    await page.waitForURL(`${base}${start}`);
    await page.getByRole("navigation").waitFor();
    return { page, bodies, close: () => context.close() };
  }

  const submit = async () => {
    const res = await api(base, "POST", "/v1/actions", {
      token: agent,
      body: {
        ...refund(),
        input: {
          ...refund().input,
          body: { invoice: "inv_2002", amount: 1800, card_number: CARD },
        },
        justification: "Customer was charged twice for invoice inv_2002",
      },
    });
    expect(res.status).toBe(202);
    return res.body.id as string;
  };

  async function noCardIn(page: Page, bodies: string[]) {
    expect(await page.content()).not.toContain(CARD);
    for (const body of bodies) expect(body).not.toContain(CARD);
  }

  it("shows a new request live, approves it with a comment, and sees it run", async () => {
    const carol = await signedIn("carol@example.com");
    try {
      const id = await submit();
      // No reload: the inbox hears of it over server-sent events.
      const row = carol.page.locator(`a[href="/requests/${id}"]`);
      await row.waitFor({ timeout: 10_000 });
      await carol.page.screenshot({ path: `${screenshots}inbox.png` });

      await row.click();
      await carol.page.waitForURL(`${base}/requests/${id}`);
      await carol.page.locator("#approve").waitFor();
      await expect(carol.page.locator("[data-testid=status]").innerText()).resolves.toBe("pending");
      await carol.page.screenshot({ path: `${screenshots}request.png`, fullPage: true });

      await carol.page.fill("#comment", "Matches the duplicate charge in Stripe");
      await carol.page.click("#approve");
      await carol.page
        .locator("[data-testid=status]", { hasText: /^succeeded$/ })
        .waitFor({ timeout: 10_000 });
      const done = await api(base, "GET", `/v1/actions/${id}`, { token: agent });
      expect(done.body.status).toBe("succeeded");
      expect(done.body.reviews[0]).toMatchObject({
        reviewer: "carol@example.com",
        comment: "Matches the duplicate charge in Stripe",
        verifiedBy: "oidc",
      });
      await noCardIn(carol.page, carol.bodies);
    } finally {
      await carol.close();
    }
  });

  it("catches up on a request made while its live stream was still opening", async () => {
    const carol = await signedIn("carol@example.com");
    try {
      // The stream opens late, as on a slow network: the inbox is fetched first, the request
      // made, and only then does the stream open, too late to carry that change.
      let opened = false;
      await carol.page.context().route("**/v1/events", async (route) => {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        opened = true;
        await route.continue();
      });
      const listed = carol.page.waitForResponse((r) => r.url().includes("/v1/requests"));
      await carol.page.reload();
      await listed;
      const id = await submit();
      expect(opened).toBe(false);
      await carol.page.locator(`a[href="/requests/${id}"]`).waitFor({ timeout: 10_000 });
    } finally {
      await carol.close();
    }
  });

  it("shows a new request live while other requests change all the time", async () => {
    const carol = await signedIn("carol@example.com");
    // A busy gateway: an agent's refused reads change a request every few tens of ms.
    let busy = true;
    const traffic = (async () => {
      while (busy) {
        await api(base, "POST", "/v1/actions", { token: agent, body: read("/other") });
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const id = await submit();
      await carol.page.locator(`a[href="/requests/${id}"]`).waitFor({ timeout: 5_000 });
    } finally {
      busy = false;
      await traffic;
      await carol.close();
    }
  });

  it("shows a new request live while others change all the time and the inbox loads slowly", async () => {
    const carol = await signedIn("carol@example.com");
    // A reviewer far away, or an inbox of several pages: a load takes longer than the pause
    // between two refreshes.
    await carol.page.context().route("**/v1/requests?*", async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await route.continue();
    });
    let busy = true;
    const traffic = (async () => {
      while (busy) {
        await api(base, "POST", "/v1/actions", { token: agent, body: read("/other") });
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const id = await submit();
      await carol.page.locator(`a[href="/requests/${id}"]`).waitFor({ timeout: 8_000 });
    } finally {
      busy = false;
      await traffic;
      await carol.close();
    }
  });

  it("keeps a typed comment through the sign-in that a vote refused as signed out asks for", async () => {
    const id = await submit();
    const carol = await signedIn("carol@example.com", undefined, `/requests/${id}`);
    try {
      await carol.page.fill("#comment", "Checked with the customer by phone");
      // The session ends while the page is open (it ran out, or was signed out elsewhere).
      await carol.page.evaluate(async () => {
        const session = (await (await fetch("/auth/session")).json()) as { csrfToken: string };
        await fetch("/auth/logout", {
          method: "POST",
          headers: { "x-csrf-token": session.csrfToken },
        });
      });
      await carol.page.click("#approve");
      const signIn = carol.page.locator(".decide").getByRole("link", { name: "Sign in" });
      await signIn.waitFor();
      await Promise.all([carol.page.waitForEvent("framenavigated"), signIn.click()]);
      await carol.page.locator("#login, #decide-heading").first().waitFor();
      if (await carol.page.locator("#login").count()) {
        await carol.page.fill("#login", "carol@example.com");
        await carol.page.fill("#password", "carol-password");
        await carol.page.click("#submit");
      }
      await carol.page.waitForURL(`${base}/requests/${id}`);
      await carol.page.locator("#comment").waitFor();
      await expect(carol.page.inputValue("#comment")).resolves.toBe(
        "Checked with the customer by phone",
      );
    } finally {
      await carol.close();
    }
  });

  it("keeps one reviewer's unsent comment from the next one to sign in on the same tab", async () => {
    const id = await submit();
    const carol = await signedIn("carol@example.com", undefined, `/requests/${id}`);
    try {
      await carol.page.fill("#comment", "Carol thinks this is fraud");
      await carol.page.getByRole("button", { name: "Sign out" }).click();
      await carol.page.getByRole("heading", { name: "Signed out" }).waitFor();
      // A shared computer: the next reviewer signs in in the same tab (the provider's own
      // session gone, as when it signs out too).
      await carol.page.context().clearCookies();
      await carol.page.goto(`${base}/requests/${id}`);
      await carol.page.waitForSelector("#login");
      await carol.page.fill("#login", "dave@example.com");
      await carol.page.fill("#password", "dave-password");
      await carol.page.click("#submit");
      await carol.page.waitForURL(`${base}/requests/${id}`);
      await carol.page.locator("#comment").waitFor();
      await expect(carol.page.inputValue("#comment")).resolves.toBe("");
      expect(
        await carol.page.evaluate("JSON.stringify(Object.entries(sessionStorage))"),
      ).not.toContain("Carol thinks");
    } finally {
      await carol.close();
    }
  });

  it("shows bidirectional controls in an agent's text as what they are", async () => {
    // Rendered raw, U+202E would show "refund 1800 EUR" as "refund RUE 0081" and worse: the
    // reviewer must see that the text was built to read differently from what it is.
    const res = await api(base, "POST", "/v1/actions", {
      token: agent,
      body: {
        ...refund(),
        justification: "Duplicate charge \u202e00.81$ ,dnufer\u202c for inv_2002",
        context: { "ticket\u2066": "CS-\u2067881" },
      },
    });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    const carol = await signedIn("carol@example.com", undefined, `/requests/${id}`);
    try {
      await carol.page.locator("blockquote.claim").waitFor();
      await expect(carol.page.locator("blockquote.claim").innerText()).resolves.toBe(
        "Duplicate charge [U+202E]00.81$ ,dnufer[U+202C] for inv_2002",
      );
      const text = await carol.page.locator("main").innerText();
      expect(text).toContain('"ticket[U+2066]": "CS-[U+2067]881"');
      const html = await carol.page.content();
      for (const control of ["\u202e", "\u202c", "\u2066", "\u2067"]) {
        expect(html).not.toContain(control);
      }
    } finally {
      await carol.close();
    }
  });

  it("says which group an approval is still needed from, after a vote and on the rules page", async () => {
    const res = await api(base, "POST", "/v1/actions", {
      token: agent,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "POST", path: "/payouts", body: { amount: 90 } },
      },
    });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    const carol = await signedIn("carol@example.com", undefined, `/requests/${id}`);
    try {
      await carol.page.locator("#approve").click();
      await carol.page
        .getByText("1 of 2 approvals so far. Still needed: 1 from eng.")
        .waitFor({ timeout: 10_000 });
      const reviews = carol.page.locator("section[aria-labelledby=reviews-heading]");
      await reviews.getByText("At least 1 from eng.").waitFor();
      await reviews.getByText("Still needed: 1 from eng.").waitFor();
      await carol.page.goto(`${base}/rules`);
      await carol.page.getByText("2, at least 1 from eng").waitFor();
    } finally {
      await carol.close();
    }
  });

  it("shows no Approve button to someone outside the approver group, and the API refuses them", async () => {
    const id = await submit();
    const erin = await signedIn("erin@example.com", { width: 390, height: 844 }, `/requests/${id}`);
    try {
      await erin.page.locator("[data-testid=status]").waitFor();
      expect(await erin.page.locator("#approve").count()).toBe(0);
      await erin.page.screenshot({ path: `${screenshots}request-phone.png`, fullPage: true });
      // Even a hand-made call, with the session's CSRF token, is refused.
      const refused = await erin.page.evaluate(async (requestId) => {
        const session = (await (await fetch("/auth/session")).json()) as { csrfToken: string };
        const res = await fetch(`/v1/requests/${requestId}/reviews`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-csrf-token": session.csrfToken },
          body: JSON.stringify({ decision: "approve" }),
        });
        return { status: res.status, body: (await res.json()) as { error: { code: string } } };
      }, id);
      expect(refused.status).toBe(403);
      expect(refused.body.error.code).toBe("not_an_approver");
      // And without the CSRF token a change is refused before anything else is looked at.
      const forged = await erin.page.evaluate(async (requestId) => {
        const res = await fetch(`/v1/requests/${requestId}/reviews`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ decision: "deny" }),
        });
        return res.status;
      }, id);
      expect(forged).toBe(403);
      const still = await api(base, "GET", `/v1/actions/${id}`, { token: agent });
      expect(still.body.status).toBe("pending");
      // The page fits a phone: nothing wider than the screen.
      const overflow = await erin.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      );
      expect(overflow).toBeLessThanOrEqual(0);
      await noCardIn(erin.page, erin.bodies);
    } finally {
      await erin.close();
    }
  });

  it("lists a request waiting for this reviewer behind a hundred newer ones for others", async () => {
    const id = await submit();
    // A hundred newer requests that only eng may decide: carol (finance) cannot.
    const deployer = await gw.token("agent", "deploy-bot");
    for (let i = 0; i < 100; i++) {
      const res = await api(base, "POST", "/v1/actions", {
        token: deployer,
        body: {
          connection: "billing-api",
          operation: "request",
          input: { method: "POST", path: "/deploys", body: { build: i } },
        },
      });
      expect(res.status).toBe(202);
    }
    const carol = await signedIn("carol@example.com");
    try {
      await carol.page.locator(`a[href="/requests/${id}"]`).waitFor({ timeout: 5_000 });
    } finally {
      await carol.close();
    }
  });

  it("lists every problem of an audit chain edited in two places, not only the first", async () => {
    await submit();
    await submit();
    const db = new Database(join(gw.dir, "airlock.db"));
    db.pragma("busy_timeout = 5000");
    const edit = db.prepare("UPDATE audit_events SET data = ? WHERE seq = ?");
    const rows = db
      .prepare(
        "SELECT seq, data FROM audit_events WHERE type = 'request.submitted' ORDER BY seq DESC LIMIT 2",
      )
      .all()
      .reverse() as { seq: number; data: string }[];
    expect(rows).toHaveLength(2);
    const carol = await signedIn("carol@example.com");
    try {
      // Untouched, the chain verifies, and so far as the gateway signed it, its signatures.
      await carol.page.goto(`${base}/audit`);
      await carol.page.getByText("Chain verified").waitFor();
      expect(await carol.page.locator(".signed-reach").textContent()).toMatch(
        /^Signed checkpoints vouch for events up to #\d+, signed /,
      );
      for (const row of rows) edit.run('{"edited":true}', row.seq);
      await carol.page.goto(`${base}/audit`);
      const alert = carol.page.getByRole("alert");
      await alert.getByText("The audit chain does not verify").waitFor();
      const items = alert.locator(".chain-problems li");
      expect(await items.allTextContents()).toEqual([
        `At event #${rows[0]!.seq} (edited): event ${rows[0]!.seq} (request.submitted): its content does not match its hash; it was edited`,
        `At event #${rows[1]!.seq} (edited): event ${rows[1]!.seq} (request.submitted): its content does not match its hash; it was edited`,
      ]);
      expect(await alert.textContent()).toContain("2 problems in");
    } finally {
      for (const row of rows) edit.run(row.data, row.seq);
      db.close();
      await carol.close();
    }
  });
});
