import type { Json } from "../common/canonical-json.js";
import type { Description } from "../connectors/connector.js";
import type { PolicyDecision } from "../policy/policy-types.js";

/**
 * Where a request stands. `submitted` is never stored: the policy decides in the same
 * transaction that records the submission.
 */
export type RequestStatus =
  | "pending"
  | "approved"
  | "executing"
  | "succeeded"
  | "failed"
  | "denied"
  | "expired"
  | "cancelled";

export const requestStatuses: readonly RequestStatus[] = [
  "pending",
  "approved",
  "executing",
  "succeeded",
  "failed",
  "denied",
  "expired",
  "cancelled",
];

const terminal = new Set<RequestStatus>(["succeeded", "failed", "denied", "expired", "cancelled"]);

export function isTerminal(status: RequestStatus): boolean {
  return terminal.has(status);
}

export interface AgentSnapshot {
  name: string;
  owner: string;
  labels: Record<string, string>;
}

/** What the agent proposed. Its canonical form is the request hash. */
export interface Proposal {
  agent: string;
  connection: string;
  operation: string;
  input: Json;
  justification: string;
  context: Record<string, Json>;
}

export type Vote = "approve" | "deny";

/** How a reviewer's identity was verified, recorded with their review. */
export interface IdentityEvidence {
  method: "personal_token" | "oidc" | "slack" | "teams";
  [detail: string]: Json;
}

export interface Review {
  id: string;
  requestId: string;
  reviewer: string;
  decision: Vote;
  comment: string;
  /** The hash the reviewer decided on; execution checks it against the request. */
  requestHash: string;
  evidence: IdentityEvidence;
  /**
   * The reviewer's groups when they voted, among the rule's approver groups (or the groups it
   * requires approvals from, when it names no approvers), as the audit trail records them. The
   * quorum is counted with the groups each reviewer is in now (request-approvers.ts). Empty on
   * reviews from before it was recorded.
   */
  groups?: string[];
  createdAt: number;
}

export interface Outcome {
  ok: boolean;
  summary: string;
  reason?: string;
  /** The result as agents and reviewers may see it: masked, with credentials scrubbed. */
  result: Json;
  /**
   * HMAC-SHA256 of the unmasked result's canonical JSON, keyed by the request's nonce (kept in
   * the store, never shown), so whoever holds the database can prove the result later.
   */
  resultDigest: string | null;
}

export interface ActionRequest {
  id: string;
  agent: AgentSnapshot;
  connection: string;
  connectionType: string;
  operation: string;
  /** The normalised input, unmasked: what the connector runs. Never shown as is. */
  input: Json;
  justification: string;
  context: Record<string, Json>;
  idempotencyKey: string | null;
  hash: string;
  /** Hashed with the proposal, never shown: see request-hash.ts. */
  nonce: string;
  status: RequestStatus;
  decision: PolicyDecision;
  /** Preview, facts and risk hint, with masked values already scrubbed. */
  description: Description;
  reviews: Review[];
  outcome: Outcome | null;
  createdAt: number;
  updatedAt: number;
  expiresAt: number | null;
  finishedAt: number | null;
  version: number;
}

export type ActorType = "agent" | "reviewer" | "system" | "operator";

export interface AuditEventInput {
  type: string;
  requestId: string | null;
  actor: { type: ActorType; id: string };
  data: Json;
  /** Milliseconds since the epoch. */
  at: number;
}

/** Something committed that the outside world should hear about (channels, webhooks). */
export interface Notification {
  event: NotificationEvent;
  requestId: string;
}

export type NotificationEvent = "requested" | "reviewed" | "resolved";

/** A pure transition's verdict: what to write, and what to tell the caller afterwards. */
export interface Change {
  request: ActionRequest;
  review?: Review;
  events: AuditEventInput[];
  notifications: Notification[];
}

export interface TransitionResult<T> {
  change?: Change;
  /** Raised after the change commits (an expiry found while voting is still recorded). */
  error?: Error;
  value: T;
}
