/**
 * Cutting text to a size without leaving part of a value or of a marker: what the result
 * detectors find is masked before the cut, and the cut falls before a hint or a marker it would
 * split (masked-cut.ts does the same for bytes).
 */
import type { DetectorName } from "./detector-names.js";
import { MASKED } from "./input-mask.js";
import { DETECTOR_REACH, detectedStretches } from "./result-masking.js";
import { REDACTED } from "./secret-redactor.js";

/** Where the markers of earlier scrubbing sit in text, to be kept whole. */
function markersIn(text: string): { start: number; end: number; with: string }[] {
  const found: { start: number; end: number; with: string }[] = [];
  for (const marker of [REDACTED, MASKED]) {
    for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + marker.length)) {
      found.push({ start: at, end: at + marker.length, with: marker });
    }
  }
  return found.sort((a, b) => a.start - b.start);
}

/** UTF-16 units: what `String.length` counts. */
const units = (char: string): number => char.length;

/**
 * `text`, scrubbed already of credentials and masked values, with what `detectors` find in it
 * masked, cut to what `cost` (per character, at least its UTF-16 units; those unless given)
 * counts as at most `limit`. The cut falls before a hint or a marker it would split, and
 * between characters.
 */
export function cutText(
  fullText: string,
  limit: number,
  detectors: readonly DetectorName[],
  cost: (char: string) => number = units,
): string {
  // No more than `limit` units are kept: the detectors read as far past them as they need to,
  // and no further (a server's refusal can run to megabytes).
  const text = fullText.slice(0, limit + DETECTOR_REACH);
  const stretches = [
    ...detectedStretches(text, detectors).map((s) => ({ ...s, with: s.hint })),
    ...markersIn(text),
  ].sort((a, b) => a.start - b.start || b.end - a.end);
  let out = "";
  let used = 0;
  let at = 0;
  const copy = (end: number): boolean => {
    let stop = at;
    // By code point, so that a surrogate pair is kept or left whole.
    for (const char of text.slice(at, end)) {
      const size = cost(char);
      if (used + size > limit) break;
      used += size;
      stop += char.length;
    }
    out += text.slice(at, stop);
    at = stop;
    return stop === end;
  };
  for (const stretch of stretches) {
    // A marker inside a stretch the detectors found goes with it.
    if (stretch.start < at) continue;
    if (!copy(stretch.start)) return out;
    let size = 0;
    for (const char of stretch.with) size += cost(char);
    if (used + size > limit) return out;
    out += stretch.with;
    used += size;
    at = stretch.end;
  }
  copy(text.length);
  return out;
}
