import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.js";
import type { AuditEventInput } from "../requests/request-types.js";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createCheckpointer } from "./audit-checkpoints.js";
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
      expect(await verifyAudit(store, undefined, { publicKey })).toMatchObject({
        ok: true,
        signed: { through: 4, checkpoints: 2, unsigned: 0 },
      });
      // Someone holding the database cuts the chain after event 1, checkpoints and all, and
      // appends what they like: a chain that verifies, but that no checkpoint vouches for.
      const db = new Database(path);
      db.prepare("DELETE FROM audit_events WHERE seq >= 2").run();
      db.close();
      await store.appendAudit([event("test.second"), event("test.third", { who: "mallory" })]);
      expect(await verifyAudit(store, undefined, { publicKey })).toMatchObject({ ok: false });
      // The running gateway must not vouch for it now.
      await checkpointer.checkpoint();
      expect(await store.lastAuditEvent()).toMatchObject({ seq: 3, type: "test.third" });
      expect(await verifyAudit(store, undefined, { publicKey })).toMatchObject({
        ok: false,
        problem: { kind: "unsigned" },
      });
    } finally {
      await store.close();
    }
  });
});
