/**
 * Scrubs known secret values (connection credentials, tokens resolved from `${env:}` and
 * `${file:}`) out of anything about to leave Airlock: results, errors, log lines.
 */
import type { DetectorName } from "./detector-names.js";
import { MASKED, MIN_MASKED_LENGTH } from "./input-mask.js";
import { detectedInBytes, merged, type Replacement, replaceAndCut } from "./masked-cut.js";
import { DETECTOR_REACH } from "./result-masking.js";
import { createScrubber, formsOf, rangesToReplace } from "./value-scrubber.js";

export const REDACTED = "[redacted]";

export interface Redactor {
  readonly active: boolean;
  redactText(text: string): string;
  redact<T>(value: T): T;
  /**
   * Scrubs raw bytes (binary content) of the secrets and of `masked` values; `detectors` are
   * for bytes cut to size (ByteScrubber.clip).
   */
  bytes(masked?: Iterable<string>, detectors?: readonly DetectorName[]): ByteScrubber;
}

/** Secrets shorter than this would blank out ordinary words; config check warns about them. */
export const MIN_SECRET_LENGTH = 6;

export function createRedactor(secrets: Iterable<string>): Redactor {
  // Encoded forms too: escaped in JSON (log lines) or percent-encoded (echoed URLs).
  const list = [...secrets];
  const scrubber = createScrubber(list, REDACTED, { minLength: MIN_SECRET_LENGTH });
  return {
    active: scrubber.active,
    redactText: scrubber.text,
    redact: scrubber.value,
    bytes: (masked = [], detectors = []) => createByteScrubber(list, masked, detectors),
  };
}

/**
 * Byte-level scrubbing for connectors that read raw response bodies: a credential, or a
 * value of the input that the policy masks, must be removed before the body is decoded, cut
 * to size or base64-encoded, or a reflecting upstream could hand it back in pieces.
 */
export interface ByteScrubber {
  /** Whether there is any value to scrub. */
  readonly active: boolean;
  /**
   * How far to read past a cut before scrubbing: the longest form of any value scrubbed, in
   * bytes, or, with detectors, as far as they need to read to find a value by its start.
   */
  readonly overlap: number;
  scrub(bytes: Buffer): Buffer;
  /**
   * Bytes read (at most a cap and `overlap` past it) as they can be shown: scrubbed, and cut to
   * at most `cap` short of where a piece of a value could sit, the last `overlap - 1` bytes of
   * what was read, which may hold a value's start whose rest was never read. What goes depends
   * on lengths alone, never on whether those bytes match a value: a cut that dropped a tail
   * only when it looked like a secret's start would tell an agent, one guessed byte at a time,
   * what the secret starts with. Bytes read `whole` (to their end) held every value whole, and
   * are cut at `cap`, or a long masked value (its longest form is `overlap`) would leave
   * little or nothing of them. A cut falls before a marker it would split, rather than leave a
   * piece of one. Bytes that are `text` and must be cut have what the detectors find masked
   * first, then the cut falls before a hint it would split and between characters: found
   * after the cut, a value left in part would be missed. (Those not cut are left to the
   * detectors after, with the rest of the result.)
   */
  clip(read: Buffer, cap: number, whole: boolean, text: boolean): ClippedBytes;
  /** The same scrubber with `detectors` for its clips: cheap, it shares what it scrubs. */
  detecting(detectors: readonly DetectorName[]): ByteScrubber;
}

export interface ClippedBytes {
  bytes: Buffer;
  /** Whether anything read or left unread is missing from `bytes`. */
  truncated: boolean;
}

/**
 * Credentials read `[redacted]`; `masked` values (the input fields a rule masks, known per
 * request) read `[masked]`, those of at least MIN_MASKED_LENGTH characters. `detectors` mask
 * what text holds where it is cut to size (see ByteScrubber.clip).
 */
