/** Loading data, paging through it, and keeping relative times fresh. */
import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { isAbort } from "./api.js";

export interface Resource<T> {
  data?: T;
  error?: unknown;
  /** True while a load runs; `data` keeps what was shown before, so refreshes do not flicker. */
  loading: boolean;
  reload: () => void;
  /** Replaces the data with a fresher copy the caller already has (a vote's answer). */
  set: (data: T) => void;
}

/** Runs `load` now and whenever it changes (memoise it with useCallback), and on reload(). */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({
    loading: true,
  });
  const running = useRef<AbortController | null>(null);
  const again = useRef(false);

  const reload = useCallback(() => {
    // A load under way ends first, and shows what it read, then one more runs: aborted at
    // each refresh, a load slower than the refreshes (a far network, an inbox of several
    // pages, live changes every few hundred ms) would never show anything.
    if (running.current && !running.current.signal.aborted) {
      again.current = true;
      return;
    }
    again.current = false;
    const controller = new AbortController();
    running.current = controller;
    const settled = () => {
      if (controller.signal.aborted) return;
      running.current = null;
      if (again.current) reload();
    };
    setState((s) => ({ ...s, loading: true }));
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, loading: false });
        settled();
      },
      (error: unknown) => {
        if (!(controller.signal.aborted || isAbort(error))) {
          setState((s) => ({ ...s, error, loading: false }));
        }
        settled();
      },
    );
  }, [load]);

  useEffect(() => {
    reload();
    return () => running.current?.abort();
  }, [reload]);

  const set = useCallback((data: T) => {
    running.current?.abort();
    setState({ data, loading: false });
  }, []);

  return { ...state, reload, set };
}

export interface Paged<T> {
  items: T[];
  /** The cursor of the next page; undefined on the last one. */
  next?: string;
  error?: unknown;
  loading: boolean;
  /** Whether the first page has arrived (so an empty list means "nothing", not "not yet"). */
  loaded: boolean;
  more: () => void;
  reload: () => void;
}

/**
 * A list fetched page by page: the first page whenever `loadPage` changes or on reload(),
 * further pages appended by more().
 */
export function usePaged<T>(
  loadPage: (
    cursor: string | undefined,
    signal: AbortSignal,
  ) => Promise<{ items: T[]; next?: string }>,
): Paged<T> {
  const [state, setState] = useState<{
    items: T[];
    next?: string;
    error?: unknown;
    loading: boolean;
    loaded: boolean;
  }>({ items: [], loading: true, loaded: false });
  const running = useRef<AbortController | null>(null);

  const fetchPage = useCallback(
    (cursor: string | undefined) => {
      running.current?.abort();
      const controller = new AbortController();
      running.current = controller;
      setState((s) => ({ ...s, loading: true, error: undefined }));
      loadPage(cursor, controller.signal).then(
        (page) => {
          if (controller.signal.aborted) return;
          setState((s) => ({
            items: cursor === undefined ? page.items : [...s.items, ...page.items],
            next: page.next,
            loading: false,
            loaded: true,
          }));
        },
        (error: unknown) => {
          if (controller.signal.aborted || isAbort(error)) return;
          setState((s) => ({ ...s, error, loading: false }));
        },
      );
    },
    [loadPage],
  );

  const reload = useCallback(() => fetchPage(undefined), [fetchPage]);

  useEffect(() => {
    reload();
    return () => running.current?.abort();
  }, [reload]);

  const { next } = state;
  const more = useCallback(() => {
    if (next !== undefined) fetchPage(next);
  }, [fetchPage, next]);

  return { ...state, more, reload };
}

/** One clock for every relative time on the page, ticking while anything shows one. */
const clock = {
  now: Date.now(),
  listeners: new Set<() => void>(),
  timer: undefined as number | undefined,
};

function subscribeClock(listener: () => void): () => void {
  clock.listeners.add(listener);
  if (clock.timer === undefined) {
    clock.now = Date.now();
    clock.timer = window.setInterval(() => {
      clock.now = Date.now();
      for (const notify of clock.listeners) notify();
    }, 15_000);
  }
  return () => {
    clock.listeners.delete(listener);
    if (clock.listeners.size === 0) {
      window.clearInterval(clock.timer);
      clock.timer = undefined;
    }
  };
}

/** The current time, fresh to within 15 seconds, for "3 minutes ago" and "expires in". */
export function useNow(): number {
  return useSyncExternalStore(subscribeClock, () => clock.now);
}

export function usePageTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Airlock`;
  }, [title]);
}
