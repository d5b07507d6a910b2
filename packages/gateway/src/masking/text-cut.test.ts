import { describe, expect, it } from "vitest";
import { MASKED } from "./input-mask.js";
import { REDACTED } from "./secret-redactor.js";
import { cutText } from "./text-cut.js";

// Assembled at run time so that secret scanners do not flag this file.
const token = `ghp_${"a1B2c3D4e5".repeat(3)}f6G7h8`;

describe("cutText", () => {
  it("masks what the detectors find before the cut, and never cuts a hint in two", () => {
    const text = `see ${token} and card 4242 4242 4242 4242 done`;
    const seen = new Set<string>();
    for (let limit = 0; limit <= text.length + 5; limit++) {
      const cut = cutText(text, limit, ["secret", "card"]);
      expect(cut.length).toBeLessThanOrEqual(limit);
      // The start of the text masked, ending neither inside a value nor inside its hint.
      const full = "see ghp_*** and card **** 4242 done";
      expect(full.startsWith(cut), cut).toBe(true);
      for (const hint of ["ghp_***", "**** 4242"]) {
        const at = full.indexOf(hint);
        expect(cut.length > at && cut.length < at + hint.length, cut).toBe(false);
      }
      seen.add(cut);
    }
    expect(seen).toContain("see ghp_*** and card **** 4242 done");
    expect(seen).toContain("see ghp_*** and card ");
  });

  it("keeps the markers of earlier scrubbing whole", () => {
    const text = `a ${MASKED} b ${REDACTED} c`;
    const cuts = Array.from({ length: text.length + 1 }, (_, limit) => cutText(text, limit, []));
    for (const cut of cuts) {
      expect(text.startsWith(cut)).toBe(true);
      expect(cut).not.toMatch(/\[[a-z]*$/);
    }
    expect(cuts.at(-1)).toBe(text);
  });

  it("counts what it is told a character costs, and keeps surrogate pairs whole", () => {
    const json = (char: string) => Buffer.byteLength(JSON.stringify(char)) - 2;
    expect(cutText('a"b', 2, [], json)).toBe("a");
    expect(cutText("a😀b", 2, [])).toBe("a");
    expect(cutText("a😀b", 3, [])).toBe("a😀");
  });

  it("returns text that fits as it is, what the detectors find masked", () => {
    expect(cutText("no values here", 100, ["secret"])).toBe("no values here");
    expect(cutText(`t ${token}`, 100, ["secret"])).toBe("t ghp_***");
  });
});
