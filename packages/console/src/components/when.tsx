import { absoluteTime, relativeTime } from "../format.js";
import { useNow } from "../hooks.js";

/** A moment as "3 minutes ago" (or "in 12 minutes"), with the full local date on hover. */
export function When({ iso, prefix = "" }: { iso: string; prefix?: string }) {
  const now = useNow();
  return (
    <time dateTime={iso} title={absoluteTime(iso)}>
      {prefix}
      {relativeTime(iso, now)}
    </time>
  );
}

/** A moment as the full local date, with the relative time after it. */
export function DateTime({ iso }: { iso: string }) {
  const now = useNow();
  return (
    <time dateTime={iso}>
      {absoluteTime(iso)} ({relativeTime(iso, now)})
    </time>
  );
}
