/** The PostgreSQL store on a real server, with two stores on one schema standing for replicas. */

import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { entries, fixed, none } from "../../../test/support/inserts.js";
import {
  postgresAvailable,
  type ScratchSchema,
  scratchSchema,
} from "../../../test/support/postgres.js";
import { createChainVerifier, hashEvent } from "../../audit/audit-chain.js";
import { createCheckpointer } from "../../audit/audit-checkpoints.js";
import { verifyAudit } from "../../audit/audit-service.js";
import { canonicalJson } from "../../common/canonical-json.js";
import { AirlockError } from "../../errors.js";
import { maskInput } from "../../masking/input-mask.js";
import { createLogger } from "../../observability/logger.js";
import type { PolicyDecision } from "../../policy/policy-types.js";
import {
  cancel,
  castVote,
  expire,
  finishExecution,
  type NewRequest,
  type Reviewer,
  startExecution,
  submit,
} from "../../requests/request-transitions.js";
import type { ActionRequest, AuditEventInput, Change } from "../../requests/request-types.js";
import { createWaiters } from "../../requests/request-waiters.js";
import type { OutboxPlanner, RequestChange, Store } from "../store.js";
import { postgresMigrations } from "./postgres-migrations.js";
import { lockKey, NOW_MS, sqlLiteral } from "./postgres-sql.js";
import { openPostgresStore, type PostgresStore } from "./postgres-store.js";

const T0 = Date.parse("2030-01-01T09:00:00.000Z");
const HOUR = 3_600_000;
const OWNER = "olivia@example.com";

function decision(overrides: Partial<PolicyDecision> = {}): PolicyDecision {
  return {
    decision: "review",
    rule: "refunds",
    reason: 'rule "refunds" requires review',
    risk: "medium",
    riskReason: "POST changes data upstream",
    review: { approvers: ["finance"], quorum: 1, expiresInMs: HOUR, stepUp: false },
    mask: [],
    policyDigest: "d".repeat(64),
    ...overrides,
  };
}

let counter = 0;
/** A fresh id that sorts after every earlier one, like the gateway's. */
function nextId(): string {
  counter++;
  return `req_${String(counter).padStart(6, "0")}`;
}

function newRequest(overrides: Partial<NewRequest> = {}): NewRequest {
  const request: Omit<NewRequest, "maskedInput"> = {
    id: nextId(),
    proposal: {
      agent: "support-bot",
      connection: "billing",
      operation: "request",
      input: { method: "POST", path: "/refunds", body: { amount: 1250 } },
      justification: "customer asked",
      context: { ticket: "T-1" },
    },
    agent: { name: "support-bot", owner: OWNER, labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: "a".repeat(64),
    nonce: "n".repeat(32),
    decision: decision(),
    description: {
      preview: "POST billing/refunds",
      facts: { http: { method: "POST", path: "/refunds" } },
      risk: { level: "medium", reason: "POST changes data upstream" },
    },
    now: T0,
    ...overrides,
  };
  return {
    maskedInput: maskInput(request.proposal.input, request.decision.mask),
    ...request,
  };
}

/** A pending request needing `quorum` approvals. */
function pendingChange(quorum = 1, overrides: Partial<NewRequest> = {}): Change {
  return submit(
    newRequest({
      decision: decision({
        review: { approvers: ["finance"], quorum, expiresInMs: HOUR, stepUp: false },
      }),
      ...overrides,
    }),
  );
}

function reviewer(email: string): Reviewer {
  return { email, groups: ["finance"], evidence: { method: "personal_token" } };
}

let reviewIds = 0;
const approve =
  (email: string, now = T0 + 60_000) =>
  (request: ActionRequest) =>
    castVote(request, {
      reviewer: reviewer(email),
      decision: "approve",
      comment: "fine",
      owners: [OWNER],
      reviewId: `rev_${++reviewIds}`,
      now,
    });

const plan: OutboxPlanner = (change) =>
  change.notifications.map((n) => ({
    topic: "slack",
    requestId: n.requestId,
    payload: { event: n.event },
  }));

function auditInput(type: string, data: AuditEventInput["data"] = {}): AuditEventInput {
  return { type, requestId: null, actor: { type: "operator", id: "ops" }, data, at: T0 };
}

async function verifyChain(store: Store): Promise<number> {
  const verifier = createChainVerifier();
  for await (const event of store.auditEvents()) verifier.add(event);
  const result = verifier.finish();
  expect(result.problem).toBeUndefined();
  return result.count;
}

async function rejection(promise: Promise<unknown>): Promise<AirlockError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AirlockError) return error;
    throw error;
  }
  throw new Error("expected a rejection, but it resolved");
}

