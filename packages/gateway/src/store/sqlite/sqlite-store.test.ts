import { pbkdf2 } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { entries, fixed, none } from "../../../test/support/inserts.js";
import { createChainVerifier } from "../../audit/audit-chain.js";
import { AirlockError } from "../../errors.js";
import { maskInput } from "../../masking/input-mask.js";
import type { PolicyDecision } from "../../policy/policy-types.js";
import { finishExecution, submit } from "../../requests/request-transitions.js";
import type { Change } from "../../requests/request-types.js";
import type { Store } from "../store.js";
import { storeFailure } from "./sqlite-errors.js";
import { sqliteMigrations } from "./sqlite-migrations.js";
import { openSqliteStore, type SqliteStore } from "./sqlite-store.js";

const allow: PolicyDecision = {
  decision: "allow",
  rule: "reads pass",
  reason: 'allowed by rule "reads pass"',
  risk: "low",
  riskReason: "GET reads",
  mask: [],
  policyDigest: "d".repeat(64),
};

let next = 0;
/** A new allowed request, recorded as executing with its three events. */
function allowed(now = Date.now()): Change {
  return submit({
    id: `req_test_${process.pid}_${++next}`,
    proposal: {
      agent: "bot",
      connection: "api",
      operation: "request",
      input: { method: "GET", path: `/items/${next}` },
      justification: "",
      context: {},
    },
    maskedInput: maskInput({ method: "GET", path: `/items/${next}` }, allow.mask),
    agent: { name: "bot", owner: "owner@example.com", labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: "a".repeat(64),
    nonce: "n".repeat(32),
    decision: allow,
    description: { preview: "GET /items", facts: {}, risk: { level: "low", reason: "GET" } },
    now,
  });
}

const review: PolicyDecision = {
  ...allow,
  decision: "review",
  rule: "refunds",
  reason: 'rule "refunds" requires review',
  review: { approvers: ["finance"], quorum: 1, expiresInMs: 60_000, stepUp: false },
};

/** A new request that waits for review, with an idempotency key or none. */
function pending(idempotencyKey: string | null = null, now = Date.now()): Change {
  return submit({
    id: `req_test_${process.pid}_${++next}`,
    proposal: {
      agent: "bot",
      connection: "api",
      operation: "request",
      input: { method: "POST", path: "/refunds" },
      justification: "",
      context: {},
    },
    maskedInput: maskInput({ method: "POST", path: "/refunds" }, review.mask),
    agent: { name: "bot", owner: "owner@example.com", labels: {} },
    connectionType: "http",
    idempotencyKey,
    hash: "a".repeat(64),
    nonce: "n".repeat(32),
    decision: review,
    description: { preview: "POST /refunds", facts: {}, risk: { level: "high", reason: "POST" } },
    now,
  });
}

const finished = { ok: true, summary: "200 OK", result: null, resultDigest: null };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A database file in a directory of its own, removed after the test. */
function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), "airlock-sqlite-"));
  dirs.push(dir);
  return join(dir, "airlock.db");
}

async function verifyChain(store: Store) {
  const verifier = createChainVerifier();
  for await (const event of store.auditEvents()) verifier.add(event);
  return verifier.finish();
}

describe("SQLite store: replay guard", () => {
  it("claims a key once until it expires, and remembers it across a reopen", async () => {
    const path = tempDb();
    const T0 = 1_800_000_000_000;
    let store = openSqliteStore(path);
    expect(await store.claimOnce("slack:v0=abc", T0 + 1000, T0)).toBe(true);
    expect(await store.claimOnce("slack:v0=abc", T0 + 1000, T0 + 1)).toBe(false);
    expect(await store.claimOnce("slack:v0=old", T0 + 10, T0)).toBe(true);
    await store.close();

    store = openSqliteStore(path);
    expect(await store.claimOnce("slack:v0=abc", T0 + 1000, T0 + 999)).toBe(false);
    // Expired: claimed again in place, and the other expired key is swept on the way.
    expect(await store.claimOnce("slack:v0=abc", T0 + 5000, T0 + 1000)).toBe(true);
    expect(await store.claimOnce("slack:v0=old", T0 + 5000, T0 + 1001)).toBe(true);
    expect(await store.claimOnce("slack:v0=abc", T0 + 5000, T0 + 1002)).toBe(false);
    await store.close();
  });
});

