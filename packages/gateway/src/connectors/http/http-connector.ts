/** The `http` connector: calls an upstream API under a base URL with injected credentials. */
import type { Readable } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { Pool } from "undici";
import type { Json } from "../../common/canonical-json.js";
import { MAX_JSON_DEPTH } from "../../common/json-depth.js";
import { invalidRequest } from "../../common/zod-errors.js";
import { AirlockError } from "../../errors.js";
import { maskText } from "../../masking/result-masking.js";
import { createByteScrubber } from "../../masking/secret-redactor.js";
import type {
  Connector,
  ConnectorType,
  Description,
  ExecutionOutcome,
  OperationSpec,
  OutcomeMasking,
  RiskHint,
} from "../connector.js";
import { deadline } from "../deadline.js";
import { beforeSending, describeNetworkError } from "../network-errors.js";
import { cutPreview } from "../preview-cut.js";
import { type HttpConnectionConfig, httpConnectionSchema } from "./http-config.js";
import {
  type HttpInput,
  httpInputSchema,
  httpMethods,
  methodOverrideField,
  reservedHeaders,
  resolveUrl,
} from "./http-input.js";

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
  operationNames: () => ["request"],
  create: (name, config, deps) => createHttpConnector(name, config, deps.secrets),
};

export function createHttpConnector(
  name: string,
  config: HttpConnectionConfig,
  configSecrets: readonly string[] = [],
): Connector {
  const base = new URL(config.baseUrl);
  const pool = new Pool(base.origin, { connections: 128, keepAliveTimeout: 10_000 });
  const basePath = base.pathname.replace(/\/+$/, "");
  const ownHeaders = new Map(
    Object.entries(config.headers).map(([key, value]) => [key.toLowerCase(), value]),
  );
  const ownNames = new Set([...ownHeaders.keys()].map(cgiName));
  // A base URL from a secret reference (a webhook's URL, say) is a secret as a whole, and
  // its path is too: previews leave it out, and an upstream echoing the path it was called
  // on (a 404 page) has it scrubbed, which the whole URL alone would not be.
  const secretBase = basePath !== "" && configSecrets.some((secret) => secret.includes(basePath));
  const shownBase = secretBase ? "" : basePath;
  const secrets = [
    ...ownHeaders.values(),
    ...(base.password ? [base.password] : []),
    ...(secretBase ? [basePath] : []),
  ];
  const scrubber = createByteScrubber([...secrets, ...configSecrets]);

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
    // None is sent with them (see execute): reviewers would approve a body that never leaves.
    if (value.body !== undefined && (value.method === "GET" || value.method === "HEAD")) {
      throw new AirlockError(
        "invalid_request",
        `input.body: a ${value.method} request is sent without a body; put the data in input.query, or use POST`,
        { field: "input.body" },
      );
    }
    const seen = new Set<string>();
    for (const header of Object.keys(value.headers ?? {})) {
      // Names compared as the upstream may read them: servers that pass headers on as CGI
      // variables (Rack, WSGI, PHP) read x_http_method_override as X-HTTP-Method-Override.
      const cgi = cgiName(header);
      const spelt =
        cgi === header.toLowerCase() ? "" : ` (read as ${cgi} by servers that take _ for -)`;
      // The upstream would get one of the two, and reviewers would see both.
      if (seen.has(cgi)) {
        throw new AirlockError(
          "invalid_request",
          `input.headers.${header}: given twice (header names ignore case, and _ may be read as -); send it once`,
          { field: `input.headers.${header}` },
        );
      }
      seen.add(cgi);
      if (ownNames.has(cgi)) {
        throw new AirlockError(
          "invalid_request",
          `input.headers.${header}: set by Airlock for connection ${name}${spelt}; an agent cannot set it`,
          { field: `input.headers.${header}` },
        );
      }
      const reserved = reservedHeaders.get(cgi);
      if (reserved) {
        throw new AirlockError("invalid_request", `input.headers.${header}${spelt}: ${reserved}`, {
          field: `input.headers.${header}`,
        });
      }
    }
    const override = methodOverrideField(value, ownHeaders.get("content-type"));
    if (override) {
      throw new AirlockError(
        "invalid_request",
        `${override}: _method would make the upstream run the request as another method than the ${value.method} the policy decided on; send that method instead`,
        { field: override },
      );
    }
    // One spelling of each name, as HTTP/2 writes them: what rules test, masks hide and
    // reviewers read is the header the upstream receives, however the agent capitalised it.
    if (value.headers) {
      value.headers = Object.fromEntries(
        Object.entries(value.headers).map(([header, text]) => [header.toLowerCase(), text]),
      );
    }
    // Parsed from JSON at the boundary, so zod's copy is plain JSON already.
    return value as Json;
  };

  const preview = (_operation: string, raw: Json): string => {
    const input = raw as unknown as HttpInput;
    let search = "";
    if (input.query !== undefined) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(input.query)) {
        for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
      }
      if (query.size > 0) search = `?${query}`;
    }
    let text = `${input.method} ${name}${shownBase}${input.path}${search}`;
    if (input.body !== undefined) {
      const body =
        typeof input.body === "string" ? input.body : JSON.stringify(input.body, null, 2);
      text += `\n\n${cutPreview(body)}`;
    }
    return text;
  };

  const describe = async (operation: string, raw: Json): Promise<Description> => {
    const input = raw as unknown as HttpInput;
    return {
      preview: preview(operation, raw),
      facts: { http: { method: input.method, path: input.path } },
      risk: methodRisk(input.method),
    };
  };

  const execute = async (
    _operation: string,
    raw: Json,
    signal: AbortSignal,
    masking?: OutcomeMasking,
  ): Promise<ExecutionOutcome> => {
    const input = raw as unknown as HttpInput;
    const masked = masking?.hidden ?? [];
    const detectors = masking?.detectors ?? [];
    // Masked values are scrubbed from the body with the credentials, and what the detectors
    // find in text is masked, before the cut.
    const scrubbing =
      masked.length > 0
        ? createByteScrubber([...secrets, ...configSecrets], masked, detectors)
        : detectors.length > 0
          ? scrubber.detecting(detectors)
          : scrubber;
    // A checked path of plain ASCII without a query needs no URL parsing (the common case).
    const target =
      input.query === undefined && /^[\x21-\x7e]+$/.test(input.path)
        ? basePath + input.path
        : (() => {
            const url = resolveUrl(config.baseUrl, input.path, input.query);
            return `${url.pathname}${url.search}`;
          })();
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(input.headers ?? {})) headers[key] = value;
    let body: string | undefined;
    // (Requests stored before such bodies were refused may still hold one: it stays unsent.)
    if (input.body !== undefined && input.method !== "GET" && input.method !== "HEAD") {
      if (typeof input.body === "string") {
        body = input.body;
        headers["content-type"] ??= "text/plain; charset=utf-8";
      } else {
        body = JSON.stringify(input.body);
        headers["content-type"] ??= "application/json";
      }
    }
    headers["accept-encoding"] = "identity";
    // The connection's headers go last so nothing the agent sent can replace them.
    for (const [key, value] of ownHeaders) headers[key] = value;

    const until = deadline(signal, config.timeout);
    try {
      const response = await pool.request({
        path: target,
        method: input.method,
        headers,
        body,
        signal: until.signal,
      });
      const responseHeaders: Record<string, string> = {};
      for (const [key, value] of Object.entries(response.headers)) {
        if (value === undefined || droppedResponseHeaders.has(key.toLowerCase())) continue;
        responseHeaders[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
      }
      const cap = config.maxResponseBytes;
      const { read, withheld } = await readBody(
        response.body,
        responseHeaders,
        cap + scrubbing.overlap,
      );
      const contentType = responseHeaders["content-type"];
      // A body cut to size is read by the detectors before the cut whatever its type, as
      // text: cut, binary data is whole no longer, and bytes that decode as text would be
      // read by them after the cut (where they would miss a value cut in two).
      // JSON read whole is decoded from the bytes scrubbed of credentials alone: the executor
      // hides the masked values in its strings and numbers, as it does in every result. On
      // the bytes, a masked 250 would also be cut out of 12501, and the JSON broken into text.
      const whole =
        masked.length > 0 ? scrubber.clip(read.bytes, cap, !read.more, true) : undefined;
      const json = whole && !whole.truncated ? jsonBody(whole.bytes, contentType) : undefined;
      const { bytes, truncated } =
        json && whole ? whole : scrubbing.clip(read.bytes, cap, !read.more, true);
      const decoded: { body: Json; encoding?: "base64" } = withheld
        ? { body: null }
        : (json ?? decodeBody(bytes, contentType, truncated));
      // Text in another charset than UTF-8 leaves as base64, whose bytes the executor has
      // the detectors read only when they are UTF-8: they read it here, as Latin-1, which
      // keeps ASCII (all they look for) where it is. (One cut was read before the cut.)
      if (decoded.encoding && !truncated && detectors.length > 0 && isText(contentType)) {
        const latin1 = bytes.toString("latin1");
        const shown = maskText(latin1, detectors).text;
        if (shown !== latin1) decoded.body = Buffer.from(shown, "latin1").toString("base64");
      }
      const result: Record<string, Json> = {
        status: response.statusCode,
        headers: responseHeaders,
        body: decoded.body,
      };
      if (decoded.encoding) result.encoding = decoded.encoding;
      if (withheld) result.withheld = withheld;
      if (truncated) result.truncated = `the body was cut at ${config.maxResponseBytes} bytes`;
      const size = withheld ? "body withheld" : `${bytes.length}${truncated ? "+" : ""} bytes`;
      const ok = response.statusCode < 400;
      return {
        ok,
        result,
        summary: `HTTP ${response.statusCode}, ${size}`,
        ...(ok ? {} : { reason: `the upstream answered HTTP ${response.statusCode}` }),
        ...(decoded.encoding ? { binary: [["body"]] } : {}),
      };
    } catch (error) {
      // Said plainly, so nobody takes a request that may have been acted on for one that was not.
      const mayHaveActed = "; the upstream may have acted on the request";
      const reason = until.timedOut
        ? `the upstream did not answer within ${config.timeout} ms${mayHaveActed}`
        : signal.aborted
          ? `the execution was aborted${mayHaveActed}`
          : beforeSending(error)
            ? `the upstream could not be reached: ${describeNetworkError(error)}; the request was not sent`
            : `the connection to the upstream failed: ${describeNetworkError(error)}${mayHaveActed}`;
      return { ok: false, result: null, summary: "no response", reason };
    } finally {
      until.end();
    }
  };

  return {
    type: "http",
    name,
    secrets,
    parse,
    describe,
    preview,
    execute,
    operations: async () => [
      {
        name: "request",
        description: `Sends an HTTP request to the ${name} API, with credentials Airlock adds; a policy decides whether it runs at once, waits for a person's approval, or is refused.`,
        inputSchema: httpInputJsonSchema,
      },
    ],
    close: () => pool.close(),
  };
}

