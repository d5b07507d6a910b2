/**
 * Several gateways on one PostgreSQL database: a live replica's execution is never ended by
 * another (whatever their clocks say, and however slow the database), and a replica killed
 * mid-execution leaves an outcome of "outcome unknown" once its lease runs out, without a
 * second run.
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigText } from "../src/config/config-load.js";
import { interruptExecution, OUTCOME_UNKNOWN } from "../src/requests/request-transitions.js";
import { lockKey, NOW_MS } from "../src/store/postgres/postgres-sql.js";
import { airlockBin, freePort, killed, runCli, startServe } from "./support/cli.js";
import { api, read, removeDir, SECRET, startGateway, until, vote } from "./support/gateway.js";
import { postgresAvailable, type ScratchSchema, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

describe.skipIf(!postgresAvailable)("replicas on one PostgreSQL database", () => {
  let db: ScratchSchema;
  let upstream: Upstream;

  const config = (port: number) => `
server: { port: ${port}, publicUrl: "http://airlock.test", sweepInterval: 50ms, executionLease: 900ms }
storage: "${db.url}"
agents: [{ name: support-bot, owner: alice@example.com }]
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    timeout: 30s
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: reads pass
    when: http.method == "GET"
    decision: allow
  - name: nothing else
    decision: deny
`;

  beforeAll(async () => {
    db = await scratchSchema();
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream?.close();
    await db?.drop();
  });

  const calls = (path: string) => upstream.calls.filter((c) => c.url === `/api${path}`).length;

  it("leaves a live replica's long execution alone, however long it runs", async () => {
    const a = await startGateway(config(0));
    const agent = await a.token("agent", "support-bot");
    const held = upstream.hold("/api/slow");
    const pending = api(a.url, "POST", "/v1/actions", { token: agent, body: read("/slow") });
    await held.arrived;
    const b = await startGateway(config(0));
    try {
      // Three leases long: A's heartbeat keeps it, B's sweeps check it all the while.
      await new Promise((r) => setTimeout(r, 2700));
      held.release();
      const res = await pending;
      expect(res.body.status).toBe("succeeded");
      expect(calls("/slow")).toBe(1);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  /** Runs `during` while replica A executes a slow read that B watches; returns its answer. */
  const slowRead = async (
    path: string,
    during: (id: string) => Promise<void>,
    options: { clockB?: () => number; beforeSubmit?: () => Promise<void> } = {},
  ) => {
    const a = await startGateway(config(0));
    const b = await startGateway(config(0), {
      gateway: options.clockB ? { clock: options.clockB } : {},
    });
    try {
      const agent = await a.token("agent", "support-bot");
      const held = upstream.hold(`/api${path}`);
      await options.beforeSubmit?.();
      const pending = api(a.url, "POST", "/v1/actions", { token: agent, body: read(path) });
      let id: string | undefined;
      await until(async () => {
        const [row] = await db.query<{ id: string }>(
          "SELECT id FROM requests WHERE status = 'executing' AND input LIKE $1",
          [`%${path}%`],
        );
        id = row?.id;
        return id !== undefined;
      }, 8000);
      await during(id!);
      await held.arrived;
      held.release();
      const res = await pending;
      expect(calls(path)).toBe(1);
      return res;
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  };
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

  it("leaves a live execution alone when the other replica's clock runs ahead", async () => {
    // B's clock is ten leases ahead: A's heartbeats, stamped by A's clock, look lapsed to it.
    const res = await slowRead("/skewed", () => sleep(2700), {
      clockB: () => Date.now() + 9000,
    });
    expect(res.body.status).toBe("succeeded");
  });

  it("never delivers a notification twice when a replica's clock runs past the lease of the one delivering it", async () => {
    const hook = `${config(0)}channels:
  webhooks:
    - { url: "${upstream.url}/hook-skew", secret: "whsec_${Buffer.from("k".repeat(32)).toString("base64")}", events: [request.succeeded] }
`;
    const fast = { pollInterval: 20 };
    const a = await startGateway(hook, { gateway: { delivery: fast } });
    let b: Awaited<ReturnType<typeof startGateway>> | undefined;
    const held = upstream.hold("/hook-skew");
    try {
      const agent = await a.token("agent", "support-bot");
      const ran = await api(a.url, "POST", "/v1/actions", { token: agent, body: read("/told") });
      expect(ran.body.status).toBe("succeeded");
      // A is delivering it, and holds it for five minutes by the database's clock.
      await held.arrived;
      // B's clock runs ten minutes ahead: by it, A's claim has long run out.
      b = await startGateway(hook, {
        gateway: { clock: () => Date.now() + 10 * 60_000, delivery: fast },
      });
      await sleep(1500);
      held.release();
      await until(async () => (await a.gateway.store.countOutbox()).pending === 0);
      expect(upstream.calls.filter((c) => c.url === "/hook-skew")).toHaveLength(1);
    } finally {
      held.release();
      await a.close();
      await b?.close();
      removeDir(a.dir);
      if (b) removeDir(b.dir);
    }
  });

  /** The config with refunds held for review by finance, for `expiresIn`. */
  const reviewed = (expiresIn: string) =>
    config(0)
      .replace("agents:", "reviewers: [{ email: bob@example.com, groups: [finance] }]\nagents:")
      .replace(
        "  - name: nothing else",
        `  - name: refunds wait\n    when: http.method == "POST"\n    decision: review\n    review: { approvers: [finance], expiresIn: ${expiresIn} }\n  - name: nothing else`,
      );
  const refund = (to: string) => ({
    connection: "billing-api",
    operation: "request",
    input: { method: "POST", path: to, body: {} },
  });

  it("expires a request by the database's clock: a replica whose clock runs ahead neither ends it early nor refuses its votes", async () => {
    const text = reviewed("5m");
    const a = await startGateway(text);
    // Ten minutes ahead: past the request's five minutes as soon as it is made.
    const b = await startGateway(text, { gateway: { clock: () => Date.now() + 10 * 60_000 } });
    try {
      const agent = await a.token("agent", "support-bot");
      const bob = await a.token("reviewer", "bob@example.com");
      const made = await api(a.url, "POST", "/v1/actions", {
        token: agent,
        body: refund("/early"),
      });
      expect(made.body.status).toBe("pending");
      // B sweeps every 50 ms, and reads and waits on it too.
      await sleep(1000);
      const seen = await api(b.url, "GET", `/v1/actions/${made.body.id}?wait=1`, { token: agent });
      expect(seen.body.status).toBe("pending");
      // Its reviewers find it there, to decide.
      const listed = await api(b.url, "GET", "/v1/requests", { token: bob });
      expect(listed.body.requests.map((r: { id: string }) => r.id)).toContain(made.body.id);
      const voted = await api(b.url, "POST", `/v1/requests/${made.body.id}/reviews`, {
        token: bob,
        body: { decision: "approve" },
      });
      expect(voted.body.status).toBe("approved");
      await until(() => calls("/early") === 1);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("expires a request by the database's clock: a replica whose clock runs behind takes no vote once it is up", async () => {
    const text = reviewed("1s");
    const a = await startGateway(text);
    const agent = await a.token("agent", "support-bot");
    const bob = await a.token("reviewer", "bob@example.com");
    const made = await api(a.url, "POST", "/v1/actions", { token: agent, body: refund("/late") });
    expect(made.body.status).toBe("pending");
    // A leaves: only B, ten minutes behind, is there when the request's second is up.
    await a.close();
    removeDir(a.dir);
    const b = await startGateway(text, { gateway: { clock: () => Date.now() - 10 * 60_000 } });
    try {
      await sleep(1500);
      const voted = await api(b.url, "POST", `/v1/requests/${made.body.id}/reviews`, {
        token: bob,
        body: { decision: "approve" },
      });
      expect(voted.body.error?.code).toBe("expired");
      const [row] = await db.query<{ status: string }>(
        "SELECT status FROM requests WHERE id = $1",
        [made.body.id],
      );
      expect(row?.status).toBe("expired");
      expect(calls("/late")).toBe(0);
    } finally {
      await b.close();
      removeDir(b.dir);
    }
  });

  /**
   * How far the store's time between transactions (the database's clock, as a replica learned
   * it from its transactions) may be from the database's own: half a round trip, on a busy
   * machine.
   */
  const LEARNED_MS = 100;

  /** The time an id (`newId`) was made at: ten base-32 digits of ms after its prefix. */
  const idTime = (id: string) =>
    [...id.slice(id.indexOf("_") + 1, id.indexOf("_") + 11)].reduce(
      (ms, digit) => ms * 32 + "0123456789abcdefghjkmnpqrstvwxyz".indexOf(digit),
      0,
    );

  /** The database's clock, in ms. */
  const dbNow = async () =>
    Number(
      (
        await db.query<{ now: string }>("SELECT (extract(epoch FROM now()) * 1000)::bigint AS now")
      )[0]?.now,
    );

  it("stamps a request's submission and expiry by the database's clock: one submitted on a replica whose clock runs behind is not expired at once", async () => {
    const text = reviewed("5m");
    const a = await startGateway(text);
    // Ten minutes behind: its own time plus five minutes is already past.
    const b = await startGateway(text, { gateway: { clock: () => Date.now() - 10 * 60_000 } });
    try {
      const agent = await a.token("agent", "support-bot");
      const bob = await a.token("reviewer", "bob@example.com");
      const before = await dbNow();
      const body = { ...refund("/behind"), idempotencyKey: "behind-1" };
      const made = await api(b.url, "POST", "/v1/actions", { token: agent, body });
      const after = await dbNow();
      expect(made.body.status).toBe("pending");
      const expiresAt = Date.parse(made.body.expiresAt);
      expect(expiresAt).toBeGreaterThanOrEqual(before + 5 * 60_000);
      expect(expiresAt).toBeLessThanOrEqual(after + 5 * 60_000);
      // The audit trail and the row say the same time, and the agent sees the same expiry
      // whichever replica it asks, and whichever its retry of the same key lands on.
      const events = await db.query<{ type: string; ts: string; data: string }>(
        "SELECT type, ts, data FROM audit_events WHERE request_id = $1 ORDER BY seq",
        [made.body.id],
      );
      for (const event of events) {
        expect(Date.parse(event.ts)).toBeGreaterThanOrEqual(before);
        expect(Date.parse(event.ts)).toBeLessThanOrEqual(after);
      }
      const decided = events.find((e) => e.type === "request.decided");
      expect(JSON.parse(decided!.data).review.expiresAt).toBe(made.body.expiresAt);
      const [row] = await db.query<{ created_at: string; expires_at: string }>(
        "SELECT created_at, expires_at FROM requests WHERE id = $1",
        [made.body.id],
      );
      expect(Number(row?.expires_at) - Number(row?.created_at)).toBe(5 * 60_000);
      const again = await api(a.url, "POST", "/v1/actions", { token: agent, body });
      expect(again.body.id).toBe(made.body.id);
      expect(again.body.expiresAt).toBe(made.body.expiresAt);
      // A, whose clock is right, takes the vote: the request has its five minutes.
      const voted = await api(a.url, "POST", `/v1/requests/${made.body.id}/reviews`, {
        token: bob,
        body: { decision: "approve" },
      });
      expect(voted.body.status).toBe("approved");
      await until(() => calls("/behind") === 1);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("stamps a request's expiry by the database's clock: one submitted on a replica whose clock runs ahead lives no longer than its expiresIn", async () => {
    const text = reviewed("1s");
    const a = await startGateway(text);
    const b = await startGateway(text, { gateway: { clock: () => Date.now() + 10 * 60_000 } });
    try {
      const agent = await a.token("agent", "support-bot");
      const bob = await a.token("reviewer", "bob@example.com");
      const made = await api(b.url, "POST", "/v1/actions", {
        token: agent,
        body: refund("/ahead"),
      });
      expect(made.body.status).toBe("pending");
      await sleep(1500);
      const voted = await api(a.url, "POST", `/v1/requests/${made.body.id}/reviews`, {
        token: bob,
        body: { decision: "approve" },
      });
      expect(voted.body.error?.code).toBe("expired");
      expect(calls("/ahead")).toBe(0);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("stamps an execution's start and end by the database's clock, as the request's submission and votes, whatever the clock of the replica that runs it", async () => {
    const text = reviewed("5m");
    const b = await startGateway(text, { gateway: { clock: () => Date.now() - 10 * 60_000 } });
    try {
      const agent = await b.token("agent", "support-bot");
      const bob = await b.token("reviewer", "bob@example.com");
      const before = await dbNow();
      // Its heartbeat too, while it runs.
      const held = upstream.hold("/api/stamped");
      const running = api(b.url, "POST", "/v1/actions", { token: agent, body: read("/stamped") });
      await held.arrived;
      const times = async () =>
        (
          await db.query<{ created_at: string; updated_at: string }>(
            "SELECT created_at, updated_at FROM requests WHERE input LIKE '%/stamped%'",
          )
        ).map((row) => ({ created: Number(row.created_at), updated: Number(row.updated_at) }))[0]!;
      const started = await times();
      await until(async () => (await times()).updated !== started.updated);
      const beaten = await times();
      expect(beaten.updated).toBeGreaterThanOrEqual(beaten.created);
      held.release();
      const ran = await running;
      expect(ran.body.status).toBe("succeeded");
      const made = await api(b.url, "POST", "/v1/actions", {
        token: agent,
        body: refund("/voted"),
      });
      const voted = await api(b.url, "POST", `/v1/requests/${made.body.id}/reviews`, {
        token: bob,
        body: { decision: "approve" },
      });
      expect(voted.body.status).toBe("approved");
      await until(
        async () =>
          (await api(b.url, "GET", `/v1/actions/${made.body.id}`, { token: agent })).body.status ===
          "succeeded",
      );
      const after = await dbNow();
      // The review's id too: its time, which orders it, is the database's.
      const [review] = await db.query<{ id: string }>(
        "SELECT id FROM reviews WHERE request_id = $1",
        [made.body.id],
      );
      expect(idTime(review!.id)).toBeGreaterThanOrEqual(before - LEARNED_MS);
      expect(idTime(review!.id)).toBeLessThanOrEqual(after + LEARNED_MS);
      for (const id of [ran.body.id, made.body.id]) {
        const events = await db.query<{ type: string; ts: string }>(
          "SELECT type, ts FROM audit_events WHERE request_id = $1 ORDER BY seq",
          [id],
        );
        expect(events.map((e) => e.type)).toContain("execution.succeeded");
        for (const event of events) {
          expect([
            event.type,
            Date.parse(event.ts) >= before,
            Date.parse(event.ts) <= after,
          ]).toEqual([event.type, true, true]);
        }
        const [row] = await db.query<{ created_at: string; finished_at: string }>(
          "SELECT created_at, finished_at FROM requests WHERE id = $1",
          [id],
        );
        expect(Number(row?.finished_at)).toBeGreaterThanOrEqual(Number(row?.created_at));
      }
    } finally {
      await b.close();
      removeDir(b.dir);
    }
  });

  it("lets rules see the database's time as now, whatever the clock of the replica that decides", async () => {
    const at = (ms: number) => new Date(ms).toISOString();
    const t = await dbNow();
    // Closed from five minutes ago, and from five minutes on, by the database's clock: a
    // replica ten minutes behind or ahead would see neither as it stands.
    const text = config(0).replace(
      "rules:\n",
      `rules:
  - name: closed since
    when: http.path == "/since" && now >= timestamp("${at(t - 5 * 60_000)}")
    decision: deny
  - name: closed from
    when: http.path == "/from" && now >= timestamp("${at(t + 5 * 60_000)}")
    decision: deny
`,
    );
    const behind = await startGateway(text, {
      gateway: { clock: () => Date.now() - 10 * 60_000 },
    });
    const ahead = await startGateway(text, { gateway: { clock: () => Date.now() + 10 * 60_000 } });
    try {
      const agent = await behind.token("agent", "support-bot");
      for (const gw of [behind, ahead]) {
        const since = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: read("/since"),
        });
        expect(since.status).toBe(403);
        const from = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: read("/from"),
        });
        expect(from.body.status).toBe("succeeded");
      }
    } finally {
      await behind.close();
      await ahead.close();
      removeDir(behind.dir);
      removeDir(ahead.dir);
    }
  });

  it("stamps tokens and their audit events by the database's clock, whatever the clock of the replica or the host that makes them", async () => {
    const b = await startGateway(config(0), { gateway: { clock: () => Date.now() - 10 * 60_000 } });
    // And an operator's host, whose clock is an hour behind its database's.
    const skewed = await scratchSchema({ clockAhead: 3_600_000 });
    const dir = mkdtempSync(join(tmpdir(), "airlock-operator-"));
    try {
      const before = await dbNow();
      const { record } = await b.gateway.identity.createToken("agent", "support-bot", "test");
      expect(await b.gateway.identity.revokeToken(record.id, "test")).toBe(true);
      const after = await dbNow();
      const stamped = async (
        on: ScratchSchema,
        id: string,
      ): Promise<{ times: number[]; id: string }> => {
        const [token] = await on.query<{ created_at: string; revoked_at: string | null }>(
          "SELECT created_at, revoked_at FROM tokens WHERE id = $1",
          [id],
        );
        const events = await on.query<{ ts: string }>(
          "SELECT ts FROM audit_events WHERE data::jsonb ->> 'tokenId' = $1",
          [id],
        );
        return {
          id,
          times: [
            idTime(id),
            Number(token?.created_at),
            ...(token?.revoked_at ? [Number(token.revoked_at)] : []),
            ...events.map((e) => Date.parse(e.ts)),
          ],
        };
      };
      const made = await stamped(db, record.id);
      expect(made.times).toHaveLength(5);
      for (const at of made.times) {
        expect(at).toBeGreaterThanOrEqual(before - LEARNED_MS);
        expect(at).toBeLessThanOrEqual(after + LEARNED_MS);
      }

      const path = join(dir, "airlock.yaml");
      writeFileSync(path, config(0).replace(db.url, skewed.url));
      const skewedNow = async () =>
        Number((await skewed.query<{ now: string }>(`SELECT ${NOW_MS} AS now`))[0]?.now);
      const opened = await skewedNow();
      const created = await runCli(
        ["token", "create", "--agent", "support-bot", "--config", path],
        {
          env: { BILLING_API_TOKEN: SECRET },
        },
      );
      expect(created.code).toBe(0);
      const id = /Token (tok_\S+)/.exec(created.stderr)?.[1];
      const closed = await skewedNow();
      const cli = await stamped(skewed, id!);
      expect(cli.times).toHaveLength(3);
      for (const at of cli.times) {
        expect(at).toBeGreaterThanOrEqual(opened - LEARNED_MS);
        expect(at).toBeLessThanOrEqual(closed + LEARNED_MS);
      }
    } finally {
      await b.close();
      removeDir(b.dir);
      removeDir(dir);
      await skewed.drop();
    }
  });

  it("keeps finished requests for retention.requests by the database's clock, whatever the clock of the replica that prunes", async () => {
    const DAY = 86_400_000;
    // Eleven days ahead: past the retention of what finishes now.
    const b = await startGateway(`${config(0)}retention: { requests: 10d, every: 100ms }\n`, {
      gateway: { clock: () => Date.now() + 11 * DAY },
    });
    try {
      const agent = await b.token("agent", "support-bot");
      const ran = await api(b.url, "POST", "/v1/actions", { token: agent, body: read("/kept") });
      expect(ran.body.status).toBe("succeeded");
      const status = async () =>
        (await api(b.url, "GET", `/v1/actions/${ran.body.id}`, { token: agent })).status;
      await sleep(600);
      expect(await status()).toBe(200);
      // Finished eleven days ago by the database's clock: it goes, and the event that says
      // so is stamped by that clock too.
      await db.query("UPDATE requests SET finished_at = finished_at - $1 WHERE id = $2", [
        11 * DAY,
        ran.body.id,
      ]);
      const before = await dbNow();
      await until(async () => (await status()) === 404);
      const after = await dbNow();
      const [pruned] = await db.query<{ ts: string; data: string }>(
        "SELECT ts, data FROM audit_events WHERE type = 'requests.pruned' AND data LIKE $1",
        [`%${ran.body.id}%`],
      );
      expect(Date.parse(pruned!.ts)).toBeGreaterThanOrEqual(before - LEARNED_MS);
      expect(Date.parse(pruned!.ts)).toBeLessThanOrEqual(after + LEARNED_MS);
      const cutoff = Date.parse(JSON.parse(pruned!.data).finishedBefore);
      expect(cutoff).toBeGreaterThanOrEqual(before - LEARNED_MS - 10 * DAY);
      expect(cutoff).toBeLessThanOrEqual(after + LEARNED_MS - 10 * DAY);
    } finally {
      await b.close();
      removeDir(b.dir);
    }
  });

  it("stamps an outcome that came after its request was ended by the database's clock, whatever the clock of the replica that ran it", async () => {
    const b = await startGateway(config(0), { gateway: { clock: () => Date.now() - 10 * 60_000 } });
    const held = upstream.hold("/api/late");
    try {
      const agent = await b.token("agent", "support-bot");
      const answer = api(b.url, "POST", "/v1/actions", { token: agent, body: read("/late") });
      await held.arrived;
      const [row] = await db.query<{ id: string }>(
        "SELECT id FROM requests WHERE status = 'executing' AND input LIKE '%/late%'",
      );
      // Ended meanwhile, as a replica that took its lease for lapsed would.
      await b.gateway.store.transition(
        row!.id,
        (current, at) => interruptExecution(current, at!),
        b.gateway.dispatcher.plan,
      );
      const before = await dbNow();
      held.release();
      await answer;
      const after = await dbNow();
      const [late] = await db.query<{ ts: string }>(
        "SELECT ts FROM audit_events WHERE type = 'execution.late_outcome' AND request_id = $1",
        [row!.id],
      );
      expect(Date.parse(late!.ts)).toBeGreaterThanOrEqual(before - LEARNED_MS);
      expect(Date.parse(late!.ts)).toBeLessThanOrEqual(after + LEARNED_MS);
    } finally {
      held.release();
      await b.close();
      removeDir(b.dir);
    }
  });

  it("stamps config reloads and signed checkpoints by the database's clock, whatever the clock of the replica or the host that signs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-keys-"));
    const key = join(dir, "audit.key");
    writeFileSync(
      key,
      generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }),
    );
    const signed = (storage: string) =>
      `${config(0).replace(db.url, storage)}audit:\n  signingKey: \${file:${key}}\n  checkpointEvery: 100ms\n`;
    const before = await dbNow();
    const b = await startGateway(signed(db.url), {
      gateway: { clock: () => Date.now() - 10 * 60_000 },
    });
    // And an operator's host, whose clock is an hour behind its database's.
    const skewed = await scratchSchema({ clockAhead: 3_600_000 });
    try {
      const agent = await b.token("agent", "support-bot");
      await api(b.url, "POST", "/v1/actions", { token: agent, body: read("/signed") });
      const next = loadConfigText(signed(db.url).replace("name: reads pass", "name: reads go"), {
        env: { BILLING_API_TOKEN: SECRET },
        baseDir: b.dir,
        source: "test.yaml",
      });
      expect(await b.gateway.reload(next, "test")).toBeDefined();
      // Signed once the reload is in the chain.
      await until(
        async () =>
          (
            await db.query(
              `SELECT 1 FROM audit_events WHERE type = 'audit.checkpoint' AND seq >
              (SELECT seq FROM audit_events WHERE type = 'config.reloaded')`,
            )
          ).length > 0,
      );
      const after = await dbNow();
      const stamped = await db.query<{ type: string; ts: string }>(
        "SELECT type, ts FROM audit_events WHERE type IN ('config.reloaded', 'audit.checkpoint')",
      );
      expect(new Set(stamped.map((e) => e.type))).toEqual(
        new Set(["config.reloaded", "audit.checkpoint"]),
      );
      for (const event of stamped) {
        expect([event.type, Date.parse(event.ts) >= before - LEARNED_MS]).toEqual([
          event.type,
          true,
        ]);
        expect([event.type, Date.parse(event.ts) <= after + LEARNED_MS]).toEqual([
          event.type,
          true,
        ]);
      }

      // airlock audit checkpoint, run on that host against the other database.
      const path = join(dir, "airlock.yaml");
      writeFileSync(path, signed(skewed.url));
      const skewedNow = async () =>
        Number((await skewed.query<{ now: string }>(`SELECT ${NOW_MS} AS now`))[0]?.now);
      const env = { BILLING_API_TOKEN: SECRET };
      expect(
        (await runCli(["token", "create", "--agent", "support-bot", "--config", path], { env }))
          .code,
      ).toBe(0);
      const opened = await skewedNow();
      const signedThere = await runCli(["audit", "checkpoint", "--config", path], { env });
      expect(signedThere.code).toBe(0);
      const closed = await skewedNow();
      const [checkpoint] = await skewed.query<{ ts: string }>(
        "SELECT ts FROM audit_events WHERE type = 'audit.checkpoint'",
      );
      expect(Date.parse(checkpoint!.ts)).toBeGreaterThanOrEqual(opened - LEARNED_MS);
      expect(Date.parse(checkpoint!.ts)).toBeLessThanOrEqual(closed + LEARNED_MS);
    } finally {
      await b.close();
      removeDir(b.dir);
      removeDir(dir);
      await skewed.drop();
    }
  });

  it("replays the requests of the last --since by the database's clock, not the operator's host's", async () => {
    // The database's clock an hour behind this host's.
    const skewed = await scratchSchema({ clockAhead: -3_600_000 });
    const text = config(0).replace(db.url, skewed.url);
    const b = await startGateway(text);
    const dir = mkdtempSync(join(tmpdir(), "airlock-operator-"));
    try {
      const agent = await b.token("agent", "support-bot");
      const ran = await api(b.url, "POST", "/v1/actions", {
        token: agent,
        body: read("/replayed"),
      });
      expect(ran.body.status).toBe("succeeded");
      const path = join(dir, "airlock.yaml");
      writeFileSync(path, text);
      // Made a moment ago, by the database's clock that stamped it.
      const replayed = await runCli(["policy", "replay", "--since", "30m", "--config", path], {
        env: { BILLING_API_TOKEN: SECRET },
      });
      expect(replayed.stdout).toMatch(/^1 request\(s\) since .* replayed: 1 decided as before/m);
    } finally {
      await b.close();
      removeDir(b.dir);
      removeDir(dir);
      await skewed.drop();
    }
  });

  it("runs an action once when its deciding votes land on both replicas at once, and a deny or a cancel racing the last approval wins whole or not at all", async () => {
    const text = config(0)
      .replace(
        "agents:",
        `reviewers:\n${["bob", "carol", "erin"].map((n) => `  - { email: ${n}@example.com, groups: [finance] }`).join("\n")}\nagents:`,
      )
      .replace(
        "  - name: nothing else",
        `  - name: refunds wait\n    when: http.method == "POST"\n    decision: review\n    review: { approvers: [finance], quorum: 2 }\n  - name: nothing else`,
      );
    const a = await startGateway(text);
    const b = await startGateway(text);
    try {
      const agent = await a.token("agent", "support-bot");
      const [bob, carol, erin] = await Promise.all(
        ["bob", "carol", "erin"].map((n) => a.token("reviewer", `${n}@example.com`)),
      );
      const submit = async (path: string) =>
        (await api(a.url, "POST", "/v1/actions", { token: agent, body: refund(path) })).body
          .id as string;
      const final = async (id: string) => {
        const res = await api(a.url, "GET", `/v1/actions/${id}?wait=10`, { token: agent });
        return res.body.status as string;
      };
      for (let round = 0; round < 5; round++) {
        // The two approvals of a quorum of two, one on each replica at once: one run.
        const both = await submit(`/both-${round}`);
        const votes = await Promise.all([vote(a.url, both, bob!), vote(b.url, both, carol!)]);
        expect(votes.map((v) => v.status)).toEqual([200, 200]);
        expect(await final(both)).toBe("succeeded");

        // The last approval on A against a deny on B: denied and never run, or run once.
        const denied = await submit(`/deny-${round}`);
        await vote(a.url, denied, bob!);
        await Promise.all([vote(a.url, denied, carol!), vote(b.url, denied, erin!, "deny")]);
        const afterDeny = await final(denied);
        expect(["denied", "succeeded"]).toContain(afterDeny);

        // The last approval on A against the agent's cancel on B: likewise.
        const cancelled = await submit(`/cancel-${round}`);
        await vote(a.url, cancelled, bob!);
        await Promise.all([
          vote(a.url, cancelled, carol!),
          api(b.url, "POST", `/v1/actions/${cancelled}/cancel`, { token: agent }),
        ]);
        const afterCancel = await final(cancelled);
        expect(["cancelled", "succeeded"]).toContain(afterCancel);

        expect(calls(`/both-${round}`)).toBe(1);
        expect(calls(`/deny-${round}`)).toBe(afterDeny === "succeeded" ? 1 : 0);
        expect(calls(`/cancel-${round}`)).toBe(afterCancel === "succeeded" ? 1 : 0);
      }
      // Every step of every race is in the one chain, in order.
      const verified = await api(b.url, "GET", "/v1/audit/verify", { token: bob! });
      expect(verified.body.ok).toBe(true);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("finds one request for one idempotency key sent to both replicas at once", async () => {
    const a = await startGateway(config(0));
    const b = await startGateway(config(0));
    try {
      const agent = await a.token("agent", "support-bot");
      for (let round = 0; round < 5; round++) {
        const body = { ...read(`/keyed-${round}`), idempotencyKey: `both-replicas-${round}` };
        const answers = await Promise.all(
          [a, b].map((g) => api(g.url, "POST", "/v1/actions?wait=10", { token: agent, body })),
        );
        expect(answers.map((r) => r.status).every((s) => s === 200 || s === 202)).toBe(true);
        expect(answers[0]!.body.id).toBe(answers[1]!.body.id);
        await until(async () => {
          const res = await api(a.url, "GET", `/v1/actions/${answers[0]!.body.id}`, {
            token: agent,
          });
          return res.body.status === "succeeded";
        });
        expect(calls(`/keyed-${round}`)).toBe(1);
      }
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("leaves a live execution alone while another transaction holds its row longer than the lease", async () => {
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      const res = await slowRead("/locked-row", async (id) => {
        // Once B has seen the execution, its row is held: A's heartbeats cannot renew the
        // lease meanwhile, and B's check waits for the row too.
        await sleep(1000);
        await locker.query("BEGIN");
        await locker.query("SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", [id]);
        await sleep(1500);
        await locker.query("COMMIT");
        await sleep(1500);
      });
      expect(res.body.status).toBe("succeeded");
    } finally {
      await locker.end();
    }
  });

  it("leaves a live execution alone whose start took longer than the lease to commit", async () => {
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    const audit = lockKey("audit", db.name);
    try {
      // The audit chain's lock, held for a lease and a half: the allowed action's first
      // commit waits for it, and commits its start long after it was stamped.
      const res = await slowRead("/slow-start", () => sleep(1500), {
        beforeSubmit: async () => {
          await locker.query("SELECT pg_advisory_lock($1::bigint)", [audit]);
          setTimeout(() => {
            void locker.query("SELECT pg_advisory_unlock($1::bigint)", [audit]);
          }, 1500);
        },
      });
      expect(res.body.status).toBe("succeeded");
    } finally {
      await locker.end();
    }
  });

  /**
   * Kills a replica while it runs `path`; the survivor, whose wall clock steps back by
   * `stepBack` once it has started, must end it "outcome unknown", never running it again.
   */
  const killMidExecution = async (path: string, stepBack = 0) => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-replica-"));
    const port = await freePort();
    const configPath = join(dir, "replica.yaml");
    writeFileSync(configPath, config(port));
    const killedReplica = await startServe(configPath, port, { BILLING_API_TOKEN: SECRET });
    let back = 0;
    const survivor = await startGateway(config(0), { gateway: { clock: () => Date.now() - back } });
    back = stepBack;
    try {
      const agent = await survivor.token("agent", "support-bot");
      const held = upstream.hold(`/api${path}`);
      const pending = api(killedReplica.url, "POST", "/v1/actions", {
        token: agent,
        body: read(path),
      }).catch(() => undefined);
      await held.arrived;
      killedReplica.child.kill("SIGKILL");
      await killed(killedReplica.child);
      await pending;
      held.release();

      const executing = await db.query<{ id: string }>(
        "SELECT id FROM requests WHERE status = 'executing'",
      );
      expect(executing).toHaveLength(1);
      const id = executing[0]!.id;
      await until(async () => {
        const res = await api(survivor.url, "GET", `/v1/actions/${id}`, { token: agent });
        return res.body.status === "failed";
      }, 8000);
      const done = await api(survivor.url, "GET", `/v1/actions/${id}`, { token: agent });
      expect(done.body.outcome.reason).toBe(OUTCOME_UNKNOWN);
      await new Promise((r) => setTimeout(r, 500));
      expect(calls(path)).toBe(1);
    } finally {
      await survivor.close();
      removeDir(survivor.dir);
      removeDir(dir);
    }
  };

  it("ends a killed replica's execution as outcome unknown after its lease, never running it again", async () => {
    await killMidExecution("/doomed");
  });

  it("ends a killed replica's execution after its lease also when the survivor's wall clock steps back an hour", async () => {
    // Leases are timed on a monotonic clock: a step back holds no lease check off.
    await killMidExecution("/doomed-stepped", 3_600_000);
  });

  it("finishes the executions its start resumed when told to stop while it starts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-replica-"));
    const port = await freePort();
    const path = join(dir, "replica.yaml");
    const text = (at: number) =>
      config(at)
        .replace("agents:", "reviewers: [{ email: bob@example.com, groups: [finance] }]\nagents:")
        .replace(
          "  - name: nothing else",
          '  - name: refunds wait\n    when: http.method == "POST"\n    decision: review\n  - name: nothing else',
        );
    writeFileSync(path, text(port));
    const refund = (to: string) => ({
      connection: "billing-api",
      operation: "request",
      input: { method: "POST", path: to, body: {} },
    });
    const maker = await startGateway(text(0));
    const agent = await maker.token("agent", "support-bot");
    const resumed = await api(maker.url, "POST", "/v1/actions", {
      token: agent,
      body: refund("/resumed"),
    });
    const stale = await api(maker.url, "POST", "/v1/actions", {
      token: agent,
      body: refund("/stale"),
    });
    await maker.close();
    removeDir(maker.dir);
    // Approved, as if the hand-off to the executor had been lost; the other one past its time.
    await db.query(
      `INSERT INTO reviews (id, request_id, reviewer, decision, comment, request_hash, evidence, created_at)
       VALUES ('rev_resumed', $1, 'bob@example.com', 'approve', '', $2, '{"method":"personal_token"}', $3)`,
      [resumed.body.id, resumed.body.hash, Date.now()],
    );
    await db.query("UPDATE requests SET status = 'approved', version = version + 1 WHERE id = $1", [
      resumed.body.id,
    ]);
    await db.query("UPDATE requests SET expires_at = $1 WHERE id = $2", [
      Date.now() - 1000,
      stale.body.id,
    ]);
    // Another replica's transaction holds the expired request's row: the start's sweep,
    // which comes after it resumed the approved one, waits for it.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query("BEGIN");
    await locker.query("SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", [stale.body.id]);
    const held = upstream.hold("/api/resumed");
    let output = "";
    const child = spawn(process.execPath, [airlockBin, "serve", "--config", path], {
      env: { ...process.env, BILLING_API_TOKEN: SECRET },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", (d) => {
      output += d;
    });
    child.stderr.on("data", (d) => {
      output += d;
    });
    try {
      await held.arrived;
      child.kill("SIGTERM");
      // Before, the signal's default action ended the process there and then.
      await until(
        () =>
          output.includes("SIGTERM while starting") ||
          child.exitCode !== null ||
          child.signalCode !== null,
      );
      await locker.query("COMMIT");
      held.release();
      await killed(child);
      expect({ code: child.exitCode, signal: child.signalCode }).toEqual({ code: 0, signal: null });
      const [row] = await db.query<{ status: string }>(
        "SELECT status FROM requests WHERE id = $1",
        [resumed.body.id],
      );
      expect(row?.status).toBe("succeeded");
      expect(calls("/resumed")).toBe(1);
    } finally {
      held.release();
      await locker.end();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await killed(child);
      removeDir(dir);
    }
  });
});
