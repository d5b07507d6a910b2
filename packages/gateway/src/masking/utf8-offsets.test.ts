import { describe, expect, it } from "vitest";
import { byteOffsets } from "./utf8-offsets.js";

/** Bytes of every kind: ASCII, well-formed sequences of each length, and ill-formed ones. */
function bytesOfEveryKind(seed: number, size: number): Buffer {
  const pieces = [
    [0x41],
    [0xc3, 0xa9],
    [0xe2, 0x82, 0xac],
    [0xf0, 0x9f, 0x98, 0x80],
    [0x80],
    [0xff],
    [0xc3],
    [0xe0, 0x80],
    [0xe2, 0x82],
    [0xed, 0xa0, 0x80],
    [0xf0, 0x9f, 0x98],
    [0xf4, 0x90, 0x80, 0x80],
    [0xc0, 0xaf],
  ];
  let state = seed;
  const out: number[] = [];
  while (out.length < size) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    out.push(...pieces[state % pieces.length]!);
  }
  return Buffer.from(out.slice(0, size));
}

describe("byteOffsets", () => {
  it("finds, for each position of the decoded text, where the bytes decoding to it start", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const bytes = bytesOfEveryKind(seed, 80);
      const text = bytes.toString("utf8");
      const positions = Array.from({ length: text.length + 1 }, (_, i) => i);
      const starts = byteOffsets(bytes, positions);
      const ends = byteOffsets(bytes, positions, true);
      for (const position of positions) {
        const inPair = /[\ud800-\udbff]/.test(text[position - 1] ?? "");
        const start = starts[position]!;
        const end = ends[position]!;
        if (inPair) {
          // Inside a character's two units: its start, or its end.
          expect(bytes.subarray(0, start).toString("utf8")).toBe(text.slice(0, position - 1));
          expect(bytes.subarray(0, end).toString("utf8")).toBe(text.slice(0, position + 1));
        } else {
          expect(start, `seed ${seed} at ${position}`).toBe(end);
          expect(bytes.subarray(0, start).toString("utf8")).toBe(text.slice(0, position));
          expect(bytes.subarray(start).toString("utf8")).toBe(text.slice(position));
        }
      }
    }
  });

  it("places positions past the text at the end of the bytes", () => {
    expect(byteOffsets(Buffer.from("é"), [0, 1, 5])).toEqual([0, 2, 2]);
  });
});
