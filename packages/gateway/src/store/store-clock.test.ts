import { describe, expect, it } from "vitest";
import { StoreClock } from "./store-clock.js";

/** A clock whose monotonic time the test moves; the database's runs `skew` ms ahead of it. */
function clockAt(start = 1000) {
  const state = { mono: start };
  const clock = new StoreClock(
    () => state.mono,
    () => -1,
  );
  return { clock, state };
}

const DB = Date.parse("2030-01-01T09:00:00.000Z");

describe("the store's clock, learned from readings of the database's", () => {
  it("says this process's wall clock until the first reading", () => {
    const { clock } = clockAt();
    expect(clock.known).toBe(false);
    expect(clock.now()).toBe(-1);
  });

  it("runs on from a reading by the monotonic clock, whatever the wall clock says", () => {
    const { clock, state } = clockAt(1000);
    // Read at 1000..1002: the database said DB, some time in between.
    clock.observe(DB, 1000, 1002);
    state.mono = 1002;
    expect(clock.now()).toBeGreaterThanOrEqual(DB);
    expect(clock.now()).toBeLessThanOrEqual(DB + 3);
    state.mono = 61_002;
    expect(clock.now() - DB).toBeGreaterThanOrEqual(60_000);
    expect(clock.now() - DB).toBeLessThanOrEqual(60_003);
  });

  it("keeps the tightest bounds: a slow reading (a busy event loop) moves nothing", () => {
    const { clock, state } = clockAt(0);
    clock.observe(DB, 0, 1);
    // Half a second for an answer, the database's time read early in it.
    state.mono = 5000;
    clock.observe(DB + 4600, 4500, 5000);
    expect(clock.now()).toBe(DB + 5000);
    // Two quick readings that overlap narrow it to where they agree.
    const { clock: narrowed, state: at } = clockAt(0);
    narrowed.observe(DB, 0, 10); // offset in [DB - 10, DB + 1]
    narrowed.observe(DB + 20 - 1, 20, 21); // offset in [DB - 2, DB]
    at.mono = 100;
    expect(narrowed.now()).toBe(DB + 99);
  });

  it("follows a clock that was stepped: a reading that cannot agree replaces the estimate", () => {
    const { clock, state } = clockAt(0);
    clock.observe(DB, 0, 1);
    // Ten seconds on, the database's clock reads a minute ahead of where it was going.
    state.mono = 10_001;
    clock.observe(DB + 70_000, 10_000, 10_001);
    expect(clock.now()).toBe(DB + 70_001);
    // And one stepped back.
    state.mono = 20_001;
    clock.observe(DB + 20_000, 20_000, 20_001);
    expect(clock.now()).toBe(DB + 20_001);
  });

  it("allows for drift between readings: one slightly off after a long quiet is taken in", () => {
    const { clock, state } = clockAt(0);
    clock.observe(DB, 0, 1);
    // A minute on, 20 ms further than the monotonic clock went: within 500 ppm (30 ms).
    state.mono = 60_001;
    clock.observe(DB + 60_020, 60_000, 60_001);
    expect(clock.now()).toBeGreaterThanOrEqual(DB + 60_019);
    expect(clock.now()).toBeLessThanOrEqual(DB + 60_021);
  });

  it("ignores readings that say nothing", () => {
    const { clock, state } = clockAt(0);
    clock.observe(DB, 0, 1);
    clock.observe(Number.NaN, 2, 3);
    clock.observe(DB + 10_000, 5, 4);
    state.mono = 1;
    expect(clock.now()).toBe(DB + 1);
  });
});
