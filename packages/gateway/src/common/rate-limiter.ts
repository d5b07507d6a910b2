/**
 * A token bucket per key (a client address, an agent): `burst` at once, then `perSecond`. For
 * endpoints anyone may call that write something, such as starting a sign-in, so that one
 * client cannot fill the store, and for agents' submissions. Per process: each replica counts
 * its own.
 */
export interface RateLimiter {
  /**
   * Takes one token for `key`: undefined when allowed, else the whole seconds to wait.
   * `limits` replaces the limiter's own for this key from now on (an agent's, reloaded): the
   * tokens left carry over, up to the new burst.
   */
  take(key: string, limits?: { burst: number; perSecond: number }): number | undefined;
}

export function createRateLimiter(options: {
  burst: number;
  perSecond: number;
  /** Keys remembered at most; the oldest are forgotten first (they get a full bucket). */
  maxKeys?: number;
  clock?: () => number;
}): RateLimiter {
  const maxKeys = options.maxKeys ?? 10_000;
  const clock = options.clock ?? Date.now;
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key, limits = options) {
      const { burst, perSecond } = limits;
      const now = clock();
      const bucket = buckets.get(key);
      let tokens = burst;
      if (bucket) {
        tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
        buckets.delete(key);
      } else if (buckets.size >= maxKeys) {
        buckets.delete(buckets.keys().next().value as string);
      }
      // Re-inserted, so the map's order is the order of last use.
      if (tokens < 1) {
        buckets.set(key, { tokens, at: now });
        return Math.max(1, Math.ceil((1 - tokens) / perSecond));
      }
      buckets.set(key, { tokens: tokens - 1, at: now });
      return undefined;
    },
  };
}
