/**
 * Base64 inside a result (an http body that is no text, an MCP image's `data`) is scrubbed as
 * the bytes it encodes, not as text: a masked value of a few letters or digits turns up in
 * base64 text by chance (three characters once in every 262,144 or so), and replacing it
 * there would corrupt data that never held the value.
 */
import { isUtf8 } from "node:buffer";
import type { Json } from "../common/canonical-json.js";
import { defineOwn } from "../common/own-key.js";
import type { DetectorName } from "./detector-names.js";
import { maskText } from "./result-masking.js";
import { type ByteScrubber, MIN_SECRET_LENGTH } from "./secret-redactor.js";

/** Where a value sits in a result: object keys and array indexes, from the top. */
export type FieldPath = readonly (string | number)[];

/**
 * Values searched in base64 text as well as in the bytes it encodes: those long enough never
 * to turn up there by chance (six characters, once in some 69 billion), so that a server
 * writing one verbatim into a base64 field is caught. Credentials are at least this long.
 */
export function longValues(values: readonly string[]): string[] {
  return values.filter((value) => value.length >= MIN_SECRET_LENGTH);
}

/**
 * Base64 text scrubbed as its bytes and, when they are UTF-8 text (a CSV served as
 * application/octet-stream, a text resource's blob), masked as that text by `detectors`; the
 * very text back when they held nothing to scrub. Bytes that are no UTF-8 (an image) are not
 * read by the detectors: a pattern found in them by chance (an e-mail-like run turns up in a
 * few of every hundred megabytes of random bytes) would be replaced, corrupting the data.
 */
export function scrubBase64(
  base64: string,
  scrubber: ByteScrubber,
  detectors: readonly DetectorName[] = [],
): string {
  if (!scrubber.active && detectors.length === 0) return base64;
  const bytes = Buffer.from(base64, "base64");
  let scrubbed = scrubber.scrub(bytes);
  if (detectors.length > 0 && isUtf8(scrubbed)) {
    const text = scrubbed.toString("utf8");
    const masked = maskText(text, detectors).text;
    if (masked !== text) scrubbed = Buffer.from(masked, "utf8");
  }
  return scrubbed === bytes ? base64 : scrubbed.toString("base64");
}

/** Base64 as encoders write it: whole groups of four, padded, nothing else. */
const canonicalBase64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * `value` with its base64 strings at `binary` passed to `base64` and the rest of it to `text`.
 * A string there that is no base64 as encoders write it (a server's own words where an
 * image's data belongs: decoders skip what they cannot read) goes to `text` with the rest. A
 * path `text` no longer leads to (a key on the way held a masked value, and reads otherwise)
 * loses its data rather than pass it unscrubbed.
 */
export function scrubApart(
  value: Json,
  binary: readonly FieldPath[],
  text: (value: Json) => Json,
  base64: (data: string) => string,
): Json {
  const set: { path: FieldPath; data: string }[] = [];
  let rest = value;
  for (const path of binary) {
    const data = at(rest, path);
    if (typeof data !== "string" || !canonicalBase64.test(data)) continue;
    set.push({ path, data });
    rest = replaced(rest, path, null);
  }
  let out = text(rest);
  for (const { path, data } of set) {
    if (at(out, path) === null) out = replaced(out, path, base64(data));
  }
  return out;
}

function at(value: Json | undefined, path: FieldPath): Json | undefined {
  let node = value;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    if (Array.isArray(node)) node = typeof key === "number" ? node[key] : undefined;
    else node = Object.hasOwn(node, key) ? node[key] : undefined;
  }
  return node;
}

/** A copy of `value`, made along `path` (which leads somewhere) only, with `to` there. */
function replaced(value: Json, path: FieldPath, to: Json): Json {
  const [key, ...rest] = path;
  if (key === undefined) return to;
  if (Array.isArray(value)) {
    const copy = [...value];
    copy[key as number] = replaced(copy[key as number] as Json, rest, to);
    return copy;
  }
  const object = value as Record<string, Json>;
  const copy: Record<string, Json> = {};
  for (const [name, child] of Object.entries(object)) defineOwn(copy, name, child);
  defineOwn(copy, String(key), replaced(object[key] as Json, rest, to));
  return copy;
}
