/** Verification and export of the audit chain, reading the store in chain order. */
import type { Store } from "../store/store.js";
import { type AuditEvent, type ChainProblem, createChainVerifier } from "./audit-chain.js";

export interface VerifyReport {
  ok: boolean;
  count: number;
  head: { seq: number; hash: string } | undefined;
  problem?: ChainProblem;
}

/** A head recorded earlier, outside the database (`airlock audit verify` prints it). */
export interface RecordedHead {
  seq: number;
  hash: string;
}

/** How often a long walk of the chain reports how far it got. */
export const PROGRESS_EVERY = 10_000;

/**
 * Walks the whole chain and returns the first problem, with the count and the head.
 * `progress` hears the count every PROGRESS_EVERY events (a long chain takes minutes).
 */
export async function verifyAudit(
  store: Store,
  progress?: (events: number) => void,
): Promise<VerifyReport> {
  const verifier = createChainVerifier();
  let count = 0;
  for await (const event of store.auditEvents()) {
    if (verifier.add(event)) break;
    if (++count % PROGRESS_EVERY === 0) progress?.(count);
  }
  const result = verifier.finish();
  return { ok: !result.problem, ...result };
}

/**
 * The chain alone cannot show that its last events were cut off, or that all of it was
 * rewritten by someone holding the database; a head recorded earlier can: the chain, once
 * verified (`report`), must still hold that event with that hash.
 */
export async function checkRecordedHead(
  store: Store,
  report: VerifyReport,
  expected: RecordedHead,
): Promise<VerifyReport> {
  if (!report.ok) return report;
  const [event] = await store.listAudit({ afterSeq: expected.seq - 1, limit: 1 });
  const found = event?.seq === expected.seq ? event.hash : undefined;
  if (found === expected.hash) return report;
  return {
    ...report,
    ok: false,
    problem:
      found === undefined
        ? {
            seq: expected.seq,
            kind: "cut_off",
            message: `event ${expected.seq}, recorded as the head earlier, is missing: the chain ends at ${report.head?.seq ?? 0}; events were cut off its end`,
          }
        : {
            seq: expected.seq,
            kind: "rewritten",
            message: `event ${expected.seq} does not have the hash recorded earlier (${expected.hash.slice(0, 12)}…); the chain was rewritten at or before it`,
          },
  };
}

/** Reads `SEQ:HASH` (or `SEQ HASH`, as `audit verify` prints it); events count from 1. */
export function parseRecordedHead(text: string): RecordedHead | undefined {
  const match = /^\s*([1-9]\d{0,14})[\s:]+([0-9a-f]{64})\s*$/.exec(text);
  return match ? { seq: Number(match[1]), hash: match[2]! } : undefined;
}

export const csvColumns = [
  "seq",
  "ts",
  "type",
  "requestId",
  "actorType",
  "actorId",
  "data",
  "prevHash",
  "hash",
] as const;

function csvCell(value: string): string {
  // Cells starting with = + - @ would run as formulas in a spreadsheet; a quote keeps them text.
  const guarded = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(guarded) ? `"${guarded.replace(/"/g, '""')}"` : guarded;
}

export function eventToCsv(event: AuditEvent): string {
  return [
    String(event.seq),
    event.ts,
    event.type,
    event.requestId ?? "",
    event.actor.type,
    event.actor.id,
    JSON.stringify(event.data),
    event.prevHash,
    event.hash,
  ]
    .map(csvCell)
    .join(",");
}

/** Streams the chain as JSON lines or CSV, one event per line; `progress` as for verifying. */
export async function* exportAudit(
  store: Store,
  format: "jsonl" | "csv",
  since?: number,
  progress?: (events: number) => void,
): AsyncIterable<string> {
  if (format === "csv") yield `${csvColumns.join(",")}\n`;
  let count = 0;
  for await (const event of store.auditEvents(since === undefined ? {} : { since })) {
    yield format === "csv" ? `${eventToCsv(event)}\n` : `${JSON.stringify(event)}\n`;
    if (++count % PROGRESS_EVERY === 0) progress?.(count);
  }
}
