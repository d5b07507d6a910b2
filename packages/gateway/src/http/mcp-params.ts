/**
 * A request's params, checked against the SDK's own schema for its method before the SDK
 * sees them. The SDK parses them first and answers a mismatch as an internal error (-32603)
 * with zod's issues dumped as its message, or, when the params that every request shares are
 * malformed (`_meta.progressToken` an object), refuses the whole POST as unparseable
 * (400, -32700); the client is owed invalid params (-32602) that name the param and say why.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  InitializeRequestSchema,
  isJSONRPCRequest,
  type JSONRPCErrorResponse,
  type JSONRPCRequest,
  JSONRPCRequestSchema,
  ListToolsRequestSchema,
  PingRequestSchema,
  RequestIdSchema,
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

/** What zod says of a union is no more than "Invalid input": the forms it takes, said. */
const UNION_FIELDS = new Map([
  ["params._meta.progressToken", "must be a string or an integer"],
  ["params.requestId", "must be a string or an integer"],
]);

/** zod's message for a param, with the forms of a union said. */
export function paramsMessage(field: string, message: string): string {
  const forms = UNION_FIELDS.get(field);
  return forms === undefined ? message : `${field}: ${forms}`;
}

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

/** Refusals of requests the transport could not tell from garbage, by their id as JSON. */
export type SetAside = ReadonlyMap<string, JSONRPCErrorResponse>;

/**
 * Takes out of `messages` the requests whose params fail the shape every request shares (the
 * SDK's transport would refuse the whole POST for one of them, the batch's other requests
 * with it), each put back without its params so the transport still answers it, with the
 * refusal its params earned; a method /mcp does not have earns none, and is not found.
 */
export function setAsideMalformedParams(messages: readonly unknown[]): {
  messages: unknown[];
  setAside: SetAside;
} {
  const setAside = new Map<string, JSONRPCErrorResponse>();
  const kept = messages.map((message) => {
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      return message;
    }
    const { jsonrpc, id, method, ...rest } = message as Record<string, unknown>;
    if (
      jsonrpc !== "2.0" ||
      typeof method !== "string" ||
      !RequestIdSchema.safeParse(id).success ||
      Object.keys(rest).some((key) => key !== "params")
    ) {
      return message;
    }
    // Everything but the params is a request's: a failure is theirs.
    const parsed = JSONRPCRequestSchema.safeParse(message);
    if (parsed.success) return message;
    const request = { jsonrpc: "2.0", id, method } as JSONRPCRequest;
    // A method without a handler is not found (-32601), whatever its params: the SDK says so
    // of the request without them.
    if (!schemas.has(method)) return request;
    const error = invalidRequest(parsed.error, [], "params");
    const field = error.field ?? "params";
    setAside.set(JSON.stringify(id), refusal(request, field, paramsMessage(field, error.message)));
    return request;
  });
  return { messages: kept, setAside };
}

/** Makes `transport` answer malformed params itself, for each request of a batch alike. */
export function refuseMalformedParams(
  transport: Transport,
  logger: Logger,
  setAside: SetAside,
): void {
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    const refusal = isJSONRPCRequest(message)
      ? (setAside.get(JSON.stringify(message.id)) ?? paramsRefusal(message))
      : undefined;
    if (refusal === undefined) {
      deliver?.(message, extra);
      return;
    }
    transport.send(refusal).catch((err: unknown) => {
      logger.warn({ err }, "an MCP client's malformed params could not be answered");
    });
  };
}
