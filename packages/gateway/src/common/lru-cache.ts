/**
 * What is remembered per outside identity (a chat's users), whose number the gateway does not
 * choose: each entry until its own time, and at most `max` of them, the least recently used
 * forgotten first. A read or a write is a Map operation or two, whatever the size.
 */
export interface LruCache<V> {
  /** The value, while `now` is before its time; a value read is the most recently used. */
  get(key: string, now: number): V | undefined;
  /** Remembers `value` until `until` (ms since the epoch), in place of any before. */
  set(key: string, value: V, until: number): void;
  delete(key: string): void;
  readonly size: number;
}

export function createLruCache<V>(max: number): LruCache<V> {
  // A Map iterates in insertion order: each use re-inserts its key, so the first is the least
  // recently used.
  const entries = new Map<string, { value: V; until: number }>();
  return {
    get(key, now) {
      const entry = entries.get(key);
      if (!entry) return undefined;
      entries.delete(key);
      if (entry.until <= now) return undefined;
      entries.set(key, entry);
      return entry.value;
    },
    set(key, value, until) {
      entries.delete(key);
      entries.set(key, { value, until });
      while (entries.size > max) entries.delete(entries.keys().next().value as string);
    },
    delete(key) {
      entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}
