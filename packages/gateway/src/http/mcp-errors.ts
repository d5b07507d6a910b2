import { McpError } from "@modelcontextprotocol/sdk/types.js";

/**
 * A JSON-RPC error for an MCP client, thrown from a handler. The SDK's `McpError` puts
 * "MCP error CODE:" before its message, and the client's SDK puts it there again on receipt,
 * so a client would show the code twice: the message goes out as written, as Airlock's own
 * -32600 and -32602 answers do.
 */
export function mcpError(code: number, message: string, data?: unknown): McpError {
  const error = new McpError(code, message, data);
  error.message = message;
  return error;
}
