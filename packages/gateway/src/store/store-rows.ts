/**
 * Rows of the shared schema as the domain's records. Both stores keep the same columns (JSON
 * as text, times as ms), so one mapping serves them; only how rows are fetched differs.
 */
import type { AuditEvent } from "../audit/audit-chain.js";
import type { ActionRequest, RequestStatus, Review } from "../requests/request-types.js";
import type { SessionRecord, TokenRecord } from "./store.js";

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
    createdAt: row.created_at as number,
  };
}

/** Data that no longer parses was edited; it still reaches the verifier, which says so. */
function parseData(text: string): AuditEvent["data"] {
  try {
    return JSON.parse(text);
  } catch {
    return { unparseable: text };
  }
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
  };
}
