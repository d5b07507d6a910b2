/**
 * PostgreSQL stopped and started while agents and a reviewer keep working: the gateway fails
 * closed with `store_unavailable`, reports not ready, runs nothing whose audit event is not
 * committed, and serves again on its own once the database is back. The server is a private
 * one (initdb + pg_ctl), so stopping it disturbs no other test.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChainVerifier } from "../src/audit/audit-chain.js";
import { freePort } from "./support/cli.js";
import {
  type ApiResponse,
  api,
  removeDir,
  startGateway,
  type TestGateway,
  until,
  vote,
} from "./support/gateway.js";
import { type PgCluster, pgClusterSupport, startPgCluster } from "./support/pg-cluster.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const support = pgClusterSupport();
if ("missing" in support) {
  if (process.env.CI === "true") {
    throw new Error(`CI=true, but a private PostgreSQL cannot be run: ${support.missing}`);
  }
  process.stderr.write(
    `PostgreSQL outage test skipped: ${support.missing} (install Debian's postgresql package to run it).\n`,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Phase = "before" | "outage" | "after";
interface Answer {
  phase: Phase;
  what: "allowed" | "submitted" | "vote";
  path: string;
  status: number;
  code: string | undefined;
  outcome: string | undefined;
}

describe.skipIf("missing" in support)("PostgreSQL stopped and started under load", () => {
  let cluster: PgCluster;
  let upstream: Upstream;
  let gw: TestGateway;

  beforeAll(async () => {
    if ("missing" in support) return;
    cluster = startPgCluster(support.bin, await freePort());
    upstream = await startUpstream();
    gw = await startGateway(`
server: { port: 0, publicUrl: "http://airlock.test", sweepInterval: 50ms, executionLease: 1s }
storage: "${cluster.url}"
agents: [{ name: loader, owner: owner@example.com }]
reviewers: [{ email: rita@example.com, groups: [ops] }]
connections:
  api: { type: http, baseUrl: "${upstream.url}/api" }
rules:
  - name: reads pass
    when: http.method == "GET"
    decision: allow
  - name: writes need a reviewer
    when: http.method == "POST"
    decision: review
    review: { approvers: [ops] }
`);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await upstream?.close();
    cluster?.destroy();
  });

  it("fails closed meanwhile, runs nothing unaudited, and resumes by itself", async () => {
    const agent = await gw.token("agent", "loader");
    const rita = await gw.token("reviewer", "rita@example.com");
    const answers: Answer[] = [];
    const readiness: { phase: Phase; status: number }[] = [];
    let phase: Phase = "before";
    let running = true;

    const action = (method: "GET" | "POST", path: string) => ({
      connection: "api",
      operation: "request",
      input: method === "GET" ? { method, path } : { method, path, body: { path } },
    });
    const record = (
      what: Answer["what"],
      path: string,
      res: ApiResponse<{ error?: { code: string }; status?: string }>,
    ) =>
      answers.push({
        phase,
        what,
        path,
        status: res.status,
        code: res.body?.error?.code,
        outcome: res.body?.status,
      });

    const reader = async (i: number) => {
      for (let n = 0; running; n++) {
        const path = `/read/${i}-${n}`;
        const res = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: action("GET", path),
        });
        record("allowed", path, res);
        if (res.status !== 200) await sleep(20);
      }
    };
    const writer = async () => {
      for (let n = 0; running; n++) {
        const path = `/write/${n}`;
        const submitted = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: action("POST", path),
        });
        record("submitted", path, submitted);
        if (submitted.status !== 202) {
          await sleep(20);
          continue;
        }
        // The vote is retried until it lands: a reviewer clicking again after an error.
        for (;;) {
          const res = await vote(gw.url, submitted.body.id, rita);
          record("vote", path, res);
          if (res.status === 200 || !running) break;
          await sleep(50);
        }
      }
    };
    const probe = async () => {
      while (running) {
        const res = await fetch(`${gw.url}/readyz`);
        readiness.push({ phase, status: res.status });
        await sleep(25);
      }
    };

    const load = [reader(0), reader(1), reader(2), reader(3), writer(), probe()];
    await sleep(800);
    phase = "outage";
    cluster.stop();
    await sleep(1000);
    cluster.start();
    phase = "after";
    await until(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 20_000);
    const resumedAt = answers.length;
    await until(
      () =>
        answers.slice(resumedAt).filter((a) => a.what === "allowed" && a.outcome === "succeeded")
          .length >= 20,
      20_000,
    );
    running = false;
    await Promise.all(load);

    // Fail closed: every refusal is store_unavailable, nothing else (no 500s, no hangs).
    const refused = answers.filter((a) => a.status !== 200 && a.status !== 202);
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused.map((a) => `${a.status} ${a.code}`))).toEqual(
      new Set(["503 store_unavailable"]),
    );
    expect(answers.some((a) => a.phase === "outage" && a.status === 503)).toBe(true);
    expect(readiness.some((r) => r.phase === "outage" && r.status === 503)).toBe(true);
    expect(readiness.filter((r) => r.phase === "before").every((r) => r.status === 200)).toBe(true);
    // Resumed on its own: reads and approvals succeed again.
    const after = answers.filter((a) => a.phase === "after");
    expect(after.some((a) => a.what === "allowed" && a.outcome === "succeeded")).toBe(true);
    expect(answers.some((a) => a.phase !== "before" && a.what === "vote" && a.status === 200)).toBe(
      true,
    );

    // Executions cut off by the outage end as failed once their lease runs out: none is left
    // executing, none ran twice, and each upstream call has its execution.started event.
    const store = gw.gateway.store;
    await until(async () => (await store.idsWithStatus("executing", 1)).length === 0, 10_000);
    const calls = upstream.calls.map((c) => c.url.replace(/^\/api/, ""));
    expect(new Set(calls).size).toBe(calls.length);
    const requests = await store.listRequests({ limit: 100_000 });
    const byPath = new Map(requests.map((r) => [(r.input as { path: string }).path, r]));
    const started = new Set(
      (await store.listAudit({ type: "execution.started", limit: 100_000 })).map(
        (e) => e.requestId,
      ),
    );
    for (const path of calls) {
      const request = byPath.get(path);
      expect(request, `the call to ${path} has no request`).toBeDefined();
      expect(started.has(request!.id), `the call to ${path} has no execution.started`).toBe(true);
    }
    // An agent told "succeeded" was told the truth.
    for (const a of answers.filter((x) => x.outcome === "succeeded")) {
      expect(byPath.get(a.path)?.status).toBe("succeeded");
    }
    const verifier = createChainVerifier();
    for await (const event of store.auditEvents()) verifier.add(event);
    const chain = verifier.finish();
    expect(chain.problem).toBeUndefined();
    expect(chain.count).toBeGreaterThan(calls.length);
  }, 90_000);
});

describe.skipIf("missing" in support)("a stop just after PostgreSQL was away", () => {
  it("records the outcome the store refused while it was away, rather than leaving it for an outcome unknown", async () => {
    if ("missing" in support) return;
    const cluster = startPgCluster(support.bin, await freePort());
    const upstream = await startUpstream();
    const config = `
server: { port: 0, publicUrl: "http://airlock.test", sweepInterval: 50ms }
storage: "${cluster.url}"
agents: [{ name: loader, owner: owner@example.com }]
connections:
  api: { type: http, baseUrl: "${upstream.url}/api", timeout: 30s }
rules:
  - name: reads pass
    decision: allow
`;
    let gw = await startGateway(config);
    try {
      const agent = await gw.token("agent", "loader");
      const held = upstream.hold("/api/slow");
      const answer = api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { connection: "api", operation: "request", input: { method: "GET", path: "/slow" } },
      });
      await held.arrived;
      cluster.stop();
      held.release();
      const told = await answer;
      expect(told.status).toBe(503);
      expect(told.body.error).toMatchObject({ code: "store_unavailable", executed: true });
      // The gateway tries again in the background a second later, and two after that: the
      // first fails, and the store is back before the second.
      await sleep(1500);
      cluster.start();
      // Before, the stop gave the outcome up: the request stayed executing, and the next start
      // (or another replica) ended it "outcome unknown".
      await gw.close();
      gw = await startGateway(config, { dir: gw.dir });
      const after = await api(gw.url, "GET", `/v1/actions/${told.body.error.requestId}`, {
        token: agent,
      });
      expect(after.body.status).toBe("succeeded");
      expect(upstream.calls.filter((c) => c.url === "/api/slow")).toHaveLength(1);
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await upstream.close();
      cluster.destroy();
    }
  }, 60_000);
});

describe.skipIf("missing" in support)("what callers are told while PostgreSQL is away", () => {
  it("says the store is unavailable and to try again, never where the database is or what it said", async () => {
    if ("missing" in support) return;
    const port = await freePort();
    const cluster = startPgCluster(support.bin, port);
    const upstream = await startUpstream();
    const gw = await startGateway(`
server: { port: 0, publicUrl: "http://airlock.test" }
storage: "${cluster.url}"
agents: [{ name: loader, owner: owner@example.com }]
reviewers: [{ email: rita@example.com, groups: [ops] }]
connections:
  api: { type: http, baseUrl: "${upstream.url}/api" }
rules:
  - name: reads pass
    decision: allow
`);
    // What the database said names its address, its user, its words: for the log only.
    const told = (text: string) => {
      for (const leak of [
        "127.0.0.1",
        String(port),
        "ECONNREFUSED",
        "postgres",
        "user",
        "read-only",
      ]) {
        expect(text).not.toContain(leak);
      }
      expect(text).toMatch(/store_unavailable/);
      expect(text).toMatch(/try again/);
    };
    const mcpCall = (token: string) =>
      fetch(`${gw.url}/mcp`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: { name: "api__request", arguments: { method: "GET", path: "/x" } },
        }),
      });
    const submit = {
      connection: "api",
      operation: "request",
      input: { method: "GET", path: "/x" },
    };
    try {
      const agent = await gw.token("agent", "loader");
      const rita = await gw.token("reviewer", "rita@example.com");

      // Reads answer, writes are refused (as by a standby during a failover): the tool call
      // is authenticated, and its submission is refused by the store.
      const admin = new pg.Client({ connectionString: cluster.url });
      await admin.connect();
      await admin.query("ALTER SYSTEM SET default_transaction_read_only = on");
      await admin.query("SELECT pg_reload_conf()");
      await admin.end();
      const refused = await api(gw.url, "POST", "/v1/actions", { token: agent, body: submit });
      expect(refused.status).toBe(503);
      told(JSON.stringify(refused.body));
      const tool = await mcpCall(agent);
      expect(tool.status).toBe(200);
      const { result } = (await tool.json()) as { result: { isError?: boolean } };
      expect(result.isError).toBe(true);
      told(JSON.stringify(result));

      // Not there at all.
      cluster.stop();
      for (const res of [
        await api(gw.url, "POST", "/v1/actions", { token: agent, body: submit }),
        await api(gw.url, "GET", "/v1/requests?status=pending", { token: rita }),
      ]) {
        expect(res.status).toBe(503);
        told(JSON.stringify(res.body));
      }
      // The token may still be known from a moment ago (a tool error, 200) or not (503).
      const mcp = await mcpCall(agent);
      const said = await mcp.text();
      if (mcp.status === 200) expect(said).toContain('"isError":true');
      else expect(mcp.status).toBe(503);
      told(said);
      // The log has what the database said.
      expect(gw.logs.join("")).toContain("ECONNREFUSED");
      expect(gw.logs.join("")).toContain("read-only");
      // And that the connections no call was using were lost (the change feed's, at least).
      await expect
        .poll(() => gw.logs.join(""))
        .toContain("the store lost a connection no call was using");
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await upstream.close();
      cluster.destroy();
    }
  }, 60_000);
});
