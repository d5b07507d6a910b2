/**
 * Long-polls wait here, woken by the store's change feed when their request changes; no
 * timer polls the store. Watch before reading, so a change between the read and the wait
 * is never missed.
 */
import type { RequestChange, Store } from "../store/store.js";

export interface Watch {
  /** Resolves on the next change to the request, or false when `ms` pass or `signal` aborts. */
  next(ms: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

export interface Waiters {
  watch(id: string): Watch;
  /** True once the gateway is stopping: waits end at once. */
  readonly closed: boolean;
  close(): void;
}

export function createWaiters(store: Store): Waiters {
  const watchers = new Map<string, Set<{ changed: boolean; wake?: () => void }>>();
  let closed = false;
  const wake = (set: Set<{ changed: boolean; wake?: () => void }>) => {
    for (const watcher of set) {
      watcher.changed = true;
      watcher.wake?.();
    }
  };
  const unsubscribe = store.subscribe((change: RequestChange) => {
    const set = watchers.get(change.id);
    if (set) wake(set);
  });
  // A change the feed did not deliver may concern anyone: everyone reads again.
  const unsubscribeMissed = store.onMissedChanges(() => {
    for (const set of watchers.values()) wake(set);
  });

  return {
    get closed() {
      return closed;
    },
    watch(id) {
      const watcher: { changed: boolean; wake?: () => void } = { changed: false };
      let set = watchers.get(id);
      if (!set) {
        set = new Set();
        watchers.set(id, set);
      }
      set.add(watcher);
      const close = () => {
        set.delete(watcher);
        if (set.size === 0 && watchers.get(id) === set) watchers.delete(id);
      };
      return {
        close,
        next(ms, signal) {
          if (watcher.changed) {
            watcher.changed = false;
            return Promise.resolve(true);
          }
          if (ms <= 0 || signal?.aborted || closed) return Promise.resolve(false);
          return new Promise<boolean>((resolve) => {
            const finish = (changed: boolean) => {
              clearTimeout(timer);
              signal?.removeEventListener("abort", onAbort);
              watcher.wake = undefined;
              watcher.changed = false;
              resolve(changed);
            };
            const onAbort = () => finish(false);
            const timer = setTimeout(() => finish(false), ms);
            signal?.addEventListener("abort", onAbort, { once: true });
            watcher.wake = () => finish(true);
          });
        },
      };
    },
    close() {
      closed = true;
      unsubscribe();
      unsubscribeMissed();
      // Waiting callers get their answer now rather than at their deadline.
      for (const set of watchers.values()) for (const watcher of set) watcher.wake?.();
      watchers.clear();
    },
  };
}