describe("SQLite store: MCP calls held for review", () => {
  it("hands a call's request to its cancel, whichever comes first, until it expires", async () => {
    const store = openSqliteStore(tempDb());
    const T0 = 1_800_000_000_000;
    try {
      expect(await store.holdMcpCall("call-1", "req_1", 1000, T0)).toBe(false);
      expect(await store.mcpCallCancelled("call-1", T0)).toBe(false);
      expect(await store.cancelMcpCall("call-1", 1000, T0 + 1)).toBe("req_1");
      await store.releaseMcpCall("call-1", "req_1");
      expect(await store.cancelMcpCall("call-1", 1000, T0 + 2)).toBeUndefined();
      // Cancelled first: the call finds the mark as it records its request.
      expect(await store.cancelMcpCall("call-2", 1000, T0)).toBeUndefined();
      // ...or, asking first, before it makes one.
      expect(await store.mcpCallCancelled("call-2", T0 + 1)).toBe(true);
      expect(await store.mcpCallCancelled("call-2", T0 + 1000)).toBe(false);
      expect(await store.holdMcpCall("call-2", "req_2", 1000, T0 + 1)).toBe(true);
      // A second call under a key already held does not take it over.
      expect(await store.holdMcpCall("call-3", "req_3", 1000, T0)).toBe(false);
      expect(await store.holdMcpCall("call-3", "req_other", 1000, T0)).toBe(false);
      expect(await store.cancelMcpCall("call-3", 1000, T0)).toBe("req_3");
      // Expired: a mark no longer cancels, and a call no longer holds.
      expect(await store.cancelMcpCall("call-4", 1000, T0)).toBeUndefined();
      expect(await store.holdMcpCall("call-4", "req_4", 1000, T0 + 1000)).toBe(false);
      expect(await store.cancelMcpCall("call-2", 1000, T0 + 1001)).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe("SQLite store: group commit", () => {
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  const open = (path = tempDb()): { store: SqliteStore; path: string } => {
    const store = openSqliteStore(path);
    stores.push(store);
    return { store, path };
  };

  it("fails only the write that fails in a group, and keeps the chain whole", async () => {
    const { store } = open();
    const [a, b, c] = [allowed(), allowed(), allowed()];
    // Asked for in one turn of the event loop, so all in one group.
    const results = await Promise.allSettled([
      store.insertRequest(fixed(a), none),
      store.transition(
        "req_missing",
        (r) => finishExecution(r, finished, Date.now()),
        () => [],
      ),
      store.insertRequest(fixed(b), none),
      store.transition(
        a.request.id,
        (r) => finishExecution(r, finished, Date.now()),
        () => [],
      ),
      store.insertRequest(fixed(c), none),
    ]);
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
    expect((results[1] as PromiseRejectedResult).reason.code).toBe("not_found");
    expect((await store.getRequest(a.request.id))?.status).toBe("succeeded");
    expect((await store.getRequest(c.request.id))?.status).toBe("executing");
    const chain = await verifyChain(store);
    expect(chain.problem).toBeUndefined();
    expect(chain.count).toBe(3 + 3 + 1 + 3);
  });

  it("counts an agent's pending requests in the group that inserts them: a burst stays within maxPending", async () => {
    const { store } = open();
    const outbox = (change: Change) => [{ topic: "t", requestId: change.request.id, payload: {} }];
    const held = pending("held");
    expect(await store.insertRequest(fixed(held), entries(outbox(held)), 5)).toEqual({
      inserted: true,
      request: held.request,
    });
    // Asked for in one turn of the event loop, so all in one group: each sees those before it.
    const changes = [pending("held"), ...Array.from({ length: 39 }, () => pending())];
    const results = await Promise.all(
      changes.map((c) => store.insertRequest(fixed(c), entries(outbox(c)), 5)),
    );
    // The twin of a request already made gets it, at the limit or not.
    expect(results[0]).toEqual({ inserted: false, existing: held.request });
    expect(results.filter((r) => r.inserted)).toHaveLength(4);
    expect(results.slice(5)).toEqual(Array(35).fill({ inserted: false, atPendingLimit: true }));
    expect(await store.countPending("bot", Date.now(), 100)).toBe(5);
    // The refused wrote nothing: no row, no event, no outbox entry.
    const refused = changes.slice(5).map((c) => c.request.id);
    for (const id of refused) expect(await store.getRequest(id)).toBeUndefined();
    expect(
      (await store.listAudit({ limit: 1000 })).filter((e) => refused.includes(e.requestId!)),
    ).toEqual([]);
    const claimed = await store.claimOutbox(Date.now(), 60_000, 1000, ["t"]);
    expect(claimed.map((item) => item.requestId).sort()).toEqual(
      [held, ...changes.slice(1, 5)].map((c) => c.request.id).sort(),
    );
    const chain = await verifyChain(store);
    expect(chain.problem).toBeUndefined();
    expect(chain.count).toBe(5 * held.events.length);
    // A key already used is answered at the limit; what would not wait for review is not limited.
    expect(await store.insertRequest(fixed(pending("held")), none, 5)).toEqual({
      inserted: false,
      existing: held.request,
    });
    expect(await store.insertRequest(fixed(allowed()), none, 5)).toMatchObject({
      inserted: true,
    });
  });

  it("chains after events another connection appended to the same file", async () => {
    const { store, path } = open();
    await store.insertRequest(fixed(allowed()), none);
    // `airlock token revoke` and other commands write to the file the gateway serves.
    const other = open(path).store;
    await other.insertRequest(fixed(allowed()), none);
    await store.insertRequest(fixed(allowed()), none);
    await other.insertRequest(fixed(allowed()), none);
    await Promise.all([
      store.insertRequest(fixed(allowed()), none),
      store.insertRequest(fixed(allowed()), none),
    ]);
    const chain = await verifyChain(store);
    expect(chain.problem).toBeUndefined();
    expect(chain.count).toBe(6 * 3);
  });

  it("walks every event of the chain, one whose time is no text too, as GET /v1/audit lists it", async () => {
    const { store, path } = open();
    await store.insertRequest(fixed(allowed()), none);
    await store.close();
    // Rebuilt by hand without the schema's checks, with a forged event whose ts is NULL.
    const db = new Database(path);
    db.exec(`CREATE TABLE forged AS SELECT * FROM audit_events;
      DROP TABLE audit_events; ALTER TABLE forged RENAME TO audit_events;
      INSERT INTO audit_events SELECT seq + 1, NULL, 'request.approved', request_id,
        actor_type, actor_id, data, hash, hash FROM audit_events WHERE seq = 3;`);
    db.close();
    const reopened = openSqliteStore(path);
    try {
      expect((await reopened.listAudit({ limit: 10 })).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      const seen: number[] = [];
      for await (const event of reopened.auditEvents()) seen.push(event.seq);
      expect(seen).toEqual([1, 2, 3, 4]);
      expect((await verifyChain(reopened)).problem).toMatchObject({ seq: 4 });
    } finally {
      await reopened.close();
    }
  });

  it("lets nobody read a group's writes before they are durable", async () => {
    const { store } = open();
    const changes = Array.from({ length: 8 }, () => allowed());
    const order: string[] = [];
    const writes = changes.map((change) =>
      store.insertRequest(fixed(change), none).then(() => order.push("written")),
    );
    // After one turn the group has committed; its sync is under way on the sync thread.
    await new Promise((resolve) => setImmediate(resolve));
    const read = store.getRequest(changes[0]!.request.id).then((found) => {
      order.push("read");
      return found;
    });
    await Promise.all([...writes, read]);
    expect((await read)?.id).toBe(changes[0]!.request.id);
    expect(order.indexOf("read")).toBe(changes.length);
  });

  it("syncs a group on a thread of its own, not behind work filling libuv's thread pool", async () => {
    const { store } = open();
    // Four slow jobs (as slow DNS lookups would be) take all of libuv's pool threads.
    let poolBusy = 4;
    for (let i = 0; i < 4; i++) {
      pbkdf2("password", "salt", 1_000_000, 32, "sha256", () => poolBusy--);
    }
    const changes = Array.from({ length: 8 }, () => allowed());
    await Promise.all(changes.map((change) => store.insertRequest(fixed(change), none)));
    expect((await store.getRequest(changes[7]!.request.id))?.status).toBe("executing");
    expect(poolBusy).toBe(4);
    await new Promise<void>((resolve) => {
      const wait = () => (poolBusy === 0 ? resolve() : setTimeout(wait, 20));
      wait();
    });
  });

  it("refuses everything when the WAL cannot even be opened for a group's sync", async () => {
    const { store } = open();
    const walSync = store as unknown as { walSync: { open(): number } };
    walSync.walSync.open = () => {
      throw new Error("EMFILE: too many open files");
    };
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => store.insertRequest(fixed(allowed()), none)),
    );
    for (const result of results) {
      expect((result as PromiseRejectedResult).reason?.message).toContain("restart the gateway");
    }
    await expect(store.getRequest("req_any")).rejects.toThrow(/restart the gateway/);
  });

  it("refuses everything once a group's sync fails on the sync thread", async () => {
    const { store } = open();
    const walSync = (store as unknown as { walSync: { syncOffLoop(): Promise<void> } }).walSync;
    walSync.syncOffLoop = () => Promise.reject(new Error("EIO: i/o error, fdatasync"));
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => store.insertRequest(fixed(allowed()), none)),
    );
    for (const result of results) {
      expect(result.status).toBe("rejected");
      expect((result as PromiseRejectedResult).reason.message).toContain("restart the gateway");
    }
    await expect(store.getRequest("req_any")).rejects.toThrow(/restart the gateway/);
    await expect(store.insertRequest(fixed(allowed()), none)).rejects.toThrow(
      /restart the gateway/,
    );
  });
});

describe("SQLite store: failures", () => {
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });

  it("is internal when the database refuses the work itself, with its details kept for the log", async () => {
    const path = tempDb();
    const store = openSqliteStore(path);
    stores.push(store);
    const other = new Database(path);
    try {
      other.exec(`CREATE TRIGGER refuse BEFORE INSERT ON channel_refs
        BEGIN SELECT RAISE(ABORT, 'refused by test, secret detail'); END`);
      const refused = store.setChannelRef("req_1", "slack", "C1/1");
      // Another write of the same group goes through.
      const change = allowed();
      const [one, two] = await Promise.allSettled([
        refused,
        store.insertRequest(fixed(change), none),
      ]);
      expect(two.status).toBe("fulfilled");
      const error = (one as PromiseRejectedResult).reason as AirlockError;
      expect(error).toBeInstanceOf(AirlockError);
      expect(error.code).toBe("internal");
      expect(error.message).not.toContain("secret detail");
      expect((error.cause as Error).message).toContain("secret detail");
      // A read the database cannot make (a table gone from under it).
      other.exec("DROP TABLE channel_refs");
      const unread = await store.getChannelRef("req_1", "slack").catch((e: unknown) => e);
      expect((unread as AirlockError).code).toBe("internal");
      expect((unread as AirlockError).message).not.toContain("channel_refs");
      // A refusal is no outage: the store is still ready.
      await store.ping();
    } finally {
      other.close();
    }
  });

  it("is not ready once it has found the file damaged: what it serves cannot be trusted", async () => {
    const path = tempDb();
    let store = openSqliteStore(path);
    const change = allowed();
    await store.insertRequest(fixed(change), none);
    await store.close();
    // A page of the requests table overwritten, as a failing disk or a stray write would.
    const db = new Database(path);
    const { root } = db
      .prepare("SELECT rootpage AS root FROM sqlite_master WHERE name = 'requests'")
      .get() as { root: number };
    const pageSize = db.pragma("page_size", { simple: true }) as number;
    db.close();
    const fd = openSync(path, "r+");
    writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, (root - 1) * pageSize);
    closeSync(fd);

    store = openSqliteStore(path);
    stores.push(store);
    // Nothing has read the damage yet.
    await store.ping();
    const failed = await store.getRequest(change.request.id).catch((e: unknown) => e);
    expect((failed as AirlockError).code).toBe("internal");
    expect(((failed as AirlockError).cause as { code: string }).code).toBe("SQLITE_CORRUPT");
    const unready = await store.ping().catch((e: unknown) => e);
    expect(unready).toBeInstanceOf(AirlockError);
    expect((unready as AirlockError).code).toBe("store_unavailable");
    expect((unready as AirlockError).message).toContain(`the database file ${path} is damaged`);
    expect((unready as AirlockError).message).toContain("integrity_check");
    // And stays so: the damage does not mend itself.
    await expect(store.ping()).rejects.toBe(unready);
  });

  it("is store_unavailable when the database cannot do the work for now", () => {
    for (const code of [
      "SQLITE_BUSY",
      "SQLITE_BUSY_SNAPSHOT",
      "SQLITE_LOCKED",
      "SQLITE_IOERR_WRITE",
      "SQLITE_IOERR_FSYNC",
      "SQLITE_FULL",
      "SQLITE_NOMEM",
      "SQLITE_READONLY",
      "SQLITE_CANTOPEN",
    ]) {
      const error = storeFailure(new Database.SqliteError("driver says so", code));
      expect(error.code, code).toBe("store_unavailable");
      expect(error.message, code).toContain("driver says so");
    }
    for (const code of [
      "SQLITE_CONSTRAINT_UNIQUE",
      "SQLITE_CONSTRAINT_TRIGGER",
      "SQLITE_ERROR",
      "SQLITE_CORRUPT",
      "SQLITE_NOTADB",
      "SQLITE_TOOBIG",
      "SQLITE_MISMATCH",
      "SQLITE_RANGE",
    ]) {
      const error = storeFailure(new Database.SqliteError("driver says so", code));
      expect(error.code, code).toBe("internal");
      expect(error.message, code).not.toContain("driver says so");
    }
  });
});

