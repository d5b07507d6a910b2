/**
 * Sets `key` on `target` as an own, plain property. Assignment would make a key named
 * `__proto__` (which JSON.parse, PostgreSQL's jsonb and upstreams all produce) the object's
 * prototype instead, and the entry would be lost.
 */
export function defineOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}
