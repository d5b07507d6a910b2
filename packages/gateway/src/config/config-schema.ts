/**
 * The schema of airlock.yaml. Everything Airlock reads from its config file is parsed here,
 * once, at start; the JSON Schema shipped for editors is generated from this file.
 */
import { isIP } from "node:net";
import { z } from "zod";
import { readKey } from "../audit/audit-checkpoints.js";
import { slackSchema } from "../channels/slack/slack-config.js";
import { teamsSchema } from "../channels/teams/teams-config.js";
import { webhookSchema } from "../channels/webhook/webhook-config.js";
import { riskLevels } from "../connectors/connector.js";
import { connectorTypes } from "../connectors/connector-registry.js";
import { execConnectionSchema } from "../connectors/exec/exec-config.js";
import { httpConnectionSchema } from "../connectors/http/http-config.js";
import { mcpConnectionSchema } from "../connectors/mcp/mcp-config.js";
import { postgresConnectionSchema } from "../connectors/postgres/postgres-config.js";
import { oidcSchema } from "../identity/oidc-config.js";
import { maskPathProblem } from "../masking/input-mask.js";
import {
  duration,
  emailSchema,
  groupSchema,
  httpUrl,
  nameSchema,
  resultMaskSchema,
} from "./config-types.js";

/** An entry of `server.trustProxy`, as fastify's proxy-addr reads it. */
function proxyAddress(text: string): boolean {
  if (["loopback", "linklocal", "uniquelocal"].includes(text)) return true;
  const [address = "", prefix, ...rest] = text.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

const MiB = 1024 * 1024;

export const serverSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).default(7070),
  host: z.string().min(1).max(255).default("127.0.0.1"),
  /** Where people reach the gateway; approval links are built from it. */
  publicUrl: httpUrl()
    .transform((url) => url.replace(/\/+$/, ""))
    .optional(),
  maxBodyBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * MiB)
    .default(MiB),
  /**
   * The load balancers or proxies in front of the gateway, as addresses or CIDR ranges: a
   * request from one of them is taken to come from the client its X-Forwarded-For names
   * (for logs and per-client limits). Unset: the connection's own address.
   */
  trustProxy: z
    .array(
      z
        .string()
        .max(64)
        .refine(
          proxyAddress,
          'must be an IP address, a CIDR range like 10.0.0.0/8, or "loopback", "linklocal" or "uniquelocal"',
        ),
    )
    .min(1)
    .max(100)
    .optional(),
  /**
   * How long a request's body may take to arrive once its headers have; a client that stalls
   * is answered 408 and its connection closed. Long-polls wait after that, unbounded by it.
   */
  requestTimeout: duration({ min: 100, max: 600_000 }).default(30_000),
  /** The longest `?wait=` a caller may ask for, in seconds. */
  maxWaitSeconds: z.number().int().min(0).max(3600).default(300),
  /**
   * How long a tool call on `/mcp` waits for a person's decision before it answers that the
   * action waits (with its id, for `airlock__status`). Under MCP clients' own timeouts (often
   * 60 s).
   */
  mcpToolWait: duration({ min: 0, max: 3_600_000 }).default(50_000),
  /** How often pending requests are checked for expiry. */
  sweepInterval: duration({ min: 10, max: 3_600_000 }).default(1000),
  /**
   * How long an execution is a replica's without its heartbeat; after that, another replica
   * ends it as failed, "outcome unknown". Renewed every third of it while the action runs.
   */
  executionLease: duration({ min: 300, max: 86_400_000 }).default(60_000),
});

export const storageSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine(
    (url) => /^sqlite:.+/.test(url) || /^postgres(ql)?:\/\//.test(url),
    "must be sqlite:PATH or postgres://USER@HOST/DB",
  );

