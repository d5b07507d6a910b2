import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { canonicalJson } from "../common/canonical-json.js";
import { createLogger } from "../observability/logger.js";
import type { AuditEventInput } from "../requests/request-types.js";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Store } from "../store/store.js";
import { hashEvent } from "./audit-chain.js";
import {
  appendCheckpoint,
  CHECKPOINT_TYPE,
  createCheckpointer,
  KEYS_LOOKBACK,
  keyIdOf,
  signCheckpoint,
} from "./audit-checkpoints.js";
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

describe("the checkpointer, across a key rotation", () => {
  const a = generateKeyPairSync("ed25519");
  const b = generateKeyPairSync("ed25519");
  const publicKeys = [a.publicKey, b.publicKey];
  const logged: string[] = [];
  const checkpointer = (store: Store, privateKey: KeyObject, publicKeys?: KeyObject[]) =>
    createCheckpointer({
      store,
      privateKey,
      ...(publicKeys ? { publicKeys } : {}),
      everyMs: 60_000,
      clock: () => T0,
      logger: createLogger({
        level: "error",
        destination: { write: (line: string) => logged.push(line) },
      }),
    });

  it("stops signing with the old key once the new key has signed, so a rolling rotation verifies", async () => {
    const store = openSqliteStore(":memory:");
    logged.length = 0;
    try {
      // Two replicas: one still with the old key, one restarted with the new one.
      const old = checkpointer(store, a.privateKey);
      await store.appendAudit([event("test.first")]);
      await old.checkpoint();
      const fresh = checkpointer(store, b.privateKey);
      await store.appendAudit([event("test.second")]);
      await fresh.checkpoint();
      const rotation = (await store.lastAuditEvent())!.seq;
      await store.appendAudit([event("test.third")]);
      await old.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: "test.third" });
      expect(logged.join("")).toContain(
        `the audit signing key ${keyIdOf(a.publicKey)} was replaced by key ${keyIdOf(b.publicKey)} (its checkpoint at event ${rotation}): this gateway signs no more checkpoints; restart it with the new key`,
      );
      await fresh.checkpoint();
      expect(await verifyAudit(store, undefined, { publicKeys })).toMatchObject({
        ok: true,
        signed: { through: rotation + 1, unsigned: 0 },
      });
    } finally {
      await store.close();
    }
  });

  it("signs nothing when started with a key the chain shows was replaced", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      await checkpointer(store, a.privateKey).checkpoint();
      await store.appendAudit([event("test.second")]);
      await checkpointer(store, b.privateKey).checkpoint();
      await store.appendAudit([event("test.third")]);
      // A replica started again from the old config.
      await checkpointer(store, a.privateKey).checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: "test.third" });
      expect(await verifyAudit(store, undefined, { publicKeys })).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
  });

  it("signs nothing with a key replaced further back than it first looks, reading the whole chain then", async () => {
    const store = openSqliteStore(":memory:");
    logged.length = 0;
    try {
      await store.appendAudit([event("test.first")]);
      await checkpointer(store, a.privateKey).checkpoint();
      await store.appendAudit([event("test.second")]);
      const rotation = await signHead(store, b.privateKey);
      await store.appendAudit(Array.from({ length: KEYS_LOOKBACK }, () => event("test.filler")));
      // A replica started from the old config long after the rotation: neither key signed
      // within what it looks back at first, so it must read further before it signs.
      await checkpointer(store, a.privateKey).checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: "test.filler" });
      expect(logged.join("")).toContain(
        `the audit signing key ${keyIdOf(a.publicKey)} was replaced by key ${keyIdOf(b.publicKey)} (its checkpoint at event ${rotation})`,
      );
      // A key that never signed still takes over, however long the chain.
      const c = generateKeyPairSync("ed25519");
      await checkpointer(store, c.privateKey).checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: CHECKPOINT_TYPE });
      expect(
        await verifyAudit(store, undefined, { publicKeys: [...publicKeys, c.publicKey] }),
      ).toMatchObject({ ok: true, signed: { unsigned: 0 } });
    } finally {
      await store.close();
    }
  });

  it("says so when the old key signs beside the new one after the rotation", async () => {
    const store = openSqliteStore(":memory:");
    logged.length = 0;
    try {
      await store.appendAudit([event("test.first")]);
      await checkpointer(store, a.privateKey).checkpoint();
      await store.appendAudit([event("test.second")]);
      const fresh = checkpointer(store, b.privateKey);
      await fresh.checkpoint();
      await store.appendAudit([event("test.third")]);
      // The old key in someone else's hands.
      const stale = await signHead(store, a.privateKey);
      await store.appendAudit([event("test.fourth")]);
      await fresh.checkpoint();
      expect(logged.join("")).toContain(
        `the audit checkpoint at event ${stale} is signed with key ${keyIdOf(a.publicKey)}, which this gateway's key ${keyIdOf(b.publicKey)} replaced, and vouches for what came after`,
      );
      expect(await verifyAudit(store, undefined, { publicKeys })).toMatchObject({
        ok: false,
        problem: { seq: stale, kind: "retired_key" },
      });
    } finally {
      await store.close();
    }
  });

  it("with audit.publicKeys, takes a checkpoint for a rotation only under one of them, signed: a forged one stops no signer, and verify rejects it", async () => {
    const store = openSqliteStore(":memory:");
    logged.length = 0;
    try {
      await store.appendAudit([event("test.first")]);
      const signer = checkpointer(store, a.privateKey, [b.publicKey]);
      await signer.checkpoint();
      // Someone with write access to the database appends checkpoints under a key no gateway
      // has, and under the next key without its signature.
      const unknown = await forgeCheckpoint(store, "0123456789abcdef");
      const underNext = await forgeCheckpoint(store, keyIdOf(b.publicKey));
      await store.appendAudit([event("test.second")]);
      await signer.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: CHECKPOINT_TYPE });
      expect(logged.join("")).toContain(
        `the audit checkpoint at event ${unknown} is no rotation: it was signed with another key (0123456789abcdef, not ${keyIdOf(a.publicKey)} or ${keyIdOf(b.publicKey)}); this gateway goes on signing with key ${keyIdOf(a.publicKey)}`,
      );
      expect(logged.join("")).toContain(
        `the audit checkpoint at event ${underNext} is no rotation: its signature does not match what it says it signs`,
      );
      expect(await verifyAudit(store, undefined, { publicKeys: [a.publicKey] })).toMatchObject({
        ok: false,
        problem: { seq: unknown, kind: "bad_signature" },
      });
      // The next key's own checkpoint is a rotation.
      await store.appendAudit([event("test.third")]);
      await checkpointer(store, b.privateKey).checkpoint();
      await store.appendAudit([event("test.fourth")]);
      await signer.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: "test.fourth" });
    } finally {
      await store.close();
    }
  });

  it("takes no checkpoint that names its own key without its signature for its own", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      // Forged under the next key before it ever signed, then the old key signs on.
      await forgeCheckpoint(store, keyIdOf(b.publicKey));
      await store.appendAudit([event("test.second")]);
      await signHead(store, a.privateKey);
      await store.appendAudit([event("test.third")]);
      // The next key's first start: the old key signed before it, so it takes over.
      await checkpointer(store, b.privateKey).checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: CHECKPOINT_TYPE });
    } finally {
      await store.close();
    }
  });

  it("goes on with the new key when the old key's replica signed as the rotation happened", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      await checkpointer(store, a.privateKey).checkpoint();
      await store.appendAudit([event("test.second")]);
      const readByOld = (await store.lastAuditEvent())!;
      const fresh = checkpointer(store, b.privateKey);
      await fresh.checkpoint();
      await signHead(store, a.privateKey, readByOld);
      await store.appendAudit([event("test.third")]);
      await fresh.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ type: CHECKPOINT_TYPE });
      expect(await verifyAudit(store, undefined, { publicKeys })).toMatchObject({
        ok: true,
        signed: { unsigned: 0 },
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

  it("hold nothing but what Airlock writes: the last one's own fields are under no signature", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-checkpoints-"));
    dirs.push(dir);
    const path = join(dir, "airlock.db");
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const store = openSqliteStore(path);
    await store.appendAudit([event("test.first"), event("test.second")]);
    await signHead(store, privateKey);
    await store.close();
    type Row = Record<string, string | number | null>;
    const db = new Database(path);
    const last = db.prepare("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1").get() as Row;
    const data = JSON.parse(last.data as string);
    const changes: [string, Partial<Row>, string][] = [
      [
        "an extra field",
        { data: canonicalJson({ ...data, approvedBy: "ciso@example.com" }) },
        "it is not a checkpoint Airlock wrote (field approvedBy is not one it writes)",
      ],
      [
        "a request",
        { request_id: "req_forged" },
        "it is not a checkpoint Airlock wrote (it names a request)",
      ],
      [
        "another time",
        { ts: "2020-01-01T00:00:00.000Z" },
        "it is not a checkpoint Airlock wrote (its time is not its signedAt)",
      ],
      [
        "another actor",
        { actor_type: "reviewer", actor_id: "ciso@example.com" },
        "it is not a checkpoint Airlock wrote (its actor is neither the gateway nor airlock audit checkpoint)",
      ],
      [
        "characters base64 skips in its signature",
        { data: canonicalJson({ ...data, signature: `${data.signature}!approved!` }) },
        "it is not a checkpoint Airlock wrote (its signature is not 64 bytes in base64)",
      ],
    ];
    try {
      expect(
        await verifyAudit(openSqliteStore(path), undefined, { publicKeys: [publicKey] }),
      ).toMatchObject({ ok: true });
      for (const [what, change, why] of changes) {
        const row = { ...last, ...change };
        const hash = hashEvent({
          seq: row.seq as number,
          ts: row.ts as string,
          type: row.type as string,
          requestId: row.request_id as string | null,
          actor: { type: row.actor_type as "system", id: row.actor_id as string },
          data: JSON.parse(row.data as string),
          prevHash: row.prev_hash as string,
        });
        db.prepare(
          "UPDATE audit_events SET ts = @ts, request_id = @request_id, actor_type = @actor_type, actor_id = @actor_id, data = @data, hash = @hash WHERE seq = @seq",
        ).run({ ...row, hash });
        const changed = openSqliteStore(path);
        try {
          const report = await verifyAudit(changed, undefined, { publicKeys: [publicKey] });
          expect(report.problem?.message, what).toBe(
            `event ${last.seq} (${CHECKPOINT_TYPE}): ${why}`,
          );
        } finally {
          await changed.close();
        }
      }
    } finally {
      db.close();
    }
  });

  it("with all, are each checked past the chain's problems, and none fails for a renumbering listed once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-checkpoints-"));
    dirs.push(dir);
    const path = join(dir, "airlock.db");
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const store = openSqliteStore(path);
    const plain = (n: number) => Array.from({ length: n }, (_, i) => event(`test.e${i}`));
    await store.appendAudit(plain(3));
    await signHead(store, privateKey);
    await store.appendAudit(plain(3));
    await signHead(store, privateKey);
    await forgeCheckpoint(store, "0123456789abcdef");
    await store.appendAudit(plain(2));
    await signHead(store, privateKey);
    await store.close();
    // Event 2 edited; event 6 deleted and the events after it renumbered to close the gap.
    const db = new Database(path);
    db.prepare('UPDATE audit_events SET data = \'{"who":"mallory"}\' WHERE seq = 2').run();
    db.prepare("DELETE FROM audit_events WHERE seq = 6").run();
    db.prepare("UPDATE audit_events SET seq = -(seq - 1) WHERE seq > 6").run();
    db.prepare("UPDATE audit_events SET seq = -seq WHERE seq < 0").run();
    db.close();
    const changed = openSqliteStore(path);
    try {
      const first = await verifyAudit(changed, undefined, { publicKeys: [publicKey] });
      expect(first).toMatchObject({ ok: false, problem: { seq: 2, kind: "edited" } });
      expect(first.problems).toBeUndefined();
      const all = await verifyAudit(changed, undefined, { publicKeys: [publicKey], all: true });
      expect(all.ok).toBe(false);
      expect(all.problem).toEqual(first.problem);
      expect(all.problems?.map((p) => `${p.seq} ${p.kind}`)).toEqual([
        "2 edited",
        "6 renumbered",
        "8 bad_signature",
      ]);
      expect(all.problems?.[2]?.message).toContain(
        "it was signed with another key (0123456789abcdef",
      );
    } finally {
      await changed.close();
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
        {
          ...event(CHECKPOINT_TYPE),
          actor: { type: "system", id: "airlock" },
          data: { ...signCheckpoint(privateKey, head, T0) },
        },
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

/** Signs `head` (else the chain's head) with `key` and appends the checkpoint; returns its number. */
async function signHead(
  store: Store,
  key: KeyObject,
  head?: { seq: number; hash: string },
): Promise<number> {
  await appendCheckpoint(store, key, head ?? (await store.lastAuditEvent())!, T0, {
    type: "system",
    id: "airlock",
  });
  return (await store.lastAuditEvent())!.seq;
}

/**
 * Appends an event shaped as a checkpoint of the head under `keyId`, with a signature by no
 * key that has it, as someone with write access to the database could; returns its number.
 */
async function forgeCheckpoint(store: Store, keyId: string): Promise<number> {
  const head = (await store.lastAuditEvent())!;
  const signedAt = new Date(T0).toISOString();
  await store.appendAudit([
    {
      at: T0,
      type: CHECKPOINT_TYPE,
      requestId: null,
      actor: { type: "system", id: "airlock" },
      data: {
        seq: head.seq,
        hash: head.hash,
        signedAt,
        keyId,
        signature: signCheckpoint(generateKeyPairSync("ed25519").privateKey, head, T0).signature,
      },
    },
  ]);
  return head.seq + 1;
}

describe("checkpoints across a key rotation", () => {
  const a = generateKeyPairSync("ed25519");
  const b = generateKeyPairSync("ed25519");
  const [idA, idB] = [keyIdOf(a.publicKey), keyIdOf(b.publicKey)];

  it("fail where a replaced key vouches for an event from its successor's first checkpoint on", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      await signHead(store, a.privateKey);
      await store.appendAudit([event("test.second")]);
      const rotation = await signHead(store, b.privateKey);
      // Someone holding the old key (and the database) goes on past the rotation.
      await store.appendAudit([event("test.third", { who: "mallory" })]);
      const late = await signHead(store, a.privateKey);
      for (const publicKeys of [
        [a.publicKey, b.publicKey],
        [b.publicKey, a.publicKey],
      ]) {
        const report = await verifyAudit(store, undefined, { publicKeys });
        expect(report).toMatchObject({ ok: false, problem: { seq: late, kind: "retired_key" } });
        expect(report.problem?.message).toBe(
          `event ${late} (${CHECKPOINT_TYPE}): it is signed with key ${idA}, which key ${idB} replaced at event ${rotation} (its first checkpoint), yet it vouches for event ${late - 1}: a replaced key vouches for no event from its successor's first checkpoint on (a replica still signing with the old key, or the old key in someone else's hands)`,
        );
      }
    } finally {
      await store.close();
    }
  });

  it("accept the old key's checkpoints signed as the rotation happened, but reach only as far as the new key vouches", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      const first = await signHead(store, a.privateKey);
      await store.appendAudit([event("test.second")]);
      // Two replicas during a rolling rotation: the new key's reads the head, an event comes,
      // the old key's reads the new head, and both append their checkpoints.
      const readByB = (await store.lastAuditEvent())!;
      await store.appendAudit([event("test.third")]);
      const readByA = (await store.lastAuditEvent())!;
      const rotation = await signHead(store, b.privateKey, readByB);
      await signHead(store, a.privateKey, readByA);
      const report = await verifyAudit(store, undefined, {
        publicKeys: [a.publicKey, b.publicKey],
      });
      expect(report).toMatchObject({
        ok: true,
        signed: {
          // The new key vouches for event 3; the old key's word for event 4 counts for nothing.
          through: readByB.seq,
          checkpoints: 3,
          unsigned: 1,
          keys: [
            { keyId: idA, first, checkpoints: 2 },
            { keyId: idB, first: rotation, checkpoints: 1 },
          ],
        },
      });
    } finally {
      await store.close();
    }
  });

  it("fail when a key given signed nothing: the chain may have been cut back before it and signed again with an older one", async () => {
    const store = openSqliteStore(":memory:");
    try {
      await store.appendAudit([event("test.first")]);
      await signHead(store, a.privateKey);
      await store.appendAudit([event("test.second", { who: "mallory" })]);
      await signHead(store, a.privateKey);
      expect(await verifyAudit(store, undefined, { publicKeys: [a.publicKey] })).toMatchObject({
        ok: true,
      });
      const report = await verifyAudit(store, undefined, {
        publicKeys: [a.publicKey, b.publicKey],
      });
      expect(report).toMatchObject({ ok: false, problem: { kind: "unsigned" } });
      expect(report.problem?.message).toBe(
        `key ${idB} signed no checkpoint in this chain: each key given must have, since a chain cut back to before the newest key's first checkpoint and signed again with an older key looks like this; give only the keys this gateway has signed with`,
      );
    } finally {
      await store.close();
    }
  });
});
