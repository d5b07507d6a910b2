import type { AnchorHTMLAttributes, MouseEvent } from "react";
import { navigate } from "../router.js";

/**
 * An in-app link: a real <a href> (so it opens in a new tab, copies, and reads as a link),
 * which moves with pushState on a plain click.
 */
export function Link({
  to,
  onClick,
  ...rest
}: { to: string } & Omit<AnchorHTMLAttributes<HTMLAnchorElement>, "href">) {
  const follow = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={follow} {...rest} />;
}

export function requestPath(id: string): string {
  return `/requests/${encodeURIComponent(id)}`;
}