export function createByteScrubber(
  secrets: Iterable<string>,
  masked: Iterable<string> = [],
  detectors: readonly DetectorName[] = [],
): ByteScrubber {
  const bytesOf = (form: string): Buffer[] => {
    const utf8 = Buffer.from(form, "utf8");
    // HTTP sends a header value's Latin-1 letters one byte each, and an upstream echoing
    // the raw header sends them back so; that body is then no UTF-8 and leaves as base64.
    const latin1 = Buffer.from(form, "latin1");
    return latin1.toString("latin1") === form && !latin1.equals(utf8) ? [utf8, latin1] : [utf8];
  };
  // A range holding a credential reads [redacted], whatever masked value it holds too.
  const markers = [Buffer.from(REDACTED, "utf8"), Buffer.from(MASKED, "utf8")];
  const replacing = (values: Iterable<string>, minLength: number, strength: number) =>
    formsOf(values, minLength)
      .flatMap(bytesOf)
      .map((needle) => ({ needle, length: needle.length, strength }));
  const needles = [
    ...replacing(secrets, MIN_SECRET_LENGTH, 0),
    ...replacing(masked, MIN_MASKED_LENGTH, 1),
  ];
  return scrubberOf(needles, markers, detectors);
}

function scrubberOf(
  needles: readonly { needle: Buffer; length: number; strength: number }[],
  markers: readonly Buffer[],
  detectors: readonly DetectorName[],
  mayHold = startsOfTwo(needles),
): ByteScrubber {
  const keep = markers.map((needle) => ({ needle, length: needle.length }));
  const replacements = (bytes: Buffer): Replacement[] =>
    (mayHold(bytes) ? rangesToReplace(bytes, needles, keep) : []).map(
      ({ start, end, strength }) => ({
        start,
        end,
        with: markers[strength]!,
        rank: strength,
      }),
    );
  const applied = (bytes: Buffer, ranges: readonly Replacement[]): Buffer =>
    ranges.length === 0
      ? bytes
      : replaceAndCut(bytes, ranges, Number.POSITIVE_INFINITY, bytes.length, false).bytes;
  const scrub = (bytes: Buffer): Buffer => applied(bytes, replacements(bytes));
  const longest = needles.reduce((longest, form) => Math.max(longest, form.length), 0);
  const overlap = Math.max(longest, detectors.length > 0 ? DETECTOR_REACH : 0);
  const clip = (read: Buffer, cap: number, whole: boolean, text: boolean): ClippedBytes => {
    const ranges = replacements(read);
    let size = read.length;
    for (const { start, end, with: marker } of ranges) size += marker.length - (end - start);
    if (whole && size <= cap) return { bytes: applied(read, ranges), truncated: false };
    const all = text ? merged(ranges, detectedInBytes(read, detectors)) : ranges;
    const limit = whole ? read.length : Math.max(0, read.length - Math.max(0, overlap - 1));
    const { bytes, covered } = replaceAndCut(read, all, cap, limit, text);
    return { bytes, truncated: !whole || covered < read.length };
  };
  return {
    active: needles.length > 0,
    overlap,
    scrub,
    clip,
    detecting: (more) => scrubberOf(needles, markers, more, mayHold),
  };
}

/**
 * Whether bytes may hold one of `needles`: whether two bytes in a row anywhere in them are
 * the first two of one. One pass, against a search for every form of every value: a result's
 * bytea cells are scrubbed one at a time, and thousands of them, each searched for each form
 * of each credential, took longer than all the rest of the result. Sound for needles of two
 * bytes or more (every value scrubbed is at least three characters long); with a shorter one,
 * every bytes may.
 */
function startsOfTwo(needles: readonly { needle: Buffer }[]): (bytes: Buffer) => boolean {
  if (needles.length === 0) return () => false;
  if (needles.some(({ needle }) => needle.length < 2)) return () => true;
  const starts = new Uint8Array(65_536);
  for (const { needle } of needles) starts[(needle[0]! << 8) | needle[1]!] = 1;
  return (bytes) => {
    for (let i = 1; i < bytes.length; i++) {
      if (starts[(bytes[i - 1]! << 8) | bytes[i]!] === 1) return true;
    }
    return false;
  };
}