const httpInputJsonSchema = {
  type: "object",
  properties: {
    method: { type: "string", enum: [...httpMethods] },
    path: {
      type: "string",
      description: "The path under the API's base URL, like /invoices/42",
      maxLength: 2048,
    },
    query: {
      type: "object",
      description: "Query parameters, by name: a string, or a list of strings",
      additionalProperties: {
        anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
      },
    },
    headers: {
      type: "object",
      description: "Headers to send; the API's credentials are Airlock's to set",
      additionalProperties: { type: "string" },
    },
    body: { description: "The request body: JSON, or text" },
  },
  required: ["method", "path"],
  additionalProperties: false,
} as const satisfies OperationSpec["inputSchema"];

/** A header's name as a CGI variable keeps it: case and the difference of _ and - are lost. */
function cgiName(header: string): string {
  return header.toLowerCase().replaceAll("_", "-");
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

/**
 * Reads at most `limit` bytes of the body, decompressed if the upstream compressed it anyway:
 * the cap and, past it, what the scrubber reads past a cut (ByteScrubber.overlap), so that a
 * value straddling the cut is still found whole, or by its start.
 */
async function readBody(
  body: Readable,
  headers: Record<string, string>,
  limit: number,
): Promise<{ read: { bytes: Buffer; more: boolean }; withheld?: string }> {
  const encoding = (headers["content-encoding"] ?? "identity").toLowerCase().trim();
  let source: Readable = body;
  if (encoding !== "identity") {
    const decoder =
      encoding === "gzip" || encoding === "x-gzip"
        ? createGunzip()
        : encoding === "deflate"
          ? createInflate()
          : encoding === "br"
            ? createBrotliDecompress()
            : undefined;
    if (!decoder) {
      body.destroy();
      return {
        read: { bytes: Buffer.alloc(0), more: false },
        withheld: `the upstream used content-encoding ${encoding}, which Airlock cannot inspect`,
      };
    }
    delete headers["content-encoding"];
    delete headers["content-length"];
    source = body.pipe(decoder);
    body.once("error", (error) => decoder.destroy(error));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let more = false;
  for await (const chunk of source) {
    const buffer = chunk as Buffer;
    if (size + buffer.length > limit) {
      chunks.push(buffer.subarray(0, limit - size));
      size = limit;
      more = true;
      break;
    }
    chunks.push(buffer);
    size += buffer.length;
  }
  if (more) {
    source.destroy();
    body.destroy();
  }
  return { read: { bytes: Buffer.concat(chunks, size), more } };
}

/** How deep the arrays and objects of JSON text nest, read without recursion. */
function nesting(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++;
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x5b || char === 0x7b) max = Math.max(max, ++depth);
    else if (char === 0x5d || char === 0x7d) depth--;
  }
  return max;
}

