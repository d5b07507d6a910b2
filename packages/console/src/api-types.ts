/**
 * The gateway's JSON shapes as the console reads them. They mirror the gateway's views
 * (packages/gateway/src/requests/request-views.ts and the audit, rules and session routes).
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type RiskLevel = "low" | "medium" | "high" | "critical";

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

export interface Session {
  email: string;
  groups: string[];
  csrfToken: string;
  /** When the reviewer last signed in at the identity provider (ISO 8601). */
  authTime: string;
  acr: string | null;
  /** How recent a sign-in must be to approve under a step-up rule. */
  stepUpMaxAgeSeconds: number;
  /** Until when this sign-in counts for step-up (ISO 8601); null when it never does. */
  stepUpUntil: string | null;
}

export interface ReviewView {
  reviewer: string;
  decision: "approve" | "deny";
  comment: string;
  at: string | null;
  verifiedBy: string;
}

export interface ReviewerView {
  id: string;
  status: RequestStatus;
  agent: { name: string; owner: string; labels: Record<string, string> };
  connection: string;
  connectionType: string;
  operation: string;
  preview: string;
  facts: Record<string, Json>;
  risk: { level: RiskLevel; reason: string; hint: { level: RiskLevel; reason: string } };
  /** Written by the agent: a claim to weigh, not a fact. */
  justification: string;
  context: Record<string, Json>;
  input: Json;
  maskedFields: string[];
  hash: string;
  decision: {
    decision: "allow" | "deny" | "review";
    rule: string | null;
    reason: string;
    error?: string;
  };
  review?: {
    approvers: string[];
    quorum: number;
    /** Of the quorum, at least this many approvals from each group named. */
    require?: Record<string, number>;
    /** What each required group still needs, counting the approvals as the gateway does now. */
    needed?: Record<string, number>;
    approvals: number;
    stepUp: boolean;
  };
  reviews: ReviewView[];
  you: { canApprove: boolean; canDeny: boolean; reason?: string };
  outcome?: { summary: string; reason?: string; result: Json };
  approvalUrl: string;
  createdAt: string | null;
  updatedAt: string | null;
  expiresAt: string | null;
  finishedAt: string | null;
}

export interface RequestPage {
  requests: ReviewerView[];
  next?: string;
}

export interface AuditEvent {
  seq: number;
  ts: string;
  type: string;
  requestId: string | null;
  actor: { type: string; id: string };
  data: Json;
  prevHash: string;
  hash: string;
}

export interface AuditPage {
  events: AuditEvent[];
  /** The cursor for the next page (the gateway names it nextAfterSeq; `next` is accepted too). */
  nextAfterSeq?: number;
  next?: number | string;
}

export interface AuditVerification {
  ok: boolean;
  events: number;
  head?: { seq: number; hash: string };
  problem?: AuditProblem;
  /** Asked with `all`: every problem in chain order, at most a hundred of them. */
  problems?: AuditProblem[];
  /** How many problems there were in all. */
  problemCount?: number;
  /** With a signing key: how far the signed checkpoints vouch for the chain. */
  signed?: {
    /** The last event a checkpoint by the newest key vouches for (0: none). */
    through: number;
    signedAt?: string;
    checkpoints: number;
    /** Events after `through` not signed yet. */
    unsigned: number;
  };
}

export interface AuditProblem {
  seq: number;
  kind: string;
  message: string;
}

export interface Rule {
  name: string;
  when?: string;
  decision: "allow" | "deny" | "review";
  reason?: string;
  risk?: RiskLevel;
  review?: {
    approvers: string[];
    quorum: number;
    require?: Record<string, number>;
    /** Milliseconds. */
    expiresIn: number;
    stepUp: boolean;
    channels?: string[];
  };
  mask?: { input: string[]; result?: string[] };
}

export interface RulesView {
  rules: Rule[];
  policyDigest: string;
}

/** One `change` event from GET /v1/events. */
export interface RequestChange {
  id: string;
  status: RequestStatus;
  version: number;
}
