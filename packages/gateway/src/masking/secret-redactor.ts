/**
 * Scrubs known secret values (connection credentials, tokens resolved from `${env:}` and
 * `${file:}`) out of anything about to leave Airlock: results, errors, log lines.
 */
import { MASKED, MIN_MASKED_LENGTH } from "./input-mask.js";
import { createScrubber, formsOf, rangesToReplace } from "./value-scrubber.js";

export const REDACTED = "[redacted]";

export interface Redactor {
  readonly active: boolean;
  redactText(text: string): string;
  redact<T>(value: T): T;
  /** Scrubs raw bytes (binary content) of the secrets and of `masked` values. */
  bytes(masked?: Iterable<string>): ByteScrubber;
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
    bytes: (masked = []) => createByteScrubber(list, masked),
  };
}

/**
 * Byte-level scrubbing for connectors that read raw response bodies: a credential, or a
 * value of the input that the policy masks, must be removed before the body is decoded, cut
 * to size or base64-encoded, or a reflecting upstream could hand it back in pieces.
 */
export interface ByteScrubber {
  /** The longest form of any value scrubbed, in bytes: read this much past a cut before scrubbing. */
  readonly overlap: number;
  scrub(bytes: Buffer): Buffer;
  /**
   * Cuts scrubbed bytes to at most `cap`, short of where a piece of a value could sit: the
   * scrubbed window's last `overlap - 1` bytes, which may hold a value's start whose rest
   * was never read. What goes depends on lengths alone, never on whether those bytes match a
   * value: a cut that dropped a tail only when it looked like a secret's start would tell an
   * agent, one guessed byte at a time, what the secret starts with. Bytes read `whole` (to
   * their end) held every value whole, scrubbed now: they are cut at `cap`, or a long masked
   * value (its longest form is `overlap`) would leave little or nothing of them.
   */
  cut(scrubbed: Buffer, cap: number, whole: boolean): Buffer;
}

/**
 * Credentials read `[redacted]`; `masked` values (the input fields a rule masks, known per
 * request) read `[masked]`, those of at least MIN_MASKED_LENGTH characters.
 */
export function createByteScrubber(
  secrets: Iterable<string>,
  masked: Iterable<string> = [],
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
  const keep = markers.map((needle) => ({ needle, length: needle.length }));
  const scrub = (bytes: Buffer): Buffer => {
    const ranges = rangesToReplace(bytes, needles, keep);
    if (ranges.length === 0) return bytes;
    const parts: Buffer[] = [];
    let copied = 0;
    for (const { start, end, strength } of ranges) {
      parts.push(bytes.subarray(copied, start), markers[strength]!);
      copied = end;
    }
    parts.push(bytes.subarray(copied));
    return Buffer.concat(parts);
  };
  const overlap = needles.reduce((longest, form) => Math.max(longest, form.length), 0);
  const cut = (scrubbed: Buffer, cap: number, whole: boolean): Buffer => {
    const unread = whole ? 0 : Math.max(0, overlap - 1);
    return scrubbed.subarray(0, Math.max(0, Math.min(cap, scrubbed.length - unread)));
  };
  return { overlap, scrub, cut };
}
