/**
 * The request lifecycle as pure functions: each takes the current request and the facts of
 * the moment and returns the change to commit (new state, audit events, notifications), or
 * refuses with a coded error. No I/O here; the store applies what these return atomically.
 */
import type { Json } from "../common/canonical-json.js";
import type { Description } from "../connectors/connector.js";
import { AirlockError } from "../errors.js";
import { type MaskedInput, scrubHidden } from "../masking/input-mask.js";
import type { PolicyDecision, ReviewRequirements } from "../policy/policy-types.js";
import type {
  ActionRequest,
  AgentSnapshot,
  AuditEventInput,
  Change,
  IdentityEvidence,
  Outcome,
  Proposal,
  Review,
  TransitionResult,
  Vote,
} from "./request-types.js";
import { quorumStanding } from "./review-quorum.js";

/** Airlock itself, as the actor of what nobody else did (expiries, executions). */
export const system = { type: "system", id: "airlock" } as const;

/**
 * The common shape of a transition: the request moves on (one version later), one audit
 * event records why, and `resolved` is announced when the move ends it.
 */
function move(
  request: ActionRequest,
  now: number,
  patch: Partial<ActionRequest>,
  event: Pick<AuditEventInput, "type" | "actor" | "data">,
): TransitionResult<ActionRequest> {
  const next: ActionRequest = {
    ...request,
    ...patch,
    updatedAt: now,
    version: request.version + 1,
  };
  const resolved = patch.finishedAt !== undefined && patch.finishedAt !== null;
  return {
    change: {
      request: next,
      events: [{ ...event, requestId: request.id, at: now }],
      notifications: resolved ? [{ event: "resolved", requestId: request.id }] : [],
    },
    value: next,
  };
}

export interface NewRequest {
  id: string;
  proposal: Proposal;
  agent: AgentSnapshot;
  connectionType: string;
  idempotencyKey: string | null;
  hash: string;
  nonce: string;
  decision: PolicyDecision;
  description: Description;
  /**
   * The input as the policy masks it (`maskInput(proposal.input, decision.mask)`), which the
   * submission worked out already for its preview: masking again costs a walk of the input
   * and, with thousands of hidden values, a scrubber's build.
   */
  maskedInput: MaskedInput;
  now: number;
}

/** Submission and decision in one step: the request starts pending, denied, or executing. */
export function submit(args: NewRequest): Change {
  const { proposal, decision, now } = args;
  const status =
    decision.decision === "allow"
      ? "executing"
      : decision.decision === "deny"
        ? "denied"
        : "pending";
  const request: ActionRequest = {
    id: args.id,
    agent: args.agent,
    connection: proposal.connection,
    connectionType: args.connectionType,
    operation: proposal.operation,
    input: proposal.input,
    justification: proposal.justification,
    context: proposal.context,
    idempotencyKey: args.idempotencyKey,
    hash: args.hash,
    nonce: args.nonce,
    status,
    decision,
    description: args.description,
    reviews: [],
    outcome: null,
    createdAt: now,
    updatedAt: now,
    expiresAt: status === "pending" ? now + (decision.review?.expiresInMs ?? 0) : null,
    finishedAt: status === "denied" ? now : null,
    version: 1,
  };
  const agentActor = { type: "agent", id: args.agent.name } as const;
  // The agent's own text may repeat what the policy masks: it is hidden there too.
  const { masked, hidden } = args.maskedInput;
  const events: AuditEventInput[] = [
    {
      type: "request.submitted",
      requestId: request.id,
      actor: agentActor,
      at: now,
      data: {
        agent: args.agent.name,
        owner: args.agent.owner,
        connection: proposal.connection,
        operation: proposal.operation,
        input: masked,
        // One scrubber for all three, built only when something is masked. (An agent may
        // build its idempotency key from what it sends: a refund's card, say.)
        ...scrubHidden(
          {
            justification: proposal.justification,
            context: proposal.context,
            idempotencyKey: args.idempotencyKey,
          },
          hidden,
        ),
        hash: args.hash,
      },
    },
    {
      type: "request.decided",
      requestId: request.id,
      actor: system,
      at: now,
      data: decidedData(decision, request.expiresAt),
    },
  ];
  if (status === "executing") {
    events.push({
      type: "execution.started",
      requestId: request.id,
      actor: system,
      at: now,
      data: { hash: args.hash, authorisedBy: `rule "${decision.rule}"` },
    });
  }
  const notifications: Change["notifications"] =
    status === "pending" ? [{ event: "requested", requestId: request.id }] : [];
  return { request, events, notifications };
}

