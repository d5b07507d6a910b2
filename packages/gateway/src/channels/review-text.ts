/** Wording that every chat channel (Slack, Teams) uses the same way, whatever its markup. */
import type { Json } from "../common/canonical-json.js";
import type { ChannelView } from "./channel.js";

/** "a", "a and b", "a, b and c". */
export function names(list: readonly string[]): string {
  if (list.length <= 1) return list[0] ?? "";
  return `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** A message's title for a request in each state. */
export const statusTitle: Record<ChannelView["status"], string> = {
  pending: "Approval needed",
  approved: "Approved",
  executing: "Approved, running",
  succeeded: "Approved and done",
  failed: "Approved, but failed",
  denied: "Denied",
  expired: "Expired",
  cancelled: "Cancelled",
};

/** The connector's facts as `namespace.key: value` lines, each cut to 300 characters. Raw text. */
export function factLines(facts: Record<string, Json>): string {
  const lines: string[] = [];
  for (const [namespace, entries] of Object.entries(facts)) {
    if (entries && typeof entries === "object" && !Array.isArray(entries)) {
      for (const [key, fact] of Object.entries(entries)) {
        lines.push(
          `${namespace}.${key}: ${typeof fact === "string" ? fact : JSON.stringify(fact)}`,
        );
      }
    } else {
      lines.push(`${namespace}: ${JSON.stringify(entries)}`);
    }
  }
  return lines.map((line) => (line.length > 300 ? `${line.slice(0, 299)}…` : line)).join("\n");
}

/** "in 12 minutes", "in 3 hours", "now". */
export function timeUntil(ms: number): string {
  if (ms <= 0) return "now";
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return `in ${plural(Math.max(1, Math.round(ms / 1000)), "second")}`;
  if (minutes < 120) return `in ${plural(minutes, "minute")}`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `in ${plural(hours, "hour")}` : `in ${plural(Math.round(hours / 24), "day")}`;
}
