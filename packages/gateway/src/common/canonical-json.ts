/**
 * Canonical JSON (RFC 8785 style): object keys sorted by UTF-16 code units, no whitespace,
 * ECMAScript number formatting. The request hash and the audit chain both depend on it, so
 * two equal values always encode to the same bytes. Written as plain loops: it runs several
 * times for every action.
 */
import { createHmac, hash } from "node:crypto";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function canonicalJson(value: unknown): string {
  return encode(value);
}

function encode(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value))
        throw new TypeError("canonical JSON cannot encode a non-finite number");
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ",";
          const item: unknown = value[i];
          out += item === undefined ? "null" : encode(item);
        }
        return `${out}]`;
      }
      const record = value as Record<string, unknown>;
      const keys = sortedKeys(record);
      let out = "{";
      let first = true;
      for (const key of keys) {
        const item = record[key];
        if (item === undefined) continue;
        if (!first) out += ",";
        first = false;
        out += `${JSON.stringify(key)}:${encode(item)}`;
      }
      return `${out}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot encode a ${typeof value}`);
  }
}

/**
 * An object's keys by UTF-16 code units, as `sort()` orders them. Small objects (nearly all)
 * are sorted in place by insertion: `sort()` allocates a work array on every call, and this
 * runs for every object of every action, several times.
 */
function sortedKeys(record: object): string[] {
  const keys = Object.keys(record);
  if (keys.length > 16) return keys.sort();
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i]!;
    let j = i - 1;
    for (; j >= 0 && keys[j]! > key; j--) keys[j + 1] = keys[j]!;
    keys[j + 1] = key;
  }
  return keys;
}

export function sha256Hex(text: string | Buffer): string {
  return hash("sha256", text, "hex");
}

/** The SHA-256 of a value's canonical JSON encoding, hex. */
export function digest(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}

/** HMAC-SHA256 of the canonical JSON: only a holder of `key` can test a guess against it. */
export function keyedDigest(key: string, value: unknown): string {
  return createHmac("sha256", key).update(canonicalJson(value)).digest("hex");
}
