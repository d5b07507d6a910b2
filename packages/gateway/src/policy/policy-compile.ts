/**
 * Compiles the rules' CEL conditions once, at load, against declared variable types, so a
 * typo such as `action.conection` is a config error naming the rule, not a runtime surprise.
 */
import { type ASTNode, Environment } from "@marcbachmann/cel-js";
import { digest } from "../common/canonical-json.js";
import { quorumOf, type RuleConfig, reviewSchema } from "../config/config-schema.js";
import type { RiskLevel } from "../connectors/connector.js";
import { connectorTypes } from "../connectors/connector-registry.js";
import { errorMessage } from "../errors.js";
import type { DetectorName } from "../masking/detector-names.js";
import { patternProblem, withLinearRegex } from "./linear-regex.js";
import type { Decision, ReviewRequirements } from "./policy-types.js";

export interface CompiledRule {
  name: string;
  index: number;
  decision: Decision;
  when: string | undefined;
  /** Evaluates the condition; throws when it cannot be evaluated. */
  test: ((context: Record<string, unknown>) => unknown) | undefined;
  reason: string | undefined;
  risk: RiskLevel | undefined;
  review: ReviewRequirements | undefined;
  mask: string[];
  /** Result detectors this rule names; undefined leaves it to the connection. */
  maskResult: DetectorName[] | undefined;
}

export interface Policy {
  rules: CompiledRule[];
  /** Digest of the rules as configured; recorded with every decision. */
  digest: string;
}

export interface PolicyIssue {
  path: (string | number)[];
  message: string;
}

let environment: Environment | undefined;

/** The CEL environment: every variable a condition may use, with its type. */
export function celEnvironment(): Environment {
  if (environment) return environment;
  let env = new Environment({ limits: { maxAstNodes: 5000, maxDepth: 64 } })
    .registerVariable({
      name: "action",
      schema: {
        connection: "string",
        operation: "string",
        input: "dyn",
        justification: "string",
        context: "map<string, dyn>",
      },
    })
    .registerVariable({
      name: "agent",
      schema: { name: "string", owner: "string", labels: "map<string, string>" },
    })
    .registerVariable({ name: "risk", schema: { hint: "string", reason: "string" } })
    .registerVariable("now", "google.protobuf.Timestamp");
  for (const connector of connectorTypes) {
    env = env.registerVariable({ name: connector.facts.namespace, schema: connector.facts.schema });
  }
  environment = env;
  return env;
}

/** Each connector namespace's `int` facts: CEL ints are BigInts, JSON numbers are not. */
const intFacts = new Map(
  connectorTypes.map((c) => [
    c.facts.namespace,
    Object.entries(c.facts.schema)
      .filter(([, type]) => type === "int")
      .map(([field]) => field),
  ]),
);

/** The connector's facts as CEL reads them (declared ints as BigInts), in a new object. */
export function celFacts(facts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [namespace, value] of Object.entries(facts)) {
    const ints = intFacts.get(namespace);
    if (!ints?.length || value === null || typeof value !== "object") {
      out[namespace] = value;
      continue;
    }
    const converted: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const field of ints) {
      const n = converted[field];
      if (typeof n === "number" && Number.isInteger(n)) converted[field] = BigInt(n);
    }
    out[namespace] = converted;
  }
  return out;
}

export function compilePolicy(rules: readonly RuleConfig[]): {
  policy: Policy;
  issues: PolicyIssue[];
} {
  const env = celEnvironment();
  const issues: PolicyIssue[] = [];
  const compiled = rules.map((rule, index): CompiledRule => {
    let test: CompiledRule["test"];
    if (rule.when !== undefined) {
      const problem = checkCondition(rule.when);
      if (problem) {
        issues.push({ path: ["rules", index, "when"], message: `rule "${rule.name}": ${problem}` });
      } else {
        const parsed = env.parse(rule.when) as unknown as NonNullable<CompiledRule["test"]>;
        // Only a condition that may call `matches` pays for RE2 standing in for RegExp.
        test = rule.when.includes("matches")
          ? (context) => withLinearRegex(() => parsed(context))
          : parsed;
      }
    }
    // A review rule without a review block takes the defaults: any reviewer, one approval, 1h.
    const settings =
      rule.review ?? (rule.decision === "review" ? reviewSchema.parse({}) : undefined);
    const review = settings
      ? {
          approvers: [...settings.approvers],
          quorum: quorumOf(settings),
          ...(settings.require && Object.keys(settings.require).length > 0
            ? { require: { ...settings.require } }
            : {}),
          expiresInMs: settings.expiresIn,
          stepUp: settings.stepUp,
          ...(settings.channels ? { channels: [...settings.channels] } : {}),
          ...(settings.slackChannel ? { slackChannel: settings.slackChannel } : {}),
          ...(settings.teamsConversation ? { teamsConversation: settings.teamsConversation } : {}),
        }
      : undefined;
    return {
      name: rule.name,
      index,
      decision: rule.decision,
      when: rule.when,
      test,
      reason: rule.reason,
      risk: (rule.review?.risk ?? rule.risk) as RiskLevel | undefined,
      review,
      mask: [...(rule.mask?.input ?? [])],
      maskResult: rule.mask?.result ? [...rule.mask.result] : undefined,
    };
  });
  return { policy: { rules: compiled, digest: digest(rules) }, issues };
}

/** Why a condition cannot be used (syntax, unknown variable or field, type), or undefined. */
export function checkCondition(when: string): string | undefined {
  let check: ReturnType<Environment["check"]>;
  try {
    check = celEnvironment().check(when);
  } catch (error) {
    return firstLine(errorMessage(error));
  }
  if (!check.valid) return firstLine(check.error?.message ?? "invalid condition");
  if (check.type !== "bool" && check.type !== "dyn")
    return `the condition must be a bool, not ${check.type}`;
  for (const literal of patternLiterals(celEnvironment().parse(when).ast)) {
    const problem = patternProblem(literal.args);
    const source = when.slice(literal.start, literal.end);
    if (problem) return `matches(${source}) is not an RE2 pattern, as CEL's are: ${problem}`;
  }
  return undefined;
}

type StringLiteral = { op: "value"; args: string; start: number; end: number };

/**
 * The string literals `matches` calls are given (`x.matches("…")`, `matches(x, '…')`), as
 * CEL's parser read them, checked at load: RE2 has no lookarounds or backreferences, and a
 * pattern that fails at run time denies every action it is asked about. Read from the syntax
 * tree, not the text, so that text inside a string is not taken for a call.
 */
function patternLiterals(ast: ASTNode): StringLiteral[] {
  const found: StringLiteral[] = [];
  const isLiteral = (node: unknown): node is StringLiteral =>
    (node as ASTNode | undefined)?.op === "value" &&
    typeof (node as StringLiteral).args === "string";
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    if (value === null || typeof value !== "object" || !("op" in value)) return;
    const node = value as ASTNode;
    if (node.op === "rcall" && node.args[0] === "matches" && isLiteral(node.args[2][0])) {
      found.push(node.args[2][0]);
    }
    if (node.op === "call" && node.args[0] === "matches" && isLiteral(node.args[1][1])) {
      found.push(node.args[1][1]);
    }
    visit(node.args);
  };
  visit(ast);
  return found;
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}
