import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.js";
import type { AuditEventInput } from "../requests/request-types.js";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import { hashEvent } from "./audit-chain.js";
import { CHECKPOINT_TYPE, createCheckpointer, signCheckpoint } from "./audit-checkpoints.js";
import { verifyAudit } from "./audit-service.js";

const T0 = 1_800_000_000_000;
const event = (type: string, data: AuditEventInput["data"] = {}): AuditEventInput => ({
  at: T0,
  type,
  requestId: null,
  actor: { type: "operator", id: "tester" },
  data,
});

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the checkpointer", () => {
  it("signs no chain rewritten under it at or before an event it signed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-checkpoints-"));
    dirs.push(dir);
    const path = join(dir, "airlock.db");
    const store = openSqliteStore(path);
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const checkpointer = createCheckpointer({
      store,
      privateKey,
      everyMs: 60_000,
      clock: () => T0,
      logger: createLogger({ level: "silent" }),
    });
    try {
      await store.appendAudit([event("test.first"), event("test.second")]);
      await checkpointer.checkpoint();
      await store.appendAudit([event("test.third", { who: "bob" })]);
      await checkpointer.checkpoint();
      expect(await verifyAudit(store, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: true,
        signed: { through: 4, checkpoints: 2, unsigned: 0 },
      });
      // Someone holding the database cuts the chain after event 1, checkpoints and all, and
      // appends what they like: a chain that verifies, but that no checkpoint vouches for.
      const db = new Database(path);
      db.prepare("DELETE FROM audit_events WHERE seq >= 2").run();
      db.close();
      await store.appendAudit([event("test.second"), event("test.third", { who: "mallory" })]);
      expect(await verifyAudit(store, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: false,
      });
      // The running gateway must not vouch for it now.
      await checkpointer.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ seq: 3, type: "test.third" });
      expect(await verifyAudit(store, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: false,
        problem: { kind: "unsigned" },
      });
    } finally {
      await store.close();
    }
  });
});

describe("checkpoints, verified", () => {
  it("are checked against the events the walk read, not a second reading of the store", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-checkpoints-"));
    dirs.push(dir);
    const path = join(dir, "airlock.db");
    const store = openSqliteStore(path);
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const checkpointer = createCheckpointer({
      store,
      privateKey,
      everyMs: 60_000,
      clock: () => T0,
      logger: createLogger({ level: "silent" }),
    });
    try {
      await store.appendAudit([event("test.first"), event("test.second", { who: "bob" })]);
      await checkpointer.checkpoint();
      type Row = Record<string, string | number | null>;
      const db = new Database(path);
      const [first, second, signed] = db
        .prepare("SELECT * FROM audit_events ORDER BY seq")
        .all() as Row[];
      // The table made again without its key: the genuine event 2 stays, with a ts that is no
      // text (which a walk filtering on ts >= '' did not read), beside a forged event 2, followed by more events than a verification keeps the hashes of, and a copy of
      // the checkpoint that vouches for the genuine one.
      db.exec(`DROP TABLE audit_events;
        CREATE TABLE audit_events (seq, ts, type, request_id, actor_type, actor_id, data,
          prev_hash, hash)`);
      const insert = db.prepare(
        "INSERT INTO audit_events VALUES (@seq, @ts, @type, @request_id, @actor_type, @actor_id, @data, @prev_hash, @hash)",
      );
      insert.run({ ...second, ts: 0 });
      insert.run(first);
      let prevHash = first!.hash as string;
      const forged: Row[] = [
        { ...second!, data: '{"who":"mallory"}' },
        ...Array.from({ length: 5000 }, () => ({ ...second!, type: "test.filler", data: "{}" })),
        signed!,
      ];
      forged.forEach((row, i) => {
        const seq = i + 2;
        const hash = hashEvent({
          seq,
          ts: row.ts as string,
          type: row.type as string,
          requestId: null,
          actor: { type: row.actor_type as "operator", id: row.actor_id as string },
          data: JSON.parse(row.data as string),
          prevHash,
        });
        insert.run({ ...row, seq, prev_hash: prevHash, hash });
        prevHash = hash;
      });
      db.close();
      // The walk reads every row now, whatever its ts holds, so the chain itself fails where
      // the genuine event 2 sits beside the forged one; either way, nothing passes.
      expect(await verifyAudit(store, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: false,
        problem: { seq: 2 },
      });
    } finally {
      await store.close();
    }
  });

  it("vouch for an event further back than a verification keeps hashes of", async () => {
    const store = openSqliteStore(":memory:");
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    try {
      await store.appendAudit([event("test.first")]);
      const head = (await store.lastAuditEvent())!;
      // Many events appended between reading the head and appending its checkpoint.
      await store.appendAudit(Array.from({ length: 5000 }, () => event("test.filler")));
      await store.appendAudit([
        { ...event(CHECKPOINT_TYPE), data: { ...signCheckpoint(privateKey, head, T0) } },
      ]);
      expect(await verifyAudit(store, undefined, { publicKeys: [publicKey] })).toMatchObject({
        ok: true,
        signed: { through: 1, checkpoints: 1 },
      });
    } finally {
      await store.close();
    }
  });
});