export const agentSchema = z.strictObject({
  name: nameSchema,
  /** The person accountable for this agent; they can never approve its requests. */
  owner: emailSchema,
  labels: z.record(z.string().max(64), z.string().max(256)).default({}),
  /**
   * How many of its requests may wait for review at once: past it, a submission a rule sends
   * to review is refused (rate_limited), so that an agent stuck in a loop cannot bury its
   * reviewers. Counted across replicas from the store, so a burst may pass it by a few.
   */
  maxPending: z.number().int().min(1).max(100_000).default(100),
  /**
   * How fast it may submit actions: `perMinute` on average, `burst` at once (a minute's worth
   * unless set). Past it, a submission is refused (rate_limited, with Retry-After) before
   * anything is decided, stored or run, so that an agent in a loop cannot hammer what its
   * rules let through. Counted by each gateway process on its own. Unset: no limit.
   */
  rateLimit: z
    .strictObject({
      perMinute: z.number().int().min(1).max(1_000_000),
      burst: z.number().int().min(1).max(1_000_000).optional(),
    })
    .optional(),
});

export const reviewerSchema = z.strictObject({
  email: emailSchema,
  groups: z.array(groupSchema).max(100).default([]),
});

/** One schema per connector type; a new connector adds its schema here and to the registry. */
const connectionSchema = z.discriminatedUnion(
  "type",
  [httpConnectionSchema, postgresConnectionSchema, execConnectionSchema, mcpConnectionSchema],
  {
    error: (issue) =>
      issue.code === "invalid_union"
        ? `type must be one of: ${connectorTypes.map((c) => c.type).join(", ")}`
        : undefined,
  },
);

export type ConnectionConfig = z.output<typeof connectionSchema>;

export const riskSchema = z.enum(riskLevels as [string, ...string[]]);

