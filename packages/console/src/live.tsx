/**
 * Live updates: one EventSource on GET /v1/events for the whole app. Pages subscribe and
 * refetch what changed, a little debounced, so nobody has to reload to see a new request
 * or a vote cast elsewhere.
 */
import {
  createContext,
  type ReactNode,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
} from "react";
import type { RequestChange } from "./api-types.js";
import { readable } from "./readable.js";

export type LiveStatus = "connecting" | "live" | "reconnecting" | "offline";

/** A change to one request, or null once a stream opens, when changes may have been missed. */
type Listener = (change: RequestChange | null) => void;

interface LiveFeed {
  status: LiveStatus;
  subscribe: (listener: Listener) => () => void;
}

const LiveContext = createContext<LiveFeed>({ status: "offline", subscribe: () => () => {} });

/** How long to wait before opening a new stream after the browser gave up on one. */
const RETRY_MS = 15_000;

function parseChange(data: unknown): RequestChange | undefined {
  if (typeof data !== "string") return undefined;
  try {
    const value: unknown = readable(JSON.parse(data));
    if (typeof value === "object" && value !== null && "id" in value) {
      const change = value as RequestChange;
      if (typeof change.id === "string") return change;
    }
  } catch {
    // A malformed event is skipped; the next one or a reconnect brings the page up to date.
  }
  return undefined;
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const [status, setStatus] = useState<LiveStatus>("connecting");
  const listeners = useRef(new Set<Listener>());

  useEffect(() => {
    let source: EventSource | undefined;
    let retry: number | undefined;
    let interrupted = false;
    const emit = (change: RequestChange | null) => {
      for (const listener of listeners.current) listener(change);
    };
    const close = () => {
      window.clearTimeout(retry);
      source?.close();
      source = undefined;
    };
    const open = () => {
      if (source || document.visibilityState === "hidden") return;
      setStatus(interrupted ? "reconnecting" : "connecting");
      const stream = new EventSource("/v1/events");
      source = stream;
      stream.addEventListener("open", () => {
        setStatus("live");
        // Pages fetched before the stream was open (on a first load too): what changed in
        // between would be missed, so they fetch again now.
        emit(null);
        interrupted = false;
      });
      stream.addEventListener("change", (event) => {
        const change = parseChange((event as MessageEvent).data);
        if (change) emit(change);
      });
      // The gateway missed changes (a replica's database feed was cut): fetch again.
      stream.addEventListener("resync", () => emit(null));
      stream.addEventListener("error", () => {
        interrupted = true;
        if (stream.readyState === EventSource.CLOSED) {
          // The browser gives up on a non-200 answer (a gateway restart, an expired session).
          setStatus("offline");
          close();
          retry = window.setTimeout(open, RETRY_MS);
        } else {
          setStatus("reconnecting");
        }
      });
    };
    // A browser allows only six connections to one host over HTTP/1.1, and reviewers open
    // many approval links in tabs: only a visible page keeps a stream open, and one shown
    // again reconnects and refetches what it may have missed.
    const pause = () => {
      if (!source) return;
      close();
      interrupted = true;
    };
    const onVisibility = () => (document.visibilityState === "hidden" ? pause() : open());
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("pagehide", pause);
    window.addEventListener("pageshow", open);
    open();
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      window.removeEventListener("pagehide", pause);
      window.removeEventListener("pageshow", open);
      close();
    };
  }, []);

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  const feed = useMemo(() => ({ status, subscribe }), [status, subscribe]);
  return <LiveContext.Provider value={feed}>{children}</LiveContext.Provider>;
}

export function useLiveStatus(): LiveStatus {
  return useContext(LiveContext).status;
}

/**
 * Calls `refresh` once, `delayMs` after the first change that `matches` (or after a stream
 * opens), so a burst of changes costs one refetch. Later changes do not push it back: on a
 * gateway where something changes more often than every `delayMs`, it would never come.
 */
export function useLiveRefresh(
  matches: (change: RequestChange) => boolean,
  refresh: () => void,
  delayMs = 250,
): void {
  const { subscribe } = useContext(LiveContext);
  const latest = useRef({ matches, refresh });
  latest.current = { matches, refresh };

  useEffect(() => {
    let timer: number | undefined;
    const unsubscribe = subscribe((change) => {
      if (change && !latest.current.matches(change)) return;
      if (timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        latest.current.refresh();
      }, delayMs);
    });
    return () => {
      window.clearTimeout(timer);
      unsubscribe();
    };
  }, [subscribe, delayMs]);
}
