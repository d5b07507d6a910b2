/**
 * `retention.requests`: finished requests past it are deleted with their reviews, while the
 * audit trail keeps every event and still verifies; requests still under way are kept.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { interruptExecution } from "../src/requests/request-transitions.js";
import {
  api,
  read,
  refund,
  removeDir,
  startGateway,
  storeSql,
  type TestGateway,
  testConfig,
  until,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const DAY = 86_400_000;
/** A review that waits longer than the retention, so that it is still under way past it. */
const LONG_REVIEW = `
  - name: long review
    when: http.method == "POST" && http.path == "/long"
    decision: review
    review: { approvers: [finance], quorum: 2, expiresIn: 30d }`;

describe("retention of finished requests", () => {
  let upstream: Upstream;
  let gw: TestGateway;
  let agent: string;
  let bob: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(
      `${testConfig(upstream.url, LONG_REVIEW)}retention: { requests: 10d, every: 200ms }\n`,
    );
    agent = await gw.token("agent", "support-bot");
    bob = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await upstream?.close();
  });

  const status = async (id: string) =>
    (await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent })).status;
  /**
   * Time passes for what has finished: its finishing time moves back by `ms`, as the store's
   * clock (on PostgreSQL the database's, which the test cannot move) would move on.
   */
  const age = (ms: number) =>
    storeSql(
      gw,
      `UPDATE requests SET finished_at = finished_at - ${ms} WHERE finished_at IS NOT NULL`,
    );

  it("deletes finished requests past it, keeps those under way, and keeps the whole trail", async () => {
    const allowed = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read("/invoices"), idempotencyKey: "kept-key-1" },
    });
    expect(allowed.body.status).toBe("succeeded");
    const denied = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read(), input: { method: "DELETE", path: "/invoices/1" } },
    });
    expect(denied.status).toBe(403);
    const deniedId = denied.body.action.id as string;
    const pending = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { method: "POST", path: "/long", body: { amount: 1 } } },
    });
    expect(pending.status).toBe(202);
    const trailOf = async (id: string) =>
      (await api(gw.url, "GET", `/v1/audit?requestId=${id}`, { token: bob })).body.events.map(
        (e: { type: string }) => e.type,
      );
    const allowedTrail = await trailOf(allowed.body.id);

    // Nine days on: nothing is old enough yet.
    await age(9 * DAY);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await status(allowed.body.id)).toBe(200);

    await age(2 * DAY);
    await until(async () => (await status(allowed.body.id)) === 404, 5000);
    expect(await status(deniedId)).toBe(404);
    // Under way: pending for review, and kept however old.
    expect(await status(pending.body.id)).toBe(200);
    expect(await trailOf(allowed.body.id)).toEqual(allowedTrail);
    const pruned = (await api(gw.url, "GET", "/v1/audit?type=requests.pruned", { token: bob })).body
      .events;
    expect(pruned.length).toBeGreaterThan(0);
    expect(pruned.reduce((n: number, e: { data: { count: number } }) => n + e.data.count, 0)).toBe(
      2,
    );
    const verified = await api(gw.url, "GET", "/v1/audit/verify", { token: bob });
    expect(verified.body.ok).toBe(true);
    expect((await api(gw.url, "GET", "/metrics")).text).toMatch(
      /^airlock_requests_pruned_total 2$/m,
    );

    // Once decided and past it too, the refund goes; its key-less twin never existed.
    for (const who of ["bob", "carol"]) {
      const token = await gw.token("reviewer", `${who}@example.com`);
      expect((await vote(gw.url, pending.body.id, token)).status).toBe(200);
    }
    await until(async () => {
      const view = await api(gw.url, "GET", `/v1/actions/${pending.body.id}`, { token: agent });
      return view.body.status === "succeeded";
    });
    await age(11 * DAY);
    await until(async () => (await status(pending.body.id)) === 404, 5000);

    // A pruned request's idempotency key is free again: it names a new request.
    const again = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read("/invoices"), idempotencyKey: "kept-key-1" },
    });
    expect(again.body.status).toBe("succeeded");
    expect(again.body.id).not.toBe(allowed.body.id);
  });
});

