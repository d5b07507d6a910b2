import { describe, expect, it, vi } from "vitest";
import type { Json } from "../common/canonical-json.js";
import { MASKED, maskInput, scrubHidden } from "./input-mask.js";
import { createByteScrubber, createRedactor, REDACTED } from "./secret-redactor.js";
import { rangesToReplace } from "./value-scrubber.js";

describe("scrubbing several values", () => {
  it("leaves no part of either of two values that overlap in the text", () => {
    expect(scrubHidden("ref abcd1234wxyz.", ["abcd1234", "1234wxyz"])).toBe(`ref ${MASKED}.`);
    expect(scrubHidden("41111 and 1111", ["4111", "1111"])).toBe(`${MASKED} and ${MASKED}`);
    const redactor = createRedactor(["token-abc123", "abc123-more"]);
    expect(redactor.redactText("x token-abc123-more y")).toBe(`x ${REDACTED} y`);
  });

  it("does not take a marker it wrote, or one already there, for a value it holds", () => {
    // "ask" is in "[masked]": the card's marker stays whole.
    expect(scrubHidden("card 4111111111111111, code ask", ["4111111111111111", "ask"])).toBe(
      `card ${MASKED}, code ${MASKED}`,
    );
    // Text scrubbed once (by a connector) and again (by the executor) reads the same.
    const once = scrubHidden("code ask", ["ask"]);
    expect(scrubHidden(once, ["ask"])).toBe(once);
    expect(createRedactor(["redacted"]).redactText(`a ${REDACTED}`)).toBe(`a ${REDACTED}`);
    // A value reaching past a marker is replaced, with the marker.
    expect(scrubHidden(`${MASKED}]x`, ["ed]]x"])).toBe(`[mask${MASKED}`);
  });

  it("does the same on bytes, each range marked as the strongest value in it", () => {
    const scrubber = createByteScrubber(["token-abc123"], ["abc123-card", "ask"]);
    const scrub = (text: string) => scrubber.scrub(Buffer.from(text)).toString();
    expect(scrub("x token-abc123-card y")).toBe(`x ${REDACTED} y`);
    expect(scrub("card abc123-card, code ask")).toBe(`card ${MASKED}, code ${MASKED}`);
    expect(scrub(`${MASKED} ask`)).toBe(`${MASKED} ${MASKED}`);
  });
});

