/**
 * The `mcp` connector: calls tools on a Model Context Protocol server over Streamable HTTP,
 * with Airlock's own credentials. Agents can call only the tools the config lists; their
 * arguments are checked against the server's input schema before anything is decided, and
 * by the server again when the tool runs.
 */
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Json } from "../../common/canonical-json.js";
import { clipDepth } from "../../common/json-depth.js";
import { AirlockError, errorMessage } from "../../errors.js";
import { longValues, scrubApart, scrubBase64 } from "../../masking/binary-fields.js";
import type { DetectorName } from "../../masking/detector-names.js";
import { scrubHidden } from "../../masking/input-mask.js";
import { createByteScrubber, createRedactor } from "../../masking/secret-redactor.js";
import { cutText } from "../../masking/text-cut.js";
import type {
  Connector,
  ConnectorDeps,
  ConnectorType,
  Description,
  ExecutionOutcome,
  OperationSpec,
  OutcomeMasking,
} from "../connector.js";
import { deadline } from "../deadline.js";
import { describeNetworkError } from "../network-errors.js";
import { cutPreview } from "../preview-cut.js";
import { type ArgumentCheck, argumentChecker } from "./mcp-arguments.js";
import { type McpConnectionConfig, mcpConnectionSchema } from "./mcp-config.js";
import { binaryPaths, capContent, type ToolResult } from "./mcp-result.js";
import { McpSession, NotStarted, sessionForgotten } from "./mcp-session.js";

export const mcpConnectorType: ConnectorType<McpConnectionConfig> = {
  type: "mcp",
  configSchema: mcpConnectionSchema,
  facts: { namespace: "mcp", schema: { tool: "string" } },
  operationNames: (config) => Object.keys(config.tools),
  create: (name, config, deps) => createMcpConnector(name, config, deps),
};

/** How long the server's tool schemas are kept, and how long a failure to list them is. */
const SCHEMA_TTL_MS = 5 * 60_000;
const SCHEMA_RETRY_MS = 30_000;
/** How long an agent listing tools, or a submission to be checked, waits for the server's schemas. */
const SCHEMA_WAIT_MS = 5000;

function isObjectSchema(value: unknown): value is OperationSpec["inputSchema"] {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    (value as { type?: unknown }).type === "object"
  );
}

/**
 * A schema agents may be handed as it is: one that JSON can write. A schema nested deeper than
 * JSON.stringify can walk, passed on, failed the whole `/mcp` tool list, every tool of every
 * connection, for as long as the server gave it.
 */
