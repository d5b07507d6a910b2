/**
 * The messages of a POST to /mcp that are no JSON-RPC message MCP takes, found before the SDK's
 * transport sees them: it refuses the whole POST for one of them as if it were not JSON
 * (400, -32700), the other messages of a batch with it. JSON-RPC 2.0 answers each with
 * Invalid Request (-32600), in its place in a batch, with the id null unless one can be read;
 * a notification whose params cannot be read is not answered in a batch (JSON-RPC answers no
 * notification), and alone it is refused as MCP's transport asks of input a server cannot take
 * (an HTTP error, with a JSON-RPC error without an id).
 */
import {
  CancelledNotificationSchema,
  ErrorCode,
  InitializedNotificationSchema,
  JSONRPCErrorResponseSchema,
  JSONRPCNotificationSchema,
  JSONRPCResultResponseSchema,
  type RequestId,
  RequestIdSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { z } from "zod";
import { invalidRequest } from "../common/zod-errors.js";
import { paramsMessage } from "./mcp-params.js";

/** The notifications /mcp acts on; any other is taken and ignored, as MCP allows. */
const notificationSchemas = new Map<string, z.ZodType>([
  ["notifications/cancelled", CancelledNotificationSchema],
  ["notifications/initialized", InitializedNotificationSchema],
]);

const ENVELOPE = new Set(["jsonrpc", "id", "method", "params"]);

/** JSON-RPC's error answer; its id is null where none can be given (MCP's own type has none). */
export interface ErrorAnswer {
  jsonrpc: "2.0";
  id: RequestId | null;
  error: { code: number; message: string; data: { code: string; field: string } };
}

export interface Refusal {
  /** The message's place in the body. */
  index: number;
  error: ErrorAnswer;
  /** Whether a batch answers it: not a notification's, nor a response's. */
  answered: boolean;
}

/** Whether `value` is an id MCP takes: a string or an integer. */
export const isRequestId = (value: unknown): value is RequestId =>
  RequestIdSchema.safeParse(value).success;

/**
 * The messages that go on to the transport, as they are, and the refusals of the others. A
 * request whose envelope is well-formed goes on whatever its params (mcp-params.ts answers
 * those).
 */
export function screenMessages(messages: readonly unknown[]): {
  kept: unknown[];
  refused: Refusal[];
} {
  const kept: unknown[] = [];
  const refused: Refusal[] = [];
  messages.forEach((message, index) => {
    const refusal = refusalOf(message);
    if (refusal === undefined) kept.push(message);
    else refused.push({ index, ...refusal });
  });
  return { kept, refused };
}

/** Whether a message that went on is a request, which is answered. */
export const isRequestMessage = (message: unknown): boolean =>
  typeof message === "object" && message !== null && "id" in message && "method" in message;

function refusalOf(message: unknown): Omit<Refusal, "index"> | undefined {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return invalid(
      null,
      "message",
      `must be a JSON object (a request, a notification or a response), not ${kindOf(message)}`,
    );
  }
  const fields = message as Record<string, unknown>;
  const { jsonrpc, method } = fields;
  // Only a request's id is answered with: a response's is the id of a call of the server's.
  const id = "method" in fields && isRequestId(fields.id) ? fields.id : null;
  if (jsonrpc !== "2.0") return invalid(id, "jsonrpc", 'must be "2.0"');
  if (!("method" in fields)) {
    if (!("result" in fields) && !("error" in fields)) {
      return invalid(
        null,
        "method",
        "is missing: a request or a notification names its method, a response has a result or an error",
      );
    }
    const response = (
      "result" in fields ? JSONRPCResultResponseSchema : JSONRPCErrorResponseSchema
    ).safeParse(message);
    if (response.success) return undefined;
    const error = invalidRequest(response.error, [], "message");
    return invalid(null, error.field ?? "message", error.message, false);
  }
  if (typeof method !== "string") return invalid(id, "method", "must be a string");
  if ("id" in fields && id === null) {
    return invalid(
      null,
      "id",
      "must be a string or an integer (MCP takes no null id, and no fraction); leave it out of a notification",
    );
  }
  const unknown = Object.keys(fields).find((key) => !ENVELOPE.has(key));
  if (unknown !== undefined) return invalid(id, unknown, `unknown field ${unknown}`);
  if ("id" in fields) return undefined;
  // A notification: what every one shares, then what those /mcp acts on take.
  for (const schema of [JSONRPCNotificationSchema, notificationSchemas.get(method)]) {
    const parsed = schema?.safeParse(message);
    if (parsed === undefined || parsed.success) continue;
    const error = invalidRequest(parsed.error, [], "params");
    const field = error.field ?? "params";
    return {
      error: {
        jsonrpc: "2.0",
        id: null,
        error: {
          code: ErrorCode.InvalidParams,
          message: paramsMessage(field, error.message),
          data: { code: "invalid_request", field },
        },
      },
      answered: false,
    };
  }
  return undefined;
}

const kindOf = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;

function invalid(
  id: RequestId | null,
  field: string,
  why: string,
  answered = true,
): Omit<Refusal, "index"> {
  const message = why.startsWith(`${field}:`) ? why : `${field}: ${why}`;
  return {
    error: {
      jsonrpc: "2.0",
      id,
      error: {
        code: ErrorCode.InvalidRequest,
        message: `Invalid Request: ${message}`,
        data: { code: "invalid_request", field },
      },
    },
    answered,
  };
}

/**
 * A batch's answer: each of its requests' answers (the transport's, found by id) and each
 * refusal a batch answers, in the order of the batch.
 */
export function batchAnswer(
  messages: readonly unknown[],
  refused: readonly Refusal[],
  answers: readonly unknown[],
): unknown[] {
  const byId = new Map<string, unknown>();
  for (const answer of answers) {
    if (typeof answer === "object" && answer !== null && "id" in answer) {
      byId.set(JSON.stringify(answer.id), answer);
    }
  }
  const refusals = new Map(refused.map((refusal) => [refusal.index, refusal]));
  const ordered: unknown[] = [];
  messages.forEach((message, index) => {
    const refusal = refusals.get(index);
    if (refusal !== undefined) {
      if (refusal.answered) ordered.push(refusal.error);
      return;
    }
    if (!isRequestMessage(message)) return;
    const key = JSON.stringify((message as { id: unknown }).id);
    const answer = byId.get(key);
    if (answer === undefined) return;
    ordered.push(answer);
    byId.delete(key);
  });
  // Anything the transport answered that no request of the batch asked for: kept, not lost.
  return [...ordered, ...byId.values()];
}