describe("SQLite store: outbox", () => {
  it("claims only its channels' entries, and gives up on others nobody tried for long enough", async () => {
    const store = openSqliteStore(tempDb());
    const change = allowed(1000);
    const entry = (topic: string) => ({ topic, requestId: change.request.id, payload: {} });
    await store.insertRequest(
      fixed(change),
      entries([entry("channel:slack"), entry("channel:removed")]),
    );
    const claimed = await store.claimOutbox(2000, 60_000, 10, ["channel:slack"]);
    expect(claimed.map((item) => item.topic)).toEqual(["channel:slack"]);
    expect(await store.abandonOutbox(999, 0, ["channel:slack"], "gone")).toBe(0);
    expect(await store.abandonOutbox(1001, 0, ["channel:slack"], "gone")).toBe(1);
    // Dead, it is claimed by nobody, even a process that has the channel again.
    expect(await store.claimOutbox(2000, 60_000, 10, ["channel:removed"])).toEqual([]);

    // Tried before its channel went (in retry, or leased by a process that stopped) counts
    // as untried once nobody has touched it since; one held back by such an entry waits.
    const other = allowed(5000);
    const later = (topic: string) => ({ topic, requestId: other.request.id, payload: {} });
    await store.insertRequest(
      fixed(other),
      entries([later("channel:webhook-2"), later("channel:webhook-2")]),
    );
    const [tried] = await store.claimOutbox(6000, 60_000, 1, ["channel:webhook-2"]);
    await store.failOutbox(6000, tried!.id, "HTTP 503", 1000);
    // Its lease and its retry are both recent: nothing yet.
    expect(await store.abandonOutbox(6500, 0, ["channel:slack"], "gone")).toBe(0);
    // Later, the tried one goes first; the one behind it in the next round.
    expect(await store.abandonOutbox(70_000, 0, ["channel:slack"], "gone")).toBe(1);
    expect(await store.abandonOutbox(70_000, 0, ["channel:slack"], "gone")).toBe(1);
    await store.close();
  });

  it("makes an entry whose payload no longer reads a dead letter, and hands out the rest", async () => {
    const path = tempDb();
    const store = openSqliteStore(path);
    const change = allowed(1000);
    const other = allowed(1000);
    const entry = (requestId: string, event: string) => ({
      topic: "channel:chat",
      requestId,
      payload: { event },
    });
    await store.insertRequest(
      fixed(change),
      entries([entry(change.request.id, "requested"), entry(change.request.id, "reviewed")]),
    );
    await store.insertRequest(fixed(other), entries([entry(other.request.id, "requested")]));
    const [damaged] = await store.listOutbox({ state: "pending", limit: 10 });
    // Cut short by hand, or by a damaged disk: no JSON, and no JSON object.
    const db = new Database(path);
    db.prepare(`UPDATE outbox SET payload = '{"event": "requ' WHERE id = ?`).run(damaged!.id);
    db.close();
    const claimed = await store.claimOutbox(2000, 60_000, 10, ["channel:chat"]);
    expect(claimed.map((item) => [item.requestId, item.payload.event])).toEqual([
      [other.request.id, "requested"],
    ]);
    const [dead] = await store.listOutbox({ state: "dead", limit: 10 });
    expect(dead).toMatchObject({ id: damaged!.id, payload: { unparseable: '{"event": "requ' } });
    expect(dead?.lastError).toContain("not a JSON object");
    // It holds its request's later entries up no more.
    const [next] = await store.claimOutbox(2000, 60_000, 10, ["channel:chat"]);
    expect(next?.payload.event).toBe("reviewed");

    const [last] = await store.listOutbox({ state: "pending", limit: 10 });
    const again = new Database(path);
    again
      .prepare("UPDATE outbox SET payload = '[1]', lease_until = NULL WHERE id = ?")
      .run(last!.id);
    again.close();
    expect(await store.claimOutbox(3000, 60_000, 10, ["channel:chat"])).toEqual([]);
    expect(await store.countOutbox()).toEqual({ pending: 1, dead: 2 });
    await store.close();
  });

  it("deletes what was delivered and keeps dead letters, and clears what older versions kept", async () => {
    const path = tempDb();
    let store = openSqliteStore(path);
    const change = allowed(1000);
    const entry = (i: number) => ({
      topic: `webhook:${i}`,
      requestId: change.request.id,
      payload: { i },
    });
    await store.insertRequest(fixed(change), entries([entry(1), entry(2), entry(3)]));
    const [delivered, dead, older] = await store.claimOutbox(2000, 60_000, 10, [
      "webhook:1",
      "webhook:2",
      "webhook:3",
    ]);
    await store.completeOutbox(delivered!.id);
    await store.failOutbox(2000, dead!.id, "gone", null);
    await store.close();

    const rows = (file: string) =>
      new Database(file, { readonly: true })
        .prepare("SELECT id, state FROM outbox ORDER BY id")
        .all();
    expect(rows(path)).toEqual([
      { id: dead!.id, state: "dead" },
      { id: older!.id, state: "pending" },
    ]);

    // A file written before version 4 kept delivered entries as 'done': the upgrade drops them.
    const db = new Database(path);
    db.prepare("UPDATE outbox SET state = 'done' WHERE id = ?").run(older!.id);
    db.prepare("DELETE FROM schema_migrations WHERE version = 4").run();
    db.close();
    store = openSqliteStore(path);
    await store.close();
    expect(rows(path)).toEqual([{ id: dead!.id, state: "dead" }]);
  });
});