function decidedData(decision: PolicyDecision, expiresAt: number | null): Json {
  return {
    decision: decision.decision,
    rule: decision.rule,
    reason: decision.reason,
    risk: decision.risk,
    riskReason: decision.riskReason,
    policyDigest: decision.policyDigest,
    ...(decision.error ? { error: decision.error } : {}),
    ...(decision.review
      ? {
          review: {
            approvers: decision.review.approvers,
            quorum: decision.review.quorum,
            ...(decision.review.require ? { require: decision.review.require } : {}),
            stepUp: decision.review.stepUp,
            expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
          },
        }
      : {}),
  };
}

export interface Reviewer {
  email: string;
  groups: readonly string[];
  evidence: IdentityEvidence;
  /**
   * False for someone known only through the identity provider's groups: a rule without
   * approver groups takes only the reviewers listed in the config.
   */
  configured?: boolean;
}

export type Eligibility =
  | { ok: true }
  | { ok: false; code: "self_approval" | "not_an_approver" | "already_reviewed"; message: string };

/**
 * Whether a reviewer may cast this vote on a pending request. `owners` holds the agent's
 * owner as recorded at submission and as configured now; neither may approve.
 */
export function eligibility(
  request: ActionRequest,
  reviewer: Pick<Reviewer, "email" | "groups" | "configured"> & { evidence?: IdentityEvidence },
  vote: Vote,
  owners: readonly string[],
): Eligibility {
  const refused = approverRefusal(request, reviewer, vote, owners);
  if (refused) return refused;
  const email = reviewer.email.toLowerCase();
  if (request.reviews.some((r) => r.reviewer.toLowerCase() === email)) {
    return {
      ok: false,
      code: "already_reviewed",
      message: `${email} has already reviewed this request; each reviewer counts once`,
    };
  }
  const account = reviewer.evidence && accountOf(reviewer.evidence);
  const earlier = account && request.reviews.find((r) => accountOf(r.evidence) === account);
  if (earlier) {
    return {
      ok: false,
      code: "already_reviewed",
      message: `this ${reviewer.evidence?.method} account has already reviewed this request as ${earlier.reviewer}; each person counts once, whatever address they use`,
    };
  }
  return { ok: true };
}

/**
 * The account behind a vote, as the service that verified it names it: one identity-provider
 * account seen with two addresses (an alias, a renamed mailbox) is one reviewer. Personal
 * tokens are bound to one address, so the address is the account.
 */
export function accountOf(evidence: IdentityEvidence): string | undefined {
  const named = (...parts: Json[]) =>
    parts.every((part) => typeof part === "string" && part !== "")
      ? JSON.stringify(parts)
      : undefined;
  switch (evidence.method) {
    case "oidc":
      return named("oidc", evidence.issuer ?? null, evidence.subject ?? null);
    case "slack":
      return named("slack", evidence.slackTeam ?? null, evidence.slackUser ?? null);
    case "teams":
      return named("teams", evidence.tenantId ?? null, evidence.aadObjectId ?? null);
    default:
      return undefined;
  }
}

/**
 * Why this reviewer may not cast this vote at all, whatever they did before: the agent's
 * owner may not approve, and only the rule's approver groups vote. Also decides whether an
 * earlier approval still counts (request-approvers.ts).
 */
export function approverRefusal(
  request: ActionRequest,
  reviewer: Pick<Reviewer, "email" | "groups" | "configured">,
  vote: Vote,
  owners: readonly string[],
): Extract<Eligibility, { ok: false }> | undefined {
  const email = reviewer.email.toLowerCase();
  const review = request.decision.review;
  const isOwner = owners.some((owner) => owner.toLowerCase() === email);
  if (isOwner && vote === "approve") {
    return {
      ok: false,
      code: "self_approval",
      message: `${email} owns agent ${request.agent.name} and cannot approve its requests`,
    };
  }
  const approvers = review?.approvers ?? [];
  if (approvers.length === 0 && reviewer.configured === false) {
    return {
      ok: false,
      code: "not_an_approver",
      message: `${email} is not a configured reviewer, and this rule names no approver groups`,
    };
  }
  if (approvers.length > 0 && !reviewer.groups.some((group) => approvers.includes(group))) {
    return {
      ok: false,
      code: "not_an_approver",
      message: `${email} is not in ${approvers.length === 1 ? "the approver group" : "any of the approver groups"} ${approvers.join(", ")} for this request`,
    };
  }
  return undefined;
}

