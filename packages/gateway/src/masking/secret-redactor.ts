/**
 * Scrubs known secret values (connection credentials, tokens resolved from `${env:}` and
 * `${file:}`) out of anything about to leave Airlock: results, errors, log lines.
 */
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
  // JSON-escaped forms too: a secret with quotes or backslashes appears escaped in log lines.
  const forms = [...new Set(values.flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]))];
  const redactText = (text: string): string => {
    let out = text;
    for (const form of forms) if (out.includes(form)) out = out.split(form).join(REDACTED);
    return out;
  };
  const redact = <T>(value: T): T => walk(value, redactText) as T;
  return { active: forms.length > 0, redactText, redact };
}

function walk(value: unknown, redactText: (text: string) => string): unknown {
  if (typeof value === "string") return redactText(value);
  if (Array.isArray(value)) return value.map((item) => walk(item, redactText));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value))
      out[redactText(key)] = walk(child, redactText);
    return out;
  }
  return value;
}
