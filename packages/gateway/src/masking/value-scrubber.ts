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

/** Where `needle` is in `haystack` from `from` on, or -1. */
const indexIn = <N extends string | Buffer>(haystack: N, needle: N, from: number): number =>
  typeof haystack === "string"
    ? haystack.indexOf(needle as string, from)
    : (haystack as Buffer).indexOf(needle as Buffer, from);

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
  haystack: N,
  needles: readonly Needle<N>[],
  keep: readonly { needle: N; length: number }[],
): Range[] {
  let found = needles.length > FEW_NEEDLES ? occurrences(haystack, needles) : undefined;
  if (found === undefined) {
    for (const { needle, length, strength } of needles) {
      if (length === 0) continue;
      // From one past each start: overlapping occurrences ("aaa" twice in "aaaa") are all covered.
      for (let at = indexIn(haystack, needle, 0); at >= 0; at = indexIn(haystack, needle, at + 1)) {
        found ??= [];
        found.push({ start: at, end: at + length, strength });
      }
    }
  }
  if (found === undefined || found.length === 0) return [];
  // Markers never overlap one another, so these come out apart and in order.
  const kept: [number, number][] = [];
  for (const { needle, length } of keep) {
    for (
      let at = indexIn(haystack, needle, 0);
      at >= 0;
      at = indexIn(haystack, needle, at + length)
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

/** A value to find, in the form it takes in the haystack (text, or bytes). */
export interface Needle<N extends string | Buffer> {
  needle: N;
  length: number;
  strength: number;
}

/**
 * Up to this many needles, each is searched for on its own (native, and fast); past it, all
 * of them at once, in one pass over the haystack. Searched one by one, thousands of values
 * (an agent's list of items whose masked field each holds one) were each searched for in
 * each of thousands of strings: minutes of the gateway doing nothing else.
 */
const FEW_NEEDLES = 64;

/**
 * Aho–Corasick's automaton over `needles` (by UTF-16 unit, or byte): a trie of them, with,
 * for each node, the longest proper suffix of its text that is a node too (`fail`), and the
 * nearest such suffix that ends a needle (`suffixEnds`). Its edges are in one map, keyed by
 * node and unit, which takes far less memory than a map per node.
 */
interface Automaton {
  edges: Map<number, number>;
  fail: Int32Array;
  suffixEnds: Int32Array;
  /** The needles (their indexes) that end at a node, for the nodes where one does. */
  ends: Map<number, number[]>;
}

/** Units reach 0xffff: a node's edges are keyed past them. */
const UNITS = 0x10000;

/**
 * The most needle units an automaton is built for: its nodes take some fifty bytes each, the
 * needles themselves two. Past it (a megabyte of masked text spelled out in many escaped
 * forms), the needles are searched for one by one, slowly but in the memory they take.
 */
const MAX_AUTOMATON_UNITS = 1 << 21;

const unitAt = (text: string | Buffer, i: number): number =>
  typeof text === "string" ? text.charCodeAt(i) : text[i]!;

// Built once per list of needles (a scrubber's), on its first haystack; null when too large.
const automata = new WeakMap<readonly Needle<string | Buffer>[], Automaton | null>();

function automatonOf(needles: readonly Needle<string | Buffer>[]): Automaton | null {
  let automaton = automata.get(needles);
  if (automaton !== undefined) return automaton;
  let units = 0;
  for (const { length } of needles) units += length;
  automaton = units > MAX_AUTOMATON_UNITS ? null : built(needles);
  automata.set(needles, automaton);
  return automaton;
}

function built(needles: readonly Needle<string | Buffer>[]): Automaton {
  const edges = new Map<number, number>();
  const ends = new Map<number, number[]>();
  // Each node's parent, the unit that leads to it, and its depth; the root is node 0.
  const parent: number[] = [0];
  const unitTo: number[] = [0];
  const depth: number[] = [0];
  needles.forEach(({ needle, length }, index) => {
    if (length === 0) return;
    let node = 0;
    for (let i = 0; i < length; i++) {
      const unit = unitAt(needle, i);
      let child = edges.get(node * UNITS + unit);
      if (child === undefined) {
        child = parent.length;
        edges.set(node * UNITS + unit, child);
        parent.push(node);
        unitTo.push(unit);
        depth.push(depth[node]! + 1);
      }
      node = child;
    }
    const list = ends.get(node);
    if (list) list.push(index);
    else ends.set(node, [index]);
  });
  const nodes = parent.length;
  // By depth, so that a node's suffixes (all shallower) are settled before it.
  const starts = new Int32Array(nodes + 1);
  for (let node = 0; node < nodes; node++) starts[depth[node]! + 1]!++;
  for (let d = 1; d <= nodes; d++) starts[d]! += starts[d - 1]!;
  const byDepth = new Int32Array(nodes);
  for (let node = 0; node < nodes; node++) byDepth[starts[depth[node]!]!++] = node;
  const fail = new Int32Array(nodes);
  const suffixEnds = new Int32Array(nodes).fill(-1);
  for (const node of byDepth) {
    const from = parent[node]!;
    if (node === 0 || from === 0) continue;
    const unit = unitTo[node]!;
    let suffix = fail[from]!;
    let to = edges.get(suffix * UNITS + unit);
    while (to === undefined && suffix !== 0) {
      suffix = fail[suffix]!;
      to = edges.get(suffix * UNITS + unit);
    }
    const longest = to ?? 0;
    fail[node] = longest;
    suffixEnds[node] = ends.has(longest) ? longest : suffixEnds[longest]!;
  }
  return { edges, fail, suffixEnds, ends };
}

/**
 * Every occurrence of every needle in `haystack`, in one pass (not in order); undefined when
 * there are too many needles to build the automaton for.
 */
function occurrences<N extends string | Buffer>(
  haystack: N,
  needles: readonly Needle<N>[],
): Range[] | undefined {
  const automaton = automatonOf(needles);
  if (automaton === null) return undefined;
  const { edges, fail, suffixEnds, ends } = automaton;
  const found: Range[] = [];
  let node = 0;
  for (let i = 0; i < haystack.length; i++) {
    const unit = unitAt(haystack, i);
    let to = edges.get(node * UNITS + unit);
    while (to === undefined && node !== 0) {
      node = fail[node]!;
      to = edges.get(node * UNITS + unit);
    }
    node = to ?? 0;
    for (let at = ends.has(node) ? node : suffixEnds[node]!; at > 0; at = suffixEnds[at]!) {
      for (const index of ends.get(at)!) {
        const { length, strength } = needles[index]!;
        found.push({ start: i + 1 - length, end: i + 1, strength });
      }
    }
  }
  return found;
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
  // Many are looked for in one pass, as in text.
  const escapedNeedles =
    escapedForms !== undefined && escapedForms.length > FEW_NEEDLES
      ? escapedForms.map((form) => ({ needle: form, length: form.length, strength: 0 }))
      : undefined;
  const mayHold = (value: unknown): boolean => {
    if (whole.size > 0 || escapedForms === undefined) return true;
    const json = JSON.stringify(value);
    if (json === undefined) return true;
    const found = escapedNeedles && occurrences(json, escapedNeedles);
    return found ? found.length > 0 : escapedForms.some((form) => json.includes(form));
  };
  return {
    active,
    text,
    value: <T>(value: T) => (active && mayHold(value) ? (walk(value) as T) : value),
  };
}