/**
 * Why a vote through chat `via` is not that chat's to cast: a rule that names its channels
 * keeps the others out of its decisions too. A chat client can put any request's id in a
 * click's data, and one its rule kept out of that chat (`channels: []` for the console and
 * the API only) is not that chat's to decide. Undefined for the API and the console.
 */
export function channelRefusal(
  review: { channels?: readonly string[] | undefined } | undefined,
  via: string | undefined,
): AirlockError | undefined {
  if (via === undefined || !review?.channels || review.channels.includes(via)) return undefined;
  const where = ["the console and the API", ...review.channels].join(", ");
  return new AirlockError(
    "forbidden",
    `this request is decided in ${where} only (its rule's review.channels), not in ${via}`,
  );
}

export interface VoteArgs {
  reviewer: Reviewer;
  decision: Vote;
  comment: string;
  /** When the reviewer names the hash they saw, it must be the request's. */
  expectedHash?: string;
  /** The chat channel the vote came through; none for the API and the console. */
  via?: string;
  owners: readonly string[];
  /** Whether an earlier approval still counts toward the quorum (see request-approvers.ts). */
  counts?: (review: Review) => boolean;
  /** The groups an earlier approval stands for now; those it was cast with by default. */
  groupsOf?: (review: Review) => readonly string[];
  reviewId: string;
  now: number;
}

export function castVote(request: ActionRequest, args: VoteArgs): TransitionResult<ActionRequest> {
  const refusal = refusePending(request, args.now);
  if (refusal) return refusal;
  if (args.expectedHash !== undefined && args.expectedHash !== request.hash) {
    throw new AirlockError(
      "invalid_request",
      "requestHash: does not match this request; reload it and review what it asks now",
      { field: "requestHash" },
    );
  }
  const allowed = eligibility(request, args.reviewer, args.decision, args.owners);
  if (!allowed.ok) throw new AirlockError(allowed.code, allowed.message);
  const review = request.decision.review;
  const elsewhere = channelRefusal(review, args.via);
  if (elsewhere) throw elsewhere;
  if (args.decision === "approve" && review?.stepUp && args.reviewer.evidence.stepUp !== true) {
    throw new AirlockError(
      "step_up_required",
      "this rule requires a fresh sign-in through the identity provider to approve; a token or a chat click is not enough",
    );
  }

  const newReview: Review = {
    id: args.reviewId,
    requestId: request.id,
    reviewer: args.reviewer.email.toLowerCase(),
    decision: args.decision,
    comment: args.comment,
    requestHash: request.hash,
    evidence: args.reviewer.evidence,
    groups: votingGroups(review, args.reviewer.groups),
    createdAt: args.now,
  };
  const reviews = [...request.reviews, newReview];
  const counts = args.counts ?? (() => true);
  const groupsOf = args.groupsOf ?? ((r: Review) => r.groups ?? []);
  const standing = quorumStanding(
    review,
    reviews
      .filter((r) => r.decision === "approve" && (r === newReview || counts(r)))
      .map((r) => (r === newReview ? (newReview.groups ?? []) : groupsOf(r))),
  );
  const { approvals, quorum } = standing;
  const actor = { type: "reviewer", id: newReview.reviewer } as const;
  const events: AuditEventInput[] = [
    {
      type: "request.reviewed",
      requestId: request.id,
      actor,
      at: args.now,
      data: {
        reviewer: newReview.reviewer,
        decision: args.decision,
        comment: args.comment,
        requestHash: request.hash,
        evidence: args.reviewer.evidence,
        ...(review?.require ? { groups: newReview.groups ?? [], needed: standing.needed } : {}),
        approvals,
        quorum,
      },
    },
  ];
  let next: ActionRequest = {
    ...request,
    reviews,
    updatedAt: args.now,
    version: request.version + 1,
  };
  const notifications: Change["notifications"] = [{ event: "reviewed", requestId: request.id }];
  if (args.decision === "deny") {
    next = { ...next, status: "denied", finishedAt: args.now };
    events.push({
      type: "request.denied",
      requestId: request.id,
      actor,
      at: args.now,
      data: { by: newReview.reviewer, comment: args.comment },
    });
    notifications.push({ event: "resolved", requestId: request.id });
  } else if (standing.met) {
    next = { ...next, status: "approved" };
    events.push({
      type: "request.approved",
      requestId: request.id,
      actor: system,
      at: args.now,
      data: {
        hash: request.hash,
        approvers: reviews.filter((r) => r.decision === "approve").map((r) => r.reviewer),
        quorum,
      },
    });
  }
  return { change: { request: next, review: newReview, events, notifications }, value: next };
}

