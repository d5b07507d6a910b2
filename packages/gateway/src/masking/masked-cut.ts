/**
 * Cutting bytes to a size after hiding what they hold: every value to hide is found in all
 * that was read (past the cut too), and the cut then falls before any value or marker it
 * would split. Found after the cut instead, a value the cut left in part (a card's first
 * digits, a token's start) would no longer be recognised, and a marker cut in two (`[mas`)
 * would read as the text it replaced. (text-cut.ts does the same for text.)
 */
import type { DetectorName } from "./detector-names.js";
import { detectedStretches } from "./result-masking.js";
import { byteOffsets } from "./utf8-offsets.js";

/** A stretch of bytes that is replaced; of stretches that overlap, the lowest `rank`'s text wins. */
export interface Replacement {
  start: number;
  end: number;
  with: Buffer;
  rank: number;
}

/** The rank of a detector's hint: below a credential's marker and a masked value's. */
const HINT_RANK = 2;

/** Two lists of replacements, each in order and apart, as one: those that overlap made one. */
export function merged(a: readonly Replacement[], b: readonly Replacement[]): Replacement[] {
  if (b.length === 0) return [...a];
  if (a.length === 0) return [...b];
  const all = [...a, ...b].sort((x, y) => x.start - y.start || y.end - x.end);
  const out: Replacement[] = [];
  for (const next of all) {
    const last = out.at(-1);
    if (last !== undefined && next.start < last.end) {
      last.end = Math.max(last.end, next.end);
      if (next.rank < last.rank) {
        last.with = next.with;
        last.rank = next.rank;
      }
    } else {
      out.push({ ...next });
    }
  }
  return out;
}

/** What the detectors find in bytes read as UTF-8 text, as replacements of their bytes. */
export function detectedInBytes(bytes: Buffer, detectors: readonly DetectorName[]): Replacement[] {
  if (detectors.length === 0) return [];
  const stretches = detectedStretches(bytes.toString("utf8"), detectors);
  if (stretches.length === 0) return [];
  const starts = byteOffsets(
    bytes,
    stretches.map((s) => s.start),
  );
  const ends = byteOffsets(
    bytes,
    stretches.map((s) => s.end),
    true,
  );
  return stretches.map((stretch, i) => ({
    start: starts[i]!,
    end: ends[i]!,
    with: Buffer.from(stretch.hint, "utf8"),
    rank: HINT_RANK,
  }));
}

/**
 * `bytes` with `replacements` (in order, apart) made, cut to at most `cap` bytes and to what
 * lies before `limit` in `bytes` (past it, a value may start whose rest was never read). The
 * cut falls before a replacement it would split, and, in `text`, before a character it would.
 * `covered` says how much of `bytes` the result stands for.
 */
export function replaceAndCut(
  bytes: Buffer,
  replacements: readonly Replacement[],
  cap: number,
  limit: number,
  text: boolean,
): { bytes: Buffer; covered: number } {
  const parts: Buffer[] = [];
  let size = 0;
  let at = 0;
  /** Copies what it can of the bytes up to `end`; false when it had to stop short. */
  const copy = (end: number): boolean => {
    let stop = Math.min(end, limit, at + (cap - size));
    if (stop < end && text) {
      // Back to the start of the character the cut would split (four bytes at most).
      for (let i = 0; i < 3 && stop > at && (bytes[stop]! & 0xc0) === 0x80; i++) stop--;
    }
    stop = Math.max(stop, at);
    parts.push(bytes.subarray(at, stop));
    size += stop - at;
    at = stop;
    return stop === end;
  };
  let ended = false;
  for (const replacement of replacements) {
    if (!copy(replacement.start)) {
      ended = true;
      break;
    }
    if (replacement.end > limit || size + replacement.with.length > cap) {
      ended = true;
      break;
    }
    parts.push(replacement.with);
    size += replacement.with.length;
    at = replacement.end;
  }
  if (!ended) copy(bytes.length);
  return { bytes: Buffer.concat(parts, size), covered: at };
}
