/**
 * Every input the HTTP API accepts, as bounded zod schemas. Routes parse with these, and the
 * OpenAPI document is generated from them.
 */
import { z } from "zod";
import { INSTANT_HINT, parseInstant } from "../common/instants.js";
import { textProblem, wellFormed } from "../common/storable-text.js";
import { requestStatuses } from "../requests/request-types.js";

const MAX_DEPTH = 32;

/**
 * What JSON.parse lets through but Airlock must not take: nesting deep enough to endanger
 * recursion elsewhere; numbers that are not finite (1e400) or integers beyond 2^53, which
 * would be sent upstream as something else; strings that are not well-formed UTF-16 (lone
 * surrogates), which would not survive storage and so break the request hash. Returns the
 * path and the reason of the first problem.
 */
export function jsonProblem(
  value: unknown,
): { path: (string | number)[]; message: string } | undefined {
  const stack: [unknown, (string | number)[]][] = [[value, []]];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (path.length > MAX_DEPTH)
      return { path: [], message: `nests deeper than ${MAX_DEPTH} levels` };
    if (typeof current === "number") {
      if (!Number.isFinite(current)) return { path, message: "is a number too large to represent" };
      if (Number.isInteger(current) && !Number.isSafeInteger(current)) {
        return {
          path,
          message:
            "is an integer beyond ±2^53, which JSON numbers cannot carry exactly; send it as a string",
        };
      }
    } else if (typeof current === "string") {
      if (!wellFormed(current))
        return { path, message: "is not well-formed text (a lone surrogate)" };
    } else if (Array.isArray(current)) {
      current.forEach((item, i) => {
        stack.push([item, [...path, i]]);
      });
    } else if (current && typeof current === "object") {
      for (const [key, item] of Object.entries(current)) {
        if (!wellFormed(key)) return { path, message: "has a key that is not well-formed text" };
        stack.push([item, [...path, key]]);
      }
    }
  }
  return undefined;
}

const checkJson = (value: unknown, ctx: z.RefinementCtx) => {
  const problem = jsonProblem(value);
  if (problem) ctx.addIssue({ code: "custom", path: problem.path, message: problem.message });
};

const boundedJson = z.unknown().superRefine(checkJson);

/** Text stored as it is: see storable-text.ts. */
const checkText = (value: string, ctx: z.RefinementCtx) => {
  const problem = textProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
};

/** An agent's idempotency key, whichever door it comes in by (`/v1/actions` or `/mcp`). */
export const idempotencyKeySchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces");

export const actionBodySchema = z.strictObject({
  connection: z
    .string()
    .min(1)
    .max(128)
    .describe("The connection to act on, as named in the config."),
  operation: z.string().min(1).max(128).describe('What to do on it, e.g. "request" for http.'),
  input: boundedJson
    .default({})
    .describe("The operation's input; its shape depends on the connection's type."),
  justification: z
    .string()
    .max(4000)
    .superRefine(checkText)
    .optional()
    .describe("Why the agent wants this. Shown to reviewers as the agent's claim."),
  context: z
    .record(z.string().max(128), z.unknown())
    .superRefine((value, ctx) => {
      // Sized only once it is known to be shallow: JSON.stringify would overflow the stack.
      const problem = jsonProblem(value);
      if (problem) ctx.addIssue({ code: "custom", path: problem.path, message: problem.message });
      else if (JSON.stringify(value).length > 16_384) {
        ctx.addIssue({ code: "custom", message: "is larger than 16 KiB" });
      }
    })
    .optional()
    .describe("Free context for reviewers and rules (ticket, conversation, run id)."),
  idempotencyKey: idempotencyKeySchema
    .optional()
    .describe("The same key with the same action returns the same request instead of a new one."),
});

const wholeSeconds = z
  .string()
  .regex(/^\d{1,5}$/, "must be a whole number of seconds")
  .transform(Number);

export function waitQuerySchema(maxWaitSeconds: number) {
  return z.strictObject({
    wait: wholeSeconds
      .refine((s) => s <= maxWaitSeconds, `must be at most ${maxWaitSeconds} seconds`)
      .optional()
      .describe("Hold the call until the request is final, or this many seconds pass."),
  });
}

