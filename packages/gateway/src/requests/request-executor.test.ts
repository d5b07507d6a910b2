import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  postgresAvailable,
  type ScratchSchema,
  scratchSchema,
} from "../../test/support/postgres.js";
import type { Json } from "../common/canonical-json.js";
import { loadConfigText } from "../config/config-load.js";
import { createLiveConfig } from "../config/live-config.js";
import type { Connector, ExecutionOutcome } from "../connectors/connector.js";
import { AirlockError } from "../errors.js";
import { maskInput } from "../masking/input-mask.js";
import { createRedactor } from "../masking/secret-redactor.js";
import { createLogger } from "../observability/logger.js";
import { createMetrics } from "../observability/metrics.js";
import { openPostgresStore, type PostgresStore } from "../store/postgres/postgres-store.js";
import { openSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { OutboxPlanner, Store } from "../store/store.js";
import { createApprovers } from "./request-approvers.js";
import { createExecutor } from "./request-executor.js";
import { requestHash } from "./request-hash.js";
import { OUTCOME_UNKNOWN, submit } from "./request-transitions.js";
import type { ActionRequest } from "./request-types.js";
import { createWaiters } from "./request-waiters.js";

const loaded = loadConfigText(`
storage: sqlite:./airlock.db
agents: [{ name: support-bot, owner: alice@example.com }]
connections: { billing: { type: http, baseUrl: "http://127.0.0.1:9" } }
rules: [{ name: everything, decision: allow }]
`);

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

let ids = 0;
/** One allowed request, inserted into `store` already claimed for execution. */
async function claimedIn(
  store: Store,
  input: Json = { method: "POST", path: "/refunds" },
  mask: string[] = [],
): Promise<ActionRequest> {
  const proposal = {
    agent: "support-bot",
    connection: "billing",
    operation: "request",
    input,
    justification: "",
    context: {},
  };
  const nonce = "n".repeat(32);
  const change = submit({
    id: `req_${process.pid}_${++ids}`,
    proposal,
    maskedInput: maskInput(input, mask),
    agent: { name: "support-bot", owner: "alice@example.com", labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: requestHash(proposal, nonce),
    nonce,
    decision: {
      decision: "allow",
      rule: "everything",
      reason: 'rule "everything" allows it',
      risk: "medium",
      riskReason: "POST changes data upstream",
      mask,
      policyDigest: "d".repeat(64),
    },
    description: {
      preview: "POST /refunds",
      facts: {},
      risk: { level: "medium", reason: "" },
    },
    now: Date.now(),
  });
  await store.insertRequest(
    () => change,
    () => [],
  );
  expect(change.request.status).toBe("executing");
  return change.request;
}

/** A store on a real SQLite file, holding one allowed request already claimed for execution. */
async function claimed(
  input?: Json,
  mask?: string[],
): Promise<{ store: SqliteStore; request: ActionRequest }> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-executor-"));
  dirs.push(dir);
  const store = openSqliteStore(join(dir, "airlock.db"));
  stores.push(store);
  return { store, request: await claimedIn(store, input, mask) };
}

/** A connector that answers `answer`, once `hold` (if any) resolves. */
function connectorAnswering(
  answer: ExecutionOutcome,
  hold?: Promise<void>,
): Connector & { calls: number; started: Promise<void> } {
  let started = () => {};
  const connector = {
    type: "http",
    name: "billing",
    secrets: [],
    calls: 0,
    started: new Promise<void>((resolve) => {
      started = resolve;
    }),
    parse: (_operation: string, input: unknown) => input as Json,
    describe: async () => ({ preview: "", facts: {}, risk: { level: "low" as const, reason: "" } }),
    preview: () => "",
    execute: async () => {
      connector.calls++;
      started();
      await hold;
      return answer;
    },
    operations: async () => [],
    close: async () => {},
  };
  return connector;
}

function executorOn(
  store: Store,
  connector: Connector,
  deps: Partial<Parameters<typeof createExecutor>[0]> = {},
) {
  return createExecutor({
    store,
    connectors: new Map([["billing", connector]]),
    approvers: createApprovers(createLiveConfig(loaded)),
    redactor: createRedactor([]),
    plan: () => [],
    logger: createLogger({ level: "silent" }),
    metrics: createMetrics(),
    clock: Date.now,
    ...deps,
  });
}

describe("the executor", () => {
  it("records how an action that ran went, even when its result cannot be processed", async () => {
    const { store, request } = await claimed();
    // A value no JSON holds, which the result's digest refuses after the action ran.
    const connector = connectorAnswering({
      ok: true,
      result: { refunded: 10n } as unknown as Json,
      summary: "HTTP 200, 20 bytes",
    });
    const executor = executorOn(store, connector);
    const finished = await executor.runClaimed(request);
    expect(connector.calls).toBe(1);
    // Not "connector error": told the connector failed, an agent would submit it again.
    expect(finished.status).toBe("succeeded");
    expect(finished.outcome?.summary).toBe("ran, result not kept");
    expect(finished.outcome?.result).toBeNull();
    expect((await store.getRequest(request.id))?.status).toBe("succeeded");
  });

  it("ends a request whose outcome the store refuses, not for being down, at once with how it went: never left executing, never run again", async () => {
    const { store, request } = await claimed();
    const connector = connectorAnswering({
      ok: true,
      result: { refunded: 10 },
      summary: "HTTP 200, 15 bytes",
    });
    // A channel that cannot plan its message about how a request ended: the store is up, so
    // trying again fails the same way.
    const plan: OutboxPlanner = (change) => {
      if (change.request.status !== "executing") throw new Error("no message for this request");
      return [];
    };
    const waiters = createWaiters(store);
    const longPoll = waiters.watch(request.id);
    const executor = executorOn(store, connector, { plan, retryDelays: [1] });
    const finished = await executor.runClaimed(request);
    expect(connector.calls).toBe(1);
    // Not "failed": told so, an agent would submit it again.
    expect(finished.status).toBe("succeeded");
    expect(finished.outcome?.summary).toBe("ran, outcome not recorded");
    expect(finished.outcome?.result).toBeNull();
    expect(finished.outcome?.reason).toContain("the action succeeded (HTTP 200, 15 bytes)");
    expect(finished.outcome?.reason).toContain("Airlock will not run it again");
    expect((await store.getRequest(request.id))?.status).toBe("succeeded");
    const events = await store.listAudit({ requestId: request.id, limit: 10 });
    expect(events.map((e) => e.type)).toContain("execution.succeeded");
    // The long-poll on it was woken by the change.
    expect(await longPoll.next(0)).toBe(true);
    longPoll.close();
    waiters.close();
    // Nothing is left for a restart to end, and nothing runs again.
    expect(await executor.recover({ all: true })).toEqual({ interrupted: 0, resumed: 0 });
    await executor.drain();
    expect(connector.calls).toBe(1);
  });
});

describe("approved requests the store will not start", () => {
  it("are left approved and never run, and said once, not at every sweep", async () => {
    const { store, request } = await claimed();
    const path = (store as unknown as { db: { name: string } }).db.name;
    const other = new Database(path);
    other.prepare("UPDATE requests SET status = 'approved' WHERE id = ?").run(request.id);
    // A fault, not an outage: the start is refused alike at every try.
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON requests WHEN NEW.status = 'executing'
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    const lines: string[] = [];
    const connector = connectorAnswering({ ok: true, result: null, summary: "" });
    const executor = executorOn(store, connector, {
      logger: createLogger({ destination: { write: (line: string) => lines.push(line) } }),
    });
    for (let sweep = 0; sweep < 3; sweep++) {
      await executor.resumeApproved();
      await executor.drain();
    }
    expect(connector.calls).toBe(0);
    expect((await store.getRequest(request.id))?.status).toBe("approved");
    const said = lines.filter((line) => line.includes(request.id));
    expect(said).toHaveLength(1);
    expect(JSON.parse(said[0]!)).toMatchObject({ level: 50 });
    expect(said[0]).toContain("refused by test");
  });
});

describe("ending interrupted executions", () => {
  it("ends each one, though the notifications of one's end cannot be planned: those are dropped", async () => {
    const { store, request: first } = await claimed();
    const second = await claimedIn(store);
    const third = await claimedIn(store);
    // A channel that cannot plan its message about how the second request ended.
    const plan: OutboxPlanner = (change) => {
      if (change.request.id === second.id && change.request.status !== "executing") {
        throw new Error("no message for this request");
      }
      return [{ topic: "chat", requestId: change.request.id, payload: {} }];
    };
    const connector = connectorAnswering({ ok: true, result: null, summary: "" });
    const executor = executorOn(store, connector, { plan });
    expect(await executor.recover({ all: true })).toEqual({ interrupted: 3, resumed: 0 });
    for (const { id } of [first, second, third]) {
      const ended = await store.getRequest(id);
      expect(ended?.status).toBe("failed");
      expect(ended?.outcome?.reason).toBe(OUTCOME_UNKNOWN);
    }
    // The others' channels are told.
    const told = await store.listOutbox({ state: "pending", limit: 10 });
    expect(told.map((entry) => entry.requestId).sort()).toEqual([first.id, third.id].sort());
    await executor.drain();
    expect(connector.calls).toBe(0);
  });

  it("goes on past one the store refuses to end: the others end, it stays as it is, and nothing runs", async () => {
    const { store, request: first } = await claimed();
    const refused = await claimedIn(store);
    const third = await claimedIn(store);
    const path = (store as unknown as { db: { name: string } }).db.name;
    const other = new Database(path);
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON requests WHEN OLD.id = '${refused.id}'
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    const lines: string[] = [];
    const connector = connectorAnswering({ ok: true, result: null, summary: "" });
    const executor = executorOn(store, connector, {
      logger: createLogger({ destination: { write: (line: string) => lines.push(line) } }),
    });
    expect(await executor.recover({ all: true })).toEqual({ interrupted: 2, resumed: 0 });
    expect((await store.getRequest(first.id))?.status).toBe("failed");
    expect((await store.getRequest(third.id))?.status).toBe("failed");
    expect((await store.getRequest(refused.id))?.status).toBe("executing");
    const said = lines.filter((line) => line.includes(refused.id)).join("");
    expect(said).toContain("refused by test");
    await executor.drain();
    expect(connector.calls).toBe(0);
  });

  it("says once, at error with the store's own words, which one it cannot end: not again at every sweep", async () => {
    const { store, request: refused } = await claimed();
    const path = (store as unknown as { db: { name: string } }).db.name;
    const other = new Database(path);
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON requests WHEN OLD.id = '${refused.id}'
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    // And one whose row no longer reads (its input cut short): a bug's error, not the store's.
    const damaged = await claimedIn(store);
    other.prepare('UPDATE requests SET input = \'{"method": "PO\' WHERE id = ?').run(damaged.id);
    other.close();
    const lines: string[] = [];
    const connector = connectorAnswering({ ok: true, result: null, summary: "" });
    const executor = executorOn(store, connector, {
      logger: createLogger({ destination: { write: (line: string) => lines.push(line) } }),
    });
    for (let sweep = 0; sweep < 3; sweep++) {
      expect(await executor.recover({ all: true })).toEqual({ interrupted: 0, resumed: 0 });
    }
    for (const [id, cause] of [
      [refused.id, "refused by test"],
      [damaged.id, "SyntaxError"],
    ] as const) {
      const said = lines.filter((line) => line.includes(id));
      expect(said).toHaveLength(1);
      expect(JSON.parse(said[0]!)).toMatchObject({ level: 50, requestId: id });
      expect(said[0]).toContain(cause);
    }
    await executor.drain();
    expect(connector.calls).toBe(0);
  });
});

/**
 * A store of each kind whose database refuses, for good, to record some ends of executions
 * (`when` over the row as it would be written: `outcome` and `status`), as a constraint a
 * bug breaks would: not an outage, so trying again fails alike.
 */
const refusingStores: {
  name: string;
  skip: boolean;
  open(when: string): Promise<Store>;
}[] = [
  {
    name: "SQLite",
    skip: false,
    async open(when) {
      const { store } = await claimed();
      const path = (store as unknown as { db: { name: string } }).db.name;
      const other = new Database(path);
      other.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON requests WHEN ${when.replaceAll("row.", "NEW.")}
        BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
      other.close();
      return store;
    },
  },
  {
    name: "PostgreSQL",
    skip: !postgresAvailable,
    async open(when) {
      const db = await scratchSchema();
      schemas.push(db);
      const store = await openPostgresStore(db.url);
      stores.push(store as unknown as SqliteStore);
      await db.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by test' USING ERRCODE = '23514'; END $$`);
      await db.query(`CREATE TRIGGER refuse BEFORE UPDATE ON requests FOR EACH ROW
        WHEN (${when.replaceAll("row.", "NEW.")}) EXECUTE FUNCTION refuse()`);
      return store;
    },
  },
];
const schemas: ScratchSchema[] = [];
afterAll(async () => {
  for (const db of schemas.splice(0)) await db.drop();
});

for (const kind of refusingStores) {
  describe.skipIf(kind.skip)(`an outcome the store refuses for good, on ${kind.name}`, () => {
    const answer: ExecutionOutcome = {
      ok: true,
      result: { refunded: 10 },
      summary: "HTTP 200, 15 bytes",
    };

    it("ends the request at once with how the action went: not retried as an outage, never left executing", async () => {
      // The result is what the database will not take.
      const store = await kind.open("row.outcome LIKE '%refunded%'");
      const request = await claimedIn(store);
      const connector = connectorAnswering(answer);
      const waiters = createWaiters(store);
      const longPoll = waiters.watch(request.id);
      const executor = executorOn(store, connector, { retryDelays: [1] });
      const finished = await executor.runClaimed(request);
      expect(connector.calls).toBe(1);
      expect(finished.status).toBe("succeeded");
      expect(finished.outcome?.summary).toBe("ran, outcome not recorded");
      expect(finished.outcome?.reason).toContain("the action succeeded (HTTP 200, 15 bytes)");
      expect((await store.getRequest(request.id))?.status).toBe("succeeded");
      expect(await longPoll.next(0)).toBe(true);
      longPoll.close();
      waiters.close();
      await executor.drain();
      expect(connector.calls).toBe(1);
    });

    it("tells the caller the action ran, as a fault and not an outage, when even its bare end is refused", async () => {
      const store = await kind.open("row.status <> 'executing'");
      const request = await claimedIn(store);
      const connector = connectorAnswering(answer);
      const executor = executorOn(store, connector, { retryDelays: [1] });
      const told = await executor.runClaimed(request).catch((error: unknown) => error);
      expect(told).toBeInstanceOf(AirlockError);
      const error = told as AirlockError;
      // Not store_unavailable: the store is there, and will refuse it again.
      expect(error.code).toBe("internal");
      expect(error.details).toMatchObject({ requestId: request.id, executed: true });
      expect(error.message).toContain("the action ran (HTTP 200, 15 bytes)");
      expect(error.message).toContain("do not submit it again");
      expect(error.message).not.toContain("refused by test");
      await executor.drain();
      expect(connector.calls).toBe(1);
      // Never run again: the request stays as the store keeps it, executing.
      expect((await store.getRequest(request.id))?.status).toBe("executing");
    });
  });
}

describe.skipIf(!postgresAvailable)("execution leases, between two replicas on PostgreSQL", () => {
  let db: ScratchSchema;
  // Two pools on one schema: two replicas, as far as the database can tell.
  let a: PostgresStore;
  let b: PostgresStore;
  beforeAll(async () => {
    db = await scratchSchema();
    a = await openPostgresStore(db.url);
    b = await openPostgresStore(db.url);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  const LEASE = 60_000;
  const answer: ExecutionOutcome = { ok: true, result: { refunded: 10 }, summary: "HTTP 200" };

  it("leaves a live execution on another replica alone when this host's wall clock steps forward past the lease", async () => {
    const request = await claimedIn(a);
    let release = () => {};
    const connector = connectorAnswering(
      answer,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    const running = executorOn(a, connector, { leaseMs: LEASE }).runClaimed(request);
    await connector.started;
    // The watching replica's clocks, driven here: the wall clock it stamps times with, and
    // the monotonic one it times leases by.
    let wall = Date.now();
    let elapsed = 0;
    const watcher = executorOn(b, connectorAnswering(answer), {
      leaseMs: LEASE,
      clock: () => wall,
      monotonic: () => elapsed,
    });
    expect(await watcher.recover()).toEqual({ interrupted: 0, resumed: 0 });
    // An NTP correction: the wall clock jumps ten leases ahead while a moment passes.
    wall += 10 * LEASE;
    elapsed += 1;
    expect(await watcher.recover()).toEqual({ interrupted: 0, resumed: 0 });
    expect((await b.getRequest(request.id))?.status).toBe("executing");
    release();
    const finished = await running;
    expect(finished.status).toBe("succeeded");
    expect(finished.outcome?.summary).toBe("HTTP 200");
    expect(connector.calls).toBe(1);
  });

  it("ends an execution whose heartbeat stood still for a whole lease of monotonic time, whatever the wall clock did", async () => {
    // Claimed by a replica that was killed since: nobody renews its lease.
    const request = await claimedIn(a);
    const connector = connectorAnswering(answer);
    let wall = Date.now();
    let elapsed = 0;
    const watcher = executorOn(b, connector, {
      leaseMs: LEASE,
      clock: () => wall,
      monotonic: () => elapsed,
    });
    expect(await watcher.recover()).toEqual({ interrupted: 0, resumed: 0 });
    // The wall clock steps back an hour meanwhile: no time it says passed counts.
    wall -= 3_600_000;
    elapsed += LEASE;
    // A whole lease, and no more: still the other replica's.
    expect(await watcher.recover()).toEqual({ interrupted: 0, resumed: 0 });
    elapsed += 1;
    expect(await watcher.recover()).toEqual({ interrupted: 1, resumed: 0 });
    const ended = await b.getRequest(request.id);
    expect(ended?.status).toBe("failed");
    expect(ended?.outcome?.reason).toBe(OUTCOME_UNKNOWN);
    expect(connector.calls).toBe(0);
  });
});

describe("binary content in results", () => {
  it("scrubs binary content as its bytes, of every credential the gateway knows and the masked values", async () => {
    const CVV = "729";
    const CARD = "4929837150216347";
    const { store, request } = await claimed(
      { method: "POST", path: "/cards", body: { cvv: CVV, card: CARD } },
      ["body.cvv", "body.card"],
    );
    // A credential the connector was never given (a chat token, say): the gateway knows it.
    const TOKEN = "xoxb-chat-token-5e1f";
    const bytes = (text: string) => Buffer.from(`\xff${text}`, "latin1").toString("base64");
    // Bytes whose base64 spells the CVV, which they do not hold.
    const image = Buffer.from(`/9j/${CVV}AAAAAAAA`, "base64").toString("base64");
    const connector = connectorAnswering({
      ok: true,
      result: {
        images: [image, bytes(`${TOKEN} ${CVV} ${CARD}`), `AAAA${CARD}`, `cvv ${CVV}`],
        note: `cvv ${CVV}, mail bob@example.com`,
      },
      summary: "3 images",
      binary: [
        ["images", 0],
        ["images", 1],
        ["images", 2],
        ["images", 3],
      ],
    });
    const executor = createExecutor({
      store,
      connectors: new Map([["billing", connector]]),
      approvers: createApprovers(createLiveConfig(loaded)),
      redactor: createRedactor([TOKEN]),
      plan: () => [],
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics(),
      clock: Date.now,
    });
    const finished = await executor.runClaimed({
      ...request,
      decision: { ...request.decision, maskResult: ["email"] },
    });
    const result = finished.outcome?.result as { images: string[]; note: string };
    expect(result.images[0]).toBe(image);
    expect(Buffer.from(String(result.images[1]), "base64").toString("latin1")).toBe(
      "\xff[redacted] [masked] [masked]",
    );
    // A value too long to turn up in base64 by chance is not let through written in it.
    expect(result.images[2]).toBe("AAAA[masked]");
    // Text where base64 belongs is scrubbed as text.
    expect(result.images[3]).toBe("cvv [masked]");
    expect(result.note).toBe("cvv [masked], mail b***@example.com");
  });

  it("keeps a masked value that a connector's thrown error quotes out of the reason and the log", async () => {
    const CARD = "4929837150216347";
    const { store, request } = await claimed(
      { method: "POST", path: "/cards", body: { card: CARD } },
      ["body.card"],
    );
    const connector = connectorAnswering({ ok: true, result: null, summary: "" });
    connector.execute = async () => {
      throw new Error(`card ${CARD} was refused`);
    };
    const lines: string[] = [];
    const executor = createExecutor({
      store,
      connectors: new Map([["billing", connector]]),
      approvers: createApprovers(createLiveConfig(loaded)),
      redactor: createRedactor([]),
      plan: () => [],
      logger: createLogger({ destination: { write: (line: string) => lines.push(line) } }),
      metrics: createMetrics(),
      clock: Date.now,
    });
    const finished = await executor.runClaimed(request);
    expect(finished.outcome?.reason).toContain("the connector failed: card [masked] was refused");
    const log = lines.join("");
    expect(log).toContain("the connector failed");
    expect(log).toContain("card [masked] was refused");
    expect(log).not.toContain(CARD);
  });
});
