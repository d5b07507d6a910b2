/**
 * The one mechanism behind secret redaction and input masking: find given values, in every
 * form they take in derived text, anywhere in a string or a JSON value, and replace them.
 */

import { wellFormed } from "../common/storable-text.js";
import { defineApart, type TakenKeys } from "./distinct-keys.js";

/**
 * The forms a value takes inside derived text: as is, escaped inside a JSON string (as
 * JavaScript escapes it, and as other encoders do: PHP writes `/` as `\/` and, by default,
 * everything past ASCII as `\u00e9`, as Python does; Go writes `<`, `>` and `&` as
 * `\u003c`…, Java's Gson `=` and `'` too; .NET writes those, `"`, `+`, `` ` `` and everything
 * past ASCII in upper case, `\u002B`), and percent-encoded in a URL (both encodings a query
 * string may use).
 */
export function encodedForms(value: string): string[] {
  const json = JSON.stringify(value).slice(1, -1);
  const hex = (c: string) => c.charCodeAt(0).toString(16).padStart(4, "0");
  const unicode = (c: string) => `\\u${hex(c)}`;
  const upper = (c: string) => `\\u${hex(c).toUpperCase()}`;
  const pastAscii = json.replace(/[\u0080-\uffff]/g, unicode);
  const forms = [
    value,
    json,
    json.replaceAll("/", "\\/"),
    pastAscii.replaceAll("/", "\\/"),
    json.replace(/[<>&]/g, unicode),
    json.replace(/[<>&=']/g, unicode),
    // JSON writes a quote as \" only, so every \" in it is one.
    json.replaceAll('\\"', "\\u0022").replace(/[<>&'+`\u0080-\uffff]/g, upper),
    pastAscii,
  ];
  // Text with a lone surrogate has no percent-encoding (encodeURIComponent throws on it).
  if (wellFormed(value)) {
    forms.push(encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2));
  }
  return [...new Set(forms)];
}

/** Every form of every value at least `minLength` long, longest first. */
export function formsOf(values: Iterable<string>, minLength: number): string[] {
  const long = [...new Set([...values].filter((v) => v.length >= minLength))];
  return [...new Set(long.flatMap(encodedForms))].sort((a, b) => b.length - a.length);
}

/** Where to replace: `strength` is the needle's, the strongest (lowest) of those merged. */
export interface Range {
  start: number;
  end: number;
  strength: number;
}

/**
 * The ranges of `haystack` to replace: every occurrence of every needle, those that overlap
 * merged into one (replaced one after the other, the first would leave a part of the second
 * beside its marker), save those lying wholly inside a `keep` (a marker: one written before,
 * by another pass, holds no value, only letters that may spell a short one, "ask" in
 * "[masked]"). In order, apart.
 */
export function rangesToReplace<N extends string | Buffer>(
  haystack: { indexOf(needle: N, from: number): number },
  needles: readonly { needle: N; length: number; strength: number }[],
  keep: readonly { needle: N; length: number }[],
): Range[] {
  let found: Range[] | undefined;
  for (const { needle, length, strength } of needles) {
    if (length === 0) continue;
    // From one past each start: overlapping occurrences ("aaa" twice in "aaaa") are all covered.
    for (let at = haystack.indexOf(needle, 0); at >= 0; at = haystack.indexOf(needle, at + 1)) {
      found ??= [];
      found.push({ start: at, end: at + length, strength });
    }
  }
  if (found === undefined) return [];
  // Markers never overlap one another, so these come out apart and in order.
  const kept: [number, number][] = [];
  for (const { needle, length } of keep) {
    for (
      let at = haystack.indexOf(needle, 0);
      at >= 0;
      at = haystack.indexOf(needle, at + length)
    ) {
      kept.push([at, at + length]);
    }
  }
  kept.sort((a, b) => a[0] - b[0]);
  const inKept = (range: Range): boolean => {
    let low = 0;
    let high = kept.length - 1;
    // The last kept range starting at or before the range.
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (kept[mid]![0] <= range.start) low = mid + 1;
      else high = mid - 1;
    }
    const around = kept[high];
    return around !== undefined && range.end <= around[1];
  };
  const ranges: Range[] = [];
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  for (const range of found) {
    if (kept.length > 0 && inKept(range)) continue;
    const last = ranges.at(-1);
    if (last !== undefined && range.start < last.end) {
      last.end = Math.max(last.end, range.end);
      last.strength = Math.min(last.strength, range.strength);
    } else {
      ranges.push({ ...range });
    }
  }
  return ranges;
}

export interface Scrubber {
  /** Whether there is anything to scrub at all. */
  readonly active: boolean;
  text(text: string): string;
  /** A copy of a JSON value with strings (keys too) scrubbed and matching numbers replaced. */
  value<T>(value: T): T;
}

export function createScrubber(
  values: Iterable<string>,
  marker: string,
  options: {
    /** Shorter values would blank out unrelated text. */
    minLength: number;
    /** Values replaced when a whole string or number equals them, however short. */
    exact?: Iterable<string>;
  },
): Scrubber {
  const list = [...values];
  const forms = formsOf(list, options.minLength);
  const numbers = new Set(list.filter((v) => v.length >= options.minLength));
  const whole = new Set(options.exact ?? []);
  const needles = forms.map((form) => ({ needle: form, length: form.length, strength: 0 }));
  const keep = [{ needle: marker, length: marker.length }];
  const text = (input: string): string => {
    const ranges = rangesToReplace(input, needles, keep);
    if (ranges.length === 0) return input;
    let out = "";
    let copied = 0;
    for (const { start, end } of ranges) {
      out += input.slice(copied, start) + marker;
      copied = end;
    }
    return out + input.slice(copied);
  };
  const walk = (value: unknown): unknown => {
    if ((typeof value === "string" || typeof value === "number") && whole.has(String(value))) {
      return marker;
    }
    if (typeof value === "string") return text(value);
    if (typeof value === "number") return numbers.has(String(value)) ? marker : value;
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      // Two keys that each held a secret read alike once scrubbed: both are kept.
      let taken: TakenKeys | undefined;
      for (const [key, child] of Object.entries(value)) {
        taken = defineApart(out, text(key), walk(child), taken);
      }
      return out;
    }
    return value;
  };
  const active = forms.length > 0 || whole.size > 0;
  // Most values hold none of the forms, and one native JSON.stringify shows that faster than a
  // walk. Sound because JSON escapes each character on its own, so text holding a form holds
  // its escaped form once encoded; surrogates are the exception (a lone one is escaped, one of
  // a pair is not), so forms with any always take the walk. It looks at what JSON would keep:
  // the values scrubbed are JSON (results, error bodies) and leave as JSON, so a key holding
  // undefined or a non-finite number, which JSON drops or writes as null, never leaves at all.
  const escapedForms = forms.some((form) => /[\ud800-\udfff]/.test(form))
    ? undefined
    : forms.map((form) => JSON.stringify(form).slice(1, -1));
  const mayHold = (value: unknown): boolean => {
    if (whole.size > 0 || escapedForms === undefined) return true;
    const json = JSON.stringify(value);
    return json === undefined || escapedForms.some((form) => json.includes(form));
  };
  return {
    active,
    text,
    value: <T>(value: T) => (active && mayHold(value) ? (walk(value) as T) : value),
  };
}