describe("retention of finished requests, against what is still under way", () => {
  let upstream: Upstream;
  let receiver: Server;
  let gw: TestGateway;
  let agent: string;
  let bob: string;
  // What the webhook receiver answers.
  let receiving = 200;
  const received: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        if (receiving === 200) received.push(body);
        res.writeHead(receiving).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const { port } = receiver.address() as AddressInfo;
    gw = await startGateway(
      `${testConfig(upstream.url)}retention: { requests: 10d, every: 100ms }
channels:
  webhooks:
    - { url: "http://127.0.0.1:${port}/hook", secret: "whsec_${Buffer.from("k".repeat(32)).toString("base64")}" }
`,
      // A failed delivery is tried again an hour later.
      { gateway: { delivery: { pollInterval: 20, backoff: () => 3_600_000 } } },
    );
    agent = await gw.token("agent", "support-bot");
    bob = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await new Promise((resolve) => receiver?.close(resolve));
    await upstream?.close();
  });

  const status = async (id: string) =>
    (await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent })).status;
  /** Its finishing time moved back by `ms` (see `age` above). */
  const ageRequest = (id: string, ms: number) =>
    storeSql(gw, `UPDATE requests SET finished_at = finished_at - ${ms} WHERE id = '${id}'`);
  const trailOf = async (id: string) =>
    (await api(gw.url, "GET", `/v1/audit?requestId=${id}`, { token: bob })).body.events as {
      type: string;
      data: Record<string, unknown>;
    }[];

  it("keeps what an action did in the trail when its request was ended and deleted while it ran", async () => {
    const held = upstream.hold("/api/late-pruned");
    const answer = api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: read("/late-pruned"),
    });
    await held.arrived;
    const running = await api(gw.url, "GET", "/v1/requests?status=executing", { token: bob });
    const id = running.body.requests.find(
      (r: { input: { path: string } }) => r.input.path === "/late-pruned",
    ).id as string;
    // As a replica that took the lease for lapsed would, then retention past it.
    await gw.gateway.store.transition(
      id,
      (current, at = gw.gateway.store.now()) => interruptExecution(current, at),
      gw.gateway.dispatcher.plan,
    );
    await ageRequest(id, 11 * DAY);
    await until(async () => (await status(id)) === 404, 1500);
    held.release();
    const res = await answer;
    // Not "the store is unavailable": it is there, the request is not.
    expect(res.status).not.toBe(503);
    const late = (await trailOf(id)).filter((e) => e.type === "execution.late_outcome");
    expect(late).toHaveLength(1);
    expect(late[0]!.data).toMatchObject({ ok: true, summary: expect.stringMatching(/^HTTP 200/) });
  });

  it("keeps a finished request whose notifications are still to be delivered", async () => {
    receiving = 503;
    const done = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read("/kept") });
    expect(done.body.status).toBe("succeeded");
    // Its webhook deliveries failed once and wait for their next attempt.
    await until(async () => {
      const pending = await gw.gateway.store.listOutbox({ state: "pending", limit: 100 });
      return pending.some((e) => e.requestId === done.body.id && e.attempts > 0);
    });
    await ageRequest(done.body.id, 11 * DAY);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await status(done.body.id)).toBe(200);
    // Delivered at last, it goes. Its retry, an hour off, is brought forward.
    receiving = 200;
    const waiting = await gw.gateway.store.listOutbox({ state: "pending", limit: 100 });
    for (const entry of waiting.filter((e) => e.requestId === done.body.id)) {
      await gw.gateway.store.failOutbox(gw.gateway.store.now(), entry.id, entry.lastError ?? "", 0);
    }
    await until(async () => (await status(done.body.id)) === 404, 5000);
    expect(received.some((body) => body.includes(done.body.id))).toBe(true);
  });
});
