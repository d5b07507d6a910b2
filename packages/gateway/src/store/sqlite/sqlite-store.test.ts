import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "./sqlite-store.js";

describe("SQLite store: replay guard", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("claims a key once until it expires, and remembers it across a reopen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-sqlite-"));
    dirs.push(dir);
    const path = join(dir, "airlock.db");
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
