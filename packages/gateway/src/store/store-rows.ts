/**
 * Rows of the shared schema as the domain's records. Both stores keep the same columns (JSON
 * as text, times as ms), so one mapping serves them; only how rows are fetched differs.
 */
import type { AuditEvent } from "../audit/audit-chain.js";
import { canonicalJson } from "../common/canonical-json.js";
import type { ActionRequest, RequestStatus, Review } from "../requests/request-types.js";
import type { OutboxItem, OutboxRecord, SessionRecord, TokenRecord } from "./store.js";

export type Row = Record<string, unknown>;

/** A request row with its reviews, which each store reads its own way. */
export function requestFromRow(row: Row, reviews: Review[]): ActionRequest {
  return {
    id: row.id as string,
    agent: JSON.parse(row.agent_snapshot as string),
    connection: row.connection as string,
    connectionType: row.connection_type as string,
    operation: row.operation as string,
    input: JSON.parse(row.input as string),
    justification: row.justification as string,
    context: JSON.parse(row.context as string),
    idempotencyKey: row.idempotency_key as string | null,
    hash: row.hash as string,
    nonce: row.nonce as string,
    status: row.status as RequestStatus,
    decision: JSON.parse(row.decision as string),
    description: JSON.parse(row.description as string),
    reviews,
    outcome: row.outcome === null ? null : JSON.parse(row.outcome as string),
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    expiresAt: row.expires_at as number | null,
    finishedAt: row.finished_at as number | null,
    version: row.version as number,
  };
}

export function reviewFromRow(row: Row): Review {
  return {
    id: row.id as string,
    requestId: row.request_id as string,
    reviewer: row.reviewer as string,
    decision: row.decision as Review["decision"],
    comment: row.comment as string,
    requestHash: row.request_hash as string,
    evidence: JSON.parse(row.evidence as string),
    groups: JSON.parse((row.reviewer_groups as string | undefined) ?? "[]"),
    createdAt: row.created_at as number,
  };
}

/**
 * Data is stored as the canonical JSON that was hashed. Text that no longer parses, or that
 * parses but is not that encoding (a key given twice: SQL's json_extract reads the first,
 * JSON.parse the last), was edited: it reaches the verifier as the text, which then fails.
 */
function parseData(text: string): AuditEvent["data"] {
  let data: AuditEvent["data"];
  try {
    data = JSON.parse(text);
  } catch {
    return { unparseable: text };
  }
  let canonical: string | undefined;
  try {
    canonical = canonicalJson(data);
  } catch {
    // A number past JSON's range (1e999 parses as Infinity) has no canonical encoding: the
    // event must still reach the verifier, to be named, and the export, not stop them both.
  }
  return canonical === text ? data : { noncanonical: text };
}

export function eventFromRow(row: Row): AuditEvent {
  return {
    seq: row.seq as number,
    ts: row.ts as string,
    type: row.type as string,
    requestId: row.request_id as string | null,
    actor: { type: row.actor_type as AuditEvent["actor"]["type"], id: row.actor_id as string },
    data: parseData(row.data as string),
    prevHash: row.prev_hash as string,
    hash: row.hash as string,
  };
}

export function tokenFromRow(row: Row): TokenRecord {
  return {
    id: row.id as string,
    kind: row.kind as TokenRecord["kind"],
    subject: row.subject as string,
    hash: row.hash as string,
    hint: row.hint as string,
    createdAt: row.created_at as number,
    revokedAt: row.revoked_at as number | null,
  };
}

/**
 * An outbox entry's payload: the JSON object it was written as, or undefined when its text no
 * longer is one (edited by hand, or damaged). Such an entry cannot be delivered: a claim makes
 * it a dead letter with `UNREADABLE_PAYLOAD`, rather than fail, with every entry it took.
 */
export function outboxPayload(text: string): Record<string, unknown> | undefined {
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof payload === "object" && payload !== null && !Array.isArray(payload)
    ? (payload as Record<string, unknown>)
    : undefined;
}

export const UNREADABLE_PAYLOAD =
  "its payload is not a JSON object (the row was edited or damaged in the database): it cannot be delivered";

export function outboxFromRow(row: Row): OutboxRecord {
  return {
    id: Number(row.id),
    topic: row.topic as string,
    requestId: row.request_id as string | null,
    // Listed all the same, so that an operator can see the dead letter such an entry became.
    payload: outboxPayload(row.payload as string) ?? { unparseable: row.payload },
    state: row.state as OutboxRecord["state"],
    attempts: Number(row.attempts),
    availableAt: Number(row.available_at),
    lastError: row.last_error as string | null,
    createdAt: Number(row.created_at),
  };
}

/**
 * Claimed outbox rows as the dispatcher gets them, and the ids of those whose payload does
 * not read (for the store to make dead letters of, UNREADABLE_PAYLOAD, rather than hand out).
 */
export function claimedOutbox(rows: readonly Row[]): { items: OutboxItem[]; unreadable: number[] } {
  const items: OutboxItem[] = [];
  const unreadable: number[] = [];
  for (const row of rows) {
    const payload = outboxPayload(row.payload as string);
    if (payload === undefined) {
      unreadable.push(Number(row.id));
      continue;
    }
    items.push({
      id: Number(row.id),
      topic: row.topic as string,
      requestId: row.request_id as string | null,
      payload,
      attempts: Number(row.attempts),
      createdAt: Number(row.created_at),
    });
  }
  return { items, unreadable };
}

export function sessionFromRow(row: Row): SessionRecord {
  return {
    idHash: row.id_hash as string,
    email: row.email as string,
    issuer: row.issuer as string,
    subject: row.subject as string,
    groups: JSON.parse(row.groups as string) as string[],
    authTime: row.auth_time as number,
    acr: row.acr as string | null,
    createdAt: row.created_at as number,
    expiresAt: row.expires_at as number,
    refreshToken: row.refresh_token as string | null,
    checkedAt: row.checked_at as number,
  };
}
