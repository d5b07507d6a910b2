import { describe, expect, it } from "vitest";
import { createRateLimiter } from "../common/rate-limiter.js";
import { clientKey } from "./rate-limit.js";

describe("rate limiter", () => {
  it("allows a burst, then one per interval, per key", () => {
    let now = 0;
    const limiter = createRateLimiter({ burst: 3, perSecond: 0.5, clock: () => now });
    expect([1, 2, 3].map(() => limiter.take("a"))).toEqual([undefined, undefined, undefined]);
    expect(limiter.take("a")).toBe(2);
    expect(limiter.take("b")).toBeUndefined();
    now = 1000;
    expect(limiter.take("a")).toBe(1);
    now = 2000;
    expect(limiter.take("a")).toBeUndefined();
    expect(limiter.take("a")).toBe(2);
    now = 60_000;
    expect([1, 2, 3].map(() => limiter.take("a"))).toEqual([undefined, undefined, undefined]);
  });

  it("takes a key's new limits with the tokens it had left, up to the new burst", () => {
    let now = 0;
    const limiter = createRateLimiter({ burst: 1, perSecond: 1, clock: () => now });
    const slow = { burst: 5, perSecond: 0.1 };
    expect([1, 2, 3].map(() => limiter.take("agent", slow))).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    // Lowered: the two tokens left carry over, capped at the new burst of one.
    const lower = { burst: 1, perSecond: 0.01 };
    expect(limiter.take("agent", lower)).toBeUndefined();
    expect(limiter.take("agent", lower)).toBe(100);
    // Raised: the bucket refills at the new rate from what it held.
    now = 1000;
    expect(limiter.take("agent", { burst: 10, perSecond: 1 })).toBeUndefined();
    expect(limiter.take("agent", { burst: 10, perSecond: 1 })).toBe(1);
  });

  it("forgets the least recently used keys beyond its size", () => {
    const limiter = createRateLimiter({ burst: 1, perSecond: 0.001, maxKeys: 2, clock: () => 0 });
    expect(limiter.take("a")).toBeUndefined();
    expect(limiter.take("b")).toBeUndefined();
    expect(limiter.take("a")).toBeGreaterThan(0);
    // "b" is now the oldest: a third key pushes it out, and it starts afresh.
    expect(limiter.take("c")).toBeUndefined();
    expect(limiter.take("b")).toBeUndefined();
    expect(limiter.take("a")).toBeUndefined();
  });
});

describe("client keys", () => {
  it("counts IPv4 addresses one by one and IPv6 by /64", () => {
    expect(clientKey("198.51.100.7")).toBe("198.51.100.7");
    expect(clientKey("::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(clientKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:0db8:0001:0002:ffff:1:2:3")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientKey("2001:db8:1:3::1")).not.toBe(clientKey("2001:db8:1:2::1"));
  });
});