describe("SQLite store: schema versions", () => {
  it("refuses a file a newer Airlock migrated, to serve or to read, and leaves it as it is", async () => {
    const path = tempDb();
    await openSqliteStore(path).close();
    const known = sqliteMigrations.at(-1)!.version;
    const db = new Database(path);
    db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', '')",
    ).run(known + 2);
    db.close();
    for (const migrate of [true, false]) {
      let refused: unknown;
      try {
        openSqliteStore(path, { migrate });
      } catch (error) {
        refused = error;
      }
      expect(refused, `migrate: ${migrate}`).toBeInstanceOf(AirlockError);
      expect((refused as AirlockError).code).toBe("store_unavailable");
      expect((refused as AirlockError).message).toBe(
        `the Airlock tables in ${path} are at schema version ${known + 2}, newer than this airlock knows (version ${known}): a newer Airlock migrated them. Run that version or a later one; to go back to this one, restore a backup taken before that upgrade`,
      );
    }
    const after = new Database(path, { readonly: true });
    expect(after.prepare("SELECT max(version) AS v FROM schema_migrations").get()).toEqual({
      v: known + 2,
    });
    after.close();
  });
});

describe("SQLite store: opened as it is", () => {
  it("leaves a file's journal mode as it is, and still commits durably", async () => {
    const path = tempDb();
    await openSqliteStore(path).close();
    // Restored from a copy in the rollback journal's mode, say.
    const db = new Database(path);
    db.pragma("journal_mode = DELETE");
    db.close();
    const store = openSqliteStore(path, { migrate: false, mustExist: true });
    expect(await store.listTokens()).toEqual([]);
    await store.appendAudit([
      {
        type: "test.event",
        requestId: null,
        actor: { type: "operator", id: "ops" },
        data: {},
        at: 1,
      },
    ]);
    await store.close();
    const after = new Database(path, { readonly: true });
    expect(after.pragma("journal_mode", { simple: true })).toBe("delete");
    expect(after.prepare("SELECT type FROM audit_events").all()).toEqual([{ type: "test.event" }]);
    after.close();
  });
});

describe("SQLite store: time", () => {
  it("keeps the time of the process that owns the file", () => {
    const store = openSqliteStore(":memory:", { clock: () => 1234 });
    expect(store.now()).toBe(1234);
    const plain = openSqliteStore(":memory:");
    const before = Date.now();
    expect(plain.now()).toBeGreaterThanOrEqual(before);
    expect(plain.now()).toBeLessThanOrEqual(Date.now());
    return Promise.all([store.close(), plain.close()]);
  });
});
