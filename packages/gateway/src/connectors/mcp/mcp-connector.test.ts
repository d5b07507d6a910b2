import type { ServerResponse } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  startMcpServer,
  startRawMcpServer,
  type TestMcpServer,
} from "../../../test/support/mcp-server.js";
import { clippedNote } from "../../common/json-depth.js";
import { AirlockError } from "../../errors.js";
import { createLogger } from "../../observability/logger.js";
import type { Connector } from "../connector.js";
import { argumentChecker } from "./mcp-arguments.js";
import { mcpConnectorType } from "./mcp-connector.js";
import { cutJsonText } from "./mcp-result.js";

const logger = createLogger({ level: "silent" });
const TOKEN = "mcp-secret-7f3a9c2e1b";
// Assembled at run time so that secret scanners do not flag this file.
const GITHUB_TOKEN = `ghp_${"a1B2c3D4e5".repeat(3)}f6G7h8`;
const AUTH = `Bearer ${TOKEN}`;
const never = new AbortController().signal;

const open: Connector[] = [];
function connector(url: string, extra: Record<string, unknown> = {}): Connector {
  const parsed = mcpConnectionSchemaParse({
    type: "mcp",
    url,
    headers: { Authorization: AUTH },
    tools: {
      search: { risk: "low", description: "Searches the docs" },
      delete_page: { risk: "high" },
      whoami: {},
      broken: {},
      big: {},
      slow: {},
      text: {},
    },
    ...extra,
  });
  const c = mcpConnectorType.create("docs", parsed, { logger, secrets: [] });
  open.push(c);
  return c;
}
function mcpConnectionSchemaParse(config: unknown) {
  return mcpConnectorType.configSchema.parse(config);
}
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

let server: TestMcpServer;
beforeAll(async () => {
  server = await startMcpServer({ authorization: AUTH });
});
afterAll(async () => {
  await server.close();
});

const run = (c: Connector, tool: string, input: unknown) =>
  c.execute(tool, c.parse(tool, input), never);