/** Reading a request can also wait for any change at all, not only for the end. */
export function readQuerySchema(maxWaitSeconds: number) {
  return waitQuerySchema(maxWaitSeconds)
    .extend({
      version: z
        .string()
        .regex(/^[1-9]\d{0,8}$/, "must be a request's version, a whole number from 1")
        .transform(Number)
        .optional()
        .describe(
          "The version you have: with `wait`, answer as soon as the request moves on from it (a vote, say), not only when it is final.",
        ),
    })
    .refine((query) => query.version === undefined || query.wait !== undefined, {
      path: ["version"],
      message: "is what a wait starts from; give wait=SECONDS with it",
    });
}

/** Ids are letters, digits, `_` and `-`: anything else cannot name a request. */
const idSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, "is not a request id (req_ followed by letters and digits)");

/** A filter's text: what cannot be stored cannot match, and a database would refuse it. */
const filterText = (max: number) => z.string().max(max).superRefine(checkText);

export const idParamsSchema = z.strictObject({
  id: idSchema.describe("The request id (req_…)."),
});

const statusList = z
  .string()
  .max(200)
  .transform((text, ctx) => {
    if (text === "all") return [...requestStatuses];
    const items = text.split(",").map((s) => s.trim());
    for (const item of items) {
      if (!(requestStatuses as readonly string[]).includes(item)) {
        ctx.addIssue({
          code: "custom",
          message: `"${item}" is not a status; use all or a comma-separated list of ${requestStatuses.join(", ")}`,
        });
        return z.NEVER;
      }
    }
    return items as (typeof requestStatuses)[number][];
  });

const limit = (max: number, fallback: number) =>
  z
    .string()
    .regex(/^\d{1,5}$/, "must be a whole number")
    .transform(Number)
    .refine((n) => n >= 1 && n <= max, `must be between 1 and ${max}`)
    .optional()
    .transform((n) => n ?? fallback);

export const requestListQuerySchema = z.strictObject({
  status: statusList.optional().describe('Comma-separated statuses, or "all". Default: pending.'),
  agent: filterText(128).optional(),
  connection: filterText(128).optional(),
  before: idSchema.optional().describe("Only requests older than this id (paging)."),
  limit: limit(200, 50),
});

export const actionListQuerySchema = z.strictObject({
  status: statusList.optional().describe('Comma-separated statuses, or "all" (the default).'),
  connection: filterText(128).optional(),
  before: idSchema.optional().describe("Only requests older than this id (paging)."),
  limit: limit(200, 50),
});

/**
 * `GET /v1/actions`'s query as the arguments of the `airlock__list` tool on /mcp: the same
 * filters, with the limit a JSON integer rather than the text of a query string.
 */
export const actionListArgumentsSchema = actionListQuerySchema.extend({
  limit: z
    .number()
    .int("must be a whole number")
    .min(1, "must be between 1 and 200")
    .max(200, "must be between 1 and 200")
    .default(50),
});

export const reviewBodySchema = z.strictObject({
  decision: z.enum(["approve", "deny"]),
  comment: z.string().max(2000).superRefine(checkText).optional(),
  requestHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/, "must be the request's SHA-256 hash, 64 hex characters")
    .optional()
    .describe("The hash the reviewer saw; the vote is refused if the request is not that one."),
});

const instant = z
  .string()
  .max(64)
  .transform((text, ctx) => {
    const ms = parseInstant(text);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: INSTANT_HINT });
      return z.NEVER;
    }
    return ms;
  });

export const auditVerifyQuerySchema = z.strictObject({
  expectHead: z
    .string()
    .max(100)
    .regex(
      /^[1-9]\d{0,14}:[0-9a-f]{64}$/,
      "must be SEQ:HASH, the number of an event (from 1) and its 64-character hash",
    )
    .optional()
    .describe("A head recorded earlier: the chain must still hold that event with that hash."),
  all: z
    .enum(["true", "false"])
    .optional()
    .describe(
      "`true`: go on past each problem and list every one (as `airlock audit verify --all`), not only the first.",
    ),
});

export const auditQuerySchema = z.strictObject({
  afterSeq: z
    .string()
    .regex(/^\d{1,15}$/, "must be a whole number")
    .transform(Number)
    .optional()
    .describe("Only events after this sequence number (paging)."),
  since: instant.optional(),
  until: instant.optional(),
  requestId: idSchema.optional(),
  type: filterText(64).optional(),
  actor: filterText(256).optional(),
  limit: limit(1000, 100),
});
