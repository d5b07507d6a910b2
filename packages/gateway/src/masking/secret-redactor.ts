/**
 * Scrubs known secret values (connection credentials, tokens resolved from `${env:}` and
 * `${file:}`) out of anything about to leave Airlock: results, errors, log lines.
 */
import { encodedForms } from "./input-mask.js";

export const REDACTED = "[redacted]";

export interface Redactor {
  readonly active: boolean;
  redactText(text: string): string;
  redact<T>(value: T): T;
}

/** Secrets shorter than this would blank out ordinary words; config check warns about them. */
export const MIN_SECRET_LENGTH = 6;

export function createRedactor(secrets: Iterable<string>): Redactor {
  const values = [...new Set([...secrets].filter((s) => s.length >= MIN_SECRET_LENGTH))].sort(
    (a, b) => b.length - a.length,
  );
  // Encoded forms too: escaped in JSON (log lines) or percent-encoded (echoed URLs).
  const forms = [...new Set(values.flatMap(encodedForms))].sort((a, b) => b.length - a.length);
  const redactText = (text: string): string => {
    let out = text;
    for (const form of forms) if (out.includes(form)) out = out.split(form).join(REDACTED);
    return out;
  };
  const numeric = new Set(values.filter((v) => /^\d+$/.test(v)));
  const redact = <T>(value: T): T => walk(value, redactText, numeric) as T;
  return { active: forms.length > 0, redactText, redact };
}

function walk(value: unknown, redactText: (text: string) => string, numeric: Set<string>): unknown {
  if (typeof value === "string") return redactText(value);
  if (typeof value === "number" && numeric.has(String(value))) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => walk(item, redactText, numeric));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      // defineProperty, so a key named __proto__ stays a key instead of a prototype
      Object.defineProperty(out, redactText(key), {
        value: walk(child, redactText, numeric),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
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
  const values = [...new Set([...secrets].filter((s) => s.length >= MIN_SECRET_LENGTH))];
  const forms = [...new Set(values.flatMap(encodedForms))]
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
