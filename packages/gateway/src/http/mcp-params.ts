/**
 * A request's params, checked against the SDK's own schema for its method before the SDK
 * sees them. The SDK parses them first and answers a mismatch as an internal error (-32603)
 * with zod's issues dumped as its message; the client is owed invalid params (-32602) that
 * name the param and say why.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  InitializeRequestSchema,
  isJSONRPCRequest,
  type JSONRPCErrorResponse,
  type JSONRPCRequest,
  ListToolsRequestSchema,
  PingRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { z } from "zod";
import { invalidRequest } from "../common/zod-errors.js";
import type { Logger } from "../observability/logger.js";

// The methods /mcp has handlers for; any other is the SDK's "Method not found".
const schemas = new Map<string, z.ZodType>([
  ["initialize", InitializeRequestSchema],
  ["ping", PingRequestSchema],
  ["tools/list", ListToolsRequestSchema],
  ["tools/call", CallToolRequestSchema],
]);

/** The error a request's malformed params get, if they are. */
export function paramsRefusal(request: JSONRPCRequest): JSONRPCErrorResponse | undefined {
  const parsed = schemas.get(request.method)?.safeParse(request);
  if (parsed === undefined) return undefined;
  if (!parsed.success) {
    const error = invalidRequest(parsed.error, [], "params");
    return refusal(request, error.field ?? "params", error.message);
  }
  // Every cursor is one this server never gave (the spec's case for invalid params).
  if (request.method === "tools/list" && request.params?.cursor !== undefined) {
    return refusal(
      request,
      "params.cursor",
      "params.cursor: this server lists all its tools in one answer and gives no cursors; ask without one",
    );
  }
  return undefined;
}

function refusal(request: JSONRPCRequest, field: string, message: string): JSONRPCErrorResponse {
  return {
    jsonrpc: "2.0",
    id: request.id,
    error: {
      code: ErrorCode.InvalidParams,
      message,
      data: { code: "invalid_request", field },
    },
  };
}

/** Makes `transport` answer malformed params itself, for each request of a batch alike. */
export function refuseMalformedParams(transport: Transport, logger: Logger): void {
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    const refusal = isJSONRPCRequest(message) ? paramsRefusal(message) : undefined;
    if (refusal === undefined) {
      deliver?.(message, extra);
      return;
    }
    transport.send(refusal).catch((err: unknown) => {
      logger.warn({ err }, "an MCP client's malformed params could not be answered");
    });
  };
}