/** Resolves with the first change `store` delivers that `match` accepts. */
function heard(store: Store, match: (change: RequestChange) => boolean, timeoutMs = 5000) {
  return new Promise<RequestChange>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error("no change heard in time"));
    }, timeoutMs);
    const stop = store.subscribe((change) => {
      if (!match(change)) return;
      clearTimeout(timer);
      stop();
      resolve(change);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!postgresAvailable)("PostgreSQL store", () => {
  let db: ScratchSchema;
  let a: PostgresStore;
  let b: PostgresStore;
  const errors: unknown[] = [];

  const count = async (table: string) =>
    ((await db.query(`SELECT count(*)::int AS n FROM ${table}`))[0] as { n: number }).n;

  beforeAll(async () => {
    db = await scratchSchema();
    // Two pools on one schema: two replicas, as far as the database can tell.
    [a, b] = await Promise.all([
      openPostgresStore(db.url, { poolSize: 5, onError: (e) => errors.push(e) }),
      openPostgresStore(db.url, { poolSize: 5, onError: (e) => errors.push(e) }),
    ]);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it("migrates once, even when several replicas start together", async () => {
    const fresh = await scratchSchema();
    try {
      const stores = await Promise.all(
        Array.from({ length: 5 }, () => openPostgresStore(fresh.url)),
      );
      expect(stores.every((s) => s.dialect === "postgres")).toBe(true);
      const versions = await fresh.query("SELECT version FROM schema_migrations ORDER BY version");
      expect(versions).toEqual(postgresMigrations.map(({ version }) => ({ version })));
      await Promise.all(stores.map((s) => s.close()));
    } finally {
      await fresh.drop();
    }
  });

  it("keeps the database's time without asking for it: read as it opens, and as each transaction begins", async () => {
    // The database's clock an hour ahead of this process's.
    const skewed = await scratchSchema({ clockAhead: HOUR });
    const dbNow = async () =>
      Number((await skewed.query<{ now: string }>(`SELECT ${NOW_MS} AS now`))[0]?.now);
    /** Whether the store's time is the database's, give or take a busy machine's round trip. */
    const agrees = async (store: Store) => {
      const before = await dbNow();
      const told = store.now();
      const after = await dbNow();
      return told >= before - 50 && told <= after + 50;
    };
    const c = await openPostgresStore(skewed.url, { clockRefreshMs: 300 });
    try {
      expect(await agrees(c)).toBe(true);
      expect(c.now() - Date.now()).toBeGreaterThan(HOUR - 1000);
      // Stepped on by a minute: the next transaction's first message tells the store.
      await skewed.setClockAhead(HOUR + 60_000);
      await c.appendAudit([auditInput("test.clock")]);
      expect(await agrees(c)).toBe(true);
      // And back again, with no transaction since: once its reading is old, asked for the
      // time, the store reads the clock again in the background.
      await skewed.setClockAhead(HOUR);
      await sleep(400);
      c.now();
      let caughtUp = false;
      for (let i = 0; i < 50 && !caughtUp; i++) {
        await sleep(50);
        caughtUp = await agrees(c);
      }
      expect(caughtUp).toBe(true);
      // A store that only reads (a CLI command) learns it as it opens too.
      const reader = await openPostgresStore(skewed.url, { migrate: false });
      try {
        expect(await agrees(reader)).toBe(true);
      } finally {
        await reader.close();
      }
    } finally {
      await c.close();
      await skewed.drop();
    }
  });

  it("applies transitions with their events and outbox entries, in one valid chain", async () => {
    const first = pendingChange();
    expect(await a.insertRequest(fixed(first), plan)).toEqual({
      inserted: true,
      request: first.request,
    });
    const stored = await b.getRequest(first.request.id);
    expect(stored).toEqual(first.request);

    const approved = await b.transition(first.request.id, approve("bob@example.com"), plan);
    expect(approved).toMatchObject({ status: "approved", version: 2 });
    const running = await a.transition(
      first.request.id,
      (r) => startExecution(r, T0 + 120_000),
      plan,
    );
    expect(running?.status).toBe("executing");
    const done = await b.transition(
      first.request.id,
      (r) =>
        finishExecution(
          r,
          { ok: true, summary: "HTTP 200", result: { id: "re_1" }, resultDigest: "e".repeat(64) },
          T0 + 130_000,
        ),
      plan,
    );
    expect(done).toMatchObject({ status: "succeeded", finishedAt: T0 + 130_000, version: 4 });
    const reread = await a.getRequest(first.request.id);
    expect(reread).toEqual(done);
    expect(reread?.reviews.map((r) => r.reviewer)).toEqual(["bob@example.com"]);

    // A transition that changes nothing writes nothing, and `known` saves no wrong read.
    const still = await a.transition(first.request.id, (r) => ({ value: r }), plan, done);
    expect(still).toEqual(done);

    const cancelled = pendingChange();
    await a.insertRequest(fixed(cancelled), plan);
    await a.transition(cancelled.request.id, (r) => cancel(r, "support-bot", T0 + 1000), plan);
    // Expired by the database's clock, whatever the clock of the replica that asks: one two
    // hours behind finds the lapsed request, one two hours ahead not the live one.
    const lapsed = pendingChange(1, { now: Date.now() - 2 * HOUR });
    const live = pendingChange(1, { now: Date.now() });
    await a.insertRequest(fixed(lapsed), none);
    await a.insertRequest(fixed(live), none);
    expect(await b.expiredPending(Date.now() - 2 * HOUR, 10)).toContain(lapsed.request.id);
    expect(await b.expiredPending(Date.now() + 2 * HOUR, 10)).not.toContain(live.request.id);
    expect(await b.countPending("support-bot", Date.now() + 2 * HOUR, 10_000)).toBeGreaterThan(0);
    // A transition is handed the database's time to decide by.
    let at: number | undefined;
    await b.transition(
      lapsed.request.id,
      (r, now) => {
        at = now;
        return expire(r, now ?? 0);
      },
      plan,
    );
    expect(Math.abs(at! - Date.now())).toBeLessThan(HOUR);
    expect(await a.expiredPending(Date.now(), 10)).not.toContain(lapsed.request.id);
    // So is a new request, to stamp it by: the time its expiry is judged by, in the
    // transaction that records it (`now()` there), whatever the submitting replica's clock.
    let stampedAt: number | undefined;
    const stamped = await a.insertRequest((now) => {
      stampedAt = now;
      return pendingChange(1, { now: now ?? 0 });
    }, plan);
    const [dbNow] = await db.query<{ now: number }>(`SELECT ${NOW_MS} AS now`);
    expect(stamped.inserted && stamped.request.createdAt).toBe(stampedAt);
    expect(stampedAt).toBeLessThanOrEqual(Number(dbNow!.now));
    expect(stampedAt).toBeGreaterThan(Number(dbNow!.now) - HOUR);
    expect(await b.expiredPending(0, 10)).not.toContain(stamped.inserted && stamped.request.id);

    // A vote on an expired request records the expiry, then throws.
    const late = pendingChange();
    await a.insertRequest(fixed(late), none);
    const refused = await rejection(
      a.transition(late.request.id, approve("bob@example.com", T0 + 2 * HOUR), plan),
    );
    expect(refused.code).toBe("expired");
    expect((await a.getRequest(late.request.id))?.status).toBe("expired");

    expect(await a.countByStatus()).toMatchObject({ succeeded: 1, cancelled: 1, expired: 2 });
    expect(await b.idsWithStatus("expired", 10)).toEqual([lapsed.request.id, late.request.id]);
    const events = await a.listAudit({ requestId: first.request.id, limit: 100 });
    expect(events.map((e) => e.type)).toEqual([
      "request.submitted",
      "request.decided",
      "request.reviewed",
      "request.approved",
      "execution.started",
      "execution.succeeded",
    ]);
    expect(await a.listAudit({ type: "request.cancelled", limit: 10 })).toHaveLength(1);
    expect(await a.listAudit({ since: T0 + HOUR, limit: 100 })).toHaveLength(1);
    // Due at once, by the database's clock (which claims them), whatever the changes' times say.
    const outbox = await db.query(
      `SELECT payload, available_at = created_at AS at_once,
      created_at BETWEEN ${NOW_MS} - 60000 AND ${NOW_MS} AS written_now
      FROM outbox WHERE request_id = $1 ORDER BY id`,
      [first.request.id],
    );
    expect(outbox).toEqual(
      ["requested", "reviewed", "resolved"].map((event) => ({
        payload: JSON.stringify({ event }),
        at_once: true,
        written_now: true,
      })),
    );

    // Over a thousand events more, so the chain is also read back across batches.
    await b.appendAudit(Array.from({ length: 1200 }, (_, i) => auditInput("test.bulk", { i })));
    const total = await verifyChain(a);
    expect(total).toBe(await count("audit_events"));
    expect(total).toBeGreaterThan(1200);
    // An export going on after an event it already holds reads the rest, across batches too.
    const after: number[] = [];
    for await (const event of a.auditEvents({ afterSeq: 5 })) after.push(event.seq);
    expect(after).toEqual(Array.from({ length: total - 5 }, (_, i) => i + 6));
  });

  it("keeps an outbox entry's own availableAt, and lists and pages requests", async () => {
    const change = pendingChange(1, {
      proposal: { ...newRequest().proposal, agent: "pager", connection: "pagerduty" },
      agent: { name: "pager", owner: OWNER, labels: {} },
    });
    await a.insertRequest(
      fixed(change),
      entries([
        { topic: "reminder", requestId: change.request.id, payload: {}, availableAt: T0 + 999 },
      ]),
    );
    const [entry] = await db.query("SELECT available_at, created_at FROM outbox WHERE topic = $1", [
      "reminder",
    ]);
    // As long after the change as it asked (its time less the change's), by the database's clock.
    expect(Number(entry?.available_at) - Number(entry?.created_at)).toBe(999);

    const more = [pendingChange(), pendingChange(), pendingChange()];
    for (const c of more) await b.insertRequest(fixed(c), none);
    const page = await a.listRequests({ statuses: ["pending"], agent: "support-bot", limit: 2 });
    expect(page.map((r) => r.id)).toEqual([more[2]!.request.id, more[1]!.request.id]);
    const next = await a.listRequests({
      statuses: ["pending"],
      agent: "support-bot",
      before: page[1]!.id,
      limit: 1,
    });
    expect(next.map((r) => r.id)).toEqual([more[0]!.request.id]);
    expect((await b.listRequests({ connection: "pagerduty", limit: 10 })).map((r) => r.id)).toEqual(
      [change.request.id],
    );
  });

  it("returns the earlier request for a reused idempotency key and writes nothing", async () => {
    const key = { idempotencyKey: "order-42" };
    const first = pendingChange(1, key);
    expect(await a.insertRequest(fixed(first), plan)).toEqual({
      inserted: true,
      request: first.request,
    });
    const before = [await count("requests"), await count("audit_events"), await count("outbox")];

    const again = pendingChange(1, key);
    const result = await b.insertRequest(
      fixed(again),
      entries([{ topic: "x", requestId: null, payload: {} }]),
    );
    expect(result).toEqual({ inserted: false, existing: first.request });
    expect([await count("requests"), await count("audit_events"), await count("outbox")]).toEqual(
      before,
    );
    expect(await b.getRequest(again.request.id)).toBeUndefined();
    expect(await b.findByIdempotencyKey("support-bot", "order-42")).toEqual(first.request);

    // Racing replicas with one key: one request, the others get it back.
    const racers = Array.from({ length: 6 }, () => pendingChange(1, { idempotencyKey: "race" }));
    const results = await Promise.all(
      racers.map((c, i) => (i % 2 ? a : b).insertRequest(fixed(c), plan)),
    );
    const winners = results.filter((r) => r.inserted);
    expect(winners).toHaveLength(1);
    const winner = racers[results.findIndex((r) => r.inserted)]!.request;
    for (const r of results)
      if (!r.inserted) expect(r).toMatchObject({ existing: { id: winner.id } });
    await verifyChain(a);
  });

  /** A pending request of `agent`, which has a test of its own. */
  const pendingOf = (agent: string, overrides: Partial<NewRequest> = {}) =>
    pendingChange(1, {
      proposal: { ...newRequest().proposal, agent },
      agent: { name: agent, owner: OWNER, labels: {} },
      ...overrides,
    });
  const outcome = (r: Awaited<ReturnType<Store["insertRequest"]>>) =>
    r.inserted ? "inserted" : "existing" in r ? "existing" : "at limit";

  it("keeps an agent's pending requests within maxPending when two replicas insert at once", async () => {
    const before = [await count("requests"), await count("audit_events"), await count("outbox")];
    // Three bursts, so that the replicas' batches overlap in more than one way.
    const kept: string[] = [];
    const refused: string[] = [];
    for (const agent of ["burst-1", "burst-2", "burst-3"]) {
      const changes = Array.from({ length: 40 }, () => pendingOf(agent));
      const results = await Promise.all(
        changes.map((c, i) => (i % 2 ? a : b).insertRequest(fixed(c), plan, 5)),
      );
      expect(results.filter((r) => r.inserted)).toHaveLength(5);
      expect(results.filter((r) => !r.inserted)).toEqual(
        Array(35).fill({ inserted: false, atPendingLimit: true }),
      );
      expect(await b.countPending(agent, T0, 100)).toBe(5);
      kept.push(...changes.filter((_, i) => results[i]!.inserted).map((c) => c.request.id));
      refused.push(...changes.filter((_, i) => !results[i]!.inserted).map((c) => c.request.id));
    }
    // The refused wrote nothing: no row, no event, no outbox entry.
    const events = kept.length * pendingOf("x").events.length;
    expect([await count("requests"), await count("audit_events"), await count("outbox")]).toEqual([
      before[0]! + kept.length,
      before[1]! + events,
      before[2]! + kept.length,
    ]);
    for (const table of ["requests", "audit_events", "outbox"]) {
      const column = table === "requests" ? "id" : "request_id";
      const rows = await db.query(`SELECT 1 FROM ${table} WHERE ${column} = ANY($1::text[])`, [
        refused,
      ]);
      expect(rows).toEqual([]);
    }
    await verifyChain(a);

    // At the limit: what would not be pending is not limited; another agent has its own count.
    const allowed = pendingOf("burst-1", {
      decision: decision({ decision: "allow", review: undefined }),
    });
    expect(await a.insertRequest(fixed(allowed), none, 5)).toEqual({
      inserted: true,
      request: allowed.request,
    });
    expect(await b.insertRequest(fixed(pendingOf("burst-other")), none, 5)).toMatchObject({
      inserted: true,
    });
    // Without a limit, nothing is counted.
    expect(await a.insertRequest(fixed(pendingOf("burst-1")), none)).toMatchObject({
      inserted: true,
    });
  });

  it("answers a twin at the limit with its request, and gives a twin's place to no one else", async () => {
    const agent = "twins";
    const held = pendingOf(agent, { idempotencyKey: "held" });
    expect(await a.insertRequest(fixed(held), none, 3)).toEqual({
      inserted: true,
      request: held.request,
    });
    // One batch: a twin of a request already made takes no place, so the new one gets the last
    // but one; of two twins of a new key, one is recorded and the other answered with it.
    const batch = [
      pendingOf(agent, { idempotencyKey: "held" }),
      pendingOf(agent),
      pendingOf(agent, { idempotencyKey: "fresh" }),
      pendingOf(agent, { idempotencyKey: "fresh" }),
      pendingOf(agent),
    ];
    const results = await Promise.all(batch.map((c) => b.insertRequest(fixed(c), plan, 3)));
    expect(results.map(outcome)).toEqual([
      "existing",
      "inserted",
      "inserted",
      "existing",
      "at limit",
    ]);
    expect(results[0]).toEqual({ inserted: false, existing: held.request });
    expect(results[3]).toMatchObject({ existing: { id: batch[2]!.request.id } });
    expect(await a.countPending(agent, T0, 100)).toBe(3);
    // Full now, and still a key already used is answered, from either replica.
    const again = await a.insertRequest(
      fixed(pendingOf(agent, { idempotencyKey: "fresh" })),
      none,
      3,
    );
    expect(again).toMatchObject({ inserted: false, existing: { id: batch[2]!.request.id } });
    await verifyChain(b);
  });

  it("refuses an unknown request, and a refusing transition writes nothing", async () => {
    expect((await rejection(a.transition("req_missing", (r) => ({ value: r }), plan))).code).toBe(
      "not_found",
    );
    const change = pendingChange();
    await a.insertRequest(fixed(change), none);
    await a.transition(change.request.id, approve("bob@example.com"), plan);
    const events = await count("audit_events");
    // A second vote on the approved request: castVote throws, and the transaction rolls back.
    const refused = await rejection(
      b.transition(change.request.id, approve("bob@example.com"), plan),
    );
    expect(refused.code).toBe("not_pending");
    expect(await count("audit_events")).toBe(events);
    expect((await a.getRequest(change.request.id))?.version).toBe(2);
  });

  it("serialises 20 concurrent votes from two replicas: no lost update", async () => {
    const change = pendingChange(100);
    await a.insertRequest(fixed(change), none);
    const id = change.request.id;
    const values = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? a : b).transition(id, approve(`reviewer${i}@example.com`), plan),
      ),
    );
    expect(values.map((v) => v.version).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 2),
    );
    // Each vote saw every vote committed before it.
    for (const v of values) expect(v.reviews).toHaveLength(v.version - 1);
    const final = await b.getRequest(id);
    expect(final?.version).toBe(21);
    expect(new Set(final?.reviews.map((r) => r.reviewer)).size).toBe(20);
    expect(await a.listAudit({ requestId: id, type: "request.reviewed", limit: 100 })).toHaveLength(
      20,
    );
    await verifyChain(b);
  });

  it("settles each change of one group commit on its own: a refusal or unknown id fails only itself", async () => {
    const pending = pendingChange();
    await a.insertRequest(fixed(pending), none);
    await a.transition(pending.request.id, approve("bob@example.com"), plan);
    const events = await count("audit_events");
    // Asked for in one turn of the event loop, so written in one transaction.
    const inserts = Array.from({ length: 30 }, () => pendingChange());
    const results = await Promise.allSettled([
      ...inserts.map((change) => a.insertRequest(fixed(change), plan)),
      a.transition("req_missing", (r) => ({ value: r }), plan),
      a.transition(pending.request.id, approve("carol@example.com"), plan),
    ]);
    expect(results.slice(0, 30).every((r) => r.status === "fulfilled")).toBe(true);
    const [missing, refused] = results.slice(30).map((r) => {
      if (r.status === "fulfilled") throw new Error("expected a rejection");
      return (r.reason as AirlockError).code;
    });
    expect([missing, refused]).toEqual(["not_found", "not_pending"]);
    for (const change of inserts) {
      expect(await b.getRequest(change.request.id)).toEqual(change.request);
    }
    const submitted = inserts.reduce((n, change) => n + change.events.length, 0);
    expect(await count("audit_events")).toBe(events + submitted);
    await verifyChain(b);
  });

  it("uses a caller's copy only for its own change: others in the batch read the row", async () => {
    const change = pendingChange();
    await a.insertRequest(fixed(change), none);
    await a.transition(change.request.id, approve("bob@example.com"), plan);
    const approved = (await a.getRequest(change.request.id))!;
    // A lease renewal changes updated_at without a new version, as the heartbeat does.
    await db.query("UPDATE requests SET updated_at = $1 WHERE id = $2", [
      T0 + HOUR,
      change.request.id,
    ]);
    const seen: number[] = [];
    const look = (r: ActionRequest) => {
      seen.push(r.updatedAt);
      return { value: r };
    };
    await Promise.all([
      a.transition(change.request.id, look, plan, approved),
      a.transition(change.request.id, look, plan),
    ]);
    expect(seen).toEqual([T0 + HOUR, T0 + HOUR]);
  });

  it("renews a lease on a row another transaction holds once it lets go, in no lock cycle with batches", async () => {
    const changes = Array.from({ length: 6 }, () =>
      submit(newRequest({ decision: decision({ decision: "allow", review: undefined }) })),
    );
    for (const change of changes) await a.insertRequest(fixed(change), none);
    const ids = changes.map((change) => change.request.id);
    expect(changes.every((change) => change.request.status === "executing")).toBe(true);

    // Skipped while another replica's lease check held the row, a renewal was lost, and
    // that check, once it had the row, saw the lease as run out. Renewed by the database's
    // clock, whatever the replica's says.
    const [{ now: before }] = (await db.query<{ now: number }>(`SELECT ${NOW_MS} AS now`)) as [
      { now: number },
    ];
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", [ids[0]]);
      const renewal = b.touchExecuting(ids, T0 + HOUR);
      await sleep(200);
      await holder.query("COMMIT");
      await renewal;
    } finally {
      await holder.end();
    }
    for (const id of ids) {
      const { updatedAt } = (await a.getRequest(id))!;
      expect(updatedAt).toBeGreaterThanOrEqual(Number(before));
      expect(updatedAt).toBeLessThan(T0);
    }

    // Renewals in any order of ids, and batches locking the same rows, from both replicas.
    const look = (r: ActionRequest) => ({ value: r });
    const work: Promise<unknown>[] = [];
    for (let round = 0; round < 40; round++) {
      const order = round % 2 ? [...ids].reverse() : ids;
      work.push((round % 2 ? a : b).touchExecuting(order, T0 + HOUR + round));
      for (const id of order) work.push((round % 3 ? b : a).transition(id, look, plan));
    }
    const settled = await Promise.allSettled(work);
    expect(settled.filter((r) => r.status === "rejected")).toEqual([]);
  });

  it("fails only the change whose data the database refuses, not the rest of its batch", async () => {
    const good = Array.from({ length: 5 }, () => pendingChange());
    // PostgreSQL refuses NUL in TEXT; the API refuses it first, this is the store's own guard.
    const bad = pendingChange(1, {
      proposal: { ...newRequest().proposal, justification: "evil\u0000" },
    });
    const results = await Promise.allSettled([
      ...good.map((change) => a.insertRequest(fixed(change), none)),
      a.insertRequest(fixed(bad), none),
    ]);
    expect(results.slice(0, 5).map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));
    const refused = results[5]!;
    expect(refused.status).toBe("rejected");
    // Refused, not down: trying again would fail alike.
    expect(((refused as PromiseRejectedResult).reason as AirlockError).code).toBe("internal");
    for (const change of good) expect(await b.getRequest(change.request.id)).toBeDefined();
    expect(await b.getRequest(bad.request.id)).toBeUndefined();
    await verifyChain(b);
  });

  it("chains in the database exactly as the gateway hashes, whatever the events' text holds", async () => {
    const awkward = [
      "$airlock$",
      "ends with $airlock",
      "$airlock",
      "$",
      "it's; DROP TABLE audit_events; --",
      "back\\slash \\' and \\x00",
      "tab\tnew\nline\u0001",
      "é ü 中文 🚀",
      '{"json": "inside"}',
    ];
    const before = await count("audit_events");
    await a.appendAudit(
      awkward.map((text, i) => ({
        type: "test.awkward",
        requestId: text,
        actor: { type: "operator", id: text },
        data: { text, nested: [text, { [text]: i }] },
        at: T0 + i,
      })),
    );
    const stored = await a.listAudit({ type: "test.awkward", limit: 100 });
    expect(stored.map((e) => e.actor.id)).toEqual(awkward);
    expect(stored.map((e) => (e.data as { text: string }).text)).toEqual(awkward);
    expect(stored.map((e) => e.requestId)).toEqual(awkward);
    expect(await verifyChain(a)).toBe(before + awkward.length);
  });

  it("reads every stored event in chain order, one numbered 0 or less too, so verify sees it", async () => {
    const fresh = await scratchSchema();
    const c = await openPostgresStore(fresh.url);
    try {
      await c.appendAudit([auditInput("test.first"), auditInput("test.second")]);
      // Forged ahead of the chain: GET /v1/audit lists it first, so verify must see it too.
      await fresh.query(
        `INSERT INTO audit_events (seq, ts, type, request_id, actor_type, actor_id, data,
        prev_hash, hash) VALUES (0, $1, 'test.forged', NULL, 'operator', 'ops', '{}', $2, $2)`,
        [new Date(T0).toISOString(), "0".repeat(64)],
      );
      const seen: number[] = [];
      for await (const event of c.auditEvents()) seen.push(event.seq);
      expect(seen).toEqual([0, 1, 2]);
      const verifier = createChainVerifier();
      for await (const event of c.auditEvents()) verifier.add(event);
      expect(verifier.finish().problem).toMatchObject({ seq: 0, kind: "out_of_order" });
    } finally {
      await c.close();
      await fresh.drop();
    }
  });

  it("keeps signed checkpoints of its chain, which a rewrite in the database breaks", async () => {
    const fresh = await scratchSchema();
    const c = await openPostgresStore(fresh.url);
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    try {
      expect(await c.lastAuditEvent()).toBeUndefined();
      await c.appendAudit([auditInput("test.first"), auditInput("test.second")]);
      const checkpointer = createCheckpointer({
        store: c,
        privateKey,
        everyMs: 60_000,
        clock: () => T0,
        logger: createLogger({ level: "silent" }),
      });
      await checkpointer.checkpoint();
      // At the head already: not signed twice.
      await checkpointer.checkpoint();
      expect(await c.lastAuditEvent()).toMatchObject({ seq: 3, type: "audit.checkpoint" });
      await c.appendAudit([auditInput("test.third")]);
      expect(await verifyAudit(c, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: true,
        signed: { through: 2, checkpoints: 1, unsigned: 1 },
      });
      // Event 2 edited and the chain rehashed from there: the checkpoint no longer agrees.
      const rows = (await fresh.query("SELECT * FROM audit_events ORDER BY seq")) as {
        seq: number;
        ts: Date | string;
        type: string;
        request_id: string | null;
        actor_type: "operator";
        actor_id: string;
        data: unknown;
        prev_hash: string;
      }[];
      let prevHash = rows[0]!.prev_hash;
      for (const row of rows) {
        const data = (row.seq === 2 ? { forged: true } : row.data) as AuditEventInput["data"];
        const ts = typeof row.ts === "string" ? row.ts : row.ts.toISOString();
        const event = {
          seq: row.seq,
          ts,
          type: row.type,
          requestId: row.request_id,
          actor: { type: row.actor_type, id: row.actor_id },
          data,
          prevHash,
        };
        const hash = hashEvent(event);
        await fresh.query(
          "UPDATE audit_events SET data = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
          [canonicalJson(data), prevHash, hash, row.seq],
        );
        prevHash = hash;
      }
      expect((await verifyAudit(c)).ok).toBe(true);
      expect(await verifyAudit(c, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: false,
        problem: { seq: 3, kind: "bad_signature" },
      });
    } finally {
      await c.close();
      await fresh.drop();
    }
  });

  it("quotes any text as an SQL literal that reads back the same", async () => {
    const texts = ["", "plain", "$airlock$", "x$airlock", "$airlock$$airlock$", "'", "\\'", "$$"];
    const sql = `SELECT ${texts.map((t, i) => `${sqlLiteral(t)} AS t${i}`).join(", ")}, ${sqlLiteral(null)} AS nothing`;
    const [row] = await db.query(sql);
    expect(Object.values(row as object)).toEqual([...texts, null]);
  });

  it("keeps one chain when two replicas append at once", async () => {
    const before = await count("audit_events");
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 ? a : b).appendAudit([auditInput("test.concurrent", { i })]),
      ),
    );
    expect(await count("audit_events")).toBe(before + 200);
    expect(await verifyChain(a)).toBe(before + 200);
  });

  /**
   * The database's clock moves on by `ms`, as the outbox sees it: its due times, leases and
   * creation times are moved back by as much.
   */
  const age = (ms: number) =>
    db.query(
      `UPDATE outbox SET available_at = available_at - $1, created_at = created_at - $1,
      lease_until = lease_until - $1`,
      [ms],
    );
  /** What a replica's clock says: the outbox is judged by the database's, whatever it is. */
  const MINUTE = 60_000;

  it("hands out one request's entries for one channel in order, across replicas", async () => {
    await db.query("DELETE FROM outbox");
    const change = pendingChange();
    const entry = (event: string, availableAt?: number) => ({
      topic: "channel:slack",
      requestId: change.request.id,
      payload: { event },
      ...(availableAt === undefined ? {} : { availableAt }),
    });
    // A reminder written ahead for later holds nothing up until it is due.
    await a.insertRequest(fixed(change), entries([entry("requested"), entry("remind", T0 + HOUR)]));
    const events = (items: { payload: Record<string, unknown> }[]) =>
      items.map((item) => item.payload.event);
    const now = Date.now();
    const [first] = await a.claimOutbox(now, 60_000, 10, ["channel:slack"]);
    expect(first?.payload.event).toBe("requested");
    await db.query(
      `INSERT INTO outbox (topic, request_id, payload, available_at, created_at) VALUES
      ('channel:slack', $1, '{"event":"reviewed"}', ${NOW_MS}, ${NOW_MS})`,
      [change.request.id],
    );
    // Another replica does not deliver the vote while the first message is still going out,
    expect(events(await b.claimOutbox(now, 60_000, 10, ["channel:slack"]))).toEqual([]);
    // nor while it waits to be tried again,
    await a.failOutbox(now, first!.id, "Slack rate-limited", 5000);
    expect(events(await b.claimOutbox(now + 1, 60_000, 10, ["channel:slack"]))).toEqual([]);
    // and once it went out, the vote is next.
    await age(5000);
    const [retried] = await b.claimOutbox(now, 60_000, 10, ["channel:slack"]);
    expect(retried?.id).toBe(first!.id);
    await b.completeOutbox(retried!.id);
    expect(events(await a.claimOutbox(now, 60_000, 10, ["channel:slack"]))).toEqual(["reviewed"]);
  });

  it("makes an entry whose payload no longer reads a dead letter, and hands out the rest", async () => {
    await db.query("DELETE FROM outbox");
    const change = pendingChange();
    const other = pendingChange();
    const entry = (requestId: string, event: string) => ({
      topic: "channel:chat",
      requestId,
      payload: { event },
    });
    await a.insertRequest(
      fixed(change),
      entries([entry(change.request.id, "requested"), entry(change.request.id, "reviewed")]),
    );
    await a.insertRequest(fixed(other), entries([entry(other.request.id, "requested")]));
    const [damaged] = await a.listOutbox({ state: "pending", limit: 10 });
    // Cut short by hand, or by a damaged disk: no JSON, and no JSON object.
    await db.query(`UPDATE outbox SET payload = '{"event": "requ' WHERE id = $1`, [damaged!.id]);
    const claimed = await b.claimOutbox(Date.now(), 60_000, 10, ["channel:chat"]);
    expect(claimed.map((item) => [item.requestId, item.payload.event])).toEqual([
      [other.request.id, "requested"],
    ]);
    const [dead] = await a.listOutbox({ state: "dead", limit: 10 });
    expect(dead).toMatchObject({ id: damaged!.id, payload: { unparseable: '{"event": "requ' } });
    expect(dead?.lastError).toContain("not a JSON object");
    // It holds its request's later entries up no more.
    const [next] = await a.claimOutbox(Date.now(), 60_000, 10, ["channel:chat"]);
    expect(next?.payload.event).toBe("reviewed");
    await db.query("UPDATE outbox SET payload = '[1]', lease_until = NULL WHERE id = $1", [
      next!.id,
    ]);
    expect(await b.claimOutbox(Date.now(), 60_000, 10, ["channel:chat"])).toEqual([]);
    expect(await a.countOutbox()).toEqual({ pending: 1, dead: 2 });
  });

  it("leases, retries and writes outbox entries by the database's clock, whatever the replicas' clocks say", async () => {
    await db.query("DELETE FROM outbox");
    // Written by a replica whose clock runs an hour behind: due at once all the same, and
    // its reminder an hour after the change, not an hour after the database's now.
    const behind = Date.now() - HOUR;
    const change = pendingChange(1, { now: behind });
    const entry = (event: string, availableAt?: number) => ({
      topic: "channel:hook",
      requestId: change.request.id,
      payload: { event },
      ...(availableAt === undefined ? {} : { availableAt }),
    });
    await a.insertRequest(
      fixed(change),
      entries([entry("requested"), entry("remind", behind + HOUR)]),
    );
    const [written] = await db.query<{ due_in: number }>(
      `SELECT available_at - ${NOW_MS} AS due_in FROM outbox WHERE payload LIKE '%remind%'`,
    );
    expect(Number(written?.due_in)).toBeGreaterThan(HOUR - MINUTE);
    // A claims it with a 5-minute lease; B, its clock ten minutes ahead, would have seen
    // that lease run out, and delivered it a second time.
    const [first] = await a.claimOutbox(Date.now(), 5 * MINUTE, 10, ["channel:hook"]);
    expect(first?.payload.event).toBe("requested");
    const ahead = () => Date.now() + 10 * MINUTE;
    expect(await b.claimOutbox(ahead(), 5 * MINUTE, 10, ["channel:hook"])).toEqual([]);
    // Nor does its clock make a failed delivery due before its backoff is over, however far
    // behind the clock of the replica that scheduled it runs.
    await a.failOutbox(Date.now() - HOUR, first!.id, "HTTP 503", MINUTE);
    expect(await b.claimOutbox(ahead(), 5 * MINUTE, 10, ["channel:hook"])).toEqual([]);
    // Nor is an entry given up as unclaimed by a clock a day ahead.
    expect(await b.abandonOutbox(Date.now() + 2 * 24 * HOUR, 24 * HOUR, [], "nobody")).toBe(0);
    // Once the database's clock is past the backoff, any replica takes it, whatever its own.
    await age(MINUTE);
    const [retried] = await b.claimOutbox(Date.now() - HOUR, 5 * MINUTE, 10, ["channel:hook"]);
    expect(retried).toMatchObject({ id: first!.id, attempts: 2 });
    // Handed back (a stop): due at once by the database's clock, not by the stopping replica's.
    await b.failOutbox(Date.now() + HOUR, retried!.id, "stopped", 0);
    const [again] = await a.claimOutbox(Date.now(), 5 * MINUTE, 10, ["channel:hook"]);
    expect(again?.id).toBe(first!.id);
  });

  it("keeps one request's entries in order whatever the clocks of the replicas that wrote and claim them", async () => {
    await db.query("DELETE FROM outbox");
    const change = pendingChange();
    const id = change.request.id;
    await a.insertRequest(fixed(change), none);
    const write = (event: string, offset: number) =>
      db.query(
        `INSERT INTO outbox (topic, request_id, payload, available_at, created_at)
        VALUES ('channel:hook', $1, $2, ${NOW_MS} + $3, ${NOW_MS} + $3)`,
        [id, JSON.stringify({ event }), offset],
      );
    // Replicas from before due times were the database's stamped them by their own clocks:
    // the approval by one whose clock runs a minute ahead; the execution's start, a moment
    // later, by one whose clock is right.
    await write("request.approved", MINUTE);
    await write("request.executing", 0);
    // The start must not go out before the approval, which does not look due yet.
    const early = await b.claimOutbox(Date.now(), 60_000, 10, ["channel:hook"]);
    expect(early.map((item) => item.payload.event)).toEqual([]);
    await age(MINUTE);
    const [first] = await b.claimOutbox(Date.now(), 60_000, 10, ["channel:hook"]);
    expect(first?.payload.event).toBe("request.approved");
    await b.completeOutbox(first!.id);
    const [second] = await a.claimOutbox(Date.now(), 60_000, 10, ["channel:hook"]);
    expect(second?.payload.event).toBe("request.executing");
  });

  it("leaves a channel's entries to the replicas that have it, and gives up on those nobody tries", async () => {
    await db.query("DELETE FROM outbox");
    const change = pendingChange();
    const entry = (topic: string) => ({ topic, requestId: change.request.id, payload: { topic } });
    await a.insertRequest(
      fixed(change),
      entries([entry("channel:teams"), entry("channel:slack"), entry("channel:old")]),
    );
    const now = Date.now();
    // B has Slack only (its config predates Teams): it takes Slack's entry and no other.
    const [slack] = await b.claimOutbox(now, 60_000, 10, ["channel:slack"]);
    expect(slack?.topic).toBe("channel:slack");
    expect(await b.claimOutbox(now, 60_000, 10, ["channel:slack"])).toEqual([]);
    // A has both: Teams' entry is its to deliver, and it fails once.
    const [teams] = await a.claimOutbox(now, 60_000, 10, ["channel:slack", "channel:teams"]);
    expect(teams?.topic).toBe("channel:teams");
    await a.failOutbox(now, teams!.id, "Teams down", 30_000);
    // Nothing is given up before it has waited; then only what nobody has tried.
    expect(await b.abandonOutbox(now, MINUTE, ["channel:slack"], "nobody")).toBe(0);
    await age(MINUTE + 1000);
    expect(await b.abandonOutbox(now, MINUTE, ["channel:slack"], "nobody has it")).toBe(1);
    expect(await db.query("SELECT topic, state, last_error FROM outbox ORDER BY id")).toEqual([
      { topic: "channel:teams", state: "pending", last_error: "Teams down" },
      { topic: "channel:slack", state: "pending", last_error: null },
      { topic: "channel:old", state: "dead", last_error: "nobody has it" },
    ]);
    // Teams then leaves every config: its entry, tried once, is given up once nobody has
    // touched it for long enough, and not while its retry or a lease is recent.
    expect(await b.abandonOutbox(now, MINUTE, ["channel:slack"], "removed")).toBe(0);
    await age(MINUTE);
    expect(await b.abandonOutbox(now, MINUTE, ["channel:slack"], "removed")).toBe(1);
  });

  it("never leases one outbox item to two replicas at once", async () => {
    await db.query("DELETE FROM outbox");
    const change = pendingChange();
    // Each for a channel of its own: one channel's entries for a request go one at a time.
    const outbox = Array.from({ length: 150 }, (_, i) => ({
      topic: `webhook:${i}`,
      requestId: change.request.id,
      payload: { i },
    }));
    await a.insertRequest(fixed(change), entries(outbox));
    const webhooks = outbox.map((entry) => entry.topic);
    const now = Date.now();
    const claimed: number[] = [];
    const drain = async (store: Store) => {
      for (;;) {
        const items = await store.claimOutbox(now, 60_000, 7, webhooks);
        if (items.length === 0) return;
        claimed.push(...items.map((item) => item.id));
      }
    };
    await Promise.all([drain(a), drain(b), drain(a), drain(b)]);
    expect(claimed).toHaveLength(150);
    expect(new Set(claimed).size).toBe(150);

    // Leased items come back once their lease is over, attempts counted.
    await age(60_000);
    const [again] = await b.claimOutbox(now, 1000, 1, webhooks);
    expect(again).toMatchObject({ topic: "webhook:0", attempts: 2 });
    await a.completeOutbox(again!.id);
    const [retry] = await a.claimOutbox(now, 1000, 1, webhooks);
    await b.failOutbox(now, retry!.id, "HTTP 500", 100_000);
    const [dead] = await a.claimOutbox(now, 1000, 1, webhooks);
    await b.failOutbox(now, dead!.id, "gone", null);
    await age(200_000);
    const due = await a.claimOutbox(now, 1000, 1000, webhooks);
    expect(due.map((item) => item.id)).toContain(retry!.id);
    expect(due.map((item) => item.id)).not.toContain(dead!.id);
    expect(due.map((item) => item.id)).not.toContain(again!.id);
    expect(
      await db.query("SELECT state, last_error FROM outbox WHERE id = $1", [dead!.id]),
    ).toEqual([{ state: "dead", last_error: "gone" }]);
    // Delivered: gone, so the table holds only what is still to do and the dead letters.
    expect(await db.query("SELECT id FROM outbox WHERE id = $1", [again!.id])).toEqual([]);
  });

  it("tells listeners on another replica about committed changes, once each", async () => {
    const onA: RequestChange[] = [];
    const onB: RequestChange[] = [];
    const stopA = a.subscribe((c) => onA.push(c));
    const stopB = b.subscribe((c) => onB.push(c));
    try {
      const change = pendingChange();
      const id = change.request.id;
      const inserted = heard(b, (c) => c.id === id && c.version === 1);
      await a.insertRequest(fixed(change), none);
      expect(await inserted).toEqual({ id, status: "pending", version: 1 });
      const approved = heard(a, (c) => c.id === id && c.version === 2);
      await b.transition(id, approve("bob@example.com"), plan);
      expect(await approved).toEqual({ id, status: "approved", version: 2 });
      // Let any echo of a store's own notification arrive before counting.
      await sleep(200);
      expect(onA.filter((c) => c.id === id)).toEqual([
        { id, status: "pending", version: 1 },
        { id, status: "approved", version: 2 },
      ]);
      expect(onB.filter((c) => c.id === id)).toEqual(onA.filter((c) => c.id === id));
    } finally {
      stopA();
      stopB();
    }
  });

  it("tells another replica about every change of a batch too large for one notification", async () => {
    const changes = Array.from({ length: 400 }, () => pendingChange());
    const ids = new Set(changes.map((c) => c.request.id));
    const seen = new Set<string>();
    const stop = b.subscribe((c) => {
      if (ids.has(c.id)) seen.add(c.id);
    });
    // Counts the notifications themselves: a batch's changes share them.
    const raw = new pg.Client({ connectionString: db.url });
    await raw.connect();
    let notifications = 0;
    raw.on("notification", (message) => {
      if ([...ids].some((id) => message.payload?.includes(id))) notifications++;
    });
    await raw.query("LISTEN airlock_changes");
    try {
      await Promise.all(changes.map((change) => a.insertRequest(fixed(change), none)));
      await expect.poll(() => seen.size, { timeout: 5000 }).toBe(400);
      // The raw listener hears the same notifications, perhaps a moment later.
      await expect.poll(() => notifications, { timeout: 5000 }).toBeGreaterThan(1);
      await sleep(300);
      expect(notifications).toBeLessThan(40);
      // A replica from before batching sends one change per notification: still heard.
      const heardOld = heard(b, (c) => c.id === "req_from_an_old_replica");
      await db.query("SELECT pg_notify('airlock_changes', $1)", [
        JSON.stringify({
          origin: "old-replica",
          schema: db.name,
          id: "req_from_an_old_replica",
          status: "pending",
          version: 3,
        }),
      ]);
      expect(await heardOld).toEqual({
        id: "req_from_an_old_replica",
        status: "pending",
        version: 3,
      });
    } finally {
      stop();
      await raw.end();
    }
  });

  it("never tells anyone about a change that rolled back", async () => {
    // A trigger makes the audit insert, the last write of a change, fail.
    await db.query(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'refused by test'; END $$`);
    await db.query(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW
      WHEN (NEW.type = 'test.refused') EXECUTE FUNCTION refuse_audit()`);
    const change = pendingChange();
    const id = change.request.id;
    const inserted = heard(b, (c) => c.id === id);
    await a.insertRequest(fixed(change), none);
    await inserted;
    const onB: RequestChange[] = [];
    const stop = b.subscribe((c) => onB.push(c));
    try {
      const failed = await rejection(
        a.transition(
          id,
          (r) => {
            const next = { ...r, status: "cancelled" as const, version: r.version + 1 };
            return {
              change: {
                request: next,
                events: [{ ...auditInput("test.refused"), requestId: id }],
                notifications: [],
              },
              value: next,
            };
          },
          plan,
        ),
      );
      // Refused, not down; what the database said is for the log (the cause), not the caller.
      expect(failed.code).toBe("internal");
      expect(failed.message).not.toMatch(/refused by test/);
      expect((failed.cause as Error).message).toMatch(/refused by test/);
      expect((await a.getRequest(id))?.status).toBe("pending");
      // Notifications arrive in commit order: once this one is heard, the other never will be.
      const later = heard(b, (c) => c.id === id);
      await a.transition(id, (r) => cancel(r, "support-bot", T0 + 5), plan);
      expect(await later).toEqual({ id, status: "cancelled", version: 2 });
      expect(onB.filter((c) => c.id === id)).toEqual([{ id, status: "cancelled", version: 2 }]);
    } finally {
      stop();
      await db.query("DROP TRIGGER refuse_audit ON audit_events");
    }
  });

  it("gives up on a database that stops answering, in bounded time, and recovers", async () => {
    const proxy = await startProxy(Number(new URL(db.url).port || 5432));
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    const c = await openPostgresStore(proxied.toString(), {
      timeoutMs: 500,
      onError: () => {},
    });
    try {
      const first = pendingChange();
      await c.insertRequest(fixed(first), none);
      proxy.stall();
      const started = Date.now();
      const stuck = await Promise.allSettled([
        c.insertRequest(fixed(pendingChange()), none),
        c.transition(first.request.id, approve("bob@example.com"), plan),
        c.getRequest(first.request.id),
      ]);
      for (const outcome of stuck) {
        expect(outcome.status).toBe("rejected");
        expect(((outcome as PromiseRejectedResult).reason as AirlockError).code).toBe(
          "store_unavailable",
        );
      }
      expect(Date.now() - started).toBeLessThan(5000);
      // The network heals: the stalled connections are gone, new ones work.
      await proxy.stop();
      await proxy.start();
      const after = pendingChange();
      await c.insertRequest(fixed(after), none);
      expect((await b.getRequest(after.request.id))?.id).toBe(after.request.id);
      expect((await b.getRequest(first.request.id))?.version).toBe(1);
    } finally {
      await c.close();
      await proxy.stop();
    }
  });

  it("tells callers the truth when a COMMIT's answer is lost: it committed", async () => {
    const proxy = await startProxy(Number(new URL(db.url).port || 5432));
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    const c = await openPostgresStore(proxied.toString(), { onError: () => {} });
    try {
      const change = pendingChange();
      await c.insertRequest(fixed(change), none);
      const id = change.request.id;
      // Lost before anything was written: the caller hears the failure, and nothing changed.
      proxy.loseAnswerTo("BEGIN ISOLATION");
      const lost = await rejection(c.transition(id, approve("bob@example.com"), plan));
      expect(lost.code).toBe("store_unavailable");
      expect((await b.getRequest(id))?.status).toBe("pending");
      // Lost after the COMMIT went out: it committed, and the caller hears so.
      proxy.loseAnswerTo("airlock_append_audit");
      const approved = await c.transition(id, approve("bob@example.com"), plan);
      expect(approved.status).toBe("approved");
      expect((await b.getRequest(id))?.status).toBe("approved");
      // And the store goes on working on fresh connections.
      expect((await c.getRequest(id))?.version).toBe(approved.version);
      await verifyChain(b);
    } finally {
      await c.close();
      await proxy.stop();
    }
  });

  it("tells callers the truth when a COMMIT's answer is lost while it still waits: it did not commit", async () => {
    const proxy = await startProxy(Number(new URL(db.url).port || 5432));
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    const name = `airlock_waiting_commit_${process.pid}`;
    proxied.searchParams.set("application_name", name);
    const c = await openPostgresStore(proxied.toString(), { onError: () => {} });
    // Another transaction holds the audit chain's lock: the COMMIT message waits for it on the
    // server, after its connection (and so its answer) is lost.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      const change = pendingChange();
      await c.insertRequest(fixed(change), none);
      const id = change.request.id;
      await holder.query("SELECT pg_advisory_lock($1::bigint)", [lockKey("audit", db.name)]);
      proxy.loseAnswerTo("airlock_append_audit");
      // Its session is ended, so that it cannot commit once the lock is free; the caller hears
      // the failure. Before, the caller heard the failure and the vote counted all the same.
      const failed = await rejection(c.transition(id, approve("bob@example.com"), plan));
      expect(failed.code).toBe("store_unavailable");
      await holder.query("SELECT pg_advisory_unlock($1::bigint)", [lockKey("audit", db.name)]);
      await expect
        .poll(
          async () =>
            await db.query(
              "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%airlock_append_audit%' AND state = 'active'",
              [name],
            ),
        )
        .toEqual([]);
      expect(await b.getRequest(id)).toMatchObject({ status: "pending", version: 1, reviews: [] });
      await verifyChain(b);
    } finally {
      await holder.end();
      await c.close();
      await proxy.stop();
    }
  });

  it("survives connections the server drops, and listens again", async () => {
    const url = new URL(db.url);
    const name = `airlock_drop_${process.pid}`;
    url.searchParams.set("application_name", name);
    const seen: unknown[] = [];
    const c = await openPostgresStore(url.toString(), { onError: (e) => seen.push(e) });
    try {
      await c.ping();
      await db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [name],
      );
      // The idle pool connection and the change feed were both cut; neither ends the process.
      await expect.poll(() => seen.length, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
      expect(seen.every((e) => e instanceof AirlockError && e.code === "store_unavailable")).toBe(
        true,
      );
      await c.ping();
      // The feed reconnects: keep changing a request on `a` until `c` hears one.
      const change = pendingChange(1000);
      await a.insertRequest(fixed(change), none);
      let heardOne = false;
      const stop = c.subscribe((ch) => {
        if (ch.id === change.request.id) heardOne = true;
      });
      for (let i = 0; i < 50 && !heardOne; i++) {
        await a.transition(change.request.id, approve(`r${i}@example.com`), plan);
        await sleep(200);
      }
      stop();
      expect(heardOne).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("wakes long-polls once a cut change feed is back, for changes made while it was down", async () => {
    const url = new URL(db.url);
    const name = `airlock_gap_${process.pid}`;
    url.searchParams.set("application_name", name);
    const lost: unknown[] = [];
    const c = await openPostgresStore(url.toString(), { onError: (e) => lost.push(e) });
    const waiters = createWaiters(c);
    try {
      const change = pendingChange(1000);
      await a.insertRequest(fixed(change), none);
      const watch = waiters.watch(change.request.id);
      await db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [name],
      );
      await expect.poll(() => lost.length, { timeout: 5000 }).toBeGreaterThanOrEqual(1);
      // Committed while the feed is down (it waits 250 ms before connecting again): its
      // notification reaches nobody on `c`.
      await a.transition(change.request.id, approve("gap@example.com"), plan);
      const started = Date.now();
      expect(await watch.next(10_000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(5000);
      watch.close();
    } finally {
      waiters.close();
      await c.close();
    }
  });

  it("sees a token revoked on another replica within a second", async () => {
    const token = {
      id: "tok_1",
      kind: "agent" as const,
      subject: "support-bot",
      hash: "h".repeat(64),
      hint: "alk_1234",
      createdAt: T0,
      revokedAt: null,
    };
    await a.insertToken(token, auditInput("token.created"));
    expect(await b.findTokenByHash(token.hash)).toEqual(token);
    expect(await a.findTokenByHash(token.hash)).toEqual(token);
    expect(await a.revokeToken("tok_1", { ...auditInput("token.revoked"), at: T0 + 5 })).toBe(true);
    expect(await a.revokeToken("tok_1", auditInput("token.revoked"))).toBe(false);
    // Here at once; on the other replica once its cached copy is a second old.
    expect((await a.findTokenByHash(token.hash))?.revokedAt).toBe(T0 + 5);
    await sleep(1100);
    expect((await b.findTokenByHash(token.hash))?.revokedAt).toBe(T0 + 5);
    expect(await b.findTokenByHash("x".repeat(64))).toBeUndefined();
    expect((await b.listTokens()).map((t) => t.id)).toEqual(["tok_1"]);
    expect(await a.listAudit({ type: "token.revoked", limit: 10 })).toHaveLength(1);
  });

  it("shares a rate limit's bucket between replicas: a burst is a burst across them", async () => {
    const key = `agent:burst-${Date.now()}`;
    const waits = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).takeRateToken(key, 5, 1 / 60)),
    );
    expect(waits.filter((wait) => wait === undefined)).toHaveLength(5);
    // One token a minute: the next comes in about 60 s.
    const refused = waits.filter((wait): wait is number => wait !== undefined);
    expect(refused).toHaveLength(15);
    for (const wait of refused) {
      expect(wait).toBeGreaterThanOrEqual(1);
      expect(wait).toBeLessThanOrEqual(60);
    }
    // Refilled at its rate: at one a second, a token is back after a second. (At 50 a
    // second, a busy machine's 20 ms between the first two calls refilled it already.)
    const fast = `agent:fast-${Date.now()}`;
    expect(await a.takeRateToken(fast, 1, 1)).toBeUndefined();
    expect(await b.takeRateToken(fast, 1, 1)).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await b.takeRateToken(fast, 1, 1)).toBeUndefined();
  });

  it("keeps sessions until they expire, and completes each sign-in once", async () => {
    const session = {
      idHash: "s".repeat(64),
      email: "bob@example.com",
      issuer: "https://idp.example.com",
      subject: "bob",
      groups: ["finance"],
      authTime: T0,
      acr: null,
      createdAt: T0,
      expiresAt: T0 + HOUR,
      refreshToken: "sealed-refresh-token",
      checkedAt: T0,
    };
    await a.insertSession(session, auditInput("session.started"));
    expect(await b.findSession(session.idHash, T0 + 1)).toEqual(session);
    // One replica at a time asks the identity provider again about a session.
    const first = "sealed-refresh-token";
    expect(await a.claimSessionCheck(session.idHash, T0 + 10, 30_000, first)).toBe(true);
    expect(await b.claimSessionCheck(session.idHash, T0 + 11, 30_000, first)).toBe(false);
    // Held by the database's clock: B's, half an hour ahead of A's, does not see it run out.
    expect(await b.claimSessionCheck(session.idHash, T0 + HOUR / 2, 30_000, first)).toBe(false);
    await a.releaseSessionCheck(session.idHash);
    expect(await b.claimSessionCheck(session.idHash, T0 + 12, 30_000, first)).toBe(true);
    const check = { groups: ["eng"], refreshToken: "sealed-next", checkedAt: T0 + 13 };
    expect(await b.recordSessionCheck(session.idHash, check, auditInput("groups.changed"))).toBe(
      true,
    );
    expect(await a.findSession(session.idHash, T0 + 14)).toEqual({ ...session, ...check });
    // Never with the token the check replaced: only with the one the session holds now.
    expect(await a.claimSessionCheck(session.idHash, T0 + 14, 30_000, first)).toBe(false);
    expect(await a.claimSessionCheck(session.idHash, T0 + 14, 30_000, "sealed-next")).toBe(true);
    expect(await a.listAudit({ type: "groups.changed", limit: 10 })).toHaveLength(1);
    await a.releaseSessionCheck(session.idHash);
    // An ended session is never claimed.
    expect(await b.claimSessionCheck(session.idHash, T0 + HOUR, 30_000, "sealed-next")).toBe(false);
    expect(await b.findSession(session.idHash, T0 + HOUR)).toBeUndefined();
    // Expired sessions are swept a day later, by the database's clock (tested below).
    await b.insertSession(
      { ...session, idHash: "t".repeat(64), createdAt: T0 + HOUR, expiresAt: T0 + 2 * HOUR },
      auditInput("session.started"),
    );
    await db.query("DELETE FROM sessions WHERE id_hash = $1", [session.idHash]);
    // A new sign-in in the same browser forgets the session it replaces.
    await a.insertSession(
      { ...session, idHash: "u".repeat(64), createdAt: T0 + HOUR, expiresAt: T0 + 2 * HOUR },
      auditInput("session.started"),
      "t".repeat(64),
    );
    expect(await db.query("SELECT id_hash FROM sessions")).toEqual([{ id_hash: "u".repeat(64) }]);
    expect(await a.deleteSession("u".repeat(64), auditInput("session.ended"))).toBe(true);
    expect(await a.deleteSession("u".repeat(64), auditInput("session.ended"))).toBe(false);
    expect(await a.listAudit({ type: "session.ended", limit: 10 })).toHaveLength(1);

    const signIn = {
      stateHash: "g".repeat(64),
      verifier: "v",
      nonce: "n",
      returnTo: "/console",
      stepUp: true,
      expiresAt: T0 + 600_000,
    };
    await a.insertSignIn(signIn, T0);
    const taken = await Promise.all([
      a.takeSignIn(signIn.stateHash, T0 + 1),
      b.takeSignIn(signIn.stateHash, T0 + 1),
    ]);
    expect(taken.filter((t) => t !== undefined)).toEqual([signIn]);
    // Expired by the clock of the replica that completes it.
    await a.insertSignIn({ ...signIn, stateHash: "e".repeat(64) }, T0);
    expect(await b.takeSignIn("e".repeat(64), T0 + 600_000)).toBeUndefined();
  });

  it("keeps sessions and sign-ins that other replicas still honour: one whose clock runs ahead does not sweep them", async () => {
    await db.query("DELETE FROM sessions");
    await db.query("DELETE FROM sign_ins");
    const now = Date.now();
    const minute = 60_000;
    const session = (idHash: string, at: number) => ({
      idHash,
      email: "bob@example.com",
      issuer: "https://idp.example.com",
      subject: "bob",
      groups: ["finance"],
      authTime: at,
      acr: null,
      createdAt: at,
      expiresAt: at + 5 * minute,
      refreshToken: null,
      checkedAt: at,
    });
    const signIn = (stateHash: string, at: number) => ({
      stateHash,
      verifier: "v",
      nonce: "n",
      returnTo: "/console",
      stepUp: false,
      expiresAt: at + 5 * minute,
    });
    // A, whose clock is right, starts a session and a sign-in, each good for five minutes.
    await a.insertSession(session("k".repeat(64), now), auditInput("session.started"));
    await a.insertSignIn(signIn("k".repeat(64), now), now);
    // B, ten minutes ahead, starts its own: by its clock, A's are over; not by A's.
    const ahead = now + 10 * minute;
    await b.insertSession(session("m".repeat(64), ahead), auditInput("session.started"));
    await b.insertSignIn(signIn("m".repeat(64), ahead), ahead);
    expect(await a.findSession("k".repeat(64), now + 1000)).toBeDefined();
    expect(await a.takeSignIn("k".repeat(64), now + 1000)).toBeDefined();
    // Those a day past by the database's clock are swept, whatever the replicas' clocks say.
    const old = now - 25 * HOUR;
    await a.insertSession(session("o".repeat(64), old), auditInput("session.started"));
    await a.insertSignIn(signIn("o".repeat(64), old), old);
    const behind = now - 20 * HOUR;
    await b.insertSession(session("p".repeat(64), behind), auditInput("session.started"));
    await b.insertSignIn(signIn("p".repeat(64), behind), behind);
    const left = async (table: string, column: string) =>
      (
        await db.query<Record<string, string>>(`SELECT ${column} AS k FROM ${table} ORDER BY 1`)
      ).map((row) => row.k![0]);
    expect(await left("sessions", "id_hash")).toEqual(["k", "m", "p"]);
    expect(await left("sign_ins", "state_hash")).toEqual(["m", "p"]);
  });

  it("lets one replica claim a message once, until the claim expires", async () => {
    expect(await a.claimOnce("slack:v0=abc", T0 + 1000, T0)).toBe(true);
    expect(await b.claimOnce("slack:v0=abc", T0 + 1000, T0 + 10)).toBe(false);
    expect(await a.claimOnce("slack:v0=abc", T0 + 1000, T0 + 999)).toBe(false);
    // Expired by the caller's clock, which judged the message's time: taken over in place.
    expect(await b.claimOnce("slack:v0=abc", T0 + 5000, T0 + 1000)).toBe(true);
    expect(await a.claimOnce("slack:v0=abc", T0 + 5000, T0 + 1001)).toBe(false);
    expect(await count("replay_guard")).toBe(1);
    const racing = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a : b).claimOnce("slack:v0=race", T0 + 9000, T0),
      ),
    );
    expect(racing.filter(Boolean)).toHaveLength(1);
  });

  it("keeps a message's claim while any replica may still accept it: one whose clock runs ahead does not sweep it", async () => {
    const now = Date.now();
    const minute = 60_000;
    // A, whose clock is right, accepts a message good for five more minutes.
    expect(await a.claimOnce("slack:v0=fresh", now + 5 * minute, now)).toBe(true);
    // B, ten minutes ahead, accepts another: by its clock the first is past, not by A's.
    expect(await b.claimOnce("slack:v0=later", now + 15 * minute, now + 10 * minute)).toBe(true);
    // The first, replayed to A within its five minutes, is still refused.
    expect(await a.claimOnce("slack:v0=fresh", now + 5 * minute, now + 1000)).toBe(false);
    // Claims a day past by the database's clock are swept, whatever the replicas' clocks say.
    expect(await a.claimOnce("slack:v0=ancient", now - 25 * HOUR, now - 26 * HOUR)).toBe(true);
    expect(await b.claimOnce("slack:v0=next", now - 20 * HOUR, now - 21 * HOUR)).toBe(true);
    const keys = (await db.query<{ key: string }>("SELECT key FROM replay_guard")).map(
      (r) => r.key,
    );
    expect(keys).toContain("slack:v0=fresh");
    expect(keys).toContain("slack:v0=next");
    expect(keys).not.toContain("slack:v0=ancient");
  });

  it("hands an MCP call's request to its cancel on another replica, whichever comes first", async () => {
    const minute = 60_000;
    // Recorded first: the cancel, on the other replica, finds the request.
    expect(await a.holdMcpCall("call-1", "req_1", minute)).toBe(false);
    expect(await b.cancelMcpCall("call-1", minute)).toBe("req_1");
    await a.releaseMcpCall("call-1", "req_1");
    // Cancelled first: the call finds the mark, asking before it makes its request, or as it
    // records it.
    expect(await a.mcpCallCancelled("call-2")).toBe(false);
    expect(await b.cancelMcpCall("call-2", minute)).toBeUndefined();
    expect(await a.mcpCallCancelled("call-2")).toBe(true);
    expect(await a.holdMcpCall("call-2", "req_2", minute)).toBe(true);
    await a.releaseMcpCall("call-2", "req_2");
    // A second call under a key already held does not take it over.
    expect(await a.holdMcpCall("call-3", "req_3", minute)).toBe(false);
    expect(await b.holdMcpCall("call-3", "req_other", minute)).toBe(false);
    await b.releaseMcpCall("call-3", "req_other");
    expect(await b.cancelMcpCall("call-3", minute)).toBe("req_3");
    await a.releaseMcpCall("call-3", "req_3");
    // Racing: exactly one side learns of the other.
    const raced = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const [held, cancelled] = await Promise.all([
          a.holdMcpCall(`race-${i}`, `req_r${i}`, minute),
          b.cancelMcpCall(`race-${i}`, minute),
        ]);
        return Number(held) + Number(cancelled === `req_r${i}`);
      }),
    );
    expect(raced).toEqual(raced.map(() => 1));
    // Expired, by the database's clock: a mark no longer cancels, and a call no longer holds.
    await db.query("UPDATE mcp_calls SET expires_at = 0");
    expect(await a.mcpCallCancelled("race-1")).toBe(false);
    expect(await a.holdMcpCall("race-0", "req_new", minute)).toBe(false);
    expect(await b.cancelMcpCall("race-1", minute)).toBeUndefined();
    // ...and the rest were swept on the way.
    expect(await count("mcp_calls")).toBe(2);
  });

  describe("a failure the database reports", () => {
    // A trigger on three tables, one per way of writing (a single statement, an audited
    // transaction, a group commit), fails with the SQLSTATE in refuse_with, the first `times`
    // times it fires (counted by a sequence, which no rollback undoes).
    beforeAll(async () => {
      await db.query("CREATE TABLE refuse_with (code TEXT NOT NULL, times INT NOT NULL)");
      await db.query("CREATE SEQUENCE refuse_count");
      await db.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE r record;
        BEGIN
          SELECT code, times INTO r FROM refuse_with LIMIT 1;
          IF r.code IS NOT NULL AND nextval('refuse_count') <= r.times THEN
            RAISE EXCEPTION 'refused by test, secret detail %', r.code USING ERRCODE = r.code;
          END IF;
          RETURN NEW;
        END $$`);
      for (const table of ["channel_refs", "tokens", "requests"]) {
        await db.query(`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ${table}
          FOR EACH ROW EXECUTE FUNCTION refuse()`);
      }
    });
    afterAll(async () => {
      for (const table of ["channel_refs", "tokens", "requests"]) {
        await db.query(`DROP TRIGGER IF EXISTS refuse ON ${table}`);
      }
    });

    const refuseWith = async (code: string, times = 1_000_000) => {
      await db.query("DELETE FROM refuse_with");
      await db.query("INSERT INTO refuse_with (code, times) VALUES ($1, $2)", [code, times]);
      await db.query("ALTER SEQUENCE refuse_count RESTART");
    };
    afterEach(async () => {
      await db.query("DELETE FROM refuse_with");
    });

    let tokens = 0;
    /** One write of each way, each failing as the trigger makes it. */
    const writes = () => {
      const n = ++tokens;
      return [
        a.setChannelRef(`req_refused_${n}`, "slack", "C1/1"),
        a.insertToken(
          {
            id: `tok_refused_${n}`,
            kind: "agent",
            subject: "support-bot",
            hash: `${n}`.padStart(64, "f"),
            hint: "alk_0000",
            createdAt: T0,
            revokedAt: null,
          },
          auditInput("token.created"),
        ),
        a.insertRequest(fixed(pendingChange()), none),
      ];
    };

    it("is internal when the database refuses the work itself, and the message keeps its details out", async () => {
      // A check, a bug's SQL, a table that is not there, a damaged index, a raised exception.
      for (const code of ["23514", "42703", "42P01", "XX002", "P0001", "22001"]) {
        await refuseWith(code);
        for (const outcome of await Promise.allSettled(writes())) {
          expect(outcome.status, code).toBe("rejected");
          const error = (outcome as PromiseRejectedResult).reason as AirlockError;
          expect(error, code).toBeInstanceOf(AirlockError);
          expect(error.code, code).toBe("internal");
          expect(error.message).not.toMatch(/refused by test|secret detail/);
          // For the log: what the database said.
          expect(String((error.cause as Error).message)).toContain("secret detail");
        }
      }
      expect(await count("channel_refs WHERE request_id LIKE 'req_refused_%'")).toBe(0);
      await verifyChain(b);
    });

    it("is internal where the database finds a table or index damaged, says what to check, and stays ready", async () => {
      // Real damage, read back by the server: an index's file overwritten through the server
      // itself (lo_export, as the test's superuser), in a schema of its own, as a failing disk
      // or a stray write would. REINDEX first gives the index a new file that no buffer holds.
      const fresh = await scratchSchema();
      const store = await openPostgresStore(fresh.url);
      try {
        const change = pendingChange();
        await store.insertRequest(fixed(change), none);
        const index = `${fresh.name}.requests_pkey`;
        const overwrite = async (page: Buffer) => {
          await fresh.query(`REINDEX INDEX ${index}`);
          const [{ lo }] = (await fresh.query("SELECT lo_from_bytea(0, $1) AS lo", [page])) as [
            { lo: number },
          ];
          await fresh.query("SELECT lo_export($1, pg_relation_filepath($2))", [lo, index]);
          await fresh.query("SELECT lo_unlink($1)", [lo]);
        };
        // A zeroed page is index_corrupted (XX002); one that is not a page at all, data_corrupted.
        for (const [code, page] of [
          ["XX002", Buffer.alloc(8192)],
          ["XX001", Buffer.alloc(8192, 0xa5)],
        ] as const) {
          await overwrite(page);
          const failed = await rejection(store.getRequest(change.request.id));
          expect(failed.code, code).toBe("internal");
          expect((failed.cause as pg.DatabaseError).code).toBe(code);
          expect(failed.message).toContain("found a table or index of its damaged");
          expect(failed.message).toContain("pg_amcheck");
          expect(failed.message).toContain("REINDEX");
          expect(failed.message).toContain("airlock audit verify");
          // Nothing the database said, which names its files and relations: the log has that.
          expect(failed.message).not.toContain("requests_pkey");
          expect(failed.message).not.toMatch(/base\/\d+/);
          // Still ready: every replica shares this database, so a replica taken out serves no
          // one better, and the tables not damaged (tokens, the audit trail) are still served.
          await store.ping();
          await store.insertToken(
            {
              id: `tok_damage_${code}`,
              kind: "agent",
              subject: "support-bot",
              hash: code.padStart(64, "e"),
              hint: "alk_0000",
              createdAt: T0,
              revokedAt: null,
            },
            auditInput("token.created"),
          );
        }
        // Repaired as the message says, the same store serves it again: nothing to restart.
        await fresh.query(`REINDEX INDEX ${index}`);
        expect((await store.getRequest(change.request.id))?.id).toBe(change.request.id);
        await verifyChain(store);
      } finally {
        await store.close();
        await fresh.drop();
      }
    });

    it("is store_unavailable when the database cannot do the work for now", async () => {
      // Out of disk, too many connections, shut down by an operator, cancelled, an I/O
      // error, a lock not granted, a standby that takes no writes; and contention that
      // outlasts the store's own retries.
      for (const code of [
        "53100",
        "53300",
        "57P01",
        "57014",
        "58030",
        "55P03",
        "25006",
        "40001",
        "40P01",
      ]) {
        await refuseWith(code);
        for (const outcome of await Promise.allSettled(writes())) {
          expect(outcome.status, code).toBe("rejected");
          const error = (outcome as PromiseRejectedResult).reason as AirlockError;
          expect(error, code).toBeInstanceOf(AirlockError);
          expect(error.code, code).toBe("store_unavailable");
        }
      }
      await verifyChain(b);
    });

    it("tries a transaction again itself when it lost a serialization conflict or a deadlock", async () => {
      for (const code of ["40001", "40P01"]) {
        // The first two of the three writes to reach the trigger fail, then each goes through.
        await refuseWith(code, 2);
        const done = await Promise.allSettled(writes());
        expect(
          done.map((o) => o.status),
          code,
        ).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
        // Two refused, three written.
        const [fired] = await db.query<{ n: string }>("SELECT last_value AS n FROM refuse_count");
        expect(Number(fired?.n), code).toBe(5);
      }
      await verifyChain(b);
    });
  });

  it("updates a channel's reference in place", async () => {
    expect(await a.getChannelRef("req_x", "slack")).toBeUndefined();
    await a.setChannelRef("req_x", "slack", "C1/1");
    await b.setChannelRef("req_x", "slack", "C1/2");
    expect(await a.getChannelRef("req_x", "slack")).toBe("C1/2");
  });

  it("fails closed with store_unavailable when the database cannot be reached", async () => {
    const url = new URL(db.url);
    url.port = "1";
    const opening = await rejection(openPostgresStore(url.toString()));
    expect(opening.code).toBe("store_unavailable");
    expect(opening.message).toMatch(/127\.0\.0\.1:1\/test/);
    expect(opening.message).not.toMatch(/password/);

    // Through a proxy that goes away and comes back.
    const proxy = await startProxy(Number(new URL(db.url).port || 5432));
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    const seen: unknown[] = [];
    const c = await openPostgresStore(proxied.toString(), { onError: (e) => seen.push(e) });
    try {
      const change = pendingChange();
      await c.insertRequest(fixed(change), none);
      await proxy.stop();
      const other = pendingChange();
      const calls: Promise<unknown>[] = [
        c.ping(),
        c.getRequest(change.request.id),
        c.transition(change.request.id, approve("bob@example.com"), plan),
        c.insertRequest(fixed(other), none),
        c.appendAudit([auditInput("test.down")]),
        c.claimOutbox(T0, 1000, 10, ["x"]),
        c.findTokenByHash("z".repeat(64)),
        c.takeSignIn("g".repeat(64), T0),
      ];
      const outcomes = await Promise.allSettled(calls);
      for (const outcome of outcomes) {
        expect(outcome.status).toBe("rejected");
        const reason = (outcome as PromiseRejectedResult).reason;
        expect(reason).toBeInstanceOf(AirlockError);
        expect((reason as AirlockError).code).toBe("store_unavailable");
      }
      // The transition and the insert failed in one batch: neither caller hears the other's id.
      for (const failed of outcomes.slice(2, 4)) {
        const message = ((failed as PromiseRejectedResult).reason as Error).message;
        expect(message).not.toContain(change.request.id);
        expect(message).not.toContain(other.request.id);
      }
      await proxy.start();
      await c.ping();
      expect((await c.getRequest(change.request.id))?.version).toBe(1);
    } finally {
      await c.close();
      await proxy.stop();
    }

    // And after close(), which may be called again.
    const d = await openPostgresStore(db.url);
    await d.close();
    await d.close();
    expect((await rejection(d.ping())).code).toBe("store_unavailable");
    expect((await rejection(d.getRequest("req_1"))).code).toBe("store_unavailable");
    expect((await rejection(d.appendAudit([auditInput("x")]))).code).toBe("store_unavailable");
    const closed = await rejection(d.transition("req_1", (r) => ({ value: r }), plan));
    expect(closed.message).toMatch(/closed/);
    // Nothing in this file cut the shared stores' connections.
    expect(errors).toEqual([]);
  });

  it("refuses a schema a newer Airlock migrated, to serve or to read", async () => {
    const fresh = await scratchSchema();
    try {
      await (await openPostgresStore(fresh.url)).close();
      const known = postgresMigrations.at(-1)!.version;
      await fresh.query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', '')",
        [known + 2],
      );
      const server = `${new URL(fresh.url).host}${new URL(fresh.url).pathname}`;
      const serving = await rejection(openPostgresStore(fresh.url));
      expect(serving.code).toBe("store_unavailable");
      expect(serving.message).toBe(
        `the Airlock tables in schema ${fresh.name} are at schema version ${known + 2}, newer than this airlock knows (version ${known}): a newer Airlock migrated them. Run that version or a later one; to go back to this one, restore a backup taken before that upgrade (PostgreSQL at ${server})`,
      );
      const reading = await rejection(openPostgresStore(fresh.url, { migrate: false }));
      expect(reading.code).toBe("store_unavailable");
      expect(reading.message).toBe(
        `the Airlock tables in schema ${fresh.name} of PostgreSQL at ${server} are at schema version ${known + 2}, newer than this airlock knows (version ${known}): a newer Airlock migrated them. Run that version or a later one; to go back to this one, restore a backup taken before that upgrade`,
      );
    } finally {
      await fresh.drop();
    }
  });

  it("says what to set up when the database is missing or the role may not create its tables", async () => {
    // Waiting fixes none of these: the operator has a database or a grant to make.
    const missing = new URL(db.url);
    missing.pathname = `/airlock_missing_${process.pid}`;
    const noDatabase = await rejection(openPostgresStore(missing.toString()));
    expect(noDatabase.code).toBe("store_unavailable");
    expect(noDatabase.message).toMatch(/does not exist; create it \(CREATE DATABASE/);
    expect(noDatabase.message).not.toMatch(/try again once the database answers/);

    const unknownRole = new URL(db.url);
    unknownRole.username = `airlock_nobody_${process.pid}`;
    const noRole = await rejection(openPostgresStore(unknownRole.toString()));
    expect(noRole.message).toMatch(/check the user and password in the storage URL/);
    expect(noRole.message).not.toMatch(/try again once the database answers/);

    const role = `airlock_norights_${process.pid}`;
    await db.query(`CREATE ROLE ${role} LOGIN`);
    try {
      const limited = new URL(db.url);
      limited.username = role;
      const noSchema = await rejection(openPostgresStore(limited.toString()));
      expect(noSchema.message).toMatch(/no schema to create its tables in/);
      expect(noSchema.message).toMatch(/GRANT USAGE, CREATE ON SCHEMA/);
      await db.query(`GRANT USAGE ON SCHEMA ${db.name} TO ${role}`);
      const noRights = await rejection(openPostgresStore(limited.toString()));
      expect(noRights.message).toMatch(/permission denied for schema/);
      expect(noRights.message).toMatch(/Airlock's role should own its database/);
      expect(noRights.message).not.toMatch(/try again once the database answers/);
    } finally {
      await db.query(`REVOKE ALL ON SCHEMA ${db.name} FROM ${role}`);
      await db.query(`DROP ROLE ${role}`);
    }
  });
});

/** A TCP proxy to PostgreSQL that can be stopped (every connection cut) and started again. */
async function startProxy(target: number) {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  let port = 0;
  let stalled = false;
  let cutAfter: string | undefined;
  const start = async () => {
    stalled = false;
    server = createServer((client) => {
      sockets.add(client);
      // A stalled network: connections are accepted, and nothing gets through, either way.
      if (stalled) return;
      const upstream = connect(target, "127.0.0.1");
      sockets.add(client).add(upstream);
      upstream.pipe(client);
      let answerLost = false;
      client.on("data", (chunk: Buffer) => {
        upstream.write(chunk);
        if (cutAfter !== undefined && chunk.includes(cutAfter)) {
          // The server gets the whole message; its answer never reaches the client.
          cutAfter = undefined;
          answerLost = true;
          client.destroy();
          setTimeout(() => upstream.end(), 1000);
        }
      });
      const cut = () => {
        client.destroy();
        if (!answerLost) upstream.destroy();
      };
      client.on("error", cut).on("close", cut);
      upstream.on("error", cut).on("close", cut);
    });
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as { port: number }).port;
  };
  const stop = async () => {
    if (!server) return;
    const closing = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await new Promise((resolve) => closing.close(resolve));
  };
  const stall = () => {
    stalled = true;
    for (const socket of sockets) {
      socket.unpipe();
      socket.pause();
    }
  };
  await start();
  return {
    get port() {
      return port;
    },
    start,
    stop,
    stall,
    /** The next message from a client that holds `marker` reaches the server; its answer is lost. */
    loseAnswerTo: (marker: string) => {
      cutAfter = marker;
    },
  };
}
