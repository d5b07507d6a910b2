import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "./durations.js";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["15m", 900_000],
    ["2h", 7_200_000],
    ["7d", 604_800_000],
    ["1h30m", 5_400_000],
    ["1d2h3m4s5ms", 93_784_005],
    ["0s", 0],
    [" 30s ", 30_000],
  ])("reads %j as %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "  ", "15", "m", "1.5h", "-1s", "1w", "1H", "15 m", "1h 30m", "1m30", "ms", "+5s"])(
    "rejects %j",
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});

describe("formatDuration", () => {
  it.each([
    [0, "0ms"],
    [500, "500ms"],
    [999, "999ms"],
    [1000, "1s"],
    [30_000, "30s"],
    [900_000, "15m"],
    [5_400_000, "1h30m"],
    [7_200_000, "2h"],
    [604_800_000, "7d"],
    [90_061_000, "1d1h1m1s"],
    [86_400_000 + 5_000, "1d5s"],
  ])("writes %i ms as %j", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips through parseDuration for whole seconds", () => {
    for (const ms of [1000, 61_000, 3_599_000, 93_784_000, 604_800_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});
