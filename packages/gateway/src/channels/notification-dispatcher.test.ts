import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { postgresAvailable, scratchSchema } from "../../test/support/postgres.js";
import { maskInput } from "../masking/input-mask.js";
import { createLogger } from "../observability/logger.js";
import { createMetrics } from "../observability/metrics.js";
import { submit } from "../requests/request-transitions.js";
import { openPostgresStore } from "../store/postgres/postgres-store.js";
import { openSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Store } from "../store/store.js";
import type { Channel, ChannelView } from "./channel.js";
import { channelTopic, createDispatcher } from "./notification-dispatcher.js";

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A store on a real SQLite file, and the file's path. */
function storeOnFile(): { store: SqliteStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "airlock-dispatcher-"));
  dirs.push(dir);
  const path = join(dir, "airlock.db");
  const store = openSqliteStore(path);
  stores.push(store);
  return { store, path };
}

/** A request waiting for review, recorded with one delivery for `channel`. */
async function pendingWithDelivery(store: Store, channel: string): Promise<string> {
  const proposal = {
    agent: "support-bot",
    connection: "billing",
    operation: "request",
    input: { method: "POST", path: "/refunds" },
    justification: "",
    context: {},
  };
  const change = submit({
    id: `req_${process.pid}_${Date.now()}`,
    proposal,
    maskedInput: maskInput(proposal.input, []),
    agent: { name: "support-bot", owner: "alice@example.com", labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: "a".repeat(64),
    nonce: "n".repeat(32),
    decision: {
      decision: "review",
      rule: "refunds",
      reason: 'rule "refunds" requires review',
      risk: "high",
      riskReason: "POST",
      review: { approvers: ["finance"], quorum: 1, expiresInMs: 60_000, stepUp: false },
      mask: [],
      policyDigest: "d".repeat(64),
    },
    description: { preview: "POST /refunds", facts: {}, risk: { level: "high", reason: "" } },
    now: Date.now(),
  });
  const id = change.request.id;
  await store.insertRequest(
    () => change,
    () => [
      { topic: channelTopic(channel), requestId: id, payload: { event: "requested", version: 1 } },
    ],
  );
  return id;
}

describe("the notification dispatcher", () => {
  it("keeps a delivery the store refuses to record, for good, as a dead letter at once rather than retrying it", async () => {
    const { store, path } = storeOnFile();
    const id = await pendingWithDelivery(store, "chat");
    // The database will not take the message's reference: a fault, not an outage.
    const other = new Database(path);
    other.exec(`CREATE TRIGGER refuse BEFORE INSERT ON channel_refs
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    let posts = 0;
    const chat: Channel = {
      name: "chat",
      post: async () => {
        posts++;
        return "C1/1";
      },
      update: async () => {},
    };
    const dispatcher = dispatcherFor(store, chat, undefined);
    dispatcher.start();
    await dispatcher.idle();
    await dispatcher.stop();
    expect(posts).toBe(1);
    const [dead] = await store.listOutbox({ state: "dead", limit: 10 });
    expect(dead).toMatchObject({ requestId: id, attempts: 1 });
    expect(dead?.lastError).not.toContain("refused by test");
    expect(await store.countOutbox()).toEqual({ pending: 0, dead: 1 });
  });

  it("keeps a delivery as a dead letter when the store refuses to record its failure, rather than deliver it again at every lease", async () => {
    const { store, path } = storeOnFile();
    const id = await pendingWithDelivery(store, "chat");
    // The database will not take this failure's text: a fault, not an outage.
    const other = new Database(path);
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE OF last_error ON outbox
      WHEN NEW.last_error LIKE '%bad answer%' BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    const lines: string[] = [];
    const posts = await deliverFailing(store, lines);
    expect(posts).toBe(1);
    const [dead] = await store.listOutbox({ state: "dead", limit: 10 });
    expect(dead).toMatchObject({ requestId: id, attempts: 1 });
    expect(dead?.lastError).toContain("the store refused to record");
    expect(await store.countOutbox()).toEqual({ pending: 0, dead: 1 });
    // The log has the failure, and why the store refused it.
    const said = lines.join("");
    expect(said).toContain("bad answer");
    expect(said).toContain("refused by test");
  });

  it.skipIf(!postgresAvailable)(
    "keeps a delivery whose failure's text PostgreSQL refuses (a NUL) as a dead letter",
    async () => {
      const db = await scratchSchema();
      const store = await openPostgresStore(db.url);
      try {
        await pendingWithDelivery(store, "chat");
        expect(await deliverFailing(store, [])).toBe(1);
        const [dead] = await store.listOutbox({ state: "dead", limit: 10 });
        expect(dead?.lastError).toContain("the store refused to record");
        expect(await store.countOutbox()).toEqual({ pending: 0, dead: 1 });
      } finally {
        await store.close();
        await db.drop();
      }
    },
  );

  it("waits for a channel's other deliveries when one of them fails in a way it cannot record", async () => {
    const { store, path } = storeOnFile();
    await pendingWithDelivery(store, "chat");
    // A row edited by hand (no request), whose failure the store then refuses to record.
    const other = new Database(path);
    other
      .prepare(
        "INSERT INTO outbox (topic, request_id, payload, available_at, created_at) VALUES (?, NULL, '{}', 0, 0)",
      )
      .run(channelTopic("chat"));
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE OF last_error ON outbox
      WHEN NEW.last_error LIKE 'no channel handles%' BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    let release!: () => void;
    let posted = false;
    const chat: Channel = {
      name: "chat",
      post: () =>
        new Promise((resolve) => {
          release = () => {
            posted = true;
            resolve("C1/1");
          };
        }),
      update: async () => {},
    };
    const lines: string[] = [];
    const dispatcher = dispatcherFor(store, chat, lines);
    dispatcher.start();
    await until(() => release !== undefined && lines.join("").includes("refused by test"));
    // The post under way still counts: idle waits for it.
    let idle = false;
    const waiting = dispatcher.idle().then(() => {
      idle = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(idle).toBe(false);
    release();
    await waiting;
    expect(posted).toBe(true);
    await dispatcher.stop();
  });

  it("tells of a first post under way until where it went is recorded, or it failed", async () => {
    const { store } = storeOnFile();
    const answered = await pendingWithDelivery(store, "chat");
    let answer!: (ref: string) => void;
    let fail!: (error: Error) => void;
    const chat: Channel = {
      name: "chat",
      post: (notice) =>
        new Promise((resolve, reject) => {
          if (notice.request.id === answered) answer = resolve;
          else fail = reject;
        }),
      update: async () => {},
    };
    const dispatcher = dispatcherFor(store, chat, undefined, { backoff: () => 3_600_000 });
    expect(dispatcher.posting(answered, "chat")).toBeUndefined();
    dispatcher.start();
    await until(() => answer !== undefined);
    const posting = dispatcher.posting(answered, "chat");
    expect(posting).toBeDefined();
    expect(dispatcher.posting(answered, "other")).toBeUndefined();
    let settled = false;
    void posting!.then(() => {
      settled = true;
    });
    answer("C1/1");
    await posting;
    expect(settled).toBe(true);
    // Recorded by the time it settles, and no longer under way.
    expect(await store.getChannelRef(answered, "chat")).toBe("C1/1");
    expect(dispatcher.posting(answered, "chat")).toBeUndefined();
    // A post that fails settles all the same, with nothing recorded.
    const failing = await pendingWithDelivery(store, "chat");
    dispatcher.kick();
    await until(() => fail !== undefined);
    const failed = dispatcher.posting(failing, "chat");
    fail(new Error("the chat is down"));
    await expect(failed).resolves.toBeUndefined();
    expect(await store.getChannelRef(failing, "chat")).toBeUndefined();
    expect(dispatcher.posting(failing, "chat")).toBeUndefined();
    await dispatcher.stop();
  });

  it("hands a delivery back at the stop, due at once, when the store refuses the reason it was cut short", async () => {
    const { store, path } = storeOnFile();
    const id = await pendingWithDelivery(store, "chat");
    const other = new Database(path);
    other.exec(`CREATE TRIGGER refuse BEFORE UPDATE OF last_error ON outbox
      WHEN NEW.last_error LIKE '%bad answer%' BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    other.close();
    const lines: string[] = [];
    await stopDuringPost(store, lines);
    await expectHandedBack(store, id);
    expect(lines.join("")).toContain("refused by test");
  });

  it.skipIf(!postgresAvailable)(
    "hands a delivery back at the stop when PostgreSQL refuses the reason's text (a NUL)",
    async () => {
      const db = await scratchSchema();
      const store = await openPostgresStore(db.url);
      try {
        const id = await pendingWithDelivery(store, "chat");
        await stopDuringPost(store, []);
        await expectHandedBack(store, id);
      } finally {
        await store.close();
        await db.drop();
      }
    },
  );
});

/**
 * Stops the dispatcher while a post is under way, and the post then fails: a channel that
 * lets its own timeout run at the stop (one that would post twice), whose receiver's answer,
 * quoted in its error, came once the stop had begun.
 */
async function stopDuringPost(store: Store, lines: string[]): Promise<void> {
  let posting: () => void = () => {};
  const posted = new Promise<void>((resolve) => {
    posting = resolve;
  });
  const chat: Channel = {
    name: "chat",
    post: async (_notice, stopping) => {
      posting();
      await new Promise((resolve) => stopping?.addEventListener("abort", resolve));
      throw new Error("bad answer: \u0000");
    },
    update: async () => {},
  };
  const dispatcher = dispatcherFor(store, chat, lines);
  dispatcher.start();
  await posted;
  await dispatcher.stop();
}

/** The delivery is pending, not dead, and another replica (or this one, started again) may claim it now. */
async function expectHandedBack(store: Store, id: string): Promise<void> {
  const [entry] = await store.listOutbox({ state: "pending", limit: 10 });
  expect(entry?.requestId).toBe(id);
  expect(entry?.lastError).toContain("cut short by a stop of the gateway");
  expect(entry?.lastError).not.toContain("bad answer");
  expect(await store.countOutbox()).toEqual({ pending: 1, dead: 0 });
  // Not left claimed until its lease (5 minutes) runs out.
  const claimed = await store.claimOutbox(Date.now(), 60_000, 10, [channelTopic("chat")]);
  expect(claimed.map((item) => item.requestId)).toEqual([id]);
}

/**
 * A dispatcher of the one channel, polling only when kicked; its log lines go to `lines`
 * (none kept without).
 */
function dispatcherFor(
  store: Store,
  chat: Channel,
  lines?: string[],
  options: { backoff?: (attempts: number) => number } = {},
) {
  return createDispatcher({
    store,
    channels: [chat],
    view: async (requestId) => ({ id: requestId }) as unknown as ChannelView,
    snapshot: () => ({}) as unknown as ChannelView,
    logger: lines
      ? createLogger({ destination: { write: (line: string) => lines.push(line) } })
      : createLogger({ level: "silent" }),
    metrics: createMetrics(),
    clock: Date.now,
    pollInterval: 3_600_000,
    ...options,
  });
}

/** Runs one round of delivery to a channel whose every post fails; returns how many it made. */
async function deliverFailing(store: Store, lines: string[]): Promise<number> {
  let posts = 0;
  const chat: Channel = {
    name: "chat",
    post: async () => {
      posts++;
      // What a receiver answered, quoted: it may hold anything.
      throw new Error("bad answer: \u0000");
    },
    update: async () => {},
  };
  const dispatcher = dispatcherFor(store, chat, lines);
  dispatcher.start();
  await dispatcher.idle();
  await dispatcher.stop();
  return posts;
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}
