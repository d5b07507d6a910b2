import type { Json } from "../common/canonical-json.js";
import type { RiskHint, RiskLevel } from "../connectors/connector.js";
import type { DetectorName } from "../masking/detector-names.js";

export type Decision = "allow" | "deny" | "review";

export interface ReviewRequirements {
  /** Groups whose members may vote; empty means any configured reviewer. */
  approvers: string[];
  /** Approvals needed in all. */
  quorum: number;
  /** Of those, at least this many from each group named; each approval stands for one group. */
  require?: Record<string, number>;
  expiresInMs: number;
  stepUp: boolean;
  channels?: string[];
  /** The Slack channel for this rule's messages, instead of the configured default. */
  slackChannel?: string;
  /** The Teams conversation for this rule's cards, instead of the configured default. */
  teamsConversation?: string;
}

export interface PolicyInput {
  action: {
    connection: string;
    operation: string;
    input: Json;
    justification: string;
    context: Record<string, Json>;
  };
  agent: { name: string; owner: string; labels: Record<string, string> };
  now: Date;
  /** The connector's facts by namespace: `{ http: { method, path } }`. */
  facts: Record<string, Json>;
  risk: RiskHint;
}

export interface PolicyDecision {
  decision: Decision;
  /** The rule that matched; null when none did. */
  rule: string | null;
  reason: string;
  risk: RiskLevel;
  riskReason: string;
  review?: ReviewRequirements;
  /** Input paths hidden from everyone but the connector. */
  mask: string[];
  /**
   * Detectors applied to the result before anyone sees it: the rule's, else the connection's
   * default (filled in when the request is submitted, so it is recorded with the decision).
   */
  maskResult?: DetectorName[];
  /** Set when the policy could not be evaluated and Airlock failed closed. */
  error?: string;
  policyDigest: string;
}
