import { describe, expect, it } from "vitest";
import { createLruCache } from "./lru-cache.js";

describe("createLruCache", () => {
  it("gives a value back until its time, and nothing from then on", () => {
    const cache = createLruCache<string>(10);
    cache.set("U1", "bob@example.com", 1_000);
    expect(cache.get("U1", 999)).toBe("bob@example.com");
    expect(cache.get("U1", 1_000)).toBeUndefined();
    // Found expired, it is gone: it holds no room.
    expect(cache.size).toBe(0);
  });

  it("keeps at most its bound, forgetting the least recently used first", () => {
    const cache = createLruCache<number>(3);
    for (const [key, value] of [
      ["a", 1],
      ["b", 2],
      ["c", 3],
    ] as const) {
      cache.set(key, value, 10_000);
    }
    // Reading `a` makes `b` the least recently used.
    expect(cache.get("a", 0)).toBe(1);
    cache.set("d", 4, 10_000);
    expect(cache.size).toBe(3);
    expect(cache.get("b", 0)).toBeUndefined();
    expect([cache.get("a", 0), cache.get("c", 0), cache.get("d", 0)]).toEqual([1, 3, 4]);
    // Setting a key it holds replaces the value, and takes no more room.
    cache.set("c", 30, 10_000);
    expect(cache.size).toBe(3);
    expect(cache.get("c", 0)).toBe(30);
  });

  it("holds no more than its bound however many keys pass through it", () => {
    const cache = createLruCache<number>(100);
    for (let i = 0; i < 10_000; i++) cache.set(`U${i}`, i, 1_000);
    expect(cache.size).toBe(100);
    expect(cache.get("U9999", 0)).toBe(9999);
    expect(cache.get("U0", 0)).toBeUndefined();
  });

  it("forgets a key on delete", () => {
    const cache = createLruCache<number>(3);
    cache.set("a", 1, 10_000);
    cache.delete("a");
    expect(cache.get("a", 0)).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
