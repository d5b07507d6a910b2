/**
 * The seam between Airlock and the systems it acts on. A connector turns an agent's input
 * into something a person can judge (preview, facts, risk) and, once allowed, runs it with
 * the connection's own credentials.
 */
import type { z } from "zod";
import type { Json } from "../common/canonical-json.js";
import type { FieldPath } from "../masking/binary-fields.js";
import type { DetectorName } from "../masking/detector-names.js";
import type { Logger } from "../observability/logger.js";

export type RiskLevel = "low" | "medium" | "high" | "critical";
export const riskLevels: readonly RiskLevel[] = ["low", "medium", "high", "critical"];

export interface RiskHint {
  level: RiskLevel;
  reason: string;
}

export interface Description {
  /** What will happen, in words a reviewer reads first ("POST /refunds"). */
  preview: string;
  /**
   * Lines shown above the preview that quote none of the input's values (a planner's
   * estimate, a dry run's row counts), so they stay when a rule masks the input.
   */
  notes?: string[];
  /** Facts for rules, under the connector's namespace: `{ http: { method, path } }`. */
  facts: Record<string, Json>;
  risk: RiskHint;
}

export interface ExecutionOutcome {
  ok: boolean;
  /** What the operation returned; masked and scrubbed of credentials before anyone sees it. */
  result: Json;
  /** One line for people: "HTTP 200, 512 bytes". */
  summary: string;
  /** Why it failed, when `ok` is false. */
  reason?: string;
  /**
   * Where `result` holds base64 (a body that is no text, an image): scrubbed as the bytes it
   * encodes, never as text (binary-fields.ts).
   */
  binary?: FieldPath[];
  /** Where `result` holds bytes written `\x` and hex digits (PostgreSQL's bytea): the same. */
  hex?: FieldPath[];
}

/** What the policy hides in an action's outcome. */
export interface OutcomeMasking {
  /** The values of the input fields the policy masks. */
  hidden: readonly string[];
  /** The result detectors the policy names. */
  detectors: readonly DetectorName[];
}

/** An operation as agents that list them see it: as a tool, to an agent that speaks MCP. */
export interface OperationSpec {
  name: string;
  /** What it does, for the agent (and the model behind it) choosing a tool. */
  description: string;
  /** The JSON Schema of its input: an object. */
  inputSchema: { type: "object"; [keyword: string]: unknown };
}

export interface Connector {
  readonly type: string;
  readonly name: string;
  /** Values that must never leave Airlock: credentials from this connection's config. */
  readonly secrets: readonly string[];
  /**
   * Validates and normalises the agent's input for an operation. Throws `unknown_operation`
   * or `invalid_request` naming the field (relative to `input`). The normalised input is
   * what gets hashed, approved and executed.
   */
  parse(operation: string, input: unknown): Json;
  describe(operation: string, input: Json): Promise<Description>;
  /**
   * The preview alone, in words, from an input whose masked fields already read "[masked]".
   * Pure and cheap: it is what reviewers see whenever a rule masks something.
   */
  preview(operation: string, input: Json): string;
  /**
   * Optional: what trying the action shows without keeping its effects (a write run in a
   * transaction that is rolled back), as a line for reviewers. Called only for actions that
   * wait for review; it may touch the real system, so it must leave nothing behind.
   */
  dryRun?(operation: string, input: Json): Promise<string>;
  /**
   * `masking` says what the policy hides in the outcome (nothing, usually). Whatever the
   * connector cuts to size (a body at its cap, a long reason), it scrubs of the masked values
   * first, as it does of credentials, and masks what the detectors find in it: a piece of a
   * value left at a cut is recognised by nobody after.
   */
  execute(
    operation: string,
    input: Json,
    signal: AbortSignal,
    masking?: OutcomeMasking,
  ): Promise<ExecutionOutcome>;
  /**
   * The operations agents may ask for, with their input's schema. Describes only: whatever
   * it says, `parse` decides what is accepted.
   */
  operations(): Promise<readonly OperationSpec[]>;
  close(): Promise<void>;
}

export interface ConnectorDeps {
  logger: Logger;
  /** Every secret the config resolved, for connectors that scrub raw bytes themselves. */
  secrets: readonly string[];
}

export interface ConnectorType<Config> {
  readonly type: string;
  /** Parses this type's connection config (the `type` key included). */
  readonly configSchema: z.ZodType<Config>;
  /** The CEL facts namespace and its fields' types, e.g. `http: { method: "string" }`. */
  readonly facts: { namespace: string; schema: Record<string, string> };
  /** The operations a connection of this type offers, known from its config alone. */
  operationNames(config: Config): string[];
  create(name: string, config: Config, deps: ConnectorDeps): Connector;
}