/** Whether a parsed JSON value holds an integer JSON.parse may have rounded (beyond ±2^53). */
function holdsUnsafeInteger(value: Json): boolean {
  const stack: Json[] = [value];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (typeof item === "number") {
      if (Number.isInteger(item) && !Number.isSafeInteger(item)) return true;
    } else if (item !== null && typeof item === "object") {
      // One at a time: spread, an array of a million items exceeds the arguments limit.
      for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push(child);
    }
  }
  return false;
}

/** A whole body labelled JSON, parsed, when it parses and can be passed on as parsed. */
function jsonBody(bytes: Buffer, contentType: string | undefined): { body: Json } | undefined {
  if (bytes.length === 0 || !(contentType ?? "").toLowerCase().includes("json")) return undefined;
  const text = bytes.toString("utf8");
  try {
    // Deeper nesting stays text: the redactor, the masks and the digest walk a result by
    // recursion, and would overflow the stack on it, losing the outcome of a call that ran.
    // (The body sits one level down in the result.)
    // An integer beyond 2^53 (a 64-bit id) would be rounded to another one: text keeps it.
    // Such an integer is written with 16 digits or more (2^53 has 16): without a run of them,
    // the body holds none, whatever numbers it writes with an exponent (1.5e300 is no integer
    // sent), and the walk is spared (most bodies).
    if (nesting(text) < MAX_JSON_DEPTH) {
      const body = JSON.parse(text) as Json;
      if (!/\d{16}/.test(text) || !holdsUnsafeInteger(body)) return { body };
    }
  } catch {
    // an upstream that labels non-JSON as JSON still gets its text through
  }
  return undefined;
}

/** Whether a body of this content type is text (or JSON), to be returned as such when it decodes. */
function isText(contentType: string | undefined): boolean {
  if (!contentType) return true;
  const type = contentType.toLowerCase();
  return (
    type.includes("json") ||
    type.startsWith("text/") ||
    type.includes("xml") ||
    type.includes("charset")
  );
}

function decodeBody(
  bytes: Buffer,
  contentType: string | undefined,
  truncated: boolean,
): { body: Json; encoding?: "base64" } {
  if (bytes.length === 0) return { body: null };
  if (!truncated) {
    const json = jsonBody(bytes, contentType);
    if (json) return json;
  }
  if (isText(contentType)) {
    const text = bytes.toString("utf8");
    if (!text.includes("\uFFFD")) return { body: text };
  }
  return { body: bytes.toString("base64"), encoding: "base64" };
}
