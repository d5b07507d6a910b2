/**
 * `airlock policy test`: expected-decision cases run against the loaded rules. Connectors
 * describe each action (facts, risk) exactly as they would for a real request; nothing runs.
 */
import { z } from "zod";
import type { Json } from "../common/canonical-json.js";
import type { LoadedConfig } from "../config/config-load.js";
import { connectorType } from "../connectors/connector-registry.js";
import { isAirlockError } from "../errors.js";
import { actionBodySchema } from "../http/api-schemas.js";
import { createRedactor } from "../masking/secret-redactor.js";
import { createLogger } from "../observability/logger.js";
import { decisionText, evaluatePolicy } from "./policy-evaluate.js";

/**
 * A case proposes an action as an agent would: its fields are checked by the API's own
 * schema, so that a case the gateway would refuse is refused here too, not decided.
 */
const caseSchema = actionBodySchema
  .pick({ connection: true, operation: true, input: true, justification: true, context: true })
  .extend({
    name: z.string().max(200).optional(),
    agent: z.string().min(1).max(128),
    /** When the action happens, for time-based rules; now by default. */
    at: z.iso.datetime({ offset: true }).optional(),
    expect: z.enum(["allow", "deny", "review"]),
    /** The rule expected to decide; `null` expects the default deny. */
    rule: z.string().nullable().optional(),
  });

export const casesFileSchema = z.strictObject({ cases: z.array(caseSchema).min(1).max(10_000) });

export type PolicyCase = z.output<typeof caseSchema>;

export interface CaseResult {
  name: string;
  ok: boolean;
  got: string;
  expected: string;
  detail?: string;
}

export async function runPolicyCases(
  loaded: LoadedConfig,
  cases: PolicyCase[],
): Promise<CaseResult[]> {
  const logger = createLogger({ level: "silent" });
  const connectors = new Map(
    Object.entries(loaded.config.connections).map(([name, connection]) => [
      name,
      connectorType(connection.type)!.create(name, connection, { logger, secrets: loaded.secrets }),
    ]),
  );
  // Errors can quote a connection's credentials or a secret in a rule: scrubbed as the
  // gateway's log scrubs them.
  const redactor = createRedactor([
    ...loaded.secrets,
    ...[...connectors.values()].flatMap((c) => c.secrets),
  ]);
  const agents = new Map(loaded.config.agents.map((a) => [a.name, a]));
  const results: CaseResult[] = [];
  try {
    for (const [index, c] of cases.entries()) {
      const name = c.name ?? `case ${index + 1}`;
      const expected =
        c.rule === undefined ? c.expect : decisionText({ decision: c.expect, rule: c.rule });
      const agent = agents.get(c.agent);
      const connector = connectors.get(c.connection);
      if (!agent || !connector) {
        const got = !agent
          ? `error: no agent named ${c.agent}`
          : `error: no connection named ${c.connection}`;
        results.push({ name, ok: false, got, expected });
        continue;
      }
      try {
        const input = connector.parse(c.operation, c.input);
        const description = await connector.describe(c.operation, input);
        const decision = evaluatePolicy(loaded.policy, {
          action: {
            connection: c.connection,
            operation: c.operation,
            input,
            justification: c.justification ?? "",
            context: (c.context ?? {}) as Record<string, Json>,
          },
          agent: { name: agent.name, owner: agent.owner, labels: agent.labels },
          now: c.at ? new Date(c.at) : new Date(),
          facts: description.facts,
          risk: description.risk,
        });
        const got = redactor.redactText(decisionText(decision));
        const ok =
          decision.decision === c.expect && (c.rule === undefined || c.rule === decision.rule);
        results.push({
          name,
          ok,
          got,
          expected,
          ...(decision.error
            ? { detail: `evaluation error: ${redactor.redactText(decision.error)}` }
            : {}),
        });
      } catch (error) {
        const message = isAirlockError(error) ? error.message : String(error);
        results.push({ name, ok: false, got: `error: ${redactor.redactText(message)}`, expected });
      }
    }
  } finally {
    await Promise.all([...connectors.values()].map((c) => c.close()));
  }
  return results;
}
