/**
 * Hides the input fields a rule names (`mask.input`) from everyone but the connector: what
 * reviewers, logs, audit events and notifications see is the masked copy.
 */
import type { Json } from "../common/canonical-json.js";
import { defineOwn } from "../common/own-key.js";
import { defineApart, type TakenKeys } from "./distinct-keys.js";
import { createScrubber } from "./value-scrubber.js";

export const MASKED = "[masked]";

/**
 * Hidden values shorter than this are hidden by path only (where the input is shown), never
 * searched for in derived text: one or two characters would blank out unrelated text.
 */
export const MIN_MASKED_LENGTH = 3;

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

/**
 * With `topKeys: false`, the input's own keys stay as sent (those below are hidden as ever):
 * what a connector builds its preview from, since it reads the operation's fields by them (an
 * agent whose masked value is "body" would otherwise take the body out of the preview). The
 * preview is scrubbed as text after, for the connectors whose fields the agent names (an MCP
 * tool's arguments).
 */
export function maskInput(
  input: Json,
  paths: readonly string[],
  options: { topKeys?: boolean } = {},
): MaskedInput {
  if (paths.length === 0) return { masked: input, hidden: [] };
  const hidden: string[] = [];
  let masked = input;
  // Keys match whatever their case: an agent's `X-Api-Key` is the `x-api-key` a rule masks,
  // and masking a little more is the safe way to err.
  for (const path of paths) masked = maskAt(masked, path.toLowerCase().split("."), hidden);
  return { masked: hideRepeats(masked, hidden, options.topKeys ?? true), hidden };
}

/**
 * The agent may repeat a hidden value in a field no rule masks (a note, the query, the path, a
 * header's name, a key of the body): it is hidden there too, as in facts, or reviewers would
 * read it in the input beside the `[masked]` field. Keys that read alike once hidden are kept
 * apart (`[masked]`, `[masked] (2)`), so that no entry is lost.
 */
function hideRepeats(value: Json, hidden: readonly string[], topKeys: boolean): Json {
  const scrubber = scrubberFor(hidden, false);
  if (!scrubber.active) return value;
  const numbers = new Set(hidden.filter((v) => v.length >= MIN_MASKED_LENGTH));
  const walk = (node: Json, top: boolean): Json => {
    if (typeof node === "string") return scrubber.text(node);
    if (typeof node === "number") return numbers.has(String(node)) ? MASKED : node;
    if (Array.isArray(node)) return node.map((item) => walk(item, false));
    if (node === null || typeof node !== "object") return node;
    if (!top || topKeys) return keysHidden(node, scrubber, (child) => walk(child, false));
    const out: Record<string, Json> = {};
    for (const [key, child] of Object.entries(node)) defineOwn(out, key, walk(child, false));
    return out;
  };
  return walk(value, true);
}

/** An object with its keys scrubbed, kept apart when they read alike, and `value` of each child. */
function keysHidden(
  node: { [key: string]: Json },
  scrubber: Scrubber,
  value: (child: Json) => Json,
): Json {
  const out: Record<string, Json> = {};
  let taken: TakenKeys | undefined;
  for (const [key, child] of Object.entries(node)) {
    taken = defineApart(out, scrubber.text(key), value(child), taken);
  }
  return out;
}

/**
 * What `maskInput` with `topKeys: false` returned (the input a preview is built from) with the
 * input's own keys hidden too: what `maskInput` returns by default, from one masking of the
 * input. Everything below the top is hidden alike either way; masking again would walk the
 * whole input, and build a scrubber for its hidden values anew (with thousands, a third of a
 * second), where this scrubs the top's keys with the one `hidden` already has.
 */
export function withTopKeysHidden({ masked, hidden }: MaskedInput): Json {
  if (
    hidden.length === 0 ||
    masked === null ||
    typeof masked !== "object" ||
    Array.isArray(masked)
  ) {
    return masked;
  }
  const scrubber = scrubberFor(hidden, false);
  if (!scrubber.active) return masked;
  return keysHidden(masked, scrubber, (child) => child);
}

