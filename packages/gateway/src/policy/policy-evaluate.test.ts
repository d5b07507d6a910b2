import { describe, expect, it } from "vitest";
import { digest } from "../common/canonical-json.js";
import { type RuleConfig, ruleSchema } from "../config/config-schema.js";
import { compilePolicy, type Policy } from "./policy-compile.js";
import { evaluatePolicy } from "./policy-evaluate.js";
import type { PolicyInput } from "./policy-types.js";

const rule = (config: Record<string, unknown>): RuleConfig => ruleSchema.parse(config);

/** Compiles rules that must compile cleanly. */
function policyOf(...configs: Record<string, unknown>[]): Policy {
  const { policy, issues } = compilePolicy(configs.map(rule));
  expect(issues).toEqual([]);
  return policy;
}

function input(overrides: Partial<PolicyInput> = {}): PolicyInput {
  return {
    action: {
      connection: "billing",
      operation: "request",
      input: { method: "POST", path: "/refunds", body: { amount: 1250 } },
      justification: "customer asked",
      context: { ticket: "T-1" },
    },
    agent: { name: "support-bot", owner: "olivia@example.com", labels: { team: "support" } },
    now: new Date("2030-01-01T12:30:00.000Z"),
    facts: { http: { method: "POST", path: "/refunds" } },
    risk: { level: "medium", reason: "POST changes data upstream" },
    ...overrides,
  };
}

describe("the README's rules on http.path", () => {
  const policy = policyOf(
    {
      name: "refunds",
      when: 'http.method != "GET" && http.path.matches("(?i)^/refunds([/.]|$)")',
      decision: "review",
    },
    {
      name: "invoice reads",
      when: 'http.method == "GET" && http.path.matches("^/invoices(/[A-Za-z0-9_-]+)?/?$")',
      decision: "allow",
    },
  );
  const decide = (method: string, path: string) =>
    evaluatePolicy(policy, input({ facts: { http: { method, path } } })).rule;

  it.each(["/refunds", "/refunds/", "/Refunds", "/REFUNDS/r_1", "/refunds.json"])(
    "review %j",
    (path) => {
      expect(decide("POST", path)).toBe("refunds");
    },
  );

  it.each(["/invoices", "/invoices/", "/invoices/inv_1", "/invoices/inv_1/"])(
    "allow reads of %j",
    (path) => {
      expect(decide("GET", path)).toBe("invoice reads");
    },
  );

  it.each([
    ["POST", "/refunds-report"],
    ["GET", "/Invoices"],
    ["GET", "/invoices/inv_1/refunds"],
  ])("leave %s %j to the final deny", (method, path) => {
    expect(decide(method, path)).toBeNull();
  });
});

