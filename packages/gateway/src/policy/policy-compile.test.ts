import { describe, expect, it } from "vitest";
import { ruleSchema } from "../config/config-schema.js";
import { checkCondition, compilePolicy } from "./policy-compile.js";

const rule = (config: Record<string, unknown>) => ruleSchema.parse(config);

describe("compilePolicy", () => {
  it("reports a syntax error at the rule's when", () => {
    const { issues } = compilePolicy([
      rule({ name: "fine", when: 'action.connection == "billing"', decision: "allow" }),
      rule({ name: "broken", when: 'action.connection == "billing" &&', decision: "allow" }),
    ]);
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toEqual(["rules", 1, "when"]);
    expect(issues[0]?.message).toContain('rule "broken"');
  });

  it("reports an unknown field at the rule's when, naming the field", () => {
    const { issues } = compilePolicy([
      rule({ name: "typo", when: 'action.conection == "x"', decision: "allow" }),
    ]);
    expect(issues).toEqual([
      { path: ["rules", 0, "when"], message: expect.stringContaining("conection") },
    ]);
  });

  it("reports an unknown variable", () => {
    const { issues } = compilePolicy([
      rule({ name: "mongo", when: 'mongo.kind == "find"', decision: "allow" }),
    ]);
    expect(issues[0]?.path).toEqual(["rules", 0, "when"]);
    expect(issues[0]?.message).toContain("mongo");
  });

  it("reports every broken rule, not just the first", () => {
    const { issues } = compilePolicy([
      rule({ name: "a", when: "action.", decision: "allow" }),
      rule({ name: "b", decision: "allow" }),
      rule({ name: "c", when: '"a" + 1 == "a1"', decision: "allow" }),
    ]);
    expect(issues.map((i) => i.path)).toEqual([
      ["rules", 0, "when"],
      ["rules", 2, "when"],
    ]);
  });

  it("keeps the rules' order, names and decisions", () => {
    const { policy } = compilePolicy([
      rule({ name: "one", decision: "deny" }),
      rule({ name: "two", when: "true", decision: "allow" }),
    ]);
    expect(policy.rules.map((r) => [r.index, r.name, r.decision])).toEqual([
      [0, "one", "deny"],
      [1, "two", "allow"],
    ]);
  });

  it("compiles review settings, masks and risk into each rule", () => {
    const { policy, issues } = compilePolicy([
      rule({
        name: "refunds",
        decision: "review",
        risk: "low",
        review: { approvers: ["finance"], quorum: 2, expiresIn: "1h30m", risk: "high" },
        mask: { input: ["body.card"] },
      }),
      rule({ name: "deletes", decision: "deny", risk: "critical" }),
      rule({ name: "reads", decision: "allow" }),
    ]);
    expect(issues).toEqual([]);
    expect(policy.rules[0]).toMatchObject({
      risk: "high",
      review: { approvers: ["finance"], quorum: 2, expiresInMs: 5_400_000, stepUp: false },
      mask: ["body.card"],
    });
    expect(policy.rules[1]).toMatchObject({ risk: "critical", review: undefined, mask: [] });
    expect(policy.rules[2]).toMatchObject({ risk: undefined, review: undefined, test: undefined });
  });

  it("gives a review rule without a review block the default review settings", () => {
    const { policy } = compilePolicy([rule({ name: "refunds", decision: "review" })]);
    expect(policy.rules[0]?.review).toEqual({
      approvers: [],
      quorum: 1,
      expiresInMs: 3_600_000,
      stepUp: false,
    });
  });
});

describe("checkCondition", () => {
  it.each([
    'action.connection == "billing"',
    'http.method == "GET" && http.path.startsWith("/invoices")',
    "now.getHours() >= 0",
    'agent.labels.team == "support"',
    "action.input.amount < 100",
    "action.input.flag",
    "true",
  ])("accepts %j", (condition) => {
    expect(checkCondition(condition)).toBeUndefined();
  });

  it("refuses a matches() pattern RE2 cannot read, naming the rule", () => {
    const { issues } = compilePolicy([
      ruleSchema.parse({
        name: "ok",
        when: 'action.justification.matches("^re(fund|turn)s?$")',
        decision: "allow",
      }),
      ruleSchema.parse({
        name: "ahead",
        when: "action.justification.matches('(?=x)y')",
        decision: "deny",
      }),
      ruleSchema.parse({ name: "back", when: 'matches(agent.name, "(a)\\\\1")', decision: "deny" }),
    ]);
    expect(issues.map((issue) => issue.path)).toEqual([
      ["rules", 1, "when"],
      ["rules", 2, "when"],
    ]);
    expect(issues[0]?.message).toMatch(
      /^rule "ahead": matches\('\(\?=x\)y'\) is not an RE2 pattern/,
    );
    expect(issues[1]?.message).toContain('rule "back"');
  });

  it("checks the patterns matches() is given, and no text that only reads like one", () => {
    // Inside a string, `matches('\q')` is text: it neither throws nor refuses the condition.
    expect(checkCondition(`action.justification == r"matches('\\q')"`)).toBeUndefined();
    expect(checkCondition(`action.justification.contains("matches('\\\\q')")`)).toBeUndefined();
    // Every way CEL writes a string literal is read as CEL reads it.
    for (const literal of [`R"(?=x)"`, `'''(?=x)'''`, `r"""(?=x)"""`, `"(?\\x3dx)"`]) {
      expect(checkCondition(`action.justification.matches(${literal})`)).toMatch(
        /is not an RE2 pattern/,
      );
    }
  });

  it("refuses a condition that is not a bool and not dyn", () => {
    expect(checkCondition("action.connection")).toMatch(/must be a bool, not string/);
    expect(checkCondition("1 + 1")).toMatch(/must be a bool, not int/);
  });

  it("refuses a type error", () => {
    expect(checkCondition('"a" + 1')).toEqual(expect.any(String));
    expect(checkCondition('"a" + 1 == "a1"')).toEqual(expect.any(String));
  });

  it("refuses a syntax error, on one line", () => {
    const problem = checkCondition("action.connection ==");
    expect(problem).toEqual(expect.any(String));
    expect(problem).not.toContain("\n");
  });

  it("knows every connector's facts, with their types", () => {
    expect(checkCondition('sql.kind == "select" && sql.estimatedRows <= 1000')).toBeUndefined();
    expect(checkCondition('sql.kinds.exists(k, k == "ddl") && !sql.hasWhere')).toBeUndefined();
    expect(
      checkCondition('exec.command == "restart" && exec.args["service"] == "api"'),
    ).toBeUndefined();
    expect(checkCondition('sql.estimatedRows == "many"')).toEqual(expect.any(String));
    expect(checkCondition("sql.tabels.size() > 0")).toContain("tabels");
  });

  it("refuses an unknown field and an unknown variable", () => {
    expect(checkCondition('action.conection == "x"')).toContain("conection");
    expect(checkCondition("nobody == 1")).toEqual(expect.any(String));
  });
});
