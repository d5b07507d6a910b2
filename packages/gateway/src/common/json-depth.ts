/**
 * A bound on how deep a result may nest. The redactor, the masks and the digest walk results
 * by recursion, so a result nested thousands deep (PostgreSQL returns jsonb 6,000 deep) would
 * overflow the stack after the action ran, and its outcome would be lost. The same walk
 * turns numbers JSON cannot hold (an upstream's 1e999 parses as Infinity) into text, which
 * the digest would otherwise refuse after the action ran.
 */
import type { Json } from "./canonical-json.js";
import { defineOwn } from "./own-key.js";

/** Far beyond what systems answer, far below what overflows the stack. */
export const MAX_JSON_DEPTH = 256;

/** What stands for a part of a result nested past the bound. */
export const clippedNote = `[nested deeper than ${MAX_JSON_DEPTH} levels: not shown]`;

/**
 * The value itself when it nests no deeper than MAX_JSON_DEPTH arrays and objects and holds
 * only finite numbers; otherwise a copy in which what lies deeper reads as a note and an
 * infinite number as "Infinity" or "-Infinity". Neither walk recurses past the bound.
 */
export function clipDepth(value: Json): Json {
  return deeper(value, 1) ? clip(value, 1) : value;
}

function deeper(value: Json, depth: number): boolean {
  if (typeof value === "number") return !Number.isFinite(value);
  if (value === null || typeof value !== "object") return false;
  if (depth > MAX_JSON_DEPTH) return true;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const child of children) if (deeper(child, depth + 1)) return true;
  return false;
}

function clip(value: Json, depth: number): Json {
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (value === null || typeof value !== "object") return value;
  if (depth > MAX_JSON_DEPTH) return clippedNote;
  if (Array.isArray(value)) return value.map((item) => clip(item, depth + 1));
  const out: Record<string, Json> = {};
  for (const [key, child] of Object.entries(value)) defineOwn(out, key, clip(child, depth + 1));
  return out;
}