function maskAt(value: Json, segments: string[], hidden: string[]): Json {
  const [head, ...rest] = segments;
  if (head === undefined) {
    collect(value, hidden);
    return MASKED;
  }
  if (typeof value === "string") {
    // The path goes on into text: a body sent as JSON text or form fields, say. Whatever
    // the upstream will make of that text, the masked field may be in it, so all of it is
    // hidden. Parsing it here instead would show reviewers one reading of text the upstream
    // may read another way (duplicate keys, numbers beyond 2^53, invalid JSON it accepts).
    collect(value, hidden);
    // Read as it most likely is, though, the field's own value is hidden too wherever else
    // the agent repeats it (its justification, say).
    collectWithin(value, segments, hidden);
    return MASKED;
  }
  if (Array.isArray(value)) {
    // A key applies to every item: `body.card` hides the card in `body: [{card}]` too, so
    // that wrapping a field in a list does not show it.
    if (head !== "*" && !/^\d+$/.test(head)) {
      return value.map((item) => maskAt(item, segments, hidden));
    }
    return value.map((item, index) =>
      head === "*" || head === String(index) ? maskAt(item, rest, hidden) : item,
    );
  }
  if (value && typeof value === "object") {
    const out: Record<string, Json> = {};
    for (const [key, child] of Object.entries(value)) {
      // defineOwn: a key named __proto__ set by assignment would vanish from what reviewers
      // see, while the connector still sends it.
      defineOwn(
        out,
        key,
        head === "*" || head === key.toLowerCase() ? maskAt(child, rest, hidden) : child,
      );
    }
    return out;
  }
  return value;
}

/** The values at `segments` in text read as JSON, or as form fields, when it reads so. */
function collectWithin(text: string, segments: string[], hidden: string[]): void {
  let parsed: Json | undefined;
  try {
    parsed = JSON.parse(text.replace(/^\ufeff/, "")) as Json;
  } catch {
    if (segments.length === 1 && text.includes("=")) {
      const fields = new URLSearchParams(text);
      for (const [key, field] of fields) {
        if (segments[0] === "*" || segments[0] === key.toLowerCase()) hidden.push(field);
      }
    }
    return;
  }
  if (parsed !== null && typeof parsed === "object") maskAt(parsed, segments, hidden);
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
 * Replaces every occurrence of the hidden values, in any encoded form, in derived text
 * (previews, facts, errors). With `exact`, a whole value equal to a hidden one goes too,
 * however short (facts).
 */
export function scrubHidden<T>(
  value: T,
  hidden: readonly string[],
  options: { exact?: boolean } = {},
): T {
  // Nothing hidden (no mask, the usual case) scrubs nothing: skip building a scrubber for it.
  if (hidden.length === 0) return value;
  return scrubberFor(hidden, options.exact === true).value(value);
}

type Scrubber = ReturnType<typeof createScrubber>;

/** The scrubbers built for a list of hidden values, while the list lives. */
const scrubbers = new WeakMap<readonly string[], { plain?: Scrubber; exact?: Scrubber }>();

/**
 * A request's hidden values scrub its input, preview, notes, facts, views and outcome: their
 * scrubber is built once for them all, since with thousands of values (a list's masked
 * field) a build is costly. A list is complete before it is first scrubbed with.
 */
function scrubberFor(hidden: readonly string[], exact: boolean): Scrubber {
  let built = scrubbers.get(hidden);
  if (!built) {
    built = {};
    scrubbers.set(hidden, built);
  }
  const kind = exact ? "exact" : "plain";
  built[kind] ??= createScrubber(hidden, MASKED, {
    minLength: MIN_MASKED_LENGTH,
    ...(exact ? { exact: hidden } : {}),
  });
  return built[kind];
}
