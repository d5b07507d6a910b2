/**
 * Binary content inside a result (base64: an http body that is no text, an MCP image's
 * `data`; hex: PostgreSQL's bytea) is scrubbed as the bytes it encodes, not as text: a value
 * in those bytes does not show in their encoding, and a masked value of a few letters or
 * digits turns up in the encoding by chance (three characters once in every 262,144 or so of
 * base64, three digits once in every 4,096 of hex), where replacing it would corrupt data that
 * never held the value.
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

/** How a text encodes bytes: read into them, and written from them. */
export interface ByteCodec {
  decode(text: string): Buffer;
  encode(bytes: Buffer): string;
}

const base64Codec: ByteCodec = {
  decode: (text) => Buffer.from(text, "base64"),
  encode: (bytes) => bytes.toString("base64"),
};

const byteaCodec: ByteCodec = {
  decode: (text) => Buffer.from(text.slice(2), "hex"),
  encode: (bytes) => `\\x${bytes.toString("hex")}`,
};

/**
 * Text that encodes bytes by `codec`, scrubbed as those bytes (scrubBytes); the very text back
 * when they held nothing to scrub (however it spelt them), else the scrubbed bytes encoded.
 */
export function scrubEncoded(
  text: string,
  codec: ByteCodec,
  scrubber: ByteScrubber,
  detectors: readonly DetectorName[] = [],
): string {
  if (!scrubber.active && detectors.length === 0) return text;
  const bytes = codec.decode(text);
  const scrubbed = scrubBytes(bytes, scrubber, detectors);
  return scrubbed === bytes ? text : codec.encode(scrubbed);
}

/** Base64 text scrubbed as its bytes (scrubEncoded). */
export function scrubBase64(
  base64: string,
  scrubber: ByteScrubber,
  detectors: readonly DetectorName[] = [],
): string {
  return scrubEncoded(base64, base64Codec, scrubber, detectors);
}

/**
 * PostgreSQL's bytea as Airlock writes it (`\x` and hex digits) scrubbed as its bytes
 * (scrubEncoded). Its hex text is never searched: Airlock wrote it, so nobody wrote a value
 * into it, and a masked value of hex digits (250) turns up there by chance.
 */
export function scrubHex(
  hex: string,
  scrubber: ByteScrubber,
  detectors: readonly DetectorName[] = [],
): string {
  return scrubEncoded(hex, byteaCodec, scrubber, detectors);
}

/**
 * Bytes scrubbed of credentials and masked values and, when they are UTF-8 text (a CSV served
 * as application/octet-stream, a text resource's blob, text kept as bytea), masked as that
 * text by `detectors`; the very bytes back when they held nothing. Bytes that are no UTF-8 (an
 * image) are not read by the detectors: a pattern found in them by chance (an e-mail-like run
 * turns up in a few of every hundred megabytes of random bytes) would be replaced, corrupting
 * the data.
 */
function scrubBytes(
  bytes: Buffer,
  scrubber: ByteScrubber,
  detectors: readonly DetectorName[],
): Buffer {
  const scrubbed = scrubber.scrub(bytes);
  if (detectors.length === 0 || !isUtf8(scrubbed)) return scrubbed;
  const text = scrubbed.toString("utf8");
  const masked = maskText(text, detectors).text;
  return masked === text ? scrubbed : Buffer.from(masked, "utf8");
}

/** How binary content is written in a result, and where. */
export interface BinaryFields {
  /** Base64, as an http body that is no text or an MCP image is. */
  base64?: readonly FieldPath[];
  /** `\x` and hex digits, as PostgreSQL's bytea is. */
  hex?: readonly FieldPath[];
}

/** Each encoding as Airlock or encoders write it, whole: nothing else in the string. */
const written = {
  // Whole groups of four, padded.
  base64: /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/,
  hex: /^\\x(?:[0-9a-f]{2})*$/,
} as const;

/**
 * `value` with the binary content at `binary` passed to `scrub` (by its encoding; one `scrub`
 * has no function for is text) and the rest of it to `text`. A string there that is not written so (a server's own words where an
 * image's data belongs: decoders skip what they cannot read) goes to `text` with the rest. A
 * path `text` no longer leads to (a key on the way held a masked value, and reads otherwise)
 * loses its data rather than pass it unscrubbed.
 */
export function scrubApart(
  value: Json,
  binary: BinaryFields,
  text: (value: Json) => Json,
  scrub: { [E in keyof BinaryFields]?: (data: string) => string },
): Json {
  const set: { path: FieldPath; data: string; scrub: (data: string) => string }[] = [];
  for (const encoding of ["base64", "hex"] as const) {
    const scrubbing = scrub[encoding];
    for (const path of scrubbing ? (binary[encoding] ?? []) : []) {
      const data = at(value, path);
      if (typeof data === "string" && written[encoding].test(data)) {
        set.push({ path, data, scrub: scrubbing! });
      }
    }
  }
  if (set.length === 0) return text(value);
  const out = text(
    replacedAll(
      value,
      set.map(({ path }) => ({ path, to: null })),
    ),
  );
  return replacedAll(
    out,
    set
      .filter(({ path }) => at(out, path) === null)
      .map(({ path, data, scrub }) => ({ path, to: scrub(data) })),
  );
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

/**
 * A copy of `value` with each change's `to` where its `path` (which leads somewhere) leads,
 * made along those paths only, each container on them copied once: a result's thousands of
 * bytea cells cost one copy of its rows.
 */
function replacedAll(
  value: Json,
  changes: readonly { path: FieldPath; to: Json }[],
  depth = 0,
): Json {
  if (changes.length === 0) return value;
  const here = changes.find(({ path }) => path.length === depth);
  if (here) return here.to;
  const byKey = new Map<string | number, { path: FieldPath; to: Json }[]>();
  for (const change of changes) {
    const key = change.path[depth]!;
    const list = byKey.get(key);
    if (list) list.push(change);
    else byKey.set(key, [change]);
  }
  if (Array.isArray(value)) {
    const copy = [...value];
    for (const [key, list] of byKey) {
      copy[key as number] = replacedAll(copy[key as number] as Json, list, depth + 1);
    }
    return copy;
  }
  const object = value as Record<string, Json>;
  const copy: Record<string, Json> = {};
  for (const [name, child] of Object.entries(object)) defineOwn(copy, name, child);
  for (const [key, list] of byKey) {
    defineOwn(copy, String(key), replacedAll(object[key] as Json, list, depth + 1));
  }
  return copy;
}
