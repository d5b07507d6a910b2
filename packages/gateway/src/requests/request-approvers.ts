/**
 * Who may approve what, under the config as it is now. A vote cast earlier counts toward a
 * quorum only while its reviewer still qualifies: still configured, still in an approver
 * group, and not (or no longer) the agent's owner.
 */
import type { LiveConfig } from "../config/live-config.js";
import { approverRefusal } from "./request-transitions.js";
import type { ActionRequest, Review } from "./request-types.js";

export interface Approvers {
  /** The agent's owner as recorded at submission and as configured now: neither may approve. */
  ownersOf(request: ActionRequest): string[];
  /** Why an approval no longer counts, or undefined when it does. */
  disqualified(request: ActionRequest, review: Review): string | undefined;
  /** Why the approvals that still count fall short of the quorum, or undefined. */
  shortfall(request: ActionRequest): string | undefined;
}

export function createApprovers(live: LiveConfig): Approvers {
  const ownersOf = (request: ActionRequest): string[] => {
    const current = live.agent(request.agent.name)?.owner;
    return current && current !== request.agent.owner
      ? [request.agent.owner, current]
      : [request.agent.owner];
  };

  const disqualified = (request: ActionRequest, review: Review): string | undefined => {
    const email = review.reviewer.toLowerCase();
    const configured = live.reviewer(email);
    // The identity provider vouched for the groups it listed at the vote; config adds to them.
    const vouched = review.evidence.method === "oidc" ? review.evidence.idpGroups : undefined;
    const idpGroups = Array.isArray(vouched)
      ? vouched.filter((g): g is string => typeof g === "string")
      : [];
    if (!configured && idpGroups.length === 0) return `${email} is no longer a configured reviewer`;
    const reviewer = {
      email,
      groups: [...(configured?.groups ?? []), ...idpGroups],
      configured: configured !== undefined,
    };
    return approverRefusal(request, reviewer, "approve", ownersOf(request))?.message;
  };

  const shortfall = (request: ActionRequest): string | undefined => {
    const quorum = request.decision.review?.quorum ?? 1;
    const approvals = request.reviews.filter((r) => r.decision === "approve");
    const reasons = approvals.map((r) => disqualified(request, r)).filter((r) => r !== undefined);
    const counted = approvals.length - reasons.length;
    if (counted >= quorum) return undefined;
    return `${counted} of the ${quorum} approvals needed still count (${reasons.join("; ")})`;
  };

  return { ownersOf, disqualified, shortfall };
}
