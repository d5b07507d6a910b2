/** Verification and export of the audit chain, reading the store in chain order. */
import type { Store } from "../store/store.js";
import { type AuditEvent, type ChainProblem, createChainVerifier } from "./audit-chain.js";

export interface VerifyReport {
  ok: boolean;
  count: number;
  head: { seq: number; hash: string } | undefined;
  problem?: ChainProblem;
}

export async function verifyAudit(store: Store): Promise<VerifyReport> {
  const verifier = createChainVerifier();
  for await (const event of store.auditEvents()) {
    if (verifier.add(event)) break;
  }
  const result = verifier.finish();
  return { ok: !result.problem, ...result };
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

/** Streams the chain as JSON lines or CSV, one event per line. */
export async function* exportAudit(
  store: Store,
  format: "jsonl" | "csv",
  since?: number,
): AsyncIterable<string> {
  if (format === "csv") yield `${csvColumns.join(",")}\n`;
  for await (const event of store.auditEvents(since === undefined ? {} : { since })) {
    yield format === "csv" ? `${eventToCsv(event)}\n` : `${JSON.stringify(event)}\n`;
  }
}
