/**
 * Hides the input fields a rule names (`mask.input`) from everyone but the connector: what
 * reviewers, logs, audit events and notifications see is the masked copy.
 */
import type { Json } from "../common/canonical-json.js";

export const MASKED = "[masked]";

/** Why a mask path is malformed, or undefined. Paths are dot-separated keys; `*` matches any key or index. */
export function maskPathProblem(path: string): string | undefined {
  const segments = path.split(".");
  if (segments.some((s) => s.length === 0))
    return "has an empty segment; write paths like body.card_number";
  if (segments[0] === "input") return 'is relative to the input already; drop the leading "input."';
  return undefined;
}

export interface MaskedInput {
  masked: Json;
  /** The string forms of every hidden value, to scrub from derived text such as previews. */
  hidden: string[];
}

export function maskInput(input: Json, paths: readonly string[]): MaskedInput {
  if (paths.length === 0) return { masked: input, hidden: [] };
  const hidden: string[] = [];
  let masked = input;
  for (const path of paths) masked = maskAt(masked, path.split("."), hidden);
  return { masked, hidden };
}

function maskAt(value: Json, segments: string[], hidden: string[]): Json {
  const [head, ...rest] = segments;
  if (head === undefined) {
    collect(value, hidden);
    return MASKED;
  }
  if (Array.isArray(value)) {
    return value.map((item, index) =>
      head === "*" || head === String(index) ? maskAt(item, rest, hidden) : item,
    );
  }
  if (value && typeof value === "object") {
    const out: Record<string, Json> = {};
    for (const [key, child] of Object.entries(value)) {
      out[key] = head === "*" || head === key ? maskAt(child, rest, hidden) : child;
    }
    return out;
  }
  return value;
}

function collect(value: Json, hidden: string[]): void {
  if (value === null || typeof value === "boolean") return;
  if (typeof value === "string" || typeof value === "number") {
    hidden.push(String(value));
    return;
  }
  for (const child of Array.isArray(value) ? value : Object.values(value)) collect(child, hidden);
}

/**
 * The forms a value takes inside derived text: as is, escaped inside a JSON string, and
 * percent-encoded in a URL (both encodings a query string may use).
 */
export function encodedForms(value: string): string[] {
  return [
    ...new Set([
      value,
      JSON.stringify(value).slice(1, -1),
      encodeURIComponent(value),
      new URLSearchParams({ v: value }).toString().slice(2),
    ]),
  ];
}

/** Replaces every occurrence of the hidden values, in any encoded form, in derived text (previews, facts). */
export function scrubHidden<T>(
  value: T,
  hidden: readonly string[],
  options: { exact?: boolean } = {},
): T {
  // Values of one or two characters would blank out unrelated text; masking them by path is enough.
  const long = [...new Set(hidden.filter((h) => h.length >= 3))];
  const needles = [...new Set(long.flatMap(encodedForms))].sort((a, b) => b.length - a.length);
  // With `exact`, a whole value equal to a hidden one goes too, however short (facts).
  const whole = options.exact ? new Set(hidden) : new Set<string>();
  if (needles.length === 0 && whole.size === 0) return value;
  const scrubText = (text: string) => {
    let out = text;
    for (const needle of needles) if (out.includes(needle)) out = out.split(needle).join(MASKED);
    return out;
  };
  const walk = (v: unknown): unknown => {
    if ((typeof v === "string" || typeof v === "number") && whole.has(String(v))) return MASKED;
    if (typeof v === "string") return scrubText(v);
    if (typeof v === "number" && long.includes(String(v))) return MASKED;
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      return Object.fromEntries(Object.entries(v).map(([k, c]) => [scrubText(k), walk(c)]));
    }
    return v;
  };
  return walk(value) as T;
}
