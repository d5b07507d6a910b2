/** Probes, metrics, the OpenAPI document, and failing closed when the policy or the store fails. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  onPostgres,
  read,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let agent: string;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(
    testConfig(
      upstream.url,
      `  - name: broken at runtime
    when: http.method == "PATCH" && action.input.body.amount > 10
    decision: allow`,
    ),
  );
  agent = await gw.token("agent", "support-bot");
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

describe("probes and metrics", () => {
  it("answers liveness and readiness", async () => {
    expect((await api(gw.url, "GET", "/healthz")).body).toEqual({ status: "ok" });
    expect((await api(gw.url, "GET", "/readyz")).body).toEqual({ status: "ready" });
  });

  it("counts decisions and executions for Prometheus", async () => {
    await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
    await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    // A request held for review and withdrawn: how long it waited is counted as cancelled.
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    await api(gw.url, "POST", `/v1/actions/${held.body.id}/cancel`, { token: agent });
    await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read(), input: { method: "DELETE", path: "/invoices/1" } },
    });
    const res = await fetch(`${gw.url}/metrics`);
    const text = await res.text();
    expect(res.headers.get("content-type")).toContain("text/plain");
    expect(text).toMatch(/airlock_decisions_total\{decision="allow",rule="reads pass"\} [1-9]/);
    expect(text).toMatch(
      /airlock_decisions_total\{decision="review",rule="refunds need two finance reviewers"\} [1-9]/,
    );
    expect(text).toMatch(/airlock_decisions_total\{decision="deny",rule="nothing else"\} [1-9]/);
    expect(text).toMatch(/airlock_review_wait_seconds_count\{outcome="cancelled"\} 1\n/);
    expect(text).toMatch(
      /airlock_review_wait_seconds_bucket\{le="\+Inf",outcome="cancelled"\} 1\n/,
    );
    expect(text).toMatch(/airlock_executions_total\{outcome="succeeded"\} [1-9]/);
    expect(text).toMatch(/airlock_requests\{status="pending"\} [1-9]/);
    expect(text).toContain(
      'airlock_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/actions"',
    );
    // The process's own, under the names Node.js dashboards read.
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
  });

  it("serves an OpenAPI document generated from the same schemas the routes parse with", async () => {
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    expect(doc.openapi).toBe("3.1.0");
    const submit = doc.paths["/v1/actions"].post;
    expect(submit.requestBody.content["application/json"].schema.required).toEqual([
      "connection",
      "operation",
    ]);
    expect(
      submit.requestBody.content["application/json"].schema.properties.justification.maxLength,
    ).toBe(4000);
    expect(submit.parameters.map((p: { name: string }) => p.name)).toEqual(["wait"]);
    expect(doc.paths["/v1/actions"].get.parameters.map((p: { name: string }) => p.name)).toEqual([
      "status",
      "connection",
      "before",
      "limit",
    ]);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/v1/actions/{id}",
        "/v1/actions/{id}/cancel",
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/reviews",
        "/v1/audit",
        "/healthz",
        "/readyz",
        "/metrics",
      ]),
    );
    expect(
      doc.paths["/v1/requests/{id}/reviews"].post.requestBody.content["application/json"].schema
        .properties.decision.enum,
    ).toEqual(["approve", "deny"]);
  });

  it("lists in the OpenAPI document the statuses its routes answer", async () => {
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    const listed = (method: string, path: string) => Object.keys(doc.paths[path][method].responses);
    const bob = await gw.token("reviewer", "bob@example.com");

    expect((await vote(gw.url, "req_none", bob)).status).toBe(404);
    expect(listed("post", "/v1/requests/{id}/reviews")).toContain("404");

    const short = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read(), input: { method: "POST", path: "/short" } },
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const cancelled = await api(gw.url, "POST", `/v1/actions/${short.body.id}/cancel`, {
      token: agent,
    });
    expect(cancelled.body.error.code).toBe("expired");
    expect(listed("post", "/v1/actions/{id}/cancel")).toContain(String(cancelled.status));

    const controller = new AbortController();
    const open = () =>
      fetch(`${gw.url}/v1/events`, {
        headers: { authorization: `Bearer ${bob}` },
        signal: controller.signal,
      });
    for (let i = 0; i < 20; i++) await open();
    const refused = await open();
    controller.abort();
    expect(refused.status).toBe(429);
    expect(listed("get", "/v1/events")).toContain("429");
  });

  it("lists in the OpenAPI document the refusals every route of its kind can answer", async () => {
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    const listed = (method: string, path: string) => Object.keys(doc.paths[path][method].responses);
    const bob = await gw.token("reviewer", "bob@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });

    // The other kind of token.
    const asReviewer = await api(gw.url, "GET", `/v1/actions/${held.body.id}`, { token: bob });
    expect(asReviewer.body.error.code).toBe("forbidden");
    expect(listed("get", "/v1/actions/{id}")).toContain(String(asReviewer.status));
    const asAgent = await api(gw.url, "GET", "/v1/audit", { token: agent });
    expect(asAgent.body.error.code).toBe("forbidden");
    expect(listed("get", "/v1/audit")).toContain(String(asAgent.status));

    // A body too large, or not JSON.
    const large = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read(), justification: "x".repeat(2_000_000) },
    });
    expect(large.body.error.code).toBe("payload_too_large");
    expect(listed("post", "/v1/actions")).toContain(String(large.status));
    const text = await api(gw.url, "POST", `/v1/requests/${held.body.id}/reviews`, {
      token: bob,
      rawBody: "approve",
      contentType: "text/plain",
    });
    expect(text.body.error.field).toBe("content-type");
    expect(listed("post", "/v1/requests/{id}/reviews")).toContain(String(text.status));
  });

  it("gives approval links the console's page, which holds nothing of the request itself", async () => {
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    const page = await fetch(held.body.approvalUrl.replace("http://airlock.test", gw.url));
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(html).toContain('<div id="root">');
    expect(html).not.toContain("inv_1001");
    // The page's script is served as what it is, and a file that is not there is the API's 404.
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    const asset = await fetch(`${gw.url}${script}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get("content-type")).toContain("javascript");
    expect(asset.headers.get("cache-control")).toContain("immutable");
    const missing = await api(gw.url, "GET", "/assets/none.js");
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("not_found");
  });

  it("says in the browser how to review from a terminal when sign-in is not configured", async () => {
    // The console sends a reviewer who is not signed in to /auth/login: a page, not JSON.
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    const login = `${gw.url}/auth/login?returnTo=${encodeURIComponent(`/requests/${held.body.id}`)}`;
    const page = await fetch(login, { headers: { accept: "text/html,application/xhtml+xml" } });
    const html = await page.text();
    expect(page.status).toBe(404);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(html).toContain("identity.oidc");
    expect(html).toContain(`airlock requests approve ${held.body.id}`);
    expect(html).not.toContain("inv_1001");
    // A caller that asks for JSON still gets the error as JSON.
    const json = await api(gw.url, "GET", "/auth/login");
    expect(json.status).toBe(404);
    expect(json.body.error.code).toBe("not_found");
  });

  it("says how to review from a terminal when the console is not built", async () => {
    const bare = await startGateway(testConfig(upstream.url), { gateway: { consoleDir: false } });
    try {
      const token = await bare.token("agent", "support-bot");
      const held = await api(bare.url, "POST", "/v1/actions", { token, body: refund() });
      const page = await fetch(held.body.approvalUrl.replace("http://airlock.test", bare.url));
      const html = await page.text();
      expect(html).toContain(`airlock requests approve ${held.body.id}`);
      expect(html).not.toContain("inv_1001");
    } finally {
      await bare.close();
      removeDir(bare.dir);
    }
  });
});

// These reach into the SQLite store (its pragmas, its WAL sync); PostgreSQL fails closed in its own tests.
describe.skipIf(onPostgres)("failing closed", () => {
  it("denies when a rule cannot be evaluated, and says so in the decision", async () => {
    const before = upstream.calls.length;
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "PATCH", path: "/x", body: "not an object" },
      },
    });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("denied");
    expect(res.body.error.message).toContain('could not be evaluated at rule "broken at runtime"');
    expect(upstream.calls.length).toBe(before);
    expect(gw.logs.join("")).toContain("a rule could not be evaluated; the action was denied");
  });

  it("runs nothing and answers store_unavailable when the store can be read but not written", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    await vote(gw.url, held.body.id, bob);
    const before = upstream.calls.length;
    const events = (await gw.gateway.store.listAudit({ limit: 100_000 })).length;
    // SQLite refuses every write from here on, as with a full or read-only disk.
    const db = (gw.gateway.store as unknown as { db: { pragma(s: string): unknown } }).db;
    db.pragma("query_only = ON");
    try {
      const allowed = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      expect(allowed.status).toBe(503);
      expect(allowed.body.error.code).toBe("store_unavailable");
      expect((await api(gw.url, "GET", "/readyz")).status).toBe(503);
      const refused = await vote(gw.url, held.body.id, carol);
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe("store_unavailable");
      expect(upstream.calls.length).toBe(before);
      expect((await gw.gateway.store.listAudit({ limit: 100_000 })).length).toBe(events);
    } finally {
      db.pragma("query_only = OFF");
    }
    const retried = await vote(gw.url, held.body.id, carol);
    expect(retried.status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
  });

  it("answers 500 internal, not 503, when the store refuses the work itself, with its details in the log only", async () => {
    const db = (gw.gateway.store as unknown as { db: { exec(s: string): unknown } }).db;
    // Refused, whatever the moment: a constraint a bug breaks, say. Trying again will not help.
    db.exec(`CREATE TRIGGER refuse_test BEFORE INSERT ON requests
      WHEN NEW.justification = 'refuse me'
      BEGIN SELECT RAISE(ABORT, 'refused by test, secret detail'); END`);
    try {
      const before = upstream.calls.length;
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { ...read("/refused"), justification: "refuse me" },
      });
      expect(res.status).toBe(500);
      expect(res.body.error.code).toBe("internal");
      const requestId = res.body.error.requestId as string;
      expect(res.headers.get("x-request-id")).toBe(requestId);
      expect(JSON.stringify(res.body)).not.toContain("secret detail");
      const logged = gw.logs.filter((line) => line.includes("secret detail"));
      expect(logged.some((line) => line.includes(requestId))).toBe(true);
      // A refusal is no outage: the gateway is still ready, and nothing ran.
      expect((await api(gw.url, "GET", "/readyz")).status).toBe(200);
      expect(upstream.calls.length).toBe(before);
    } finally {
      db.exec("DROP TRIGGER refuse_test");
    }
  });

  it("says the action ran when its outcome cannot be recorded, and retries the record first", async () => {
    const db = (gw.gateway.store as unknown as { db: { pragma(s: string): unknown } }).db;
    const slow = upstream.hold("/api/outcome");
    const submitted = api(gw.url, "POST", "/v1/actions", { token: agent, body: read("/outcome") });
    await slow.arrived;
    // The store goes read-only while the action runs, and comes back during the retries.
    db.pragma("query_only = ON");
    setTimeout(() => db.pragma("query_only = OFF"), 120);
    slow.release();
    const recovered = await submitted;
    expect(recovered.status).toBe(200);
    expect(recovered.body.status).toBe("succeeded");

    const stuck = upstream.hold("/api/outcome-lost");
    const lost = api(gw.url, "POST", "/v1/actions", { token: agent, body: read("/outcome-lost") });
    await stuck.arrived;
    db.pragma("query_only = ON");
    stuck.release();
    let id: string;
    try {
      const res = await lost;
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("store_unavailable");
      expect(res.body.error.executed).toBe(true);
      expect(res.body.error.message).toContain("the action ran (HTTP 200");
      expect(res.body.error.message).toContain("do not submit it again");
      id = res.body.error.requestId;
    } finally {
      db.pragma("query_only = OFF");
    }
    // Once the store takes writes again, the outcome the gateway kept is recorded: the
    // request does not stay executing until a restart.
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=10`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(done.body.result.status).toBe(200);
    expect(upstream.calls.filter((c) => c.url === "/api/outcome-lost")).toHaveLength(1);
  });

  it("stops trusting the store after a commit could not be synced, and a restart reads back the disk", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { method: "POST", path: "/refunds/fsync", body: {} } },
    });
    await vote(gw.url, held.body.id, bob);
    // The disk reports that the next commit, carol's approval, did not reach it.
    const walSync = (gw.gateway.store as unknown as { walSync: { sync(): void } }).walSync;
    const sync = walSync.sync.bind(walSync);
    walSync.sync = () => {
      walSync.sync = sync;
      throw new Error("EIO: i/o error, fdatasync");
    };
    const refused = await vote(gw.url, held.body.id, carol);
    expect(refused.status).toBe(503);
    // The reviewer is told to try again; the operator, in the log, to restart the gateway.
    expect(refused.body.error.message).toBe(
      "the store cannot be reached or used for now; try again shortly",
    );
    expect(gw.logs.join("")).toContain("restart the gateway once the disk is healthy");
    await new Promise((r) => setTimeout(r, 300)); // several sweeps
    expect(upstream.calls.filter((c) => c.url === "/api/refunds/fsync")).toHaveLength(0);
    expect((await api(gw.url, "GET", "/readyz")).status).toBe(503);
    expect((await api(gw.url, "GET", `/v1/actions/${held.body.id}`, { token: agent })).status).toBe(
      503,
    );

    gw = await gw.restart();
    agent = await gw.token("agent", "support-bot");
    expect((await api(gw.url, "GET", "/readyz")).status).toBe(200);
    // The commit did reach the page cache, so after the restart the approval stands and runs once.
    const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(upstream.calls.filter((c) => c.url === "/api/refunds/fsync")).toHaveLength(1);
  });

  it("refuses with store_unavailable, runs nothing and reports not ready when the store is gone", async () => {
    const before = upstream.calls.length;
    await gw.gateway.store.close();
    const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe("store_unavailable");
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    expect(Object.keys(doc.paths["/v1/actions"].post.responses)).toContain("503");
    const ready = await api(gw.url, "GET", "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.status).toBe("unavailable");
    // Anyone may ask: what the store said (a database's host, its user) goes to the log only.
    expect(ready.body.error.message).toBe(
      "the store cannot be reached or used; the gateway's log says why",
    );
    expect(gw.logs.join("")).toContain("not ready: the store cannot be used");
    expect(upstream.calls.length).toBe(before);
    gw = await gw.restart();
    agent = await gw.token("agent", "support-bot");
    expect((await api(gw.url, "GET", "/readyz")).status).toBe(200);
  });
});

describe("the audit API", () => {
  it("ends a page of large events early, with its cursor, whatever the limit", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    const start = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: bob });
    let afterSeq = start.body.events.at(-1).seq as number;
    // Each refusal records the whole input: six of nearly a megabyte each.
    const padding = "x".repeat(900_000);
    for (let i = 0; i < 6; i++) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "billing-api",
          operation: "request",
          input: { method: "DELETE", path: `/invoices/${i}`, body: { padding } },
        },
      });
      expect(res.status).toBe(403);
    }
    const seen: string[] = [];
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(10);
      const res = await fetch(`${gw.url}/v1/audit?limit=1000&afterSeq=${afterSeq}`, {
        headers: { authorization: `Bearer ${bob}` },
      });
      const text = await res.text();
      expect(res.status).toBe(200);
      expect(text.length).toBeLessThan(5 * 1024 * 1024);
      const page = JSON.parse(text) as {
        events: { seq: number; type: string }[];
        nextAfterSeq?: number;
      };
      seen.push(...page.events.filter((e) => e.type === "request.submitted").map((e) => e.type));
      if (page.nextAfterSeq === undefined) break;
      expect(page.nextAfterSeq).toBe(page.events.at(-1)!.seq);
      afterSeq = page.nextAfterSeq;
    }
    expect(seen).toHaveLength(6);
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    expect(doc.paths["/v1/audit"].get.responses["200"].description).toContain("nextAfterSeq");
  });

  it("ends a page of large requests early, with its cursor, whatever the limit", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    const padding = "y".repeat(900_000);
    for (let i = 0; i < 6; i++) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "billing-api",
          operation: "request",
          input: { method: "DELETE", path: `/credits/${i}`, body: { padding } },
        },
      });
      expect(res.status).toBe(403);
    }
    const seen = new Set<string>();
    let before = "";
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(10);
      const res = await fetch(`${gw.url}/v1/requests?status=denied&limit=200${before}`, {
        headers: { authorization: `Bearer ${bob}` },
      });
      const text = await res.text();
      expect(res.status).toBe(200);
      expect(text.length).toBeLessThan(5 * 1024 * 1024);
      const page = JSON.parse(text) as {
        requests: { id: string; input: { path: string } }[];
        next?: string;
      };
      for (const request of page.requests) {
        if (request.input.path.startsWith("/credits/")) seen.add(request.id);
      }
      if (page.next === undefined) break;
      expect(page.next).toBe(page.requests.at(-1)!.id);
      before = `&before=${page.next}`;
    }
    expect(seen.size).toBe(6);
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    expect(doc.paths["/v1/requests"].get.responses["200"].description).toContain("next");
    expect(doc.paths["/v1/requests"].get.responses["200"].description).toContain("before");
  });
});
