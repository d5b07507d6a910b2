import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createRecordedCalls } from "./mcp-recorded-calls.js";

describe("MCP calls recorded in the store", () => {
  it("keys a call by its agent, session and id, and records none without a session", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-mcp-calls-"));
    const store = openSqliteStore(join(dir, "airlock.db"));
    try {
      const calls = createRecordedCalls(store, 1000, Date.now);
      expect(calls.key("bot", undefined, 1)).toBeUndefined();
      const mine = calls.key("bot", "session-a", 1)!;
      // "1" and 1 are two ids; another session, or another agent, is another client.
      const others = [
        calls.key("bot", "session-a", "1"),
        calls.key("bot", "session-b", 1),
        calls.key("other-bot", "session-a", 1),
      ];
      expect(new Set([mine, ...others]).size).toBe(4);
      expect(mine).not.toContain("session-a");
      expect(await calls.hold(mine, "req_1")).toBe(false);
      for (const key of others) expect(await calls.cancel(key!)).toBeUndefined();
      expect(await calls.cancel(mine)).toBe("req_1");
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