/**
 * The groups a vote is cast as: the reviewer's among the rule's approver groups, or among the
 * groups it requires approvals from when it names no approvers (its other groups do not matter).
 */
export function votingGroups(
  review: Pick<ReviewRequirements, "approvers" | "require"> | undefined,
  groups: readonly string[],
): string[] {
  const named = review?.approvers.length ? review.approvers : Object.keys(review?.require ?? {});
  return [...new Set(groups.filter((g) => named.includes(g)))];
}

/** Refuses anything but a live pending request; a pending one past its expiry is expired now. */
function refusePending(request: ActionRequest, now: number): TransitionResult<never> | undefined {
  if (request.status === "pending" && request.expiresAt !== null && now >= request.expiresAt) {
    return {
      change: expireChange(request, now),
      error: new AirlockError("expired", `request ${request.id} expired without enough approvals`),
      value: undefined as never,
    };
  }
  if (request.status === "expired") {
    throw new AirlockError("expired", `request ${request.id} expired without enough approvals`);
  }
  if (request.status !== "pending") {
    throw new AirlockError(
      "not_pending",
      `request ${request.id} is ${request.status}, no longer pending`,
    );
  }
  return undefined;
}

function expireChange(request: ActionRequest, now: number): Change {
  const approvals = request.reviews.filter((r) => r.decision === "approve").length;
  return move(
    request,
    now,
    { status: "expired", finishedAt: now },
    {
      type: "request.expired",
      actor: system,
      data: { approvals, quorum: request.decision.review?.quorum ?? 1 },
    },
  ).change!;
}

/** Expires a pending request whose time is up; anything else is left alone. */
export function expire(request: ActionRequest, now: number): TransitionResult<ActionRequest> {
  if (request.status !== "pending" || request.expiresAt === null || now < request.expiresAt) {
    return { value: request };
  }
  const change = expireChange(request, now);
  return { change, value: change.request };
}

export function cancel(
  request: ActionRequest,
  agent: string,
  now: number,
): TransitionResult<ActionRequest> {
  // Another agent's request does not exist as far as this agent can tell.
  if (request.agent.name !== agent) throw new AirlockError("not_found", `no request ${request.id}`);
  const refusal = refusePending(request, now);
  if (refusal) return refusal;
  return move(
    request,
    now,
    { status: "cancelled", finishedAt: now },
    {
      type: "request.cancelled",
      actor: { type: "agent", id: agent },
      data: {},
    },
  );
}

/** Claims an approved request for execution. Only one caller can win: the rest see `null`. */
export function startExecution(
  request: ActionRequest,
  now: number,
): TransitionResult<ActionRequest | null> {
  if (request.status !== "approved") return { value: null };
  return move(
    request,
    now,
    { status: "executing" },
    {
      type: "execution.started",
      actor: system,
      data: {
        hash: request.hash,
        authorisedBy: request.reviews
          .filter((r) => r.decision === "approve")
          .map((r) => r.reviewer),
      },
    },
  );
}

export function finishExecution(
  request: ActionRequest,
  outcome: Outcome,
  now: number,
): TransitionResult<ActionRequest> {
  // A request marked failed while this one ran (a restart) keeps that verdict.
  if (request.status !== "executing") return { value: request };
  return move(
    request,
    now,
    { status: outcome.ok ? "succeeded" : "failed", outcome, finishedAt: now },
    {
      type: outcome.ok ? "execution.succeeded" : "execution.failed",
      actor: system,
      data: {
        summary: outcome.summary,
        ...(outcome.reason ? { reason: outcome.reason } : {}),
        resultDigest: outcome.resultDigest,
      },
    },
  );
}

export const OUTCOME_UNKNOWN =
  "outcome unknown: the gateway stopped while the action was running; it may or may not have taken effect, and Airlock will not run it again";

/** Ends an execution that a stopped gateway left behind. Never re-runs it. */
export function interruptExecution(
  request: ActionRequest,
  now: number,
): TransitionResult<ActionRequest> {
  return finishExecution(
    request,
    {
      ok: false,
      summary: "outcome unknown",
      reason: OUTCOME_UNKNOWN,
      result: null,
      resultDigest: null,
    },
    now,
  );
}
