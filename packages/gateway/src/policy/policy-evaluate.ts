/** First match wins; no match denies; a condition that cannot be evaluated denies. Pure. */

import { errorMessage } from "../errors.js";
import { celFacts, type Policy } from "./policy-compile.js";
import type { PolicyDecision, PolicyInput } from "./policy-types.js";

export function evaluatePolicy(policy: Policy, input: PolicyInput): PolicyDecision {
  // celFacts gives a fresh object: filled in place rather than spread (this runs per action).
  const context = celFacts(input.facts);
  context.action = input.action;
  context.agent = input.agent;
  context.now = input.now;
  context.risk = { hint: input.risk.level, reason: input.risk.reason };
  for (const rule of policy.rules) {
    let matched: unknown = true;
    if (rule.when !== undefined) {
      if (!rule.test) return failClosed(policy, input, rule.name, "its condition did not compile");
      try {
        matched = rule.test(context);
      } catch (error) {
        return failClosed(policy, input, rule.name, errorText(error));
      }
      if (typeof matched !== "boolean") {
        return failClosed(
          policy,
          input,
          rule.name,
          `the condition gave ${typeof matched}, not a bool`,
        );
      }
    }
    if (!matched) continue;
    const risk = rule.risk ?? input.risk.level;
    const riskReason = rule.risk ? `set by rule "${rule.name}"` : input.risk.reason;
    const base = {
      rule: rule.name,
      risk,
      riskReason,
      mask: maskOf(policy, rule),
      ...(rule.maskResult ? { maskResult: rule.maskResult } : {}),
      policyDigest: policy.digest,
    };
    switch (rule.decision) {
      case "allow":
        return { ...base, decision: "allow", reason: `allowed by rule "${rule.name}"` };
      case "deny":
        return {
          ...base,
          decision: "deny",
          reason: rule.reason ?? `denied by rule "${rule.name}"`,
        };
      case "review":
        return {
          ...base,
          decision: "review",
          reason: rule.reason ?? `rule "${rule.name}" requires review`,
          ...(rule.review ? { review: rule.review } : {}),
        };
    }
  }
  return {
    decision: "deny",
    rule: null,
    reason: "no rule matched, and Airlock denies what no rule allows",
    risk: input.risk.level,
    riskReason: input.risk.reason,
    mask: everyMask(policy),
    policyDigest: policy.digest,
  };
}

const everyMasks = new WeakMap<Policy, string[]>();
const ruleMasks = new WeakMap<Policy["rules"][number], string[]>();

/** When no rule decided the masking, hide everything any rule would hide. */
function everyMask(policy: Policy): string[] {
  let mask = everyMasks.get(policy);
  if (!mask) {
    mask = [...new Set(policy.rules.flatMap((rule) => rule.mask))];
    everyMasks.set(policy, mask);
  }
  return mask;
}

/**
 * A field any rule masks is masked whichever rule decides, its own masks first: a deny or
 * an allow rule seldom names masks, and the audit trail keeps what it is given for good.
 */
function maskOf(policy: Policy, rule: Policy["rules"][number]): string[] {
  let mask = ruleMasks.get(rule);
  if (!mask) {
    mask = [...new Set([...rule.mask, ...everyMask(policy)])];
    ruleMasks.set(rule, mask);
  }
  return mask;
}

function failClosed(
  policy: Policy,
  input: PolicyInput,
  rule: string,
  message: string,
): PolicyDecision {
  return {
    decision: "deny",
    rule,
    reason: `the policy could not be evaluated at rule "${rule}", so Airlock denied the action`,
    risk: input.risk.level,
    riskReason: input.risk.reason,
    mask: everyMask(policy),
    error: message,
    policyDigest: policy.digest,
  };
}

function errorText(error: unknown): string {
  const message = errorMessage(error);
  return message.split("\n")[0] ?? message;
}

/** How a decision reads in `policy test` and `policy replay`: `review by rule "refunds"`. */
export function decisionText(decision: Pick<PolicyDecision, "decision" | "rule">): string {
  return `${decision.decision} by ${decision.rule === null ? "no rule" : `rule "${decision.rule}"`}`;
}
