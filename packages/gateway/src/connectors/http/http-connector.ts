/** The `http` connector: calls an upstream API under a base URL with injected credentials. */
import { Pool } from "undici";
import type { Json } from "../../common/canonical-json.js";
import { invalidRequest } from "../../common/zod-errors.js";
import { AirlockError } from "../../errors.js";
import type {
  Connector,
  ConnectorType,
  Description,
  ExecutionOutcome,
  RiskHint,
} from "../connector.js";
import { type HttpConnectionConfig, httpConnectionSchema } from "./http-config.js";
import { type HttpInput, httpInputSchema, reservedHeaders, resolveUrl } from "./http-input.js";

/** Response headers that describe the hop, not the resource, plus cookies meant for Airlock. */
const droppedResponseHeaders = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "set-cookie",
  "set-cookie2",
]);

export const httpConnectorType: ConnectorType<HttpConnectionConfig> = {
  type: "http",
  configSchema: httpConnectionSchema,
  facts: { namespace: "http", schema: { method: "string", path: "string" } },
  create: (name, config) => createHttpConnector(name, config),
};

export function createHttpConnector(name: string, config: HttpConnectionConfig): Connector {
  const base = new URL(config.baseUrl);
  const pool = new Pool(base.origin, { connections: 128, keepAliveTimeout: 10_000 });
  const ownHeaders = new Map(
    Object.entries(config.headers).map(([key, value]) => [key.toLowerCase(), value]),
  );

  const parse = (operation: string, input: unknown): Json => {
    if (operation !== "request") {
      throw new AirlockError(
        "unknown_operation",
        `connection ${name} (http) has no operation "${operation}"; use "request"`,
        { field: "operation" },
      );
    }
    const parsed = httpInputSchema.safeParse(input);
    if (!parsed.success) throw invalidRequest(parsed.error, ["input"], "input");
    const value = parsed.data;
    for (const header of Object.keys(value.headers ?? {})) {
      const lower = header.toLowerCase();
      if (ownHeaders.has(lower)) {
        throw new AirlockError(
          "invalid_request",
          `input.headers.${header}: set by Airlock for connection ${name}; an agent cannot set it`,
          { field: `input.headers.${header}` },
        );
      }
      if (reservedHeaders.has(lower)) {
        throw new AirlockError(
          "invalid_request",
          `input.headers.${header}: a transport header that an agent cannot set`,
          { field: `input.headers.${header}` },
        );
      }
    }
    return JSON.parse(JSON.stringify(value)) as Json;
  };

  const describe = async (_operation: string, raw: Json): Promise<Description> => {
    const input = raw as unknown as HttpInput;
    const url = resolveUrl(config.baseUrl, input.path, input.query);
    const target = `${url.pathname}${url.search}`;
    let preview = `${input.method} ${name}${target}`;
    if (input.body !== undefined) {
      const body =
        typeof input.body === "string" ? input.body : JSON.stringify(input.body, null, 2);
      preview += `\n\n${body.length > 4000 ? `${body.slice(0, 4000)}\n… (${body.length} characters)` : body}`;
    }
    return {
      preview,
      facts: { http: { method: input.method, path: input.path } },
      risk: methodRisk(input.method),
    };
  };

  const execute = async (
    _operation: string,
    raw: Json,
    signal: AbortSignal,
  ): Promise<ExecutionOutcome> => {
    const input = raw as unknown as HttpInput;
    const url = resolveUrl(config.baseUrl, input.path, input.query);
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(input.headers ?? {}))
      headers[key.toLowerCase()] = value;
    let body: string | undefined;
    if (input.body !== undefined && input.method !== "GET" && input.method !== "HEAD") {
      if (typeof input.body === "string") {
        body = input.body;
        headers["content-type"] ??= "text/plain; charset=utf-8";
      } else {
        body = JSON.stringify(input.body);
        headers["content-type"] ??= "application/json";
      }
    }
    // The connection's headers go last so nothing the agent sent can replace them.
    for (const [key, value] of ownHeaders) headers[key] = value;

    const timeout = AbortSignal.timeout(config.timeout);
    const combined = AbortSignal.any([signal, timeout]);
    try {
      const response = await pool.request({
        path: `${url.pathname}${url.search}`,
        method: input.method,
        headers,
        body,
        signal: combined,
      });
      const { bytes, truncated } = await readCapped(response.body, config.maxResponseBytes);
      const responseHeaders: Record<string, string> = {};
      for (const [key, value] of Object.entries(response.headers)) {
        if (value === undefined || droppedResponseHeaders.has(key.toLowerCase())) continue;
        responseHeaders[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
      }
      const decoded = decodeBody(bytes, responseHeaders["content-type"], truncated);
      const result: Record<string, Json> = {
        status: response.statusCode,
        headers: responseHeaders,
        body: decoded.body,
      };
      if (decoded.encoding) result.encoding = decoded.encoding;
      if (truncated) result.truncated = `the body was cut at ${config.maxResponseBytes} bytes`;
      const size = `${bytes.length}${truncated ? "+" : ""} bytes`;
      const ok = response.statusCode < 400;
      return {
        ok,
        result,
        summary: `HTTP ${response.statusCode}, ${size}`,
        ...(ok ? {} : { reason: `the upstream answered HTTP ${response.statusCode}` }),
      };
    } catch (error) {
      const reason = timeout.aborted
        ? `the upstream did not answer within ${config.timeout} ms`
        : signal.aborted
          ? "the execution was aborted"
          : `the upstream could not be reached: ${describeNetworkError(error)}`;
      return { ok: false, result: null, summary: "no response", reason };
    }
  };

  return {
    type: "http",
    name,
    secrets: [...ownHeaders.values(), ...(base.password ? [base.password] : [])],
    parse,
    describe,
    execute,
    close: () => pool.close(),
  };
}

