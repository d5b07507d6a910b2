/**
 * Scrubs known secret values (connection credentials, tokens resolved from `${env:}` and
 * `${file:}`) out of anything about to leave Airlock: results, errors, log lines.
 */
import { createScrubber, formsOf } from "./value-scrubber.js";

export const REDACTED = "[redacted]";

export interface Redactor {
  readonly active: boolean;
  redactText(text: string): string;
  redact<T>(value: T): T;
}

/** Secrets shorter than this would blank out ordinary words; config check warns about them. */
export const MIN_SECRET_LENGTH = 6;

export function createRedactor(secrets: Iterable<string>): Redactor {
  // Encoded forms too: escaped in JSON (log lines) or percent-encoded (echoed URLs).
  const scrubber = createScrubber(secrets, REDACTED, { minLength: MIN_SECRET_LENGTH });
  return { active: scrubber.active, redactText: scrubber.text, redact: scrubber.value };
}

/**
 * Byte-level scrubbing for connectors that read raw response bodies: a credential must be
 * removed before the body is decoded, cut to size or base64-encoded, or a reflecting upstream
 * could hand it back in pieces.
 */
export interface ByteScrubber {
  /** The longest form of any secret, in bytes: read this much past a cut before scrubbing. */
  readonly overlap: number;
  scrub(bytes: Buffer): Buffer;
  /** After a cut: drops a trailing piece that could be the start of a secret. */
  scrubCutEnd(bytes: Buffer): Buffer;
}

export function createByteScrubber(secrets: Iterable<string>): ByteScrubber {
  const forms = formsOf(secrets, MIN_SECRET_LENGTH)
    .map((form) => Buffer.from(form, "utf8"))
    .sort((a, b) => b.length - a.length);
  const marker = Buffer.from(REDACTED, "utf8");
  const scrub = (bytes: Buffer): Buffer => {
    let out = bytes;
    for (const form of forms) {
      let at = out.indexOf(form);
      if (at < 0) continue;
      const parts: Buffer[] = [];
      let from = 0;
      while (at >= 0) {
        parts.push(out.subarray(from, at), marker);
        from = at + form.length;
        at = out.indexOf(form, from);
      }
      parts.push(out.subarray(from));
      out = Buffer.concat(parts);
    }
    return out;
  };
  const scrubCutEnd = (bytes: Buffer): Buffer => {
    let keep = bytes.length;
    for (const form of forms) {
      for (let k = Math.min(form.length - 1, bytes.length); k > 0; k--) {
        if (bytes.subarray(bytes.length - k).equals(form.subarray(0, k))) {
          keep = Math.min(keep, bytes.length - k);
          break;
        }
      }
    }
    return keep === bytes.length ? bytes : Buffer.concat([bytes.subarray(0, keep), marker]);
  };
  return { overlap: forms[0]?.length ?? 0, scrub, scrubCutEnd };
}