const maskPath = z
  .string()
  .min(1)
  .max(256)
  .superRefine((path, ctx) => {
    const problem = maskPathProblem(path);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

export const reviewSchema = z
  .strictObject({
    /** Groups whose members may vote; empty means any configured reviewer. */
    approvers: z.array(groupSchema).max(50).default([]),
    /** Approvals needed in all: 1, or what `require` adds up to, when absent. */
    quorum: z.number().int().min(1).max(20).optional(),
    /**
     * Of those, at least this many from each group named (separation of duties): each approval
     * stands for one group only, whatever groups its reviewer is in.
     */
    // Keys are checked as group names below: a record's own key error names no reason.
    require: z.record(z.string(), z.number().int().min(1).max(20)).optional(),
    expiresIn: duration({ min: 100, max: 90 * 86_400_000 }).default(3_600_000),
    risk: riskSchema.optional(),
    /** Approval needs a fresh identity-provider login (the console); one click is not enough. */
    stepUp: z.boolean().default(false),
    /** Which channels are told; all configured channels when absent. */
    channels: z.array(nameSchema).max(20).optional(),
    /** The Slack channel for this rule's approval messages (`#payments-approvals`, or an id). */
    slackChannel: z.string().min(1).max(80).optional(),
    /** The Teams conversation for this rule's approval cards (a channel's 19:…@thread.tacv2). */
    teamsConversation: z.string().min(3).max(512).optional(),
  })
  .superRefine((review, ctx) => {
    const required = requiredApprovals(review);
    if (required > 20) {
      ctx.addIssue({
        code: "custom",
        path: ["require"],
        message: `asks for ${required} approvals in all; a quorum is at most 20`,
      });
    } else if (review.quorum !== undefined && review.quorum < required) {
      ctx.addIssue({
        code: "custom",
        path: ["quorum"],
        message: `is ${review.quorum}, fewer than the ${required} approvals require asks for; raise it to at least ${required}, or leave it out`,
      });
    }
    for (const group of Object.keys(review.require ?? {})) {
      const named = groupSchema.safeParse(group);
      if (!named.success) {
        for (const issue of named.error.issues) {
          ctx.addIssue({ code: "custom", path: ["require", group], message: issue.message });
        }
      } else if (review.approvers.length > 0 && !review.approvers.includes(group)) {
        ctx.addIssue({
          code: "custom",
          path: ["require", group],
          message: `is not one of this rule's approver groups (${review.approvers.join(", ")}), so none of its members could vote; add it to approvers`,
        });
      }
    }
  });

function requiredApprovals(review: { require?: Record<string, number> | undefined }): number {
  return Object.values(review.require ?? {}).reduce((sum, count) => sum + count, 0);
}

/** The approvals a review asks for in all: its quorum, else what its groups require, else 1. */
export function quorumOf(review: {
  quorum?: number | undefined;
  require?: Record<string, number> | undefined;
}): number {
  return review.quorum ?? Math.max(1, requiredApprovals(review));
}

export const ruleSchema = z.strictObject({
  name: z.string().min(1).max(128),
  /** A CEL condition; a rule without one always matches. */
  when: z.string().min(1).max(8192).optional(),
  decision: z.enum(["allow", "deny", "review"]),
  /** Told to the agent when this rule denies. */
  reason: z.string().max(1000).optional(),
  risk: riskSchema.optional(),
  review: reviewSchema.optional(),
  mask: z
    .strictObject({
      /** Paths in the action's input (`body.card_number`, `body.items.*.iban`). */
      input: z.array(maskPath).max(100).default([]),
      /** Detectors applied to what the action returns; the connection's default when absent. */
      result: resultMaskSchema.optional(),
    })
    .optional(),
});

/** Checks across entries (duplicate names, review blocks) live in config-load.ts. */
export const auditSchema = z.strictObject({
  /**
   * An Ed25519 private key (PEM; `${file:…}` keeps it out of the config): the gateway then
   * signs checkpoints of the audit chain, which `airlock audit verify --public-key` checks.
   */
  signingKey: z
    .string()
    .max(16_384)
    .superRefine((pem, ctx) => {
      try {
        readKey(pem, "sign");
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
      }
    })
    .optional(),
  /**
   * The public halves (PEM) of the other keys that sign this chain: before a rotation, the next
   * key's. Given, a gateway takes another key's checkpoint for a rotation (and stops signing)
   * only if one of these signed it; unset, any other key's counts, forged or not.
   */
  publicKeys: z
    .array(
      z
        .string()
        .max(16_384)
        .superRefine((pem, ctx) => {
          try {
            readKey(pem, "check");
          } catch (error) {
            ctx.addIssue({ code: "custom", message: (error as Error).message });
          }
        }),
    )
    .max(16)
    .optional(),
  /** How often the chain's head is signed while it grows. */
  checkpointEvery: duration({ min: 100, max: 86_400_000 }).default(60_000),
});

export const retentionSchema = z.strictObject({
  /**
   * How long a finished request (its input, result and reviews) is kept after it ended;
   * older ones are deleted. Their audit events are kept whatever this says. Unset: forever.
   * At least a day: an agent that retries with the same idempotency key must find its
   * request, not make a new one.
   */
  requests: duration({ min: 86_400_000, max: 100 * 365 * 86_400_000 }).optional(),
  /** How often finished requests past `requests` are looked for. */
  every: duration({ min: 100, max: 7 * 86_400_000 }).default(3_600_000),
});

export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  server: serverSchema.default(serverSchema.parse({})),
  storage: storageSchema.default("sqlite:./.airlock/airlock.db"),
  agents: z.array(agentSchema).max(10_000).default([]),
  reviewers: z.array(reviewerSchema).max(100_000).default([]),
  connections: z.record(nameSchema, connectionSchema).default({}),
  rules: z.array(ruleSchema).max(10_000).default([]),
  identity: z
    .strictObject({
      /** Reviewers sign in to the console through this OpenID Connect provider. */
      oidc: oidcSchema.optional(),
    })
    .default({}),
  channels: z
    .strictObject({
      /** Approval messages with buttons, updated in place. */
      slack: slackSchema.optional(),
      /** Approval cards in a Teams channel or chat, updated in place. */
      teams: teamsSchema.optional(),
      /** Every state change of every request, signed (Standard Webhooks). */
      webhooks: z.array(webhookSchema).max(50).default([]),
    })
    .default({ webhooks: [] }),
  /** Signed checkpoints of the audit chain. */
  audit: auditSchema.default(auditSchema.parse({})),
  /** How long finished requests are kept (the audit trail is kept whole). */
  retention: retentionSchema.default(retentionSchema.parse({})),
});

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type RuleConfig = z.output<typeof ruleSchema>;
export type ReviewConfig = z.output<typeof reviewSchema>;
export type AgentConfig = z.output<typeof agentSchema>;
export type ReviewerConfig = z.output<typeof reviewerSchema>;
