import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import { exportAudit, LISTED_PROBLEMS, PROGRESS_EVERY, verifyAudit } from "./audit-service.js";

describe("walking a long chain", () => {
  it("says how far verifying and exporting got, every PROGRESS_EVERY events", async () => {
    const store = openSqliteStore(":memory:");
    try {
      const total = 2.5 * PROGRESS_EVERY;
      for (let at = 0; at < total; at += 5000) {
        await store.appendAudit(
          Array.from({ length: 5000 }, (_, i) => ({
            type: "token.created",
            requestId: null,
            actor: { type: "system", id: "airlock" } as const,
            at: 1_800_000_000_000 + at + i,
            data: { n: at + i },
          })),
        );
      }
      const verified: number[] = [];
      const report = await verifyAudit(store, (events) => verified.push(events));
      expect(report).toMatchObject({ ok: true, count: total });
      expect(verified).toEqual([PROGRESS_EVERY, 2 * PROGRESS_EVERY]);

      const exported: number[] = [];
      let lines = 0;
      for await (const _ of exportAudit(store, "jsonl", undefined, (n) => exported.push(n))) {
        lines++;
      }
      expect(lines).toBe(total);
      expect(exported).toEqual([PROGRESS_EVERY, 2 * PROGRESS_EVERY]);
    } finally {
      await store.close();
    }
  });
});

describe("verifying a chain rewritten wholesale, with all", () => {
  it("keeps the first LISTED_PROBLEMS problems in chain order, and counts them all", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-wholesale-"));
    const path = join(dir, "airlock.db");
    try {
      const total = 10_000;
      const store = openSqliteStore(path);
      await store.appendAudit(
        Array.from({ length: total }, (_, i) => ({
          type: "token.created",
          requestId: null,
          actor: { type: "system", id: "airlock" } as const,
          at: 1_800_000_000_000 + i,
          data: { n: i },
        })),
      );
      await store.close();
      // Every event edited: one problem per event, far more than are listed.
      const db = new Database(path);
      db.prepare(`UPDATE audit_events SET data = '{"edited":true}'`).run();
      db.close();
      const changed = openSqliteStore(path);
      try {
        const report = await verifyAudit(changed, undefined, { all: true });
        expect(report).toMatchObject({
          ok: false,
          count: total,
          problem: { seq: 1, kind: "edited" },
          problemCount: total,
        });
        expect(report.problems).toHaveLength(LISTED_PROBLEMS);
        expect(report.problems?.map((p) => p.seq)).toEqual(
          Array.from({ length: LISTED_PROBLEMS }, (_, i) => i + 1),
        );
      } finally {
        await changed.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("walking a chain whose table was made again without its key", () => {
  /**
   * A chain of `length` events, whose table someone holding the database made again without
   * its key, to add a forged request.approved beside the genuine event `copied` (`seq` as
   * given); then what a reader of the trail is shown must be what verifying and exporting read.
   */
  const forged = async (length: number, copied: number, seq: number | null) => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-walk-"));
    const path = join(dir, "airlock.db");
    try {
      let store = openSqliteStore(path);
      await store.appendAudit(
        Array.from({ length }, (_, i) => ({
          type: "token.created",
          requestId: null,
          actor: { type: "system", id: "airlock" } as const,
          at: 1_800_000_000_000 + i,
          data: { n: i },
        })),
      );
      await store.close();
      const db = new Database(path);
      const genuine = db.prepare("SELECT * FROM audit_events WHERE seq = ?").get(copied) as Record<
        string,
        unknown
      >;
      db.exec(`CREATE TABLE copied AS SELECT * FROM audit_events ORDER BY seq;
        DROP TABLE audit_events;
        ALTER TABLE copied RENAME TO audit_events;`);
      db.prepare(
        "INSERT INTO audit_events VALUES (@seq, @ts, @type, @request_id, @actor_type, @actor_id, @data, @prev_hash, @hash)",
      ).run({ ...genuine, seq, type: "request.approved", request_id: "req_forged" });
      db.close();
      store = openSqliteStore(path);
      try {
        // What a reader of the trail is shown...
        expect(await store.listAudit({ requestId: "req_forged", limit: 10 })).toHaveLength(1);
        // ...is what verifying and exporting read.
        const verified = await verifyAudit(store);
        const exported: string[] = [];
        for await (const line of exportAudit(store, "jsonl")) exported.push(line);
        expect(exported.some((line) => line.includes("req_forged"))).toBe(true);
        return verified;
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("reads a forged event numbered as the last of a batch, not only the genuine one", async () => {
    // A second event 1000, after the genuine one, where a walk that pages on seq > last would
    // skip it.
    expect(await forged(1500, 1000, 1000)).toMatchObject({ ok: false, problem: { seq: 1000 } });
  });

  it("reads a forged event with no number at all", async () => {
    expect(await forged(3, 2, null)).toMatchObject({ ok: false });
  });
});