describe("mcp connector: its tools, as agents that speak MCP see them", () => {
  it("lists the configured tools with the server's input schemas", async () => {
    const specs = await connector(server.url).operations();
    expect(specs.map((spec) => spec.name)).toEqual([
      "search",
      "delete_page",
      "whoami",
      "broken",
      "big",
      "slow",
      "text",
    ]);
    const search = specs.find((spec) => spec.name === "search")!;
    expect(search.description).toMatch(/^Searches the docs \(on docs, through Airlock/);
    expect(search.inputSchema).toMatchObject({
      type: "object",
      properties: { query: { type: "string" } },
      required: ["query"],
    });
  });

  it("lists them with no schema when the server cannot say", async () => {
    const c = connector("http://127.0.0.1:9/mcp");
    const specs = await c.operations();
    expect(specs).toHaveLength(7);
    expect(specs.every((spec) => JSON.stringify(spec.inputSchema) === '{"type":"object"}')).toBe(
      true,
    );
  });
});

describe("mcp connector: input and description", () => {
  it("accepts only the tools the config lists, and arguments as an object", () => {
    const c = connector(server.url);
    expect(c.parse("search", { query: "refunds" })).toEqual({ query: "refunds" });
    expect(c.parse("whoami", undefined)).toEqual({});
    const unknown = (() => {
      try {
        c.parse("drop_everything", {});
      } catch (error) {
        return error as AirlockError;
      }
    })();
    expect(unknown).toBeInstanceOf(AirlockError);
    expect(unknown?.code).toBe("unknown_operation");
    expect(unknown?.field).toBe("operation");
    expect(unknown?.message).toContain("its tools are: search, delete_page");
    for (const bad of [null, [1, 2], "query", 7]) {
      expect(() => c.parse("search", bad)).toThrow(
        expect.objectContaining({ code: "invalid_request", field: "input" }),
      );
    }
    // A name the server has but the config does not list cannot be asked for either.
    expect(() => c.parse("__proto__", {})).toThrow(
      expect.objectContaining({ code: "unknown_operation" }),
    );
  });

  it("describes a call with the tool as the fact for rules and the configured risk", async () => {
    const c = connector(server.url);
    const search = await c.describe("search", { query: "refunds" });
    expect(search.facts).toEqual({ mcp: { tool: "search" } });
    expect(search.risk.level).toBe("low");
    expect(search.notes).toEqual(["Searches the docs"]);
    expect(search.preview).toBe('call tool search on docs\n\n{\n  "query": "refunds"\n}');
    const del = await c.describe("delete_page", { page: "home" });
    expect(del.risk).toEqual({
      level: "high",
      reason: 'calls tool "delete_page" on MCP server docs',
    });
    expect((await c.describe("whoami", {})).risk.level).toBe("medium");
    // Describing runs no tool: no call reached the server.
    expect(server.calls).toHaveLength(0);
  });

  it("refuses a config without tools, with credentials in the URL, or with a bad tool name", () => {
    const check = (config: Record<string, unknown>) =>
      mcpConnectorType.configSchema.safeParse({ type: "mcp", url: server.url, ...config });
    expect(check({ tools: {} }).error?.issues[0]?.message).toContain("at least one tool");
    expect(
      check({ url: "http://user:pw@127.0.0.1/mcp", tools: { a: {} } }).error?.issues[0]?.message,
    ).toContain("must not hold credentials");
    const badName = check({ tools: { "rm -rf": {} } }).error?.issues[0];
    expect(badName?.path).toEqual(["tools", "rm -rf"]);
    expect(check({ tools: { search: { risk: "extreme" } } }).success).toBe(false);
  });
});

describe("mcp connector: arguments checked against the server's input schema", () => {
  const refusal = async (c: Connector, tool: string, args: Record<string, unknown>) => {
    try {
      await c.describe(tool, c.parse(tool, args));
    } catch (error) {
      return error as AirlockError;
    }
    return undefined;
  };

  it("refuses what the schema rules out before anything runs, naming the argument", async () => {
    const c = connector(server.url);
    const wrongType = await refusal(c, "search", { query: 42 });
    expect(wrongType).toMatchObject({ code: "invalid_request", field: "input.query" });
    expect(wrongType?.message).toMatch(
      /^input\.query: must be string \(the input schema of tool search, from its MCP server\)$/,
    );
    expect(await refusal(c, "search", {})).toMatchObject({
      code: "invalid_request",
      field: "input.query",
      message: expect.stringMatching(/^input\.query: required/),
    });
    expect(await refusal(c, "big", { items: 2.5 })).toMatchObject({ field: "input.items" });
    // What the schema allows passes, and describing never calls a tool.
    expect(await refusal(c, "search", { query: "refunds" })).toBeUndefined();
    expect(await refusal(c, "broken", {})).toBeUndefined();
    expect(server.calls).toHaveLength(0);
  });

  it("checks each spelling of the two dialects servers write, and leaves draft-04 to the server", () => {
    const dialects = [
      "http://json-schema.org/draft-07/schema#",
      "https://json-schema.org/draft-07/schema",
      "http://json-schema.org/draft-06/schema#",
      "https://json-schema.org/draft/2020-12/schema",
      "http://json-schema.org/draft/2020-12/schema#",
    ];
    for (const $schema of dialects) {
      const check = argumentChecker()("search", {
        $schema,
        type: "object",
        properties: { query: { type: "string" } },
        required: ["query"],
      });
      expect(check, $schema).toBeDefined();
      expect(() => check!({}), $schema).toThrow(/input\.query: required/);
    }
    const reasons: string[] = [];
    const draft4 = { $schema: "http://json-schema.org/draft-04/schema#", type: "object" };
    expect(argumentChecker()("search", draft4, (why) => reasons.push(why))).toBeUndefined();
    expect(reasons[0]).toContain("is not draft-07 or 2020-12");
  });

  it("compiles each listing of the tools afresh, so a schema with an $id is checked every time", () => {
    const schema = {
      $id: "https://tools.example/search",
      type: "object",
      properties: { query: { type: "string" } },
    };
    for (let listing = 0; listing < 3; listing++) {
      const check = argumentChecker()("search", structuredClone(schema));
      expect(check, `listing ${listing}`).toBeDefined();
      expect(() => check!({ query: 1 })).toThrow(/input\.query: must be string/);
    }
  });

  it("leaves an $async schema to the server: its check refuses by a rejected promise nobody hears", () => {
    const reasons: string[] = [];
    const check = argumentChecker()(
      "search",
      { $async: true, type: "object", properties: { query: { type: "string" } } },
      (reason) => reasons.push(reason),
    );
    expect(check).toBeUndefined();
    expect(reasons).toEqual(["its input schema is $async, which ajv checks in a promise"]);
  });

  it("stops compiling a listing's schemas once they take too long, and leaves the rest to the server", async () => {
    // 110 KB: an object of 2,000 properties, referred to a thousand times. ajv copying it
    // into each place ran out of memory after minutes; compiled once, it still takes seconds.
    const page = { type: "object", properties: {} as Record<string, unknown> };
    for (let i = 0; i < 2000; i++) page.properties[`p${i}`] = { type: "string", maxLength: 10 };
    const pages: Record<string, unknown> = {};
    for (let i = 0; i < 1000; i++) pages[`q${i}`] = { $ref: "#/$defs/page" };
    const tools = [
      {
        name: "search",
        inputSchema: { type: "object", properties: { query: { type: "string" } } },
      },
      { name: "delete_page", inputSchema: { type: "object", properties: pages, $defs: { page } } },
      { name: "whoami", inputSchema: { type: "object", properties: { x: { type: "string" } } } },
    ];
    const raw = await startRawMcpServer(() => {}, { tools });
    try {
      const c = connector(raw.url);
      expect(await refusal(c, "search", { query: 1 })).toMatchObject({ field: "input.query" });
      expect(await refusal(c, "delete_page", { q0: { p0: 1 } })).toBeUndefined();
      expect(await refusal(c, "whoami", { x: 1 })).toBeUndefined();
    } finally {
      await raw.close();
    }
  });

  it("leaves to the server the arguments whose check runs too long", () => {
    // allOf two refs to a schema of two refs, forty deep: 2^40 steps for any string.
    const $defs: Record<string, unknown> = { d0: { type: "string" } };
    for (let i = 1; i <= 40; i++) {
      $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i - 1}` }, { $ref: `#/$defs/d${i - 1}` }] };
    }
    const reasons: string[] = [];
    const check = argumentChecker()(
      "search",
      { type: "object", properties: { query: { $ref: "#/$defs/d40" } }, $defs },
      (reason) => reasons.push(reason),
    );
    expect(() => check!({ query: 1 })).toThrow(/input\.query: must be string/);
    expect(reasons).toEqual([]);
    expect(() => check!({ query: "refunds" })).not.toThrow();
    // Given up, and said so, for whoever reads the log.
    expect(reasons).toEqual([
      "checking a call's arguments took over 100 ms; this call is left to the server",
    ]);
  });

  it("says why an argument matches none of an anyOf's forms, or more than one of a oneOf's", () => {
    const check = argumentChecker()("search", {
      type: "object",
      properties: {
        limit: { anyOf: [{ type: "integer" }, { type: "string", pattern: "^[0-9]+$" }] },
        filter: {
          oneOf: [
            { type: "object", required: ["tag"] },
            { type: "object", properties: { id: { type: "integer" } }, required: ["id"] },
          ],
        },
      },
    });
    expect(() => check!({ limit: 10 })).not.toThrow();
    expect(() => check!({ limit: "10" })).not.toThrow();
    expect(() => check!({ limit: "ten" })).toThrow(
      /^input\.limit: matches none of the forms it may take \(must be integer; or must match pattern "\^\[0-9\]\+\$"\)/,
    );
    expect(() => check!({ filter: { id: "x" } })).toThrow(
      /^input\.filter: matches none of the forms it may take \(input\.filter\.tag: required; or input\.filter\.id: must be integer\)/,
    );
    expect(() => check!({ filter: { tag: "a", id: 2 } })).toThrow(
      /^input\.filter: matches more than one of the forms it may take \(oneOf\)/,
    );
  });

  it("leaves a schema nested too deep to measure to the server, and checks the other tools", async () => {
    const depth = 100_000;
    const deep = `${'{"items":'.repeat(depth)}{"type":"string"}${"}".repeat(depth)}`;
    const raw = await startRawMcpServer(() => {}, {
      tools: `[
        {"name": "search", "inputSchema": {"type": "object", "properties": {"query": ${deep}}}},
        {"name": "whoami", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}}
      ]`,
    });
    try {
      const c = connector(raw.url);
      expect(await refusal(c, "search", { query: 1 })).toBeUndefined();
      expect(await refusal(c, "whoami", { x: 1 })).toMatchObject({
        code: "invalid_request",
        field: "input.x",
      });
      // Agents listing the tools get it as any object: passed on, it could not be written.
      const listed = await c.operations();
      expect(() => JSON.stringify(listed)).not.toThrow();
      const schemaOf = (tool: string) => listed.find((op) => op.name === tool)?.inputSchema;
      expect(schemaOf("search")).toEqual({ type: "object" });
      expect(schemaOf("whoami")).toMatchObject({ properties: { x: { type: "string" } } });
    } finally {
      await raw.close();
    }
  });

  it("takes decimal multiples as servers do, despite floating point", () => {
    const check = argumentChecker()("search", {
      type: "object",
      properties: {
        price: { type: "number", multipleOf: 0.01 },
        step: { type: "number", multipleOf: 0.1 },
      },
    });
    expect(() => check!({ price: 0.07, step: 0.3 })).not.toThrow();
    expect(() => check!({ price: 19.99, step: 2.7 })).not.toThrow();
    expect(() => check!({ price: 0.071 })).toThrow(/input\.price: must be multiple of 0\.01/);
  });

  it("checks the arguments sent, not what objects inherit", () => {
    const check = argumentChecker()("search", {
      type: "object",
      properties: { constructor: { type: "string" }, toString: { type: "string" } },
      required: ["valueOf"],
    });
    expect(() => check!({ valueOf: 1 })).not.toThrow();
    expect(() => check!({})).toThrow(/^input\.valueOf: required/);
  });

  it("reads a pattern's \\s, \\S and . as ECMAScript does, not as RE2's own", () => {
    const patterns = [
      "^[a-z\\s]+$",
      "^\\S+$",
      "^[^\\S\\n]*$",
      "^[\\s\\S]$",
      "^.$",
      "^a.b\\s?$",
      "[.]",
    ];
    const texts = [
      "a b",
      "a\u00a0b",
      "a\u2028b",
      "\v",
      "\n",
      "\r",
      "\u3000",
      "\ufeff",
      "😀",
      ".",
      "x",
      "",
    ];
    for (const pattern of patterns) {
      const check = argumentChecker()("search", {
        type: "object",
        properties: { query: { type: "string", pattern } },
      });
      for (const text of texts) {
        const takes = new RegExp(pattern, "u").test(text);
        const passes = (() => {
          try {
            check!({ query: text });
            return true;
          } catch {
            return false;
          }
        })();
        const codes = [...text].map((c) => `U+${c.codePointAt(0)?.toString(16)}`).join(" ");
        expect(passes, `${pattern} on ${codes}`).toBe(takes);
      }
    }
  });

  it("leaves the arguments to the server when it cannot list its tools", async () => {
    const c = connector("http://127.0.0.1:9/mcp");
    expect(await refusal(c, "search", { query: 42 })).toBeUndefined();
  });

  it("reads both schema dialects, runs patterns in linear time, and leaves what it cannot take to the server", async () => {
    const tools = [
      {
        name: "search",
        inputSchema: {
          type: "object",
          properties: {
            // Backtracking takes minutes on 40 a's and a b; RE2 takes no time.
            query: { type: "string", pattern: "^(a+)+$" },
            scope: { enum: ["docs", "wiki"] },
            // Checked pairwise by ajv, quadratic in what the agent sent: left to the server.
            tags: { type: "array", uniqueItems: true },
            filters: {
              type: "object",
              properties: { "a/b": { type: "integer", maximum: 10 } },
              additionalProperties: false,
            },
          },
        },
      },
      {
        name: "delete_page",
        inputSchema: {
          $schema: "http://json-schema.org/draft-07/schema#",
          type: "object",
          properties: { page: { type: "string" } },
          required: ["page"],
          additionalProperties: false,
        },
      },
      // Lookahead is not RE2: the server alone checks this one.
      { name: "whoami", inputSchema: { type: "object", properties: { x: { pattern: "(?=a)" } } } },
      // A dialect neither draft-07 nor 2020-12.
      {
        name: "broken",
        inputSchema: {
          $schema: "http://json-schema.org/draft-04/schema#",
          type: "object",
          required: ["never"],
        },
      },
    ];
    const raw = await startRawMcpServer(() => {}, { tools });
    try {
      const c = connector(raw.url);
      const started = performance.now();
      const slow = await refusal(c, "search", { query: `${"a".repeat(40)}b` });
      expect(performance.now() - started).toBeLessThan(5000);
      expect(slow).toMatchObject({ field: "input.query" });
      expect(slow?.message).toContain('must match pattern "^(a+)+$"');
      expect(await refusal(c, "search", { query: "aaa" })).toBeUndefined();
      const tags = Array.from({ length: 20_000 }, () => ({ same: true }));
      expect(await refusal(c, "search", { tags })).toBeUndefined();
      expect((await refusal(c, "search", { scope: "mail" }))?.message).toContain(
        'input.scope: must be one of "docs", "wiki"',
      );
      expect(await refusal(c, "search", { filters: { "a/b": 11 } })).toMatchObject({
        field: "input.filters.a/b",
      });
      expect(await refusal(c, "delete_page", { page: "home", force: true })).toMatchObject({
        field: "input.force",
        message: expect.stringContaining("not an argument the tool takes"),
      });
      expect(await refusal(c, "whoami", { x: "b" })).toBeUndefined();
      expect(await refusal(c, "broken", {})).toBeUndefined();
    } finally {
      await raw.close();
    }
  });
});

