import { describe, expect, it } from "vitest";
import { MASKED } from "../masking/input-mask.js";
import { cutPreview, PREVIEW_CHARS } from "./preview-cut.js";

describe("cutPreview", () => {
  it("keeps text that fits as it is", () => {
    expect(cutPreview("")).toBe("");
    const fits = "a".repeat(PREVIEW_CHARS);
    expect(cutPreview(fits)).toBe(fits);
  });

  it("cuts longer text to the limit and says how long it was", () => {
    const long = "a".repeat(PREVIEW_CHARS + 1);
    expect(cutPreview(long)).toBe(
      `${"a".repeat(PREVIEW_CHARS)}\n… (${PREVIEW_CHARS + 1} characters)`,
    );
  });

  it("falls short of a marker it would split", () => {
    const text = `${"a".repeat(PREVIEW_CHARS - 3)}${MASKED} and more`;
    expect(cutPreview(text)).toBe(
      `${"a".repeat(PREVIEW_CHARS - 3)}\n… (${text.length} characters)`,
    );
  });

  it("cuts as it is told to, with the limit, and only what is too long", () => {
    const seen: [string, number][] = [];
    const cut = (text: string, limit: number) => {
      seen.push([text, limit]);
      return "cut";
    };
    expect(cutPreview("short", cut)).toBe("short");
    const long = "b".repeat(PREVIEW_CHARS * 2);
    expect(cutPreview(long, cut)).toBe(`cut\n… (${PREVIEW_CHARS * 2} characters)`);
    expect(seen).toEqual([[long, PREVIEW_CHARS]]);
  });
});
