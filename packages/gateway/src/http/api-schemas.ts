/**
 * Every input the HTTP API accepts, as bounded zod schemas. Routes parse with these, and the
 * OpenAPI document is generated from them.
 */
import { z } from "zod";
import { requestStatuses } from "../requests/request-types.js";

const MAX_DEPTH = 32;

/** How deeply a JSON value nests; past the limit, recursion elsewhere would be at risk. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current && typeof current === "object") {
      max = Math.max(max, depth);
      if (max > MAX_DEPTH) return max;
      for (const child of Object.values(current)) stack.push([child, depth + 1]);
    }
  }
  return max;
}

const boundedJson = z
  .unknown()
  .refine((value) => jsonDepth(value) <= MAX_DEPTH, `nests deeper than ${MAX_DEPTH} levels`);

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
    .optional()
    .describe("Why the agent wants this. Shown to reviewers as the agent's claim."),
  context: z
    .record(z.string().max(128), z.unknown())
    .refine((value) => jsonDepth(value) <= MAX_DEPTH, `nests deeper than ${MAX_DEPTH} levels`)
    .refine((value) => JSON.stringify(value).length <= 16_384, "is larger than 16 KiB")
    .optional()
    .describe("Free context for reviewers and rules (ticket, conversation, run id)."),
  idempotencyKey: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
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

export const idParamsSchema = z.strictObject({
  id: z.string().min(1).max(64).describe("The request id (req_…)."),
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
  agent: z.string().max(128).optional(),
  connection: z.string().max(128).optional(),
  before: z.string().max(64).optional().describe("Only requests older than this id (paging)."),
  limit: limit(200, 50),
});

export const reviewBodySchema = z.strictObject({
  decision: z.enum(["approve", "deny"]),
  comment: z.string().max(2000).optional(),
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
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      ctx.addIssue({
        code: "custom",
        message: "must be an ISO 8601 date or time, like 2026-11-01T00:00:00Z",
      });
      return z.NEVER;
    }
    return ms;
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
  requestId: z.string().max(64).optional(),
  type: z.string().max(64).optional(),
  actor: z.string().max(256).optional(),
  limit: limit(1000, 100),
});
