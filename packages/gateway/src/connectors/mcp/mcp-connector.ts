/**
 * The `mcp` connector: calls tools on a Model Context Protocol server over Streamable HTTP,
 * with Airlock's own credentials. Agents can call only the tools the config lists; the
 * server checks their arguments.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Json } from "../../common/canonical-json.js";
import { AirlockError } from "../../errors.js";
import { createRedactor } from "../../masking/secret-redactor.js";
import type {
  Connector,
  ConnectorDeps,
  ConnectorType,
  Description,
  ExecutionOutcome,
} from "../connector.js";
import { type McpConnectionConfig, mcpConnectionSchema } from "./mcp-config.js";
import { capContent, type ToolResult } from "./mcp-result.js";

export const mcpConnectorType: ConnectorType<McpConnectionConfig> = {
  type: "mcp",
  configSchema: mcpConnectionSchema,
  facts: { namespace: "mcp", schema: { tool: "string" } },
  create: (name, config, deps) => createMcpConnector(name, config, deps),
};

const PREVIEW_CHARS = 4000;

export function createMcpConnector(
  name: string,
  config: McpConnectionConfig,
  deps: ConnectorDeps,
): Connector {
  const tools = new Map(Object.entries(config.tools));
  const headers = Object.fromEntries(
    Object.entries(config.headers).map(([key, value]) => [key.toLowerCase(), value]),
  );
  const secrets = Object.values(headers);
  // Results are scrubbed before they are cut to size, so a cut cannot leave part of one.
  const redactor = createRedactor([...secrets, ...deps.secrets]);
  /** One session, shared by every call; started at the first call, and again after a failure. */
  let session: Promise<Client> | undefined;
  let closed = false;

  const toolFor = (operation: string) => {
    const tool = tools.get(operation);
    if (!tool) {
      throw new AirlockError(
        "unknown_operation",
        `connection ${name} (mcp) has no tool "${operation}" that agents may call; its tools are: ${[...tools.keys()].join(", ")}`,
        { field: "operation" },
      );
    }
    return tool;
  };

  const parse = (operation: string, input: unknown): Json => {
    toolFor(operation);
    if (input === undefined) return {};
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      throw new AirlockError(
        "invalid_request",
        `input: must be an object of the tool's arguments (by name), like {"query": "refunds"}`,
        { field: "input" },
      );
    }
    // Parsed from JSON at the boundary, so it is plain JSON already.
    return input as Json;
  };

  const preview = (operation: string, input: Json): string => {
    const args = JSON.stringify(input, null, 2);
    const shown =
      args.length > PREVIEW_CHARS
        ? `${args.slice(0, PREVIEW_CHARS)}\n… (${args.length} characters)`
        : args;
    return `call tool ${operation} on ${name}\n\n${shown}`;
  };

  const describe = async (operation: string, input: Json): Promise<Description> => {
    const tool = toolFor(operation);
    return {
      preview: preview(operation, input),
      ...(tool.description === undefined ? {} : { notes: [tool.description] }),
      facts: { mcp: { tool: operation } },
      risk: { level: tool.risk, reason: `calls tool "${operation}" on MCP server ${name}` },
    };
  };

  const connect = (): Promise<Client> => {
    session ??= (async () => {
      const client = new Client({ name: "airlock", version: "1" });
      const transport = new StreamableHTTPClientTransport(new URL(config.url), {
        // A redirect would carry the credentials elsewhere: refused, not followed.
        requestInit: { headers, redirect: "error" },
      });
      client.onerror = () => {};
      client.onclose = () => {
        session = undefined;
      };
      await client.connect(transport, { timeout: config.timeout });
      return client;
    })();
    const current = session;
    // A failed start is not kept: the next call tries again.
    current.catch(() => {
      if (session === current) session = undefined;
    });
    return current;
  };

  /** Forgets a session that failed, so the next call starts another. */
  const drop = (failed: Promise<Client>) => {
    if (session !== failed) return;
    session = undefined;
    void failed.then((client) => client.close()).catch(() => {});
  };

  const call = async (
    tool: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<ToolResult> => {
    const started = connect();
    const client = await started;
    try {
      return (await client.callTool({ name: tool, arguments: args }, undefined, {
        signal,
        timeout: config.timeout,
        maxTotalTimeout: config.timeout,
      })) as ToolResult;
    } catch (error) {
      drop(started);
      // A server that no longer knows the session refused the message before handling it
      // (the specification has clients start a new session on 404): asking again in a new
      // session cannot run the tool twice.
      if (error instanceof StreamableHTTPError && error.code === 404) {
        const again = connect();
        try {
          return (await (
            await again
          ).callTool({ name: tool, arguments: args }, undefined, {
            signal,
            timeout: config.timeout,
            maxTotalTimeout: config.timeout,
          })) as ToolResult;
        } catch (retryError) {
          drop(again);
          throw retryError;
        }
      }
      throw error;
    }
  };

  const execute = async (
    operation: string,
    input: Json,
    signal: AbortSignal,
  ): Promise<ExecutionOutcome> => {
    toolFor(operation);
    if (closed) {
      return { ok: false, result: null, summary: "not called", reason: "the connection is closed" };
    }
    // A signal of its own for the SDK, which listens on it: nothing it adds stays on the
    // caller's signal, which every execution shares.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    if (signal.aborted) stop.abort();
    else signal.addEventListener("abort", onAbort, { once: true });
    let answer: ToolResult;
    try {
      answer = await call(operation, input as Record<string, unknown>, stop.signal);
    } catch (error) {
      const reason = redactor.redactText(failure(error, signal, config.timeout));
      return { ok: false, result: null, summary: "no result", reason };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    const { result, bytes, truncated } = capContent(redactor.redact(answer), config.maxResultBytes);
    const items = Array.isArray(answer.content) ? answer.content.length : 0;
    const size = `${items} content item${items === 1 ? "" : "s"}, ${bytes} bytes${truncated ? ", truncated" : ""}`;
    if (answer.isError === true) {
      return {
        ok: false,
        result,
        summary: `tool error, ${size}`,
        reason: `the tool reported an error: ${firstText(result) ?? "(no message)"}`,
      };
    }
    return { ok: true, result, summary: size };
  };

  return {
    type: "mcp",
    name,
    secrets,
    parse,
    describe,
    preview,
    execute,
    // Executions are drained before connectors close.
    close: async () => {
      closed = true;
      const current = session;
      session = undefined;
      if (current) await current.then((client) => client.close()).catch(() => {});
    },
  };
}

/** Why a call got no result, in words for the request's outcome. */
function failure(error: unknown, signal: AbortSignal, timeout: number): string {
  if (signal.aborted) return "the execution was aborted";
  if (error instanceof McpError) {
    if (error.code === ErrorCode.RequestTimeout) {
      return `the MCP server did not answer within ${timeout} ms`;
    }
    return `the MCP server refused the call: ${error.message}`;
  }
  if (error instanceof StreamableHTTPError) {
    return error.code === 401 || error.code === 403
      ? `the MCP server refused Airlock's credentials (HTTP ${error.code}); check the connection's headers`
      : `the MCP server answered HTTP ${error.code ?? "?"}: ${error.message}`;
  }
  const cause = (error as { cause?: { code?: string } } | undefined)?.cause;
  if (cause?.code === "ECONNREFUSED")
    return "the MCP server could not be reached: connection refused";
  if (cause?.code === "ENOTFOUND") return "the MCP server could not be reached: host not found";
  const message = error instanceof Error ? error.message : String(error);
  return `the MCP server could not be reached: ${message}`;
}

function firstText(result: Json): string | undefined {
  const content = (result as { content?: unknown } | null)?.content;
  if (!Array.isArray(content)) return undefined;
  const text = content.find(
    (item): item is { type: "text"; text: string } =>
      typeof item === "object" &&
      item !== null &&
      item.type === "text" &&
      typeof item.text === "string",
  )?.text;
  return text === undefined ? undefined : text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
