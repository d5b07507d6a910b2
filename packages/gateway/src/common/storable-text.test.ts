import { describe, expect, it } from "vitest";
import { textProblem, truncateText, wellFormed } from "./storable-text.js";

describe("storable text", () => {
  it("accepts ordinary text, pairs of surrogates included", () => {
    expect(textProblem("Customer was charged twice 🚀 é")).toBeUndefined();
    expect(wellFormed("🚀")).toBe(true);
  });

  it("names lone surrogates and NUL characters", () => {
    expect(textProblem("a \ud800 b")).toMatch(/lone surrogate/);
    expect(textProblem("\udc00")).toMatch(/lone surrogate/);
    expect(textProblem("a\u0000b")).toMatch(/NUL/);
  });

  it("truncates without cutting a surrogate pair in two", () => {
    expect(truncateText("abc", 5)).toBe("abc");
    expect(truncateText("abcdef", 3)).toBe("abc");
    // "🚀" is two UTF-16 units: a cut after its first would leave a lone surrogate.
    const cut = truncateText(`ab🚀`, 3);
    expect(cut).toBe("ab");
    expect(wellFormed(cut)).toBe(true);
    expect(truncateText(`ab🚀`, 4)).toBe("ab🚀");
  });
});
