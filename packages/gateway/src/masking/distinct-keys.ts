/**
 * Keys that masking or redaction made alike (two e-mails masked to `a***@example.com`, two
 * keys holding a secret) stay apart, so that no entry is lost: `key`, `key (2)`, `key (3)`, …
 */
import { defineOwn } from "../common/own-key.js";

/** Counts per key already given out, kept for one object. */
export type TakenKeys = Map<string, number>;

/**
 * Sets `key` on `target`, or the next free `key (n)` when it is taken. Returns the counts to
 * pass next time, made only when first needed (most objects have no keys alike).
 */
export function defineApart<T>(
  target: Record<string, T>,
  key: string,
  value: T,
  taken: TakenKeys | undefined,
): TakenKeys | undefined {
  if (!Object.hasOwn(target, key)) {
    defineOwn(target, key, value);
    return taken;
  }
  const counts = taken ?? new Map<string, number>();
  // Counted on from the last one given, so that many alike stay linear.
  let n = counts.get(key) ?? 1;
  do n++;
  while (Object.hasOwn(target, `${key} (${n})`));
  counts.set(key, n);
  defineOwn(target, `${key} (${n})`, value);
  return counts;
}