function listable(schema: unknown): schema is OperationSpec["inputSchema"] {
  if (!isObjectSchema(schema)) return false;
  try {
    JSON.stringify(schema);
    return true;
  } catch {
    return false;
  }
}
/** The longest reason a failed call gives: a server's message can be as long as its answer. */
const REASON_CHARS = 600;

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
  // Results are scrubbed before they are cut to size, so a cut cannot leave part of one
  // (masked arguments too, per call).
  const redactor = createRedactor([...secrets, ...deps.secrets]);
  const bytesOnly = createByteScrubber([...secrets, ...deps.secrets]);
  let session: McpSession | undefined;
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
    return `call tool ${operation} on ${name}\n\n${cutPreview(args, argumentsCut)}`;
  };

  const describe = async (operation: string, input: Json): Promise<Description> => {
    const tool = toolFor(operation);
    (await argumentChecks()).get(operation)?.(input as Record<string, unknown>);
    return {
      preview: preview(operation, input),
      ...(tool.description === undefined ? {} : { notes: [tool.description] }),
      facts: { mcp: { tool: operation } },
      risk: { level: tool.risk, reason: `calls tool "${operation}" on MCP server ${name}` },
    };
  };

  /** The session new calls use: started at the first call, and again once one is retired. */
  const current = (): McpSession => {
    if (!session || session.retired) {
      session = new McpSession({
        url: config.url,
        headers,
        // Generous next to the cap, which applies after scrubbing: this only bounds memory.
        maxAnswerBytes: Math.max(8 * config.maxResultBytes, 8 * 1024 * 1024),
        requestTimeoutMs: config.timeout + 1000,
      });
    }
    return session;
  };

  /**
   * The input schemas the server gives the configured tools, asked of it at most every few
   * minutes, with a check of each tool's arguments; while it cannot say, a tool takes any
   * object and the server alone checks it.
   */
  let schemas:
    | {
        until: number;
        byTool: Promise<Map<string, unknown>>;
        checks: Promise<Map<string, ArgumentCheck>>;
      }
    | undefined;
  const toolSchemas = () => {
    const now = Date.now();
    if (!schemas || schemas.until <= now) {
      const byTool = current()
        .listTools(AbortSignal.timeout(SCHEMA_WAIT_MS))
        .then((listed) => new Map(listed.map((tool) => [tool.name, tool.inputSchema])));
      const checks = byTool.then(compileChecks, () => new Map<string, ArgumentCheck>());
      schemas = { until: now + SCHEMA_TTL_MS, byTool, checks };
      byTool.catch((error: unknown) => {
        deps.logger.warn(
          { connection: name, err: errorMessage(error) },
          "could not list the MCP server's tools; agents see them without their input schemas, and only the server checks their arguments",
        );
        if (schemas?.byTool === byTool)
          schemas = { ...schemas, until: Date.now() + SCHEMA_RETRY_MS };
      });
    }
    return schemas;
  };
  const compileChecks = (byTool: Map<string, unknown>): Map<string, ArgumentCheck> => {
    const checks = new Map<string, ArgumentCheck>();
    const argumentCheck = argumentChecker();
    for (const tool of tools.keys()) {
      const check = argumentCheck(tool, byTool.get(tool), (reason) =>
        deps.logger.warn(
          { connection: name, tool, reason },
          "the MCP server's input schema for this tool is left to the server to check",
        ),
      );
      if (check) checks.set(tool, check);
    }
    return checks;
  };
  const argumentChecks = () => toolSchemas().checks;

  /** The configured tools, with the input schemas the server gives them. */
  const operations = async (): Promise<OperationSpec[]> => {
    const byTool = await toolSchemas().byTool.catch(() => new Map<string, unknown>());
    return [...tools].map(([tool, spec]) => {
      const schema = byTool.get(tool);
      return {
        name: tool,
        description: `${spec.description ?? `The ${tool} tool`} (on ${name}, through Airlock: a policy decides whether it runs at once, waits for a person's approval, or is refused)`,
        inputSchema: listable(schema) ? schema : { type: "object" },
      };
    });
  };

  const call = async (
    tool: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<ToolResult> => {
    try {
      return await current().call(tool, args, signal);
    } catch (error) {
      // A server that no longer knows the session refused the message before handling it
      // (the specification has clients start a new session on 404): asking again in a new
      // session cannot run the tool twice. No other failure is asked again.
      if (!sessionForgotten(error)) throw error;
      return await current().call(tool, args, signal);
    }
  };

  const execute = async (
    operation: string,
    input: Json,
    signal: AbortSignal,
    masking?: OutcomeMasking,
  ): Promise<ExecutionOutcome> => {
    toolFor(operation);
    const masked = masking?.hidden ?? [];
    const detectors = masking?.detectors ?? [];
    if (closed) {
      return { ok: false, result: null, summary: "not called", reason: "the connection is closed" };
    }
    // One deadline for the whole execution, connecting included; the SDK listens on its
    // signal, not the caller's.
    const until = deadline(signal, config.timeout);
    let answer: ToolResult;
    try {
      answer = await call(operation, input as Record<string, unknown>, until.signal);
    } catch (error) {
      // Cut once scrubbed and masked: a cut through a credential, a masked argument the server
      // echoes or a value the detectors find would leave a piece nobody recognises after.
      const reason = scrubHidden(
        redactor.redactText(
          failure(error, {
            timedOut: until.timedOut,
            aborted: signal.aborted,
            timeout: config.timeout,
          }),
        ),
        masked,
      );
      const cut =
        reason.length > REASON_CHARS ? `${cutText(reason, REASON_CHARS - 1, detectors)}…` : reason;
      return { ok: false, result: null, summary: "no result", reason: cut };
    } finally {
      until.end();
    }
    // Clipped first: the scrubbers and the cap walk it by recursion, and a server's answer
    // nested thousands deep overflowed the stack after the tool ran, losing its outcome.
    answer = clipDepth(answer as Json) as ToolResult;
    // Binary content is scrubbed as bytes, of the masked arguments too: as base64, an image
    // or a blob that echoes one hides it from scrubbing as text.
    const bytesScrubber =
      masked.length === 0 ? bytesOnly : createByteScrubber([...secrets, ...deps.secrets], masked);
    const long = longValues(masked);
    const scrubbed = scrubApart(
      answer as Json,
      { base64: binaryPaths(answer) },
      (text) => scrubHidden(redactor.redact(text), masked),
      {
        base64: (data) => scrubHidden(redactor.redactText(scrubBase64(data, bytesScrubber)), long),
      },
    ) as ToolResult;
    const { result, bytes, truncated } = capContent(scrubbed, config.maxResultBytes, detectors);
    const paths = binaryPaths(result as ToolResult);
    const binary = paths.length > 0 ? { binary: paths } : {};
    const items = Array.isArray(answer.content) ? answer.content.length : 0;
    const size = `${items} content item${items === 1 ? "" : "s"}, ${bytes} bytes${truncated ? ", truncated" : ""}`;
    if (answer.isError === true) {
      return {
        ok: false,
        result,
        summary: `tool error, ${size}`,
        reason: `the tool reported an error: ${firstText(result, detectors) ?? "(no message)"}`,
        ...binary,
      };
    }
    return { ok: true, result, summary: size, ...binary };
  };

  return {
    type: "mcp",
    name,
    secrets,
    parse,
    describe,
    preview,
    execute,
    operations,
    // Executions are drained before connectors close.
    close: async () => {
      closed = true;
      const last = session;
      session = undefined;
      await last?.close();
    },
  };
}