describe("evaluatePolicy", () => {
  it("lets the first matching rule decide", () => {
    const policy = policyOf(
      { name: "reads", when: 'http.method == "GET"', decision: "allow" },
      { name: "refunds", when: 'http.path.startsWith("/refunds")', decision: "review" },
      { name: "billing", when: 'action.connection == "billing"', decision: "allow" },
    );
    const decision = evaluatePolicy(policy, input());
    expect(decision.decision).toBe("review");
    expect(decision.rule).toBe("refunds");
    expect(decision.reason).toBe('rule "refunds" requires review');
    expect(decision.error).toBeUndefined();
  });

  it("lets a rule without a condition match everything", () => {
    const policy = policyOf(
      { name: "everything", decision: "allow" },
      { name: "never", decision: "deny" },
    );
    expect(evaluatePolicy(policy, input())).toMatchObject({
      decision: "allow",
      rule: "everything",
      reason: 'allowed by rule "everything"',
    });
  });

  it("runs matches() as RE2, CEL's dialect, and puts JavaScript's RegExp back after", () => {
    const native = RegExp;
    const policy = policyOf(
      // (?i) is RE2's; JavaScript's RegExp refuses it, which denied every action.
      { name: "refunds", when: 'action.input.path.matches("(?i)^/REFUNDS$")', decision: "review" },
      { name: "rest", decision: "allow" },
    );
    expect(evaluatePolicy(policy, input())).toMatchObject({ decision: "review", rule: "refunds" });
    expect(RegExp).toBe(native);
    // A pattern only an agent's value supplies, and that fails: the rule denies, RegExp is back.
    const broken = policyOf({
      name: "theirs",
      when: "action.input.path.matches(action.justification)",
      decision: "allow",
    });
    const refused = evaluatePolicy(
      broken,
      input({ ...input(), action: { ...input().action, justification: "(" } }),
    );
    expect(refused).toMatchObject({ decision: "deny", rule: "theirs" });
    expect(RegExp).toBe(native);
    expect(/a+/.test("caab")).toBe(true);
  });

  it("matches in time linear in the text: an agent's megabyte cannot hold the gateway", () => {
    // With JavaScript's backtracking engine this search takes minutes (quadratic in the
    // text); the test would run into its timeout.
    const policy = policyOf(
      {
        name: "drops",
        when: 'action.justification.matches("(drop|delete).*table")',
        decision: "deny",
      },
      { name: "rest", decision: "allow" },
    );
    const flood = "drop ".repeat(200_000);
    const decision = evaluatePolicy(
      policy,
      input({ action: { ...input().action, justification: flood } }),
    );
    expect(decision).toMatchObject({ decision: "allow", rule: "rest" });
    expect(
      evaluatePolicy(
        policy,
        input({ action: { ...input().action, justification: `${flood} table` } }),
      ),
    ).toMatchObject({ decision: "deny", rule: "drops" });
  });

  it("reads has() on a body sent as text as false, and type() tells such a body apart, as the README says", () => {
    const textBody = input({
      action: { ...input().action, input: { method: "POST", path: "/x", body: '{"force":true}' } },
    });
    const guarded = policyOf(
      {
        name: "force",
        when: "has(action.input.body.force) && action.input.body.force == true",
        decision: "deny",
      },
      { name: "rest", decision: "allow" },
    );
    // The deny rule misses the same request written as JSON text.
    expect(evaluatePolicy(guarded, textBody)).toMatchObject({ decision: "allow", rule: "rest" });
    const typed = policyOf(
      { name: "text bodies", when: "type(action.input.body) == string", decision: "deny" },
      {
        name: "force",
        when: "has(action.input.body.force) && action.input.body.force == true",
        decision: "deny",
      },
      { name: "rest", decision: "allow" },
    );
    expect(evaluatePolicy(typed, textBody)).toMatchObject({
      decision: "deny",
      rule: "text bodies",
    });
  });

  it("gives a deny rule's reason to the agent, or a default", () => {
    const withReason = policyOf({
      name: "no-deletes",
      decision: "deny",
      reason: "deletes are never allowed",
    });
    expect(evaluatePolicy(withReason, input()).reason).toBe("deletes are never allowed");
    const without = policyOf({ name: "no-deletes", decision: "deny" });
    expect(evaluatePolicy(without, input()).reason).toBe('denied by rule "no-deletes"');
  });

  it("denies with rule null when no rule matches", () => {
    const policy = policyOf(
      {
        name: "reads",
        when: 'http.method == "GET"',
        decision: "allow",
        mask: { input: ["body.card"] },
      },
      {
        name: "other",
        when: 'action.connection == "crm"',
        decision: "allow",
        mask: { input: ["body.iban"] },
      },
    );
    const decision = evaluatePolicy(policy, input());
    expect(decision).toMatchObject({
      decision: "deny",
      rule: null,
      risk: "medium",
      riskReason: "POST changes data upstream",
      policyDigest: policy.digest,
    });
    expect(decision.error).toBeUndefined();
    // Nothing decided the masking, so everything any rule hides stays hidden.
    expect(decision.mask).toEqual(["body.card", "body.iban"]);
  });

  it("masks what any rule masks whichever rule decides, the deciding rule's masks first", () => {
    const policy = policyOf(
      {
        name: "refunds",
        when: 'http.path == "/refunds"',
        decision: "review",
        mask: { input: ["body.card"] },
      },
      { name: "reads", when: 'http.method == "GET"', decision: "allow" },
      {
        name: "notes",
        when: 'http.path == "/notes"',
        decision: "allow",
        mask: { input: ["body.note"] },
      },
      { name: "nothing else", decision: "deny" },
    );
    // A deny rule without masks of its own: a card sent anyway stays hidden in the audit trail.
    const deleted = input({ facts: { http: { method: "DELETE", path: "/x" } } });
    expect(evaluatePolicy(policy, deleted)).toMatchObject({
      rule: "nothing else",
      mask: ["body.card", "body.note"],
    });
    expect(evaluatePolicy(policy, input()).mask).toEqual(["body.card", "body.note"]);
    expect(
      evaluatePolicy(policy, input({ facts: { http: { method: "POST", path: "/notes" } } })).mask,
    ).toEqual(["body.note", "body.card"]);
  });

  it("denies with no rules at all", () => {
    expect(evaluatePolicy(policyOf(), input())).toMatchObject({
      decision: "deny",
      rule: null,
      mask: [],
    });
  });

  it("fails closed when a condition throws at run time, hiding every rule's mask", () => {
    const policy = policyOf(
      {
        name: "crm",
        when: 'action.connection == "crm"',
        decision: "allow",
        mask: { input: ["body.a"] },
      },
      {
        name: "reads",
        when: 'http.method == "GET"',
        decision: "allow",
        mask: { input: ["body.b"] },
      },
      { name: "rest", decision: "allow", mask: { input: ["body.c", "body.a"] } },
    );
    // No http facts: the second rule cannot be evaluated.
    const decision = evaluatePolicy(policy, input({ facts: {} }));
    expect(decision.decision).toBe("deny");
    expect(decision.rule).toBe("reads");
    expect(decision.error).toEqual(expect.any(String));
    expect(decision.error).not.toBe("");
    expect(decision.reason).toContain('rule "reads"');
    expect(decision.mask).toEqual(["body.a", "body.b", "body.c"]);
    expect(decision.risk).toBe("medium");
  });

  it("does not evaluate rules after the first match, so a later failing rule is harmless", () => {
    const policy = policyOf(
      { name: "billing", when: 'action.connection == "billing"', decision: "allow" },
      { name: "reads", when: 'http.method == "GET"', decision: "allow" },
    );
    expect(evaluatePolicy(policy, input({ facts: {} }))).toMatchObject({
      decision: "allow",
      rule: "billing",
    });
  });

  it("fails closed when a dyn condition gives something other than a bool", () => {
    const policy = policyOf({ name: "flag", when: "action.input.flag", decision: "allow" });
    const yes = input({ action: { ...input().action, input: { flag: true } } });
    expect(evaluatePolicy(policy, yes).decision).toBe("allow");
    const text = input({ action: { ...input().action, input: { flag: "yes" } } });
    const decision = evaluatePolicy(policy, text);
    expect(decision).toMatchObject({ decision: "deny", rule: "flag" });
    expect(decision.error).toContain("not a bool");
  });

  it("fails closed at a rule whose condition did not compile", () => {
    const { policy, issues } = compilePolicy([
      rule({ name: "typo", when: 'action.conection == "billing"', decision: "allow" }),
      rule({ name: "rest", decision: "allow" }),
    ]);
    expect(issues).toHaveLength(1);
    expect(evaluatePolicy(policy, input())).toMatchObject({
      decision: "deny",
      rule: "typo",
      error: "its condition did not compile",
    });
  });

  it("takes the connector's risk hint when the rule sets none", () => {
    const policy = policyOf({ name: "all", decision: "allow" });
    expect(
      evaluatePolicy(policy, input({ risk: { level: "low", reason: "GET only reads" } })),
    ).toMatchObject({
      risk: "low",
      riskReason: "GET only reads",
    });
  });

  it("lets a rule's risk override the hint", () => {
    const policy = policyOf({ name: "refunds", decision: "allow", risk: "critical" });
    expect(evaluatePolicy(policy, input({ risk: { level: "low", reason: "hint" } }))).toMatchObject(
      {
        risk: "critical",
        riskReason: 'set by rule "refunds"',
      },
    );
  });

  it("lets the review block's risk override both the rule's and the hint", () => {
    const policy = policyOf({
      name: "refunds",
      decision: "review",
      risk: "low",
      review: { risk: "high" },
    });
    expect(evaluatePolicy(policy, input())).toMatchObject({
      risk: "high",
      riskReason: 'set by rule "refunds"',
    });
  });

  it("makes the connector's risk hint usable in conditions", () => {
    const policy = policyOf({ name: "risky", when: 'risk.hint == "medium"', decision: "review" });
    expect(evaluatePolicy(policy, input()).decision).toBe("review");
    expect(evaluatePolicy(policy, input({ risk: { level: "low", reason: "read" } })).decision).toBe(
      "deny",
    );
  });

  it("makes now usable in conditions", () => {
    const always = policyOf({ name: "any-time", when: "now.getHours() >= 0", decision: "allow" });
    expect(evaluatePolicy(always, input()).decision).toBe("allow");
    const noon = policyOf({ name: "noon", when: "now.getHours() == 12", decision: "allow" });
    expect(
      evaluatePolicy(noon, input({ now: new Date("2030-01-01T12:30:00.000Z") })).decision,
    ).toBe("allow");
    expect(
      evaluatePolicy(noon, input({ now: new Date("2030-01-01T13:30:00.000Z") })).decision,
    ).toBe("deny");
  });

  it("makes the agent, its labels, the input and the context usable in conditions", () => {
    const policy = policyOf({
      name: "support-small-refunds",
      when: 'agent.labels.team == "support" && action.input.body.amount < 5000 && action.context.ticket == "T-1"',
      decision: "allow",
    });
    expect(evaluatePolicy(policy, input()).decision).toBe("allow");
    const big = input({ action: { ...input().action, input: { body: { amount: 9000 } } } });
    expect(evaluatePolicy(policy, big).decision).toBe("deny");
  });

  it("returns the review requirements and mask of the matching rule", () => {
    const policy = policyOf(
      {
        name: "refunds",
        decision: "review",
        review: {
          approvers: ["finance"],
          quorum: 2,
          expiresIn: "15m",
          stepUp: true,
          channels: ["slack"],
        },
        mask: { input: ["body.card"] },
      },
      { name: "unreached", decision: "allow", mask: { input: ["body.other"] } },
    );
    expect(evaluatePolicy(policy, input())).toMatchObject({
      decision: "review",
      review: {
        approvers: ["finance"],
        quorum: 2,
        expiresInMs: 900_000,
        stepUp: true,
        channels: ["slack"],
      },
      // Its own masks first, then what any other rule masks.
      mask: ["body.card", "body.other"],
    });
  });

  it("gives a review rule without a review block the defaults: anyone, one approval, one hour", () => {
    const policy = policyOf({ name: "refunds", decision: "review" });
    expect(evaluatePolicy(policy, input()).review).toEqual({
      approvers: [],
      quorum: 1,
      expiresInMs: 3_600_000,
      stepUp: false,
    });
  });

  it("records the policy digest with every decision", () => {
    const configs = [{ name: "all", decision: "allow" }];
    const policy = policyOf(...configs);
    expect(policy.digest).toBe(digest(configs.map(rule)));
    expect(evaluatePolicy(policy, input()).policyDigest).toBe(policy.digest);
    expect(policyOf({ name: "all", decision: "deny" }).digest).not.toBe(policy.digest);
  });
});
