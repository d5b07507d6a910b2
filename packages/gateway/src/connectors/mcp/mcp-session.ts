/**
 * One MCP session over Streamable HTTP, shared by a connection's calls. A session that fails
 * as a session (the server forgot it, the connection closed, the network failed) is retired:
 * new calls go to a new one, and it is closed once the calls it is running have ended, so a
 * failure in one call never cuts off another that the server is still running. So is one
 * with a call given up on (timed out, aborted): the SDK stops waiting for the answer but keeps
 * reading its stream, which only closing the session ends. Requests the server starts are
 * answered only a few at a time (see answerFew).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode,
  type JSONRPCMessage,
  ListToolsResultSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";
import { createRateLimiter } from "../../common/rate-limiter.js";
import type { ToolResult } from "./mcp-result.js";

/** Thrown when the deadline passed before the call was sent: the tool did not run. */
export class NotStarted extends Error {}

/** How long closing may take: a server that does not answer its DELETE is not waited for. */
const CLOSE_MS = 2000;

export interface SessionOptions {
  url: string;
  headers: Record<string, string>;
  /** The longest answer read from the server, in bytes; a larger one fails the call. */
  maxAnswerBytes: number;
  /** The SDK's own per-request timeout; the connector's deadline comes first. */
  requestTimeoutMs: number;
}

export class McpSession {
  private readonly client = new Client({ name: "airlock", version: "1" });
  private readonly transport: StreamableHTTPClientTransport;
  private readonly ready: Promise<void>;
  private inFlight = 0;
  private retiredFlag = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: SessionOptions) {
    this.transport = new StreamableHTTPClientTransport(new URL(options.url), {
      // The POSTs that carry calls refuse redirects: one would carry the credentials along.
      // (The SDK's own GET stream follows them only within the origin.)
      requestInit: { headers: options.headers, redirect: "error" },
      fetch: limitAnswers(options.maxAnswerBytes),
    });
    this.client.onerror = () => {};
    this.client.onclose = () => {
      this.retiredFlag = true;
    };
    const connecting = this.client.connect(this.transport, { timeout: options.requestTimeoutMs });
    // The SDK sets the transport's handler before its first await: wrapped at once, requests a
    // server starts during the handshake meet the budget too. (Should a later SDK set it
    // later, it is wrapped once connected.)
    const wrapped = this.transport.onmessage !== undefined;
    if (wrapped) answerFew(this.transport);
    this.ready = wrapped ? connecting : connecting.then(() => answerFew(this.transport));
    // Whoever calls hears about a failed start; an unobserved one is not an error.
    this.ready.catch(() => {});
  }

  get retired(): boolean {
    return this.retiredFlag;
  }

  /** Calls a tool; `signal` is the execution's deadline (and the caller's abort). */
  call(tool: string, args: Record<string, unknown>, signal: AbortSignal): Promise<ToolResult> {
    return this.use(
      async () =>
        (await this.client.callTool({ name: tool, arguments: args }, undefined, {
          signal,
          timeout: this.options.requestTimeoutMs,
        })) as ToolResult,
      signal,
    );
  }

  /**
   * The server's tools and their input schemas (the first page: enough to describe them).
   * Asked as a plain request, not with the SDK's listTools: that one also compiles every
   * tool's output schema, in an ajv the session keeps (again at each listing, never freed),
   * and then fails a call whose result does not match it, after the tool ran.
   */
  listTools(signal: AbortSignal): Promise<{ name: string; inputSchema: unknown }[]> {
    return this.use(
      async () =>
        (
          await this.client.request({ method: "tools/list" }, ListToolsResultSchema, {
            signal,
            timeout: this.options.requestTimeoutMs,
          })
        ).tools,
      signal,
    );
  }

  private async use<T>(ask: () => Promise<T>, signal: AbortSignal): Promise<T> {
    this.inFlight++;
    try {
      try {
        await untilAborted(this.ready, signal);
      } catch (error) {
        // A session that did not start in time is not waited for again.
        this.retire();
        throw signal.aborted ? new NotStarted("no session in time") : error;
      }
      return await ask();
    } catch (error) {
      if (endsSession(error) || signal.aborted) this.retire();
      throw error;
    } finally {
      this.inFlight--;
      if (this.retiredFlag && this.inFlight === 0) void this.close();
    }
  }

  /** No new calls; closed once the running ones end. */
  retire(): void {
    this.retiredFlag = true;
    if (this.inFlight === 0) void this.close();
  }

  /** Ends the session on the server (DELETE) and locally, each in bounded time. */
  close(): Promise<void> {
    this.retiredFlag = true;
    this.closing ??= (async () => {
      if (this.transport.sessionId !== undefined) {
        await bounded(this.transport.terminateSession().catch(() => {}));
      }
      await bounded(this.client.close().catch(() => {}));
    })();
    return this.closing;
  }
}

/** Requests a server may start (a ping, say) answered at once, and then one a second. */
const SERVER_REQUEST_BURST = 16;

/**
 * The SDK answers every request the server starts, each with a POST of its own: a server that
 * sent thousands amid a call's answer kept the client posting until the call's deadline.
 * Airlock offers servers nothing (no sampling, roots or elicitation), so past a small budget
 * their requests go unanswered; notifications and answers to Airlock's calls pass as ever.
 */
function answerFew(transport: StreamableHTTPClientTransport): void {
  const deliver = transport.onmessage;
  // A bucket that keeps part of a second: one that counted only whole seconds since the last
  // request refilled nothing for a server asking more often than once a second.
  const budget = createRateLimiter({ burst: SERVER_REQUEST_BURST, perSecond: 1, maxKeys: 1 });
  transport.onmessage = (message: JSONRPCMessage) => {
    if ("method" in message && "id" in message && budget.take("server") !== undefined) return;
    deliver?.(message);
  };
}

/** Errors after which the session cannot be trusted to carry another call. */
function endsSession(error: unknown): boolean {
  if (error instanceof StreamableHTTPError) return true;
  if (error instanceof McpError) return error.code === ErrorCode.ConnectionClosed;
  // fetch's own failures (connection refused or reset): the transport is in doubt.
  return error instanceof TypeError;
}

/** Whether the server answered 404 for the session: it never handled the message. */
export function sessionForgotten(error: unknown): boolean {
  return error instanceof StreamableHTTPError && error.code === 404;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function bounded(work: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, CLOSE_MS);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The SDK reads a whole answer before Airlock can cut it to size: answers to calls (POSTs)
 * are limited while they stream in. The GET stream of messages the server starts is never
 * opened (answered here as a server without one would, 405): Airlock only calls tools, and
 * the SDK would buffer an event on it whole, however large a server made it.
 */
function limitAnswers(maxBytes: number): FetchLike {
  return async (url, init) => {
    const method = (init?.method ?? "GET").toUpperCase();
    if (method === "GET") return new Response(null, { status: 405 });
    const response = await fetch(url, init);
    if (method !== "POST" || !response.body) return response;
    let seen = 0;
    const limited = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          seen += chunk.byteLength;
          if (seen > maxBytes) {
            controller.error(
              new Error(`the MCP server's answer was larger than ${maxBytes} bytes`),
            );
          } else {
            controller.enqueue(chunk);
          }
        },
      }),
    );
    return new Response(limited, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}