/**
 * The arguments' JSON (as `JSON.stringify(input, null, 2)` writes it) cut to `limit`, short of
 * a marker and of an argument's name it would split. Those names reach the preview as the
 * agent sent them, to be scrubbed of masked values after the cut (they are the input's own
 * fields, which masking leaves as sent for previews): a piece of one left at the cut would no
 * longer be recognised.
 */
function argumentsCut(args: string, limit: number): string {
  const cut = cutText(args, limit, []);
  // Only a top-level name starts a line indented by two spaces: a string's own line breaks
  // are escaped, and what nests is indented further.
  const name = cut.lastIndexOf('\n  "');
  if (name < 0) return cut;
  const whole = /\n {2}"(?:[^"\\]|\\.)*":/y;
  whole.lastIndex = name;
  return whole.test(cut) ? cut : cut.slice(0, name);
}

/** Why a call got no result, in words for the request's outcome. */
function failure(
  error: unknown,
  deadline: { timedOut: boolean; aborted: boolean; timeout: number },
): string {
  if (error instanceof NotStarted) {
    return deadline.timedOut
      ? `no session with the MCP server could be started within ${deadline.timeout} ms; the tool was not called`
      : "the execution was aborted before the tool was called";
  }
  if (deadline.aborted) return "the execution was aborted";
  if (deadline.timedOut || (error instanceof McpError && error.code === ErrorCode.RequestTimeout)) {
    return `the MCP server did not answer within ${deadline.timeout} ms; the tool may still have run`;
  }
  if (error instanceof McpError) {
    if (error.code === ErrorCode.ConnectionClosed) {
      return "the connection to the MCP server closed before it answered; the tool may have run";
    }
    return `the MCP server refused the call: ${error.message}`;
  }
  if (error instanceof StreamableHTTPError) {
    return error.code === 401 || error.code === 403
      ? `the MCP server refused Airlock's credentials (HTTP ${error.code}); check the connection's headers`
      : `the MCP server answered HTTP ${error.code ?? "?"}: ${error.message}`;
  }
  return `the MCP server could not be reached: ${describeNetworkError(error)}`;
}

function firstText(result: Json, detectors: readonly DetectorName[]): string | undefined {
  const content = (result as { content?: unknown } | null)?.content;
  if (!Array.isArray(content)) return undefined;
  const text = content.find(
    (item): item is { type: "text"; text: string } =>
      typeof item === "object" &&
      item !== null &&
      item.type === "text" &&
      typeof item.text === "string",
  )?.text;
  // Cut as the result is: what the detectors find, masked first, is not cut in two.
  return text === undefined
    ? undefined
    : text.length > 500
      ? `${cutText(text, 500, detectors)}…`
      : text;
}
