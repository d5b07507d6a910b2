/**
 * What agents and reviewers are shown of a request. Both see the input masked per policy;
 * nothing here ever exposes the raw input or a credential.
 */
import { maskInput, scrubHidden } from "../masking/input-mask.js";
import { type Eligibility, eligibility } from "./request-transitions.js";
import type { ActionRequest, Review } from "./request-types.js";
import { quorumStanding } from "./review-quorum.js";

function iso(ms: number): string;
function iso(ms: number | null): string | null;
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export function approvalUrl(publicUrl: string, id: string): string {
  return `${publicUrl}/requests/${id}`;
}

function reviewView(review: Review) {
  return {
    reviewer: review.reviewer,
    decision: review.decision,
    comment: review.comment,
    at: iso(review.createdAt),
    verifiedBy: review.evidence.method,
  };
}

/**
 * The agent's view: its own request, status, decision, reviews so far and the masked result.
 * `counted` holds the groups of each approval that still counts, as for reviewerView.
 */
export function agentView(
  request: ActionRequest,
  publicUrl: string,
  counted: readonly (readonly string[])[],
) {
  const review = request.decision.review;
  return {
    id: request.id,
    status: request.status,
    connection: request.connection,
    operation: request.operation,
    input: maskInput(request.input, request.decision.mask).masked,
    hash: request.hash,
    decision: {
      decision: request.decision.decision,
      rule: request.decision.rule,
      reason: request.decision.reason,
      risk: request.decision.risk,
    },
    ...(review
      ? {
          approvalUrl: approvalUrl(publicUrl, request.id),
          quorum: review.quorum,
          approvals: counted.length,
          // What the required groups still need: what the request waits for, named.
          ...(review.require ? { needed: quorumStanding(review, counted).needed } : {}),
        }
      : {}),
    reviews: request.reviews.map(reviewView),
    ...(request.outcome
      ? {
          result: request.outcome.result,
          outcome: {
            summary: request.outcome.summary,
            ...(request.outcome.reason ? { reason: request.outcome.reason } : {}),
          },
        }
      : {}),
    idempotencyKey: request.idempotencyKey,
    // Grows with every change: `GET ?wait=&version=` waits for the next one.
    version: request.version,
    createdAt: iso(request.createdAt),
    updatedAt: iso(request.updatedAt),
    expiresAt: iso(request.expiresAt),
    finishedAt: iso(request.finishedAt),
  };
}

export type AgentView = ReturnType<typeof agentView>;

/** What this reviewer could do with the request right now. */
export function reviewerAbility(
  request: ActionRequest,
  reviewer: { email: string; groups: readonly string[] },
  owners: readonly string[],
): { canApprove: boolean; canDeny: boolean; reason?: string } {
  if (request.status !== "pending") {
    return { canApprove: false, canDeny: false, reason: `the request is ${request.status}` };
  }
  const approve: Eligibility = eligibility(request, reviewer, "approve", owners);
  const deny: Eligibility = eligibility(request, reviewer, "deny", owners);
  const stepUp = request.decision.review?.stepUp === true;
  return {
    canApprove: approve.ok,
    canDeny: deny.ok,
    ...(approve.ok
      ? stepUp
        ? { reason: "approving needs a fresh sign-in through the identity provider" }
        : {}
      : { reason: approve.message }),
  };
}

/**
 * The reviewer's view: everything needed to decide, and no more. `counted` holds the groups of
 * each approval that still counts, under the config as it is (request-approvers.ts): what a
 * required group still needs is what the gateway will hold the request for.
 */
export function reviewerView(
  request: ActionRequest,
  reviewer: { email: string; groups: readonly string[] },
  owners: readonly string[],
  publicUrl: string,
  counted: readonly (readonly string[])[],
) {
  const review = request.decision.review;
  const { masked, hidden } = maskInput(request.input, request.decision.mask);
  return {
    id: request.id,
    status: request.status,
    agent: request.agent,
    connection: request.connection,
    connectionType: request.connectionType,
    operation: request.operation,
    preview: request.description.preview,
    facts: request.description.facts,
    risk: {
      level: request.decision.risk,
      reason: request.decision.riskReason,
      hint: request.description.risk,
    },
    /**
     * Written by the agent: a claim to weigh against the action itself, not a fact. What the
     * policy masks in the input is hidden here too, should the agent repeat it.
     */
    ...scrubHidden({ justification: request.justification, context: request.context }, hidden),
    input: masked,
    maskedFields: request.decision.mask,
    hash: request.hash,
    decision: {
      decision: request.decision.decision,
      rule: request.decision.rule,
      reason: request.decision.reason,
      ...(request.decision.error ? { error: request.decision.error } : {}),
    },
    ...(review
      ? {
          review: {
            approvers: review.approvers,
            quorum: review.quorum,
            // Those that still count: a reviewer no longer configured, or no longer in an
            // approver group, leaves the request short, and the count says so.
            approvals: counted.length,
            ...(review.require
              ? {
                  require: review.require,
                  needed: quorumStanding(review, counted).needed,
                }
              : {}),
            stepUp: review.stepUp,
            ...(review.slackChannel ? { slackChannel: review.slackChannel } : {}),
            ...(review.teamsConversation ? { teamsConversation: review.teamsConversation } : {}),
            // For a chat to refuse a click its rule keeps out before judging anything else.
            ...(review.channels ? { channels: review.channels } : {}),
          },
        }
      : {}),
    reviews: request.reviews.map(reviewView),
    you: reviewerAbility(request, reviewer, owners),
    ...(request.outcome
      ? {
          outcome: {
            summary: request.outcome.summary,
            ...(request.outcome.reason ? { reason: request.outcome.reason } : {}),
            result: request.outcome.result,
          },
        }
      : {}),
    approvalUrl: approvalUrl(publicUrl, request.id),
    createdAt: iso(request.createdAt),
    updatedAt: iso(request.updatedAt),
    expiresAt: iso(request.expiresAt),
    finishedAt: iso(request.finishedAt),
  };
}

export type ReviewerView = ReturnType<typeof reviewerView>;
