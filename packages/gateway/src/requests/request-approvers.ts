/**
 * Who may approve what, under the config as it is now. A vote cast earlier counts toward a
 * quorum only while its agent is still configured and its reviewer still qualifies: still
 * configured, still in an approver group, and not (or no longer) the agent's owner; and it
 * stands for a group a rule requires approvals from only while its reviewer is in that group.
 */
import type { LiveConfig } from "../config/live-config.js";
import { approverRefusal, votingGroups } from "./request-transitions.js";
import type { ActionRequest, Review } from "./request-types.js";
import { neededText, quorumStanding } from "./review-quorum.js";

export interface Approvers {
  /** The agent's owner as recorded at submission and as configured now: neither may approve. */
  ownersOf(request: ActionRequest): string[];
  /** Why no approval of the request counts any more (its agent was removed), or undefined. */
  agentGone(request: ActionRequest): string | undefined;
  /** Why an approval no longer counts, or undefined when it does. */
  disqualified(request: ActionRequest, review: Review): string | undefined;
  /** The groups an approval stands for now, toward the groups a rule requires. */
  groupsOf(request: ActionRequest, review: Review): string[];
  /** The groups each approval that still counts stands for now (what views count as needed). */
  countedGroups(request: ActionRequest): string[][];
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

  /** The reviewer as the config knows them now, with the groups the provider vouched for. */
  const reviewerNow = (review: Review) => {
    const email = review.reviewer.toLowerCase();
    const configured = live.reviewer(email);
    // The identity provider vouched for the groups it listed at the vote; config adds to them.
    const vouched = review.evidence.method === "oidc" ? review.evidence.idpGroups : undefined;
    const idpGroups = Array.isArray(vouched)
      ? vouched.filter((g): g is string => typeof g === "string")
      : [];
    return {
      email,
      groups: [...(configured?.groups ?? []), ...idpGroups],
      configured: configured !== undefined,
      known: configured !== undefined || idpGroups.length > 0,
    };
  };

  // An agent taken out of the config acts no more: what was approved for it does not run.
  const agentGone = (request: ActionRequest): string | undefined =>
    live.agent(request.agent.name)
      ? undefined
      : `agent ${request.agent.name} is no longer configured`;

  const disqualified = (request: ActionRequest, review: Review): string | undefined => {
    const gone = agentGone(request);
    if (gone) return gone;
    const reviewer = reviewerNow(review);
    if (!reviewer.known) return `${reviewer.email} is no longer a configured reviewer`;
    return approverRefusal(request, reviewer, "approve", ownersOf(request))?.message;
  };

  const groupsOf = (request: ActionRequest, review: Review): string[] =>
    votingGroups(request.decision.review, reviewerNow(review).groups);

  /** The approvals that still count, by the groups they stand for now, and why the rest do not. */
  const counted = (request: ActionRequest): { groups: string[][]; reasons: string[] } => {
    const groups: string[][] = [];
    const reasons: string[] = [];
    for (const review of request.reviews) {
      if (review.decision !== "approve") continue;
      const reason = disqualified(request, review);
      if (reason === undefined) groups.push(groupsOf(request, review));
      else reasons.push(reason);
    }
    return { groups, reasons };
  };

  const shortfall = (request: ActionRequest): string | undefined => {
    const { groups, reasons } = counted(request);
    const standing = quorumStanding(request.decision.review, groups);
    if (standing.met) return undefined;
    const short = [
      ...(Object.keys(standing.needed).length > 0
        ? [`still needed: ${neededText(standing.needed)}`]
        : []),
      ...reasons,
    ];
    return `${standing.approvals} of the ${standing.quorum} approvals needed still count (${short.join("; ")})`;
  };

  return {
    ownersOf,
    agentGone,
    disqualified,
    groupsOf,
    countedGroups: (request) => counted(request).groups,
    shortfall,
  };
}