describe("scrubbing many values", () => {
  it("hides thousands of masked values in an input without searching each string for each", () => {
    // `mask: [body.card]` hides the card of every item of a list: each of its thousands of
    // values was searched for in each of the input's strings, which an agent could grow
    // until the gateway did nothing else for minutes.
    const items = Array.from({ length: 1000 }, (_, i) => ({ card: `card-${i}`, note: `n${i}` }));
    const search = vi.spyOn(String.prototype, "indexOf");
    let masked: Json;
    try {
      masked = maskInput({ body: items, note: "card-7 and card-999" }, ["body.card"]).masked;
      expect(search.mock.calls.length).toBeLessThan(100 * items.length);
    } finally {
      search.mockRestore();
    }
    expect(masked).toEqual({
      body: items.map((item) => ({ card: MASKED, note: item.note })),
      note: `${MASKED} and ${MASKED}`,
    });
  });

  it("builds the scrubber of a request's hidden values once, however often they scrub", () => {
    const items = Array.from({ length: 500 }, (_, i) => ({ card: `card-${i}-0000` }));
    const encode = vi.spyOn(globalThis, "encodeURIComponent");
    try {
      const { hidden } = maskInput({ body: items }, ["body.card"]);
      const built = encode.mock.calls.length;
      expect(built).toBeGreaterThanOrEqual(items.length);
      expect(scrubHidden("see card-7-0000", hidden)).toBe(`see ${MASKED}`);
      expect(scrubHidden({ note: "card-9-0000" }, hidden)).toEqual({ note: MASKED });
      expect(encode.mock.calls.length).toBe(built);
      // Facts scrub whole values too: a scrubber of its own, built once as well.
      expect(scrubHidden(["card-1-0000"], hidden, { exact: true })).toEqual([MASKED]);
      const exact = encode.mock.calls.length;
      expect(scrubHidden(["card-2-0000"], hidden, { exact: true })).toEqual([MASKED]);
      expect(encode.mock.calls.length).toBe(exact);
    } finally {
      encode.mockRestore();
    }
  });

  /** Every occurrence of every needle, merged as rangesToReplace does, found the plain way. */
  const expected = <N extends string | Buffer>(
    haystack: N,
    needles: readonly { needle: N; length: number; strength: number }[],
    keep: readonly { needle: N; length: number }[],
  ) => {
    const at = (needle: N, i: number) =>
      typeof haystack === "string"
        ? haystack.startsWith(needle as string, i)
        : (haystack as Buffer).subarray(i, i + needle.length).equals(needle as Buffer);
    const kept: [number, number][] = [];
    for (const { needle, length } of keep) {
      for (let i = 0; i + length <= haystack.length; i++) {
        if (at(needle, i) && !kept.some(([s, e]) => i < e && s < i + length)) {
          kept.push([i, i + length]);
        }
      }
    }
    const found = needles
      .flatMap(({ needle, length, strength }) =>
        Array.from({ length: haystack.length + 1 }, (_, i) => i)
          .filter((i) => length > 0 && i + length <= haystack.length && at(needle, i))
          .map((start) => ({ start, end: start + length, strength })),
      )
      .filter(({ start, end }) => !kept.some(([s, e]) => s <= start && end <= e))
      .sort((a, b) => a.start - b.start || b.end - a.end);
    const out: { start: number; end: number; strength: number }[] = [];
    for (const range of found) {
      const last = out.at(-1);
      if (last && range.start < last.end) {
        last.end = Math.max(last.end, range.end);
        last.strength = Math.min(last.strength, range.strength);
      } else out.push({ ...range });
    }
    return out;
  };

  it("finds with many values just what it finds with few, in text and in bytes", () => {
    // Few letters, so that values overlap, nest and repeat; some twice, at two strengths.
    let seed = 7;
    const random = (below: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % below;
    };
    const word = (min: number, max: number) =>
      Array.from({ length: min + random(max - min + 1) }, () => "abc[]"[random(5)]).join("");
    for (let round = 0; round < 40; round++) {
      const values = Array.from({ length: round % 2 === 0 ? 200 : 5 }, () => word(1, 6));
      const text = word(0, 300);
      const keepText = [{ needle: "[a]", length: 3 }];
      const needles = values.map((value, i) => ({
        needle: value,
        length: value.length,
        strength: i % 3 === 0 ? 0 : 1,
      }));
      expect(rangesToReplace(text, needles, keepText), text).toEqual(
        expected(text, needles, keepText),
      );
      const bytes = Buffer.from(text, "latin1");
      const byteNeedles = needles.map((n) => ({ ...n, needle: Buffer.from(n.needle, "latin1") }));
      const keepBytes = [{ needle: Buffer.from("[a]"), length: 3 }];
      expect(rangesToReplace(bytes, byteNeedles, keepBytes), text).toEqual(
        expected(bytes, byteNeedles, keepBytes),
      );
    }
    // Values past the first byte's range, and a surrogate pair, in text.
    const wide = Array.from({ length: 100 }, (_, i) => `é${String.fromCodePoint(0x1f600 + i)}`);
    const needles = wide.map((needle) => ({ needle, length: needle.length, strength: 0 }));
    const text = `x${wide[42]}y${wide[99]}${wide[0]}`;
    expect(rangesToReplace(text, needles, [])).toEqual(expected(text, needles, []));
    expect(rangesToReplace(text, needles, [])).toHaveLength(3);
  });
});
