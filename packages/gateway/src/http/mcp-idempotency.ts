/**
 * An MCP tool call's idempotency key. MCP has no field for one, so the client puts it in the
 * call's `_meta` under Airlock's own reverse-DNS prefix; it is the agent's idempotency key as
 * `POST /v1/actions` takes it, so a call retried after a lost answer finds its request.
 */
import { ErrorCode, type McpError } from "@modelcontextprotocol/sdk/types.js";
import { invalidRequest } from "../common/zod-errors.js";
import type { AirlockError } from "../errors.js";
import { idempotencyKeySchema } from "./api-schemas.js";
import { mcpError } from "./mcp-errors.js";

export const IDEMPOTENCY_META_KEY = "dev.airlock/idempotency-key";

const FIELD = `_meta["${IDEMPOTENCY_META_KEY}"]`;

/** The key a call's `_meta` carries, if any; a malformed one is refused before anything runs. */
export function idempotencyKeyIn(meta: Record<string, unknown> | undefined): string | undefined {
  const value = meta?.[IDEMPOTENCY_META_KEY];
  if (value === undefined) return undefined;
  const parsed = idempotencyKeySchema.safeParse(value);
  if (!parsed.success) throw keyRefused(invalidRequest(parsed.error, [], FIELD));
  return parsed.data;
}

/**
 * The key is the client's, not the model's: a problem with it is a JSON-RPC error for the
 * client's code, not a tool result the model would read and could not fix. The submission's
 * `idempotencyKey` is named as the field it is here.
 */
export function keyRefused(error: AirlockError): McpError {
  const message = error.message.startsWith("idempotencyKey:")
    ? `${FIELD}${error.message.slice("idempotencyKey".length)}`
    : error.message;
  return mcpError(ErrorCode.InvalidParams, message, { code: error.code, field: FIELD });
}
