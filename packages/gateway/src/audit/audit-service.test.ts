import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import { exportAudit, PROGRESS_EVERY, verifyAudit } from "./audit-service.js";

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
