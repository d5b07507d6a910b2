import { describe, expect, it } from "vitest";
import { parseInstant } from "./instants.js";

describe("parseInstant", () => {
  it("reads dates and times with offsets", () => {
    expect(parseInstant("2026-11-01")).toBe(Date.UTC(2026, 10, 1));
    expect(parseInstant("2024-02-29")).toBe(Date.UTC(2024, 1, 29));
    expect(parseInstant("2026-12-31T23:59:59Z")).toBe(Date.UTC(2026, 11, 31, 23, 59, 59));
    expect(parseInstant("2026-11-01T09:30+01:00")).toBe(Date.UTC(2026, 10, 1, 8, 30));
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
    ]) {
      expect(parseInstant(text), text).toBeUndefined();
    }
  });
});