describe("mcp connector: execution", () => {
  it("calls the tool with the connection's credentials and returns its content", async () => {
    const c = connector(server.url);
    const before = server.calls.length;
    const outcome = await run(c, "search", { query: "refunds" });
    expect(outcome.ok).toBe(true);
    expect(outcome.result).toEqual({
      content: [{ type: "text", text: '3 pages match "refunds"' }],
      structuredContent: { matches: 3, query: "refunds" },
    });
    expect(outcome.summary).toMatch(/^1 content item, \d+ bytes$/);
    const calls = server.calls.slice(before);
    expect(calls.map((call) => [call.tool, call.args])).toEqual([["search", { query: "refunds" }]]);
    expect(calls[0]!.headers.authorization).toBe(AUTH);
    // One session serves the calls that follow.
    const sessions = server.sessions();
    await run(c, "delete_page", { page: "old" });
    expect(server.sessions()).toBe(sessions);
    // The stream of messages a server starts is never opened: a flood on it could not be cut.
    expect(server.gets()).toBe(0);
  });

  it("scrubs the credential from a result that echoes it", async () => {
    const outcome = await run(connector(server.url), "whoami", {});
    expect(outcome.ok).toBe(true);
    expect(JSON.stringify(outcome.result)).not.toContain(TOKEN);
    expect(outcome.result).toEqual({ content: [{ type: "text", text: "called with [redacted]" }] });
  });

  it("keeps a result nested thousands deep, its depth clipped, instead of failing the call", async () => {
    const deep = `${'{"a":'.repeat(20_000)}1${"}".repeat(20_000)}`;
    const raw = await startRawMcpServer((id, response) => {
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(
          `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"deep"}],"structuredContent":${deep}}}`,
        );
    });
    try {
      const outcome = await run(connector(raw.url), "search", {});
      expect(outcome).toMatchObject({ ok: true, result: { content: [{ text: "deep" }] } });
      expect(JSON.stringify(outcome.result)).toContain(clippedNote);
    } finally {
      await raw.close();
    }
  });

  it("scrubs the credential from binary content that echoes it", async () => {
    const echoed = Buffer.from(`GET /mcp\r\nauthorization: ${AUTH}\r\n`).toString("base64");
    const raw = await startRawMcpServer((id, response) => {
      const result = {
        content: [
          { type: "image", mimeType: "image/png", data: echoed },
          { type: "resource", resource: { uri: "file:///req", blob: echoed } },
        ],
      };
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id, result }));
    });
    try {
      const outcome = await run(connector(raw.url), "search", {});
      expect(outcome.ok).toBe(true);
      const [image, resource] = (
        outcome.result as { content: [{ data: string }, { resource: { blob: string } }] }
      ).content;
      const decoded = [image.data, resource.resource.blob].map((base64) =>
        Buffer.from(base64, "base64").toString(),
      );
      expect(decoded).toEqual([
        "GET /mcp\r\nauthorization: [redacted]\r\n",
        "GET /mcp\r\nauthorization: [redacted]\r\n",
      ]);
    } finally {
      await raw.close();
    }
  });

  it("scrubs masked arguments from every kind of content that echoes them", async () => {
    const CARD = "4929837150216347";
    const raw = await startRawMcpServer((id, response, params) => {
      const card = String(params.arguments?.card);
      const bytes = (text: string) => Buffer.from(text).toString("base64");
      const result = {
        content: [
          { type: "image", mimeType: "image/png", data: bytes(`card ${card} on file`) },
          { type: "audio", mimeType: "audio/wav", data: bytes(`card ${card}`) },
          { type: "resource", resource: { uri: "file:///b", blob: bytes(`{"card":"${card}"}`) } },
          { type: "resource", resource: { uri: "file:///t", text: `card ${card}` } },
        ],
        structuredContent: { cards: [{ number: card }] },
      };
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id, result }));
    });
    try {
      const c = connector(raw.url);
      const outcome = await c.execute("search", c.parse("search", { card: CARD }), never, {
        hidden: [CARD],
        detectors: [],
      });
      expect(outcome.ok).toBe(true);
      const { content, structuredContent } = outcome.result as {
        content: { data?: string; resource?: { blob?: string; text?: string } }[];
        structuredContent: unknown;
      };
      const decoded = (base64: string | undefined) =>
        Buffer.from(String(base64), "base64").toString();
      expect(content.map((item) => item.data && decoded(item.data))).toEqual([
        "card [masked] on file",
        "card [masked]",
        undefined,
        undefined,
      ]);
      expect(decoded(content[2]?.resource?.blob)).toBe('{"card":"[masked]"}');
      expect(content[3]?.resource?.text).toBe("card [masked]");
      expect(structuredContent).toEqual({ cards: [{ number: "[masked]" }] });
    } finally {
      await raw.close();
    }
  });

  it("hears the answer through a flood of requests the server starts, answering only a few", async () => {
    const raw = await startRawMcpServer((id, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      const event = (message: unknown) => `event: message\ndata: ${JSON.stringify(message)}\n\n`;
      let flood = "";
      for (let i = 0; i < 20_000; i++) {
        flood += event({ jsonrpc: "2.0", id: `p${i}`, method: i % 2 ? "ping" : "roots/list" });
      }
      response.write(flood);
      setTimeout(() => {
        const result = { content: [{ type: "text", text: "found it" }] };
        response.end(event({ jsonrpc: "2.0", id, result }));
      }, 500);
    });
    try {
      const outcome = await run(connector(raw.url, { timeout: "5s" }), "search", {});
      expect(outcome).toMatchObject({ ok: true, result: { content: [{ text: "found it" }] } });
      expect(raw.replies).toBeGreaterThan(0);
      expect(raw.replies).toBeLessThanOrEqual(16);
    } finally {
      await raw.close();
    }
  });

  it("answers only a few of the requests a server starts during the handshake", async () => {
    const raw = await startRawMcpServer(
      (id, response) =>
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } })),
      { pingsOnInitialize: 500 },
    );
    try {
      const outcome = await run(connector(raw.url), "search", {});
      expect(outcome.ok).toBe(true);
      expect(raw.replies).toBeGreaterThan(0);
      expect(raw.replies).toBeLessThanOrEqual(17);
    } finally {
      await raw.close();
    }
  });

  it("returns what a tool gave after its arguments were checked, whatever its output schema says", async () => {
    // The SDK's own listTools would have the session fail such a call after the tool ran.
    const raw = await startRawMcpServer(
      (id, response) => {
        response.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            jsonrpc: "2.0",
            id,
            result: { content: [{ type: "text", text: "3" }] },
          }),
        );
      },
      {
        tools: [
          {
            name: "search",
            inputSchema: { type: "object", properties: { query: { type: "string" } } },
            outputSchema: { type: "object", properties: { matches: { type: "number" } } },
          },
        ],
      },
    );
    try {
      const c = connector(raw.url);
      await c.describe("search", c.parse("search", { query: "refunds" }));
      const outcome = await run(c, "search", { query: "refunds" });
      expect(outcome).toMatchObject({
        ok: true,
        result: { content: [{ type: "text", text: "3" }] },
      });
    } finally {
      await raw.close();
    }
  });

  it("ends as failed with the tool's own message when the tool reports an error", async () => {
    const outcome = await run(connector(server.url), "broken", { why: "disk full" });
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toBe("the tool reported an error: it broke: disk full");
    expect(outcome.result).toMatchObject({ isError: true });
  });

  it("says when the server refuses the arguments", async () => {
    const outcome = await run(connector(server.url), "search", { query: 42 });
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/query/);
  });

  it("answers the server's requests one a second past the first few, however they are spaced", async () => {
    const raw = await startRawMcpServer((id, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      const event = (message: unknown) => `event: message\ndata: ${JSON.stringify(message)}\n\n`;
      let sent = 0;
      const ping = () => event({ jsonrpc: "2.0", id: `p${sent++}`, method: "ping" });
      // The first few spend the budget; then one every 400 ms for about 3.2 s.
      response.write(Array.from({ length: 16 }, ping).join(""));
      const beat = setInterval(() => response.write(ping()), 400);
      setTimeout(() => {
        clearInterval(beat);
        const result = { content: [{ type: "text", text: "done" }] };
        response.end(event({ jsonrpc: "2.0", id, result }));
      }, 3300);
    });
    try {
      const outcome = await run(connector(raw.url, { timeout: "10s" }), "search", {});
      expect(outcome.ok).toBe(true);
      await expect.poll(() => raw.replies, { timeout: 2000 }).toBeGreaterThanOrEqual(16 + 2);
      expect(raw.replies).toBeLessThanOrEqual(16 + 4);
    } finally {
      await raw.close();
    }
  });

  it("cuts what the server says in a refusal, however much it says", async () => {
    const huge = "E".repeat(2_000_000);
    for (const refuse of [
      (_id: string | number, response: ServerResponse) =>
        response.writeHead(500, { "content-type": "text/plain" }).end(huge),
      (id: string | number, response: ServerResponse) =>
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32602, message: huge } })),
    ]) {
      const raw = await startRawMcpServer(refuse);
      try {
        const outcome = await run(connector(raw.url, { maxResultBytes: 1024 }), "search", {});
        expect(outcome.ok).toBe(false);
        expect(outcome.reason).toMatch(
          /^the MCP server (answered HTTP 500|refused the call): .*E…$/,
        );
        expect(outcome.reason!.length).toBeLessThanOrEqual(600);
      } finally {
        await raw.close();
      }
    }
  });

  it("masks what the detectors find where it cuts text, and cuts no value or hint in two", async () => {
    const c = connector(server.url, { maxResultBytes: 1024 });
    const masking = { hidden: [], detectors: ["secret" as const] };
    const shown: string[] = [];
    for (let pad = 820; pad <= 920; pad += 3) {
      const text = `${"x".repeat(pad)} ${GITHUB_TOKEN} done ${"z".repeat(200)}`;
      const outcome = await c.execute("text", c.parse("text", { text, times: 1 }), never, masking);
      const result = outcome.result as { content: { text: string }[]; truncated?: string };
      if (result.truncated) shown.push(result.content[0]!.text.replace(/^x* ?/, ""));
    }
    expect(shown.length).toBeGreaterThan(10);
    for (const text of shown) {
      expect(`ghp_*** done ${"z".repeat(200)}`.startsWith(text), text).toBe(true);
      expect(text.length > 0 && text.length < "ghp_***".length, text).toBe(false);
    }
    expect(shown).toContain("");
    expect(shown.some((text) => text.startsWith("ghp_***"))).toBe(true);
  });

  it("masks what the detectors find where it cuts the message of a tool's error", async () => {
    const c = connector(server.url);
    const masking = { hidden: [], detectors: ["secret" as const] };
    for (let pad = 440; pad <= 500; pad += 2) {
      const why = `${"x".repeat(pad)} ${GITHUB_TOKEN} and more ${"x".repeat(100)}`;
      const outcome = await c.execute("broken", c.parse("broken", { why }), never, masking);
      expect(outcome.reason).toMatch(
        /^the tool reported an error: it broke: x+ ?(?:ghp_\*\*\*[^…]*)?…$/,
      );
    }
  });

  it("masks what the detectors find where it cuts a refusal, and cuts no marker in two", async () => {
    for (let pad = 540; pad <= 600; pad += 4) {
      const message = `${"E".repeat(pad)} ${GITHUB_TOKEN} ${TOKEN} ${"E".repeat(100)}`;
      const raw = await startRawMcpServer((id, response) =>
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32602, message } })),
      );
      try {
        const c = connector(raw.url);
        const outcome = await c.execute("search", c.parse("search", {}), never, {
          hidden: [],
          detectors: ["secret"],
        });
        expect(outcome.reason).toMatch(
          /^the MCP server refused the call: MCP error -32602: E+ ?(?:ghp_\*\*\* ?(?:\[redacted\] ?E*)?)?…$/,
        );
      } finally {
        await raw.close();
      }
    }
  });

  it("cuts a result over the cap at whole items, and says so", async () => {
    const outcome = await run(connector(server.url, { maxResultBytes: 2048 }), "big", {
      items: 40,
    });
    expect(outcome.ok).toBe(true);
    const result = outcome.result as { content: { text: string }[]; truncated: string };
    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThanOrEqual(2048);
    expect(result.truncated).toMatch(/^the result was cut at 2048 of \d+ bytes$/);
    expect(result.content.length).toBeGreaterThan(3);
    expect(result.content.length).toBeLessThan(40);
    expect(result.content[0]!.text).toBe(`item 0 ${"x".repeat(200)}`);
    expect(outcome.summary).toContain("40 content items");
    expect(outcome.summary).toContain("truncated");
  });

  it("starts a new session when the server forgot the old one, and runs the tool once", async () => {
    const c = connector(server.url);
    await run(c, "search", { query: "one" });
    const sessions = server.sessions();
    server.forgetSessions();
    const before = server.calls.length;
    const outcome = await run(c, "search", { query: "two" });
    expect(outcome.ok).toBe(true);
    expect(server.sessions()).toBe(sessions + 1);
    expect(server.calls.slice(before).map((call) => call.args)).toEqual([{ query: "two" }]);
    // The new session serves what follows; the old one is not left open behind it.
    await run(c, "search", { query: "three" });
    expect(server.sessions()).toBe(sessions + 1);
    await c.close();
    await expect.poll(() => server.openSessions()).toBe(0);
  });

  it("ends a call whose session never starts within the timeout, and closes", async () => {
    const stalled = await startMcpServer({ stallInitialized: true });
    try {
      const c = connector(stalled.url, { timeout: "300ms", headers: {} });
      const started = Date.now();
      const outcome = await run(c, "search", { query: "x" });
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toBe(
        "no session with the MCP server could be started within 300 ms; the tool was not called",
      );
      expect(stalled.calls).toHaveLength(0);
      expect(Date.now() - started).toBeLessThan(2000);
      const closing = Date.now();
      await c.close();
      expect(Date.now() - closing).toBeLessThan(3000);
    } finally {
      await stalled.close();
    }
  });

  it("keeps a call running when another call on the same session times out", async () => {
    const c = connector(server.url, { timeout: "2s" });
    await run(c, "search", { query: "warm" });
    const slow = run(c, "slow", { ms: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // Started a second after the slow one, so its own deadline is a second after that one's.
    const held = server.hold("search");
    const running = run(c, "search", { query: "kept" });
    await held.arrived;
    const timedOut = await slow;
    expect(timedOut.ok).toBe(false);
    expect(timedOut.reason).toContain("the tool may still have run");
    held.release();
    const kept = await running;
    expect(kept.reason).toBeUndefined();
    expect(kept.ok).toBe(true);
    expect(kept.result).toMatchObject({ structuredContent: { query: "kept" } });
  });

  it("keeps a cut result within the cap however much JSON escapes its text", async () => {
    const c = connector(server.url, { maxResultBytes: 1024 });
    for (const text of ['"', "\u0001", "\\\n"]) {
      const outcome = await run(c, "text", { text, times: 3000 });
      expect(outcome.ok).toBe(true);
      expect(
        Buffer.byteLength(JSON.stringify(outcome.result)),
        JSON.stringify(text),
      ).toBeLessThanOrEqual(1024);
      expect((outcome.result as { truncated?: string }).truncated).toMatch(/cut at 1024/);
    }
  });

  it("fails with a clear reason on a timeout, and the next call still works", async () => {
    const c = connector(server.url, { timeout: "300ms" });
    const outcome = await run(c, "slow", { ms: 2000 });
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toBe(
      "the MCP server did not answer within 300 ms; the tool may still have run",
    );
    expect((await run(c, "search", { query: "after" })).ok).toBe(true);
  });

  it("lets go of the answers to calls it gave up on, and the next call still works", async () => {
    let calls = 0;
    let streaming = 0;
    const raw = await startRawMcpServer((id, response) => {
      calls++;
      response.writeHead(200, { "content-type": "text/event-stream" });
      if (calls > 3) {
        const result = { content: [{ type: "text", text: "at last" }] };
        response.end(`data: ${JSON.stringify({ jsonrpc: "2.0", id, result })}\n\n`);
        return;
      }
      // Never an answer, only a comment now and then: the stream stays open for good.
      streaming++;
      const beat = setInterval(() => response.write(": still here\n\n"), 50);
      response.on("close", () => {
        streaming--;
        clearInterval(beat);
      });
    });
    try {
      const c = connector(raw.url, { timeout: "300ms" });
      for (let i = 0; i < 3; i++) {
        expect((await run(c, "search", {})).reason).toContain("did not answer within 300 ms");
      }
      // Each stream held a connection, and could have held up to the answer cap in memory.
      await expect.poll(() => streaming, { timeout: 2000 }).toBe(0);
      expect((await run(c, "search", {})).ok).toBe(true);
    } finally {
      await raw.close();
    }
  });

  it("stops waiting when the execution is aborted", async () => {
    const c = connector(server.url);
    const stop = new AbortController();
    const pending = c.execute("slow", c.parse("slow", { ms: 2000 }), stop.signal);
    setTimeout(() => stop.abort(), 100);
    const outcome = await pending;
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toBe("the execution was aborted");
  });

  it("fails with a clear reason when the server refuses Airlock's credentials", async () => {
    const c = connector(server.url, { headers: { Authorization: "Bearer wrong-token-123" } });
    const before = server.calls.length;
    const outcome = await run(c, "search", { query: "x" });
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toContain("refused Airlock's credentials (HTTP 401)");
    expect(outcome.reason).not.toContain("wrong-token-123");
    expect(server.calls.length).toBe(before);
  });

  it("fails with a clear reason when nothing listens", async () => {
    const other = await startMcpServer();
    const url = other.url;
    await other.close();
    const c = connector(url, { headers: {} });
    const outcome = await run(c, "search", { query: "x" });
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toBe("the MCP server could not be reached: connection refused");
  });

  it("does not follow a redirect, even within the server's origin", async () => {
    const before = server.calls.length;
    const sessions = server.sessions();
    const moved = server.url.replace(/\/mcp$/, "/moved");
    const outcome = await run(connector(moved), "search", { query: "x" });
    expect(outcome.ok).toBe(false);
    expect(server.calls.length).toBe(before);
    expect(server.sessions()).toBe(sessions);
  });
});

describe("cutJsonText", () => {
  it("keeps whole characters, and counts what JSON escapes as it will be written", () => {
    const bytes = (text: string) => Buffer.byteLength(JSON.stringify(text));
    expect(cutJsonText("abcdef", 6)).toBe("abcd");
    // é is two bytes, 😀 four: a cut never takes half of either.
    expect(cutJsonText("aé", 4)).toBe("a");
    expect(cutJsonText("aé", 5)).toBe("aé");
    expect(cutJsonText("a😀b", 6)).toBe("a");
    expect(cutJsonText("a😀b", 7)).toBe("a😀");
    // A quote takes two bytes in JSON, a control character six.
    expect(cutJsonText('"'.repeat(100), 22)).toBe('"'.repeat(10));
    expect(cutJsonText("\u0001".repeat(100), 62)).toBe("\u0001".repeat(10));
    for (const text of ['"'.repeat(500), "\u0001\n\\".repeat(200), "😀é".repeat(300)]) {
      expect(bytes(cutJsonText(text, 1000))).toBeLessThanOrEqual(1000);
      expect(bytes(cutJsonText(text, 1000))).toBeGreaterThan(990);
    }
  });
});
