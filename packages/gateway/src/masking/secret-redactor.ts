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
      out[redactText(key)] = walk(child, redactText, numeric);
    }
    return out;
  }
  return value;
}
