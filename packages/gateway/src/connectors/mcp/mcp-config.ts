/**
 * The `mcp` connection's config: an MCP server reached over Streamable HTTP with Airlock's
 * own credentials, and the tools agents may call on it, each with its risk.
 */
import { z } from "zod";
import {
  connectionMaskSchema,
  duration,
  httpUrl,
  resultByteCap,
} from "../../config/config-types.js";
import { connectionHeadersSchema } from "../http/http-config.js";

/** The MCP specification's tool names: 1 to 128 of A–Z, a–z, 0–9, `_`, `-` and `.`. */
export const toolNamePattern = /^[A-Za-z0-9_.-]{1,128}$/;

const toolSchema = z.strictObject({
  /** The risk hint reviewers and rules see. */
  risk: z.enum(["low", "medium", "high", "critical"]).default("medium"),
  /** Shown to reviewers above the preview. */
  description: z.string().max(1000).optional(),
});

export const mcpConnectionSchema = z.strictObject({
  type: z.literal("mcp"),
  /** The server's Streamable HTTP endpoint. */
  url: httpUrl()
    .refine((url) => !new URL(url).hash, "must not have a fragment")
    .refine(
      (url) => !new URL(url).username && !new URL(url).password,
      "must not hold credentials; put them in headers, e.g. authorization: Bearer ${env:MCP_TOKEN}",
    ),
  /** Sent with every message to the server. */
  headers: connectionHeadersSchema,
  /**
   * The tools agents may call, by name: no other tool can be asked for, whatever the server
   * offers. A tool's arguments are checked by the server itself.
   */
  tools: z
    .record(
      z
        .string()
        .regex(toolNamePattern, "a tool name has 1 to 128 letters, digits, _, - and .")
        .refine((name) => name !== "__proto__", "__proto__ cannot name a tool"),
      toolSchema,
    )
    .refine((tools) => Object.keys(tools).length > 0, "list at least one tool agents may call")
    .refine((tools) => Object.keys(tools).length <= 1000, "at most 1000 tools"),
  /** How long one call may take, connecting included. */
  timeout: duration({ min: 100, max: 3_600_000 }).default(30_000),
  maxResultBytes: resultByteCap,
  mask: connectionMaskSchema.optional(),
});

export type McpConnectionConfig = z.output<typeof mcpConnectionSchema>;
