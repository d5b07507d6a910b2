import { describe, expect, it } from "vitest";
import { parseInstant } from "./instants.js";

describe("parseInstant", () => {
  it("reads dates and times with offsets", () => {
    expect(parseInstant("2026-11-01")).toBe(Date.UTC(2026, 10, 1));
    expect(parseInstant("2024-02-29")).toBe(Date.UTC(2024, 1, 29));
    expect(parseInstant("2026-12-31T23:59:59Z")).toBe(Date.UTC(2026, 11, 31, 23, 59, 59));
    expect(parseInstant("2026-11-01T09:30+01:00")).toBe(Date.UTC(2026, 10, 1, 8, 30));
  });

  it("reads a fraction finer than a millisecond as the next millisecond, never an earlier one", () => {
    // Stored times are whole milliseconds: --since 09:00:00.0005 must leave out an event
    // at 09:00:00.000, and ?until= the same instant must keep it.
    const nine = Date.UTC(2030, 0, 1, 9);
    expect(parseInstant("2030-01-01T09:00:00.0005Z")).toBe(nine + 1);
    expect(parseInstant("2030-01-01T09:00:00.999001Z")).toBe(nine + 1000);
    expect(parseInstant("2030-01-01T10:00:00.0000001+01:00")).toBe(nine + 1);
    expect(parseInstant("2030-01-01T09:00:00.123000000Z")).toBe(nine + 123);
    expect(parseInstant("2030-01-01T09:00:00.1Z")).toBe(nine + 100);
  });

  it("refuses dates and times that do not exist rather than roll them over", () => {
    for (const text of [
      "2026-02-30",
      "2026-02-29",
      "2026-04-31",
      "2026-13-01",
      "2026-01-00",
      "2026-01-01T24:00Z",
      "2026-01-01T23:60Z",
      "2026-01-01T09:30",
      // Past 9999-12-31T23:59:59.999Z once the offset is applied: stored as +010000-…, it
      // would sort before every timestamp.
      "9999-12-31T20:00:00-05:00",
      "9999-12-31T23:59:59.9995Z",
    ]) {
      expect(parseInstant(text), text).toBeUndefined();
    }
  });
});
