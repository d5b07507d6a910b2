/**
 * A real MCP server on loopback (the official SDK's server, over Streamable HTTP with
 * sessions), for the `mcp` connector to call. It records every tool call with the headers
 * it came with, and can refuse callers without the expected credential.
 */
import { randomUUID } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

export interface ToolCall {
  tool: string;
  args: Record<string, unknown>;
  headers: IncomingHttpHeaders;
}

export interface TestMcpServer {
  url: string;
  calls: ToolCall[];
  /** Sessions opened (each `initialize` the server accepted). */
  sessions: () => number;
  /** Sessions open now: ended by a client's DELETE, or forgotten. */
  openSessions: () => number;
  /** GET requests received: a client opening the stream of server-initiated messages. */
  gets: () => number;
  /** Forgets every session, as a restarted server would: their next message gets 404. */
  forgetSessions(): void;
  /** Holds calls of `tool` until `release()`; `arrived` resolves when one comes in. */
  hold(tool: string): { arrived: Promise<ToolCall>; release: () => void };
  close(): Promise<void>;
}

export async function startMcpServer(
  options: {
    authorization?: string;
    /** Never answers the client's `notifications/initialized`: a session that never starts. */
    stallInitialized?: boolean;
  } = {},
): Promise<TestMcpServer> {
  const calls: ToolCall[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const holds = new Map<string, { arrive: (call: ToolCall) => void; released: Promise<void> }>();
  let opened = 0;

  const tools = (): McpServer => {
    const mcp = new McpServer({ name: "test-tools", version: "1.0.0" });
    const record = (tool: string, args: Record<string, unknown>, headers: IncomingHttpHeaders) => {
      const call = { tool, args, headers };
      calls.push(call);
      return call;
    };
    const headersOf = (extra: { requestInfo?: { headers: IncomingHttpHeaders } }) =>
      extra.requestInfo?.headers ?? {};
    mcp.registerTool(
      "search",
      { description: "Finds pages", inputSchema: { query: z.string() } },
      async (args, extra) => {
        const call = record("search", args, headersOf(extra));
        const held = holds.get("search");
        if (held) {
          held.arrive(call);
          await held.released;
        }
        return {
          content: [{ type: "text", text: `3 pages match "${args.query}"` }],
          structuredContent: { matches: 3, query: args.query },
        };
      },
    );
    mcp.registerTool(
      "delete_page",
      { description: "Deletes a page", inputSchema: { page: z.string() } },
      async (args, extra) => {
        record("delete_page", args, headersOf(extra));
        return { content: [{ type: "text", text: `deleted ${args.page}` }] };
      },
    );
    mcp.registerTool(
      "whoami",
      { description: "Says which credential it was called with (a careless tool)" },
      async (extra) => {
        const headers = headersOf(extra);
        record("whoami", {}, headers);
        return {
          content: [{ type: "text", text: `called with ${String(headers.authorization)}` }],
        };
      },
    );
    mcp.registerTool(
      "broken",
      { description: "Always fails", inputSchema: { why: z.string().optional() } },
      async (args, extra) => {
        record("broken", args, headersOf(extra));
        return { isError: true, content: [{ type: "text", text: `it broke: ${args.why ?? "?"}` }] };
      },
    );
    mcp.registerTool(
      "big",
      { description: "Returns a lot", inputSchema: { items: z.number().int() } },
      async (args, extra) => {
        record("big", args, headersOf(extra));
        return {
          content: Array.from({ length: args.items }, (_, i) => ({
            type: "text" as const,
            text: `item ${i} ${"x".repeat(200)}`,
          })),
        };
      },
    );
    mcp.registerTool(
      "text",
      {
        description: "Returns a text, repeated",
        inputSchema: { text: z.string(), times: z.number().int() },
      },
      async (args, extra) => {
        record("text", args, headersOf(extra));
        return { content: [{ type: "text", text: args.text.repeat(args.times) }] };
      },
    );
    mcp.registerTool(
      "slow",
      { description: "Takes its time", inputSchema: { ms: z.number().int() } },
      async (args, extra) => {
        record("slow", args, headersOf(extra));
        await new Promise((resolve) => setTimeout(resolve, args.ms));
        return { content: [{ type: "text", text: "done" }] };
      },
    );
    return mcp;
  };

  let gets = 0;
  const server: Server = createServer(async (request, response) => {
    if (request.method === "GET") gets++;
    if (options.authorization && request.headers.authorization !== options.authorization) {
      response
        .writeHead(401, { "content-type": "application/json" })
        .end('{"error":"unauthorized"}');
      return;
    }
    if (request.url === "/moved") {
      // Same origin, so the SDK on its own would follow it, credentials and all.
      response.writeHead(307, { location: "/mcp" }).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
    if (options.stallInitialized && body?.method === "notifications/initialized") return;
    const sessionId = request.headers["mcp-session-id"];
    let transport = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId !== undefined) {
        response.writeHead(404, { "content-type": "application/json" });
        response.end(
          '{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}',
        );
        return;
      }
      const fresh = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          opened++;
          transports.set(id, fresh);
        },
      });
      fresh.onclose = () => {
        if (fresh.sessionId) transports.delete(fresh.sessionId);
      };
      await tools().connect(fresh);
      transport = fresh;
    }
    await transport.handleRequest(request, response, body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    sessions: () => opened,
    openSessions: () => transports.size,
    gets: () => gets,
    forgetSessions: () => transports.clear(),
    hold(tool) {
      let arrive!: (call: ToolCall) => void;
      let release!: () => void;
      const arrived = new Promise<ToolCall>((resolve) => {
        arrive = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.set(tool, { arrive, released });
      return {
        arrived,
        release: () => {
          holds.delete(tool);
          release();
        },
      };
    },
    async close() {
      for (const transport of transports.values()) await transport.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A server that answers the handshake as MCP asks and then `tools/call` however a test says. */
export interface RawMcpServer {
  url: string;
  /** How many answers the client sent to requests the server started (a ping, say). */
  replies: number;
  close(): Promise<void>;
}

/**
 * A hand-written MCP server on loopback, for what the SDK's own server cannot be made to do:
 * answer a call with an endless stream, an enormous error, and the like. It starts sessions
 * like a real one; each `tools/call` goes to `answer`, with the request's JSON-RPC id.
 */
export async function startRawMcpServer(
  /** Answers a `tools/call`, whose params (`{name, arguments}`) it is given to echo. */
  answer: (
    id: string | number,
    response: ServerResponse,
    params: { name: string; arguments?: Record<string, unknown> },
  ) => void,
  options: {
    /** Requests (pings) the server sends ahead of its answer to `initialize`, on an SSE stream. */
    pingsOnInitialize?: number;
    /**
     * What it answers `tools/list` with (name, inputSchema and more, as a server writes them),
     * or the JSON text of that list, for what JSON.stringify cannot write (nesting too deep).
     */
    tools?: ({ name: string; inputSchema: unknown } & Record<string, unknown>)[] | string;
  } = {},
): Promise<RawMcpServer> {
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    if (request.method !== "POST") {
      response.writeHead(405).end();
      return;
    }
    const message = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (message.method === "initialize") {
      const result = {
        jsonrpc: "2.0",
        id: message.id,
        result: {
          protocolVersion: message.params.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: "raw", version: "1" },
        },
      };
      const pings = options.pingsOnInitialize ?? 0;
      if (pings === 0) {
        response.writeHead(200, { "content-type": "application/json", "mcp-session-id": "raw" });
        response.end(JSON.stringify(result));
        return;
      }
      response.writeHead(200, { "content-type": "text/event-stream", "mcp-session-id": "raw" });
      const event = (m: unknown) => `event: message\ndata: ${JSON.stringify(m)}\n\n`;
      let stream = "";
      for (let i = 0; i < pings; i++)
        stream += event({ jsonrpc: "2.0", id: `i${i}`, method: "ping" });
      response.end(stream + event(result));
      return;
    }
    if (message.method === "tools/call") {
      answer(message.id, response, message.params);
      return;
    }
    if (message.method === "tools/list" && options.tools) {
      const tools =
        typeof options.tools === "string" ? options.tools : JSON.stringify(options.tools);
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(`{"jsonrpc":"2.0","id":${JSON.stringify(message.id)},"result":{"tools":${tools}}}`);
      return;
    }
    // Notifications, and the client's answers to the server's own requests.
    if (message.method === undefined) raw.replies++;
    response.writeHead(202).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const raw: RawMcpServer = {
    url: `http://127.0.0.1:${port}/mcp`,
    replies: 0,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return raw;
}
