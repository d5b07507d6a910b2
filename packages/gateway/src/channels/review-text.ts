/** Wording that every chat channel (Slack, Teams) uses the same way, whatever its markup. */
import type { Json } from "../common/canonical-json.js";
import { names } from "../common/word-list.js";
import { cutText } from "../masking/text-cut.js";
import type { ChannelView } from "./channel.js";

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** An instant to the minute, in UTC ("2030-01-02 15:04 UTC"); "never" for none. */
export function utcMinute(iso: string | null): string {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "never";
}

type Clip = (text: string, max: number) => string;

/** Approvals still needed: what the quorum lacks, and at least what the required groups lack. */
export function approvalsLeft(view: ChannelView): number {
  if (!view.review) return 0;
  const { approvals, quorum, needed = {} } = view.review;
  const fromGroups = Object.values(needed).reduce((sum, n) => sum + n, 0);
  return Math.max(0, quorum - approvals, fromGroups);
}

/**
 * Where the approvals still needed may come from: "from finance", "from any reviewer", or,
 * when a rule requires some from named groups, "from finance and security: 1 from security
 * among them". `clip` makes the group names safe for the channel and short.
 */
export function neededFrom(view: ChannelView, clip: Clip): string {
  const approvers = view.review?.approvers ?? [];
  const from = approvers.length === 0 ? "any reviewer" : names(approvers.map((g) => clip(g, 80)));
  const needed = Object.entries(view.review?.needed ?? {});
  if (needed.length === 0) return `from ${from}`;
  if (needed.length === 1 && needed[0]![1] === approvalsLeft(view)) {
    return `from ${clip(needed[0]![0], 80)}`;
  }
  return `from ${from}: ${names(needed.map(([g, n]) => `${n} from ${clip(g, 80)}`))} among them`;
}

/**
 * Where the votes stand: "1 of 2 approvals; 1 more approval needed from finance", or "no
 * review asked".
 */
export function approvalsLine(view: ChannelView, clip: Clip): string {
  if (!view.review) return "no review asked";
  const count = `${view.review.approvals} of ${view.review.quorum} approvals`;
  const left = approvalsLeft(view);
  if (left === 0) return count;
  return `${count}; ${plural(left, "more approval")} needed ${neededFrom(view, clip)}`;
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
  // Short of a marker it would split, as every cut of what chats show.
  return lines.map((line) => (line.length > 300 ? `${cutText(line, 299, [])}…` : line)).join("\n");
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

/** What a refused click is told, in words that hold for any chat; each channel adds its own. */
export const refusals: Readonly<Record<string, string>> = {
  self_approval:
    "You cannot approve this request: you own the agent that asked, and nobody approves their own agent's actions.",
  not_an_approver: "You are not an approver for this request.",
  already_reviewed: "You have already reviewed this request; each reviewer counts once.",
  not_pending: "This request is no longer waiting for review.",
  expired: "This request expired before it got enough approvals; nothing was recorded.",
};

/**
 * The words for a refusal `code` (the channel's `own` first, then the shared ones), with the
 * gateway's message after them; `clip` makes text safe for the channel and short.
 */
export function refusal(
  code: string,
  message: string,
  own: Readonly<Record<string, string>>,
  clip: (text: string, max: number) => string,
): string {
  const detail = message ? ` (${clip(message, 500)})` : "";
  const known = Object.hasOwn(own, code)
    ? own[code]
    : Object.hasOwn(refusals, code)
      ? refusals[code]
      : undefined;
  if (known) return `${known}${detail}`;
  return `Airlock could not record your decision: ${message ? clip(message, 500) : "an unexpected error"} (${clip(code, 40)}).`;
}