function methodRisk(method: string): RiskHint {
  switch (method) {
    case "GET":
    case "HEAD":
    case "OPTIONS":
      return { level: "low", reason: `${method} reads without changing anything` };
    case "DELETE":
      return { level: "high", reason: "DELETE removes data" };
    default:
      return { level: "medium", reason: `${method} changes data upstream` };
  }
}

async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(): void },
  cap: number,
): Promise<{ bytes: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size + chunk.length > cap) {
      chunks.push(chunk.subarray(0, cap - size));
      size = cap;
      body.destroy();
      return { bytes: Buffer.concat(chunks, size), truncated: true };
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { bytes: Buffer.concat(chunks, size), truncated: false };
}

function decodeBody(
  bytes: Buffer,
  contentType: string | undefined,
  truncated: boolean,
): { body: Json; encoding?: "base64" } {
  if (bytes.length === 0) return { body: null };
  const type = (contentType ?? "").toLowerCase();
  const isJson = type.includes("json");
  const isText =
    isJson || type.startsWith("text/") || type.includes("xml") || type.includes("charset");
  if (isJson && !truncated) {
    try {
      return { body: JSON.parse(bytes.toString("utf8")) as Json };
    } catch {
      // an upstream that labels non-JSON as JSON still gets its text through
    }
  }
  if (isText || !contentType) {
    const text = bytes.toString("utf8");
    if (!text.includes("\uFFFD")) return { body: text };
  }
  return { body: bytes.toString("base64"), encoding: "base64" };
}

function describeNetworkError(error: unknown): string {
  if (error && typeof error === "object") {
    const e = error as { code?: string; message?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code;
    if (code === "ECONNREFUSED") return "connection refused";
    if (code === "ENOTFOUND") return "host not found";
    if (code === "ECONNRESET" || code === "UND_ERR_SOCKET") return "the connection was reset";
    return e.message ?? String(error);
  }
  return String(error);
}
