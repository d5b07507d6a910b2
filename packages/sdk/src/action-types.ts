/** What an agent sends Airlock and what it reads back, as `GET /v1/actions/{id}` answers. */

/** Where a request stands. The last five are final: a final request never changes again. */
export type ActionStatus =
  | "pending"
  | "approved"
  | "executing"
  | "succeeded"
  | "failed"
  | "denied"
  | "expired"
  | "cancelled";

export type FinalStatus = "succeeded" | "failed" | "denied" | "expired" | "cancelled";

const finalStatuses: ReadonlySet<ActionStatus> = new Set<FinalStatus>([
  "succeeded",
  "failed",
  "denied",
  "expired",
  "cancelled",
]);

export function isFinal(status: ActionStatus): status is FinalStatus {
  return finalStatuses.has(status);
}

export type RiskLevel = "low" | "medium" | "high" | "critical";

/** An action for Airlock to decide on and, if allowed or approved, run. */
export interface ActionInput {
  /** The connection to act on, as the gateway's config names it. */
  connection: string;
  /** What to do on it: `request` for http, `query` for postgres, a template or tool name. */
  operation: string;
  /** The operation's input; its shape depends on the connection's type. */
  input?: unknown;
  /** Why the agent wants this. Reviewers see it as the agent's claim. */
  justification?: string;
  /** Free context for reviewers and rules: a ticket, a conversation, a run id. */
  context?: Record<string, unknown>;
  /**
   * The same key with the same action finds the same request instead of making a new one.
   * The client makes one up when none is given, so that its own retries are safe.
   */
  idempotencyKey?: string;
}

export interface Review {
  reviewer: string;
  decision: "approve" | "deny";
  comment: string;
  at: string;
  /** How the reviewer's identity was verified. */
  verifiedBy: "personal_token" | "oidc" | "slack" | "teams";
}

/** A request as its agent sees it: the input masked per policy, never a credential. */
export interface Action {
  id: string;
  status: ActionStatus;
  connection: string;
  operation: string;
  /** The input as submitted, with the fields the policy masks hidden. */
  input: unknown;
  /** What reviewers approve: the SHA-256 of the request's canonical form. */
  hash: string;
  decision: {
    decision: "allow" | "deny" | "review";
    /** The rule that decided; null when none matched. */
    rule: string | null;
    reason: string;
    risk: RiskLevel;
  };
  /** Where reviewers decide (requests held for review only). */
  approvalUrl?: string;
  quorum?: number;
  /** Approvals that count so far. */
  approvals?: number;
  /** When the rule requires approvals from named groups: what each still needs. */
  needed?: Record<string, number>;
  reviews: Review[];
  /** The connector's result, masked per policy, once the action has run. */
  result?: unknown;
  outcome?: { summary: string; reason?: string };
  idempotencyKey: string | null;
  /** Grows with every change to the request; gateways older than this SDK leave it out. */
  version?: number;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  finishedAt: string | null;
}
