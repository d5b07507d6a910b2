/**
 * A small router over `location.pathname`: the gateway serves index.html for each of these
 * paths, and in-app links move with history.pushState instead of reloading.
 */
import { useSyncExternalStore } from "react";

export type Route =
  | { page: "inbox" }
  | { page: "request"; id: string }
  | { page: "history" }
  | { page: "audit" }
  | { page: "rules" }
  | { page: "not-found" };

export function matchRoute(pathname: string): Route {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, "") : pathname;
  if (path === "/") return { page: "inbox" };
  if (path === "/history") return { page: "history" };
  if (path === "/audit") return { page: "audit" };
  if (path === "/rules") return { page: "rules" };
  const request = /^\/requests\/([^/]+)$/.exec(path);
  if (request?.[1]) {
    try {
      return { page: "request", id: decodeURIComponent(request[1]) };
    } catch {
      return { page: "not-found" };
    }
  }
  return { page: "not-found" };
}

const NAVIGATE = "airlock:navigate";

/** Goes to an in-app path without reloading the page. */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === `${location.pathname}${location.search}`) return;
  if (options.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.scrollTo(0, 0);
  window.dispatchEvent(new Event(NAVIGATE));
}

function subscribe(onChange: () => void): () => void {
  window.addEventListener("popstate", onChange);
  window.addEventListener(NAVIGATE, onChange);
  return () => {
    window.removeEventListener("popstate", onChange);
    window.removeEventListener(NAVIGATE, onChange);
  };
}

const snapshot = () => `${location.pathname}${location.search}`;

/** The current path and query string ("?a=1" or ""), re-rendering on every navigation. */
export function useLocation(): { pathname: string; search: string } {
  const href = useSyncExternalStore(subscribe, snapshot);
  const url = new URL(href, location.origin);
  return { pathname: url.pathname, search: url.search };
}
