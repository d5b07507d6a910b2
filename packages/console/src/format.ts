/** Dates, durations and values as people read them, in the browser's locale. */
import type { Json, ReviewerView, RiskLevel } from "./api-types.js";

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ["day", 86_400_000],
  ["hour", 3_600_000],
  ["minute", 60_000],
  ["second", 1_000],
];

/** "3 minutes ago", "in 12 minutes", "now". */
export function relativeTime(iso: string, now: number): string {
  const delta = Date.parse(iso) - now;
  if (Number.isNaN(delta)) return iso;
  if (Math.abs(delta) < 45_000) return relative.format(0, "second");
  for (const [unit, ms] of units) {
    if (Math.abs(delta) >= ms || unit === "second") {
      return relative.format(Math.round(delta / ms), unit);
    }
  }
  return relative.format(0, "second");
}

export function absoluteTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : absolute.format(ms);
}

/** A rule's expiry as "15 min", "2 h", "1 h 30 min", "45 s". */
export function duration(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  const minutes = Math.round(ms / 60_000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  return [days && `${days} d`, hours && `${hours} h`, rest && `${rest} min`]
    .filter(Boolean)
    .join(" ");
}

export function firstLine(text: string): string {
  return text.split("\n").find((line) => line.trim() !== "") ?? "";
}

export function prettyJson(value: Json | undefined): string {
  return JSON.stringify(value ?? null, null, 2);
}

export function isEmptyJson(value: Json | undefined): boolean {
  if (value === undefined || value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === "object") return Object.keys(value).length === 0;
  return false;
}

const riskRank: Record<RiskLevel, number> = { critical: 0, high: 1, medium: 2, low: 3 };

/** Most urgent first: higher risk, then sooner expiry. */
export function byUrgency(a: ReviewerView, b: ReviewerView): number {
  const expiry = (r: ReviewerView) =>
    r.expiresAt ? Date.parse(r.expiresAt) : Number.POSITIVE_INFINITY;
  return riskRank[a.risk.level] - riskRank[b.risk.level] || expiry(a) - expiry(b) || 0;
}

/** "approve"/"deny" in the past tense, for notices. */
export function voted(decision: "approve" | "deny"): string {
  return decision === "approve" ? "approved" : "denied";
}

/** "1 from security and 2 from finance": approvals by group, for people to read. */
export function fromGroups(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([group, n]) => `${n} from ${group}`);
  if (parts.length <= 1) return parts[0] ?? "";
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}
