import { describe, expect, it } from "vitest";
import { AirlockError, type ErrorCode } from "../errors.js";
import { MASKED, maskInput } from "../masking/input-mask.js";
import type { PolicyDecision, ReviewRequirements } from "../policy/policy-types.js";
import {
  cancel,
  castVote,
  expire,
  finishExecution,
  interruptExecution,
  type NewRequest,
  OUTCOME_UNKNOWN,
  type Reviewer,
  startExecution,
  submit,
  type VoteArgs,
} from "./request-transitions.js";
import type { ActionRequest, Outcome, RequestStatus } from "./request-types.js";

const T0 = Date.parse("2030-01-01T09:00:00.000Z");
const HOUR = 3_600_000;
const OWNER = "olivia@example.com";
const HASH = "a".repeat(64);

function decision(overrides: Partial<PolicyDecision> = {}): PolicyDecision {
  return {
    decision: "review",
    rule: "refunds",
    reason: 'rule "refunds" requires review',
    risk: "medium",
    riskReason: "POST changes data upstream",
    review: { approvers: ["finance"], quorum: 1, expiresInMs: HOUR, stepUp: false },
    mask: [],
    policyDigest: "d".repeat(64),
    ...overrides,
  };
}

function newRequest(overrides: Partial<NewRequest> = {}): NewRequest {
  const request: Omit<NewRequest, "maskedInput"> = {
    id: "req_1",
    proposal: {
      agent: "support-bot",
      connection: "billing",
      operation: "request",
      input: { method: "POST", path: "/refunds", body: { card: "4111111111111111", amount: 1250 } },
      justification: "customer asked",
      context: { ticket: "T-1" },
    },
    agent: { name: "support-bot", owner: OWNER, labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: HASH,
    nonce: "n".repeat(32),
    decision: decision(),
    description: {
      preview: "POST billing/refunds",
      facts: { http: { method: "POST", path: "/refunds" } },
      risk: { level: "medium", reason: "POST changes data upstream" },
    },
    now: T0,
    ...overrides,
  };
  return {
    maskedInput: maskInput(request.proposal.input, request.decision.mask),
    ...request,
  };
}

/** A pending request whose review block has the given settings. */
function pending(review: Partial<ReviewRequirements> = {}): ActionRequest {
  const requirements = {
    approvers: ["finance"],
    quorum: 1,
    expiresInMs: HOUR,
    stepUp: false,
    ...review,
  };
  const request = submit(newRequest({ decision: decision({ review: requirements }) })).request;
  expect(request.status).toBe("pending");
  return request;
}

function reviewer(email: string, groups: string[] = ["finance"], stepUp?: boolean): Reviewer {
  return {
    email,
    groups,
    evidence: stepUp === undefined ? { method: "personal_token" } : { method: "oidc", stepUp },
  };
}

const bob = reviewer("bob@example.com");
const carol = reviewer("carol@example.com");

function vote(overrides: Partial<VoteArgs> = {}): VoteArgs {
  return {
    reviewer: bob,
    decision: "approve",
    comment: "looks right",
    owners: [OWNER],
    reviewId: "rev_1",
    now: T0 + 60_000,
    ...overrides,
  };
}

/** Runs fn and returns the AirlockError it throws; fails the test if it throws nothing else. */
function refusal(fn: () => unknown): AirlockError {
  try {
    fn();
  } catch (error) {
    if (error instanceof AirlockError) return error;
    throw error;
  }
  throw new Error("expected an AirlockError, but nothing was thrown");
}

function expectRefused(fn: () => unknown, code: ErrorCode): void {
  expect(refusal(fn).code).toBe(code);
}

function approved(): ActionRequest {
  const value = castVote(pending(), vote()).value;
  expect(value.status).toBe("approved");
  return value;
}

function executing(): ActionRequest {
  const value = startExecution(approved(), T0 + 120_000).value;
  expect(value?.status).toBe("executing");
  return value!;
}

const success: Outcome = {
  ok: true,
  summary: "HTTP 200",
  result: { id: "re_1" },
  resultDigest: "e".repeat(64),
};
const failure: Outcome = {
  ok: false,
  summary: "HTTP 500",
  reason: "upstream error",
  result: null,
  resultDigest: null,
};

describe("submit", () => {
  it("starts an allowed request executing, authorised by its rule", () => {
    const change = submit(
      newRequest({ decision: decision({ decision: "allow", rule: "reads", review: undefined }) }),
    );
    expect(change.request).toMatchObject({
      status: "executing",
      expiresAt: null,
      finishedAt: null,
      version: 1,
      createdAt: T0,
      updatedAt: T0,
      reviews: [],
      outcome: null,
    });
    expect(change.events.map((e) => e.type)).toEqual([
      "request.submitted",
      "request.decided",
      "execution.started",
    ]);
    expect(change.events[2]?.data).toEqual({ hash: HASH, authorisedBy: 'rule "reads"' });
    expect(change.notifications).toEqual([]);
  });

  it("denies a denied request at once, finished and without notifications", () => {
    const change = submit(
      newRequest({ decision: decision({ decision: "deny", review: undefined }) }),
    );
    expect(change.request).toMatchObject({
      status: "denied",
      expiresAt: null,
      finishedAt: T0,
      version: 1,
    });
    expect(change.events.map((e) => e.type)).toEqual(["request.submitted", "request.decided"]);
    expect(change.notifications).toEqual([]);
  });

  it("holds a request for review until now + expiresIn, and asks for reviews", () => {
    const change = submit(
      newRequest({
        decision: decision({ review: { ...decision().review!, expiresInMs: 15 * 60_000 } }),
      }),
    );
    expect(change.request).toMatchObject({
      status: "pending",
      expiresAt: T0 + 15 * 60_000,
      finishedAt: null,
    });
    expect(change.events.map((e) => e.type)).toEqual(["request.submitted", "request.decided"]);
    expect(change.events[1]?.data).toMatchObject({
      decision: "review",
      rule: "refunds",
      review: {
        approvers: ["finance"],
        quorum: 1,
        stepUp: false,
        expiresAt: "2030-01-01T09:15:00.000Z",
      },
    });
    expect(change.notifications).toEqual([{ event: "requested", requestId: "req_1" }]);
  });

  it("records the masked input in the submitted event and keeps the real input on the request", () => {
    const change = submit(newRequest({ decision: decision({ mask: ["body.card"] }) }));
    const submitted = change.events[0]!;
    expect(submitted.actor).toEqual({ type: "agent", id: "support-bot" });
    expect(submitted.data).toMatchObject({
      agent: "support-bot",
      owner: OWNER,
      hash: HASH,
      input: { method: "POST", path: "/refunds", body: { card: MASKED, amount: 1250 } },
    });
    expect(JSON.stringify(change.events)).not.toContain("4111111111111111");
    expect(change.request.input).toEqual({
      method: "POST",
      path: "/refunds",
      body: { card: "4111111111111111", amount: 1250 },
    });
  });

  it("records a policy error in the decided event", () => {
    const change = submit(
      newRequest({
        decision: decision({
          decision: "deny",
          review: undefined,
          error: "Unknown variable: http",
        }),
      }),
    );
    expect(change.events[1]?.data).toMatchObject({
      decision: "deny",
      error: "Unknown variable: http",
    });
  });
});

describe("castVote", () => {
  it("approves once the quorum of one is met, recording the review", () => {
    const request = pending();
    const result = castVote(request, vote({ reviewer: reviewer("Bob@Example.com") }));
    expect(result.error).toBeUndefined();
    expect(result.value).toMatchObject({
      status: "approved",
      version: request.version + 1,
      updatedAt: T0 + 60_000,
    });
    expect(result.change?.review).toMatchObject({
      id: "rev_1",
      reviewer: "bob@example.com",
      decision: "approve",
      requestHash: HASH,
    });
    expect(result.change?.events.map((e) => e.type)).toEqual([
      "request.reviewed",
      "request.approved",
    ]);
    expect(result.change?.events[1]?.data).toEqual({
      hash: HASH,
      approvers: ["bob@example.com"],
      quorum: 1,
    });
    expect(result.change?.notifications).toEqual([{ event: "reviewed", requestId: "req_1" }]);
  });

  it("waits for the quorum, counting distinct reviewers", () => {
    const first = castVote(pending({ quorum: 2 }), vote());
    expect(first.value.status).toBe("pending");
    expect(first.change?.events.map((e) => e.type)).toEqual(["request.reviewed"]);
    expect(first.change?.events[0]?.data).toMatchObject({ approvals: 1, quorum: 2 });

    expectRefused(
      () => castVote(first.value, vote({ reviewer: reviewer("BOB@example.com") })),
      "already_reviewed",
    );

    const second = castVote(first.value, vote({ reviewer: carol, reviewId: "rev_2" }));
    expect(second.value.status).toBe("approved");
    expect(second.value.version).toBe(first.value.version + 1);
    expect(second.change?.events[1]?.data).toMatchObject({
      approvers: ["bob@example.com", "carol@example.com"],
    });
  });

  it("records the groups a vote is cast as, and fills a required group's place only with someone in it now", () => {
    const review = { approvers: ["finance", "security"], quorum: 2, require: { security: 1 } };
    const sam = reviewer("sam@example.com", ["security", "eng"]);
    const first = castVote(pending(review), vote({ reviewer: sam }));
    expect(first.change?.review?.groups).toEqual(["security"]);
    expect(first.change?.events[0]?.data).toMatchObject({ groups: ["security"], needed: {} });
    // Sam has left security since: his approval still counts, but no longer for security.
    const groupsOf = () => [] as string[];
    const second = castVote(first.value, vote({ reviewer: carol, reviewId: "rev_2", groupsOf }));
    expect(second.value.status).toBe("pending");
    expect(second.change?.events[0]?.data).toMatchObject({
      approvals: 2,
      needed: { security: 1 },
    });
    // As he voted, he fills it.
    const kept = castVote(first.value, vote({ reviewer: carol, reviewId: "rev_2" }));
    expect(kept.value.status).toBe("approved");
  });

  it("counts one identity-provider or chat account once, whatever address it votes under", () => {
    const as = (email: string, evidence: Reviewer["evidence"]): Reviewer => ({
      email,
      groups: ["finance"],
      evidence,
    });
    const oidc = { method: "oidc", issuer: "https://idp.example", subject: "carol-1" } as const;
    const first = castVote(
      pending({ quorum: 2 }),
      vote({ reviewer: as("carol@example.com", oidc) }),
    );
    const alias = as("carol.smith@example.com", oidc);
    const refused = refusal(() => castVote(first.value, vote({ reviewer: alias, reviewId: "r2" })));
    expect(refused.code).toBe("already_reviewed");
    expect(refused.message).toContain("as carol@example.com");
    // Another account of the same provider, or the same subject at another issuer, is another person.
    for (const other of [
      { ...oidc, subject: "dan-2" },
      { ...oidc, issuer: "https://other.example" },
    ]) {
      const next = castVote(
        first.value,
        vote({ reviewer: as("d@example.com", other), reviewId: "r2" }),
      );
      expect(next.value.status).toBe("approved");
    }
    const slack = { method: "slack", slackTeam: "T1", slackUser: "U1" } as const;
    const byChat = castVote(pending({ quorum: 2 }), vote({ reviewer: as("e@example.com", slack) }));
    expectRefused(
      () => castVote(byChat.value, vote({ reviewer: as("f@example.com", slack), reviewId: "r2" })),
      "already_reviewed",
    );
    const teams = { method: "teams", tenantId: "t", aadObjectId: "o" } as const;
    const byTeams = castVote(
      pending({ quorum: 2 }),
      vote({ reviewer: as("e@example.com", teams) }),
    );
    expectRefused(
      () => castVote(byTeams.value, vote({ reviewer: as("f@example.com", teams), reviewId: "r2" })),
      "already_reviewed",
    );
  });

  it("refuses a second vote by the same reviewer, even a deny", () => {
    const first = castVote(pending({ quorum: 2 }), vote());
    expectRefused(() => castVote(first.value, vote({ decision: "deny" })), "already_reviewed");
  });

  it("refuses approval by the agent's owner, whatever the case of the e-mail", () => {
    expectRefused(() => castVote(pending(), vote({ reviewer: reviewer(OWNER) })), "self_approval");
    expectRefused(
      () => castVote(pending(), vote({ reviewer: reviewer("Olivia@EXAMPLE.com") })),
      "self_approval",
    );
    expectRefused(
      () =>
        castVote(
          pending(),
          vote({ reviewer: reviewer("bob@example.com"), owners: ["BOB@example.com"] }),
        ),
      "self_approval",
    );
  });

  it("refuses approval by either owner in the list: as recorded and as configured now", () => {
    const owners = [OWNER, "new-owner@example.com"];
    expectRefused(
      () => castVote(pending(), vote({ reviewer: reviewer(OWNER), owners })),
      "self_approval",
    );
    expectRefused(
      () => castVote(pending(), vote({ reviewer: reviewer("new-owner@example.com"), owners })),
      "self_approval",
    );
    expect(castVote(pending(), vote({ owners })).value.status).toBe("approved");
  });

  it("lets the owner deny", () => {
    expect(
      castVote(pending(), vote({ reviewer: reviewer(OWNER), decision: "deny" })).value.status,
    ).toBe("denied");
  });

  it("refuses a reviewer outside the approver groups, for approve and for deny", () => {
    const outsider = reviewer("eve@example.com", ["support"]);
    expectRefused(() => castVote(pending(), vote({ reviewer: outsider })), "not_an_approver");
    expectRefused(
      () => castVote(pending(), vote({ reviewer: outsider, decision: "deny" })),
      "not_an_approver",
    );
  });

  it("accepts a reviewer in any one of several approver groups", () => {
    const request = pending({ approvers: ["finance", "ops"] });
    expect(
      castVote(request, vote({ reviewer: reviewer("oscar@example.com", ["ops"]) })).value.status,
    ).toBe("approved");
  });

  it("lets any reviewer vote when approvers is empty", () => {
    const request = pending({ approvers: [] });
    expect(
      castVote(request, vote({ reviewer: reviewer("anyone@example.com", []) })).value.status,
    ).toBe("approved");
  });

  it("makes a deny final: denied, finished, resolved", () => {
    const result = castVote(pending({ quorum: 2 }), vote({ decision: "deny", comment: "no" }));
    expect(result.value).toMatchObject({ status: "denied", finishedAt: T0 + 60_000, version: 2 });
    expect(result.change?.events.map((e) => e.type)).toEqual([
      "request.reviewed",
      "request.denied",
    ]);
    expect(result.change?.events[1]?.data).toEqual({ by: "bob@example.com", comment: "no" });
    expect(result.change?.notifications).toEqual([
      { event: "reviewed", requestId: "req_1" },
      { event: "resolved", requestId: "req_1" },
    ]);
    expectRefused(() => castVote(result.value, vote({ reviewer: carol })), "not_pending");
  });

  it("denies on a deny even after an approval toward the quorum", () => {
    const first = castVote(pending({ quorum: 2 }), vote());
    const second = castVote(first.value, vote({ reviewer: carol, decision: "deny" }));
    expect(second.value.status).toBe("denied");
  });

  it.each<RequestStatus>(["approved", "executing", "succeeded", "failed", "denied", "cancelled"])(
    "refuses a vote on a %s request as not_pending",
    (status) => {
      expectRefused(() => castVote({ ...pending(), status }, vote()), "not_pending");
    },
  );

  it("refuses a vote on an expired request as expired", () => {
    expectRefused(() => castVote({ ...pending(), status: "expired" }, vote()), "expired");
  });

  it("expires a request voted on at or after its expiry, and reports expired", () => {
    const request = pending({ expiresInMs: HOUR });
    for (const now of [T0 + HOUR, T0 + 2 * HOUR]) {
      const result = castVote(request, vote({ now }));
      expect(result.change?.request).toMatchObject({
        status: "expired",
        finishedAt: now,
        version: request.version + 1,
      });
      expect(result.change?.review).toBeUndefined();
      expect(result.change?.events.map((e) => e.type)).toEqual(["request.expired"]);
      expect(result.error).toBeInstanceOf(AirlockError);
      expect((result.error as AirlockError).code).toBe("expired");
    }
  });

  it("accepts a vote one millisecond before expiry", () => {
    expect(castVote(pending(), vote({ now: T0 + HOUR - 1 })).value.status).toBe("approved");
  });

  it("refuses a vote naming another hash, on the requestHash field", () => {
    const error = refusal(() => castVote(pending(), vote({ expectedHash: "b".repeat(64) })));
    expect(error.code).toBe("invalid_request");
    expect(error.field).toBe("requestHash");
  });

  it("accepts a vote naming the request's hash", () => {
    expect(castVote(pending(), vote({ expectedHash: HASH })).value.status).toBe("approved");
  });

  it("takes only configured reviewers for a rule without approver groups", () => {
    const open = pending({ approvers: [] });
    const idpOnly: Reviewer = {
      ...reviewer("rita@example.com", ["requesters"]),
      configured: false,
    };
    expectRefused(() => castVote(open, vote({ reviewer: idpOnly })), "not_an_approver");
    expect(castVote(open, vote({ reviewer: { ...bob, configured: true } })).value.status).toBe(
      "approved",
    );
  });

  it("requires step-up evidence to approve when the rule asks for it", () => {
    const request = pending({ stepUp: true });
    expectRefused(
      () => castVote(request, vote({ reviewer: reviewer("bob@example.com") })),
      "step_up_required",
    );
    expectRefused(
      () => castVote(request, vote({ reviewer: reviewer("bob@example.com", ["finance"], false) })),
      "step_up_required",
    );
    const stringTrue: Reviewer = { ...bob, evidence: { method: "oidc", stepUp: "true" } };
    expectRefused(() => castVote(request, vote({ reviewer: stringTrue })), "step_up_required");
    const ok = castVote(
      request,
      vote({ reviewer: reviewer("bob@example.com", ["finance"], true) }),
    );
    expect(ok.value.status).toBe("approved");
    expect(ok.change?.review?.evidence).toEqual({ method: "oidc", stepUp: true });
  });

  it("lets a reviewer deny without step-up", () => {
    expect(castVote(pending({ stepUp: true }), vote({ decision: "deny" })).value.status).toBe(
      "denied",
    );
  });

  it("does not change the request it was given", () => {
    const request = pending({ quorum: 2 });
    const snapshot = structuredClone(request);
    castVote(request, vote());
    expect(request).toEqual(snapshot);
  });
});

describe("expire", () => {
  it("expires a pending request whose time is up", () => {
    const request = pending({ quorum: 2 });
    const result = expire(request, T0 + HOUR);
    expect(result.value).toMatchObject({
      status: "expired",
      finishedAt: T0 + HOUR,
      version: request.version + 1,
    });
    expect(result.change?.events).toEqual([
      {
        type: "request.expired",
        requestId: "req_1",
        actor: { type: "system", id: "airlock" },
        at: T0 + HOUR,
        data: { approvals: 0, quorum: 2 },
      },
    ]);
    expect(result.change?.notifications).toEqual([{ event: "resolved", requestId: "req_1" }]);
  });

  it("counts the approvals gathered before expiry", () => {
    const partly = castVote(pending({ quorum: 2 }), vote()).value;
    expect(expire(partly, T0 + HOUR).change?.events[0]?.data).toEqual({ approvals: 1, quorum: 2 });
  });

  it("leaves a pending request alone before its expiry", () => {
    const request = pending();
    const result = expire(request, T0 + HOUR - 1);
    expect(result.change).toBeUndefined();
    expect(result.value).toBe(request);
  });

  it("leaves a request that is no longer pending alone, even past its expiry", () => {
    for (const request of [approved(), executing()]) {
      const result = expire(request, T0 + 10 * HOUR);
      expect(result.change).toBeUndefined();
      expect(result.value).toBe(request);
    }
  });
});

describe("cancel", () => {
  it("lets the agent that submitted cancel its pending request", () => {
    const request = pending();
    const result = cancel(request, "support-bot", T0 + 1000);
    expect(result.value).toMatchObject({
      status: "cancelled",
      finishedAt: T0 + 1000,
      version: request.version + 1,
    });
    expect(result.change?.events).toEqual([
      {
        type: "request.cancelled",
        requestId: "req_1",
        actor: { type: "agent", id: "support-bot" },
        at: T0 + 1000,
        data: {},
      },
    ]);
    expect(result.change?.notifications).toEqual([{ event: "resolved", requestId: "req_1" }]);
  });

  it("hides another agent's request as not_found, whatever its status", () => {
    expectRefused(() => cancel(pending(), "other-bot", T0 + 1000), "not_found");
    expectRefused(() => cancel(approved(), "other-bot", T0 + 1000), "not_found");
  });

  it("refuses to cancel a request that is no longer pending", () => {
    expectRefused(() => cancel(approved(), "support-bot", T0 + 1000), "not_pending");
  });

  it("expires instead of cancelling a request past its expiry", () => {
    const result = cancel(pending(), "support-bot", T0 + HOUR);
    expect(result.change?.request.status).toBe("expired");
    expect((result.error as AirlockError).code).toBe("expired");
  });
});

describe("startExecution", () => {
  it("claims an approved request, authorised by its approvers", () => {
    const request = approved();
    const result = startExecution(request, T0 + 120_000);
    expect(result.value).toMatchObject({
      status: "executing",
      updatedAt: T0 + 120_000,
      version: request.version + 1,
    });
    expect(result.change?.events.map((e) => [e.type, e.data])).toEqual([
      ["execution.started", { hash: HASH, authorisedBy: ["bob@example.com"] }],
    ]);
    expect(result.change?.notifications).toEqual([]);
  });

  it.each<RequestStatus>([
    "pending",
    "executing",
    "succeeded",
    "failed",
    "denied",
    "expired",
    "cancelled",
  ])("refuses a %s request with null and no change", (status) => {
    const result = startExecution({ ...approved(), status }, T0 + 120_000);
    expect(result.value).toBeNull();
    expect(result.change).toBeUndefined();
  });

  it("lets only the first of two claims win", () => {
    const first = startExecution(approved(), T0 + 120_000);
    expect(startExecution(first.value!, T0 + 120_001).value).toBeNull();
  });
});

describe("finishExecution", () => {
  it("records success with the outcome", () => {
    const request = executing();
    const result = finishExecution(request, success, T0 + 130_000);
    expect(result.value).toMatchObject({
      status: "succeeded",
      outcome: success,
      finishedAt: T0 + 130_000,
      version: request.version + 1,
    });
    expect(result.change?.events.map((e) => [e.type, e.data])).toEqual([
      ["execution.succeeded", { summary: "HTTP 200", resultDigest: "e".repeat(64) }],
    ]);
    expect(result.change?.notifications).toEqual([{ event: "resolved", requestId: "req_1" }]);
  });

  it("records a failure with its reason", () => {
    const result = finishExecution(executing(), failure, T0 + 130_000);
    expect(result.value.status).toBe("failed");
    expect(result.change?.events.map((e) => [e.type, e.data])).toEqual([
      ["execution.failed", { summary: "HTTP 500", reason: "upstream error", resultDigest: null }],
    ]);
  });

  it.each<RequestStatus>(["approved", "pending", "succeeded", "failed"])(
    "leaves a %s request alone",
    (status) => {
      const request = { ...executing(), status };
      const result = finishExecution(request, success, T0 + 130_000);
      expect(result.change).toBeUndefined();
      expect(result.value).toBe(request);
    },
  );
});

describe("interruptExecution", () => {
  it("fails an execution a stopped gateway left behind, with outcome unknown", () => {
    const request = executing();
    const result = interruptExecution(request, T0 + 200_000);
    expect(result.value).toMatchObject({
      status: "failed",
      finishedAt: T0 + 200_000,
      version: request.version + 1,
      outcome: { ok: false, reason: OUTCOME_UNKNOWN, result: null, resultDigest: null },
    });
    expect(result.change?.events[0]).toMatchObject({
      type: "execution.failed",
      data: { reason: OUTCOME_UNKNOWN },
    });
  });

  it("leaves a finished execution alone", () => {
    const done = finishExecution(executing(), success, T0 + 130_000).value;
    const result = interruptExecution(done, T0 + 200_000);
    expect(result.change).toBeUndefined();
    expect(result.value.status).toBe("succeeded");
  });
});

describe("versions", () => {
  it("increase by exactly one on each change along the whole lifecycle", () => {
    const submitted = pending({ quorum: 2 });
    expect(submitted.version).toBe(1);
    const one = castVote(submitted, vote()).value;
    const two = castVote(one, vote({ reviewer: carol, reviewId: "rev_2" })).value;
    const running = startExecution(two, T0 + 120_000).value!;
    const done = finishExecution(running, success, T0 + 130_000).value;
    expect([one, two, running, done].map((r) => [r.status, r.version])).toEqual([
      ["pending", 2],
      ["approved", 3],
      ["executing", 4],
      ["succeeded", 5],
    ]);
  });
});
