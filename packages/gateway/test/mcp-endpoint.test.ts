/**
 * Agents that speak MCP: the official SDK's client against `/mcp`, with an agent token. The
 * connections' operations are its tools; a call is decided, held for review, run and
 * audited exactly as `POST /v1/actions` is, and the agent never sees a credential.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRecordedCalls } from "../src/http/mcp-recorded-calls.js";
import {
  api,
  removeDir,
  SECRET,
  startGateway,
  type TestGateway,
  until,
  vote,
  withGateway,
} from "./support/gateway.js";
import { startMcpServer, type TestMcpServer } from "./support/mcp-server.js";
import { postgresAvailable, type ScratchSchema, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const DOCS_TOKEN = "docs-mcp-token-5c2a7e9d13";

interface ToolResult {
  content: { type: string; text: string }[];
  isError?: boolean;
}

/** An MCP client of the official SDK, connected to a gateway's /mcp as the token's agent. */
async function connectTo(gatewayUrl: string, token: string): Promise<Client> {
  const mcp = new Client({ name: "test-agent", version: "1.0.0" });
  await mcp.connect(
    new StreamableHTTPClientTransport(new URL(`${gatewayUrl}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return mcp;
}

/** A raw POST to `/mcp` as an MCP client sends one; a string body goes as it is. */
function postMcp(
  url: string,
  token: string,
  body: unknown,
  options: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...options.headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

describe("the MCP endpoint for agents", () => {
  let upstream: Upstream;
  let docs: TestMcpServer;
  let gw: TestGateway;
  let agentToken: string;
  let client: Client;

  const connect = (token: string) => connectTo(gw.url, token);
  const callTool = async (name: string, args: Record<string, unknown>) =>
    (await client.callTool({ name, arguments: args })) as ToolResult;
  const text = (result: ToolResult) => result.content.map((c) => c.text).join("\n");
  const idIn = (result: ToolResult) => /req_[0-9a-z]+/.exec(text(result))?.[0];
  const audit = async () =>
    (
      await api(gw.url, "GET", "/v1/audit?limit=1000", {
        token: await gw.token("reviewer", "bob@example.com"),
      })
    ).body.events as { type: string; requestId: string | null; data: Record<string, unknown> }[];

  beforeAll(async () => {
    upstream = await startUpstream();
    docs = await startMcpServer({ authorization: `Bearer ${DOCS_TOKEN}` });
    gw = await startGateway(
      `
server: { port: 0, publicUrl: "http://airlock.test", mcpToolWait: 300ms }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com, rateLimit: { perMinute: 600, burst: 40 } }
  - { name: hasty-bot, owner: alice@example.com, rateLimit: { perMinute: 1, burst: 1 } }
  - { name: lister-bot, owner: alice@example.com }
reviewers:
  - { email: bob@example.com, groups: [finance] }
  - { email: carol@example.com, groups: [finance] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    timeout: 2s
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
  docs:
    type: mcp
    url: ${docs.url}
    headers: { authorization: "Bearer \${env:DOCS_MCP_TOKEN}" }
    tools:
      search: { risk: low }
      delete_page: { risk: high, description: Deletes a wiki page for good }
  shell:
    type: exec
    commands:
      say:
        argv: [/bin/echo, "{word}"]
        args: { word: { enum: [hello, goodbye], description: What to say } }
rules:
  - name: reads pass
    when: action.connection == "billing-api" && http.method == "GET"
    decision: allow
  - name: searches pass
    when: action.connection == "docs" && mcp.tool == "search"
    decision: allow
  - name: refunds need finance
    when: action.connection == "billing-api" && http.method == "POST" && http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance], quorum: 1 }
  - name: nothing else
    decision: deny
    reason: not something agents may do
`,
      { env: { DOCS_MCP_TOKEN: DOCS_TOKEN } },
    );
    agentToken = await gw.token("agent", "support-bot");
    client = await connect(agentToken);
  });
  afterAll(async () => {
    await client?.close();
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await docs?.close();
    await upstream?.close();
  });

  it("lists every connection's operations as tools, with their input schemas", async () => {
    const { tools } = await client.listTools();
    const byName = new Map(tools.map((tool) => [tool.name, tool]));
    expect([...byName.keys()].sort()).toEqual([
      "airlock__cancel",
      "airlock__list",
      "airlock__status",
      "billing-api__request",
      "docs__delete_page",
      "docs__search",
      "shell__say",
    ]);
    const request = byName.get("billing-api__request")!;
    expect(request.inputSchema.required).toEqual(["method", "path"]);
    expect(Object.keys(request.inputSchema.properties ?? {})).toContain("justification");
    // The MCP server's own schema, with Airlock's justification beside its arguments.
    expect(byName.get("docs__search")!.inputSchema.properties).toMatchObject({
      query: { type: "string" },
      justification: { type: "string" },
    });
    expect(byName.get("docs__delete_page")!.description).toContain("Deletes a wiki page");
    expect(byName.get("shell__say")!.inputSchema.properties).toMatchObject({
      word: { type: "string", enum: ["hello", "goodbye"], description: "What to say" },
    });
    // Nothing of a credential or of where it goes.
    const listed = JSON.stringify(tools);
    expect(listed).not.toContain(SECRET);
    expect(listed).not.toContain(DOCS_TOKEN);
    expect(listed).not.toContain(upstream.url);
    // The server's instructions name each of Airlock's own tools.
    const instructions = client.getInstructions() ?? "";
    for (const own of ["airlock__status", "airlock__cancel", "airlock__list"]) {
      expect(instructions).toContain(own);
    }
  });

  it("runs an allowed call at once with Airlock's credential, and records the justification", async () => {
    const before = upstream.calls.length;
    const result = await callTool("billing-api__request", {
      method: "GET",
      path: "/invoices/7",
      justification: "the customer asked about invoice 7",
    });
    expect(result.isError).toBeUndefined();
    expect(JSON.parse(text(result))).toMatchObject({
      status: 200,
      body: { ok: true, method: "GET", url: "/api/invoices/7" },
    });
    expect(upstream.calls.length).toBe(before + 1);
    expect(upstream.calls.at(-1)!.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(text(result)).not.toContain(SECRET);
    const submitted = (await audit()).filter((e) => e.type === "request.submitted").at(-1)!;
    expect(submitted.data).toMatchObject({ justification: "the customer asked about invoice 7" });

    const found = await callTool("docs__search", { query: "onboarding" });
    expect(found.isError).toBeUndefined();
    expect(docs.calls.at(-1)).toMatchObject({ tool: "search", args: { query: "onboarding" } });
    expect(docs.calls.at(-1)!.args).not.toHaveProperty("justification");
  });

  it("tells the model that an allowed call ran when the store refuses to record how it ended", async () => {
    // The database takes no end of this one call's request, as a constraint a bug breaks would.
    const db = new Database(join(gw.dir, "airlock.db"));
    db.exec(`CREATE TRIGGER refuse_end BEFORE UPDATE ON requests
      WHEN NEW.status IN ('succeeded', 'failed') AND NEW.input LIKE '%/invoices/unrecordable%'
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    try {
      const before = upstream.calls.length;
      const result = await callTool("billing-api__request", {
        method: "GET",
        path: "/invoices/unrecordable",
      });
      expect(upstream.calls.length).toBe(before + 1);
      // As over HTTP: that it ran, not to submit it again, and which request it was; nothing
      // the database said.
      expect(result.isError).toBe(true);
      expect(text(result)).toMatch(
        /^internal: the action ran \(HTTP 200, .*\) but the store refused to record the outcome of request req_[0-9a-z]+; do not submit it again/,
      );
      expect(text(result)).not.toContain("refused by test");
    } finally {
      db.exec("DROP TRIGGER refuse_end");
      db.close();
    }
  });

  it("answers a refusal as a tool error the model can read, and runs nothing", async () => {
    const before = upstream.calls.length;
    const denied = await callTool("billing-api__request", {
      method: "DELETE",
      path: "/invoices/7",
    });
    expect(denied.isError).toBe(true);
    expect(text(denied)).toMatch(
      /Denied by the policy \(rule "nothing else"\): not something agents may do/,
    );
    const invalid = await callTool("billing-api__request", { method: "GET", path: "/../etc" });
    expect(invalid.isError).toBe(true);
    expect(text(invalid)).toMatch(/^invalid_request: path: must not contain \. or \.\. segments/);
    const unknownArg = await callTool("billing-api__request", {
      method: "GET",
      path: "/invoices",
      verb: "x",
    });
    expect(unknownArg.isError).toBe(true);
    expect(text(unknownArg)).toBe("invalid_request: verb: unknown field verb");
    expect(upstream.calls.length).toBe(before);
    // An MCP tool's arguments, against the schema its server gives: refused before the rule
    // that lets searches pass, and before anything is stored.
    const submitted = (await audit()).filter((e) => e.type === "request.submitted").length;
    const wrongType = await callTool("docs__search", { query: 7 });
    expect(wrongType.isError).toBe(true);
    expect(text(wrongType)).toBe(
      "invalid_request: query: must be string (the input schema of tool search, from its MCP server)",
    );
    expect(docs.calls.some((call) => call.args.query === 7)).toBe(false);
    expect((await audit()).filter((e) => e.type === "request.submitted")).toHaveLength(submitted);
    // The client's SDK puts "MCP error CODE:" before a JSON-RPC error's message: once.
    await expect(callTool("billing-api__nothing", {})).rejects.toMatchObject({
      code: -32602,
      message: "MCP error -32602: no tool billing-api__nothing; tools/list lists them",
    });
  });

  it("holds a call for review, then gives its result through airlock__status, run once", async () => {
    const before = upstream.calls.filter((c) => c.url === "/api/refunds").length;
    const held = await callTool("billing-api__request", {
      method: "POST",
      path: "/refunds",
      body: { amount: 30 },
      justification: "charged twice",
    });
    expect(held.isError).toBeUndefined();
    expect(text(held)).toMatch(
      /waits for a person's approval \(0 of 1\) at http:\/\/airlock\.test\/requests\/req_/,
    );
    expect(text(held)).toContain("airlock__status");
    const id = idIn(held)!;
    // Still waiting when asked again: nothing ran.
    const waiting = await callTool("airlock__status", { id });
    expect(text(waiting)).toMatch(/waits for a person's approval/);
    expect(upstream.calls.filter((c) => c.url === "/api/refunds").length).toBe(before);

    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
    const done = await callTool("airlock__status", { id });
    expect(done.isError).toBeUndefined();
    expect(JSON.parse(text(done))).toMatchObject({ status: 200 });
    expect(upstream.calls.filter((c) => c.url === "/api/refunds").length).toBe(before + 1);
  });

  it("runs a call retried with the same idempotency key in _meta once, as POST /v1/actions would", async () => {
    const keyed = (key: unknown) => ({ "dev.airlock/idempotency-key": key });
    const reads = () => upstream.calls.filter((c) => c.url === "/api/invoices/idem").length;
    const read = { method: "GET", path: "/invoices/idem" };
    const first = (await client.callTool({
      name: "billing-api__request",
      arguments: read,
      _meta: keyed("mcp-read-1"),
    })) as ToolResult;
    // The answer was lost: the client sends the call again.
    const retried = (await client.callTool({
      name: "billing-api__request",
      arguments: read,
      _meta: keyed("mcp-read-1"),
    })) as ToolResult;
    expect(first.isError).toBeUndefined();
    expect(text(retried)).toBe(text(first));
    expect(reads()).toBe(1);

    // A call held for review: the retry finds the same request, and its result once it ran.
    const refunds = () => upstream.calls.filter((c) => c.url === "/api/refunds").length;
    const before = refunds();
    const refund = { method: "POST", path: "/refunds", body: { amount: 12 }, justification: "dup" };
    const send = () =>
      client.callTool({
        name: "billing-api__request",
        arguments: refund,
        _meta: keyed("mcp-refund-1"),
      }) as Promise<ToolResult>;
    const held = await send();
    const id = idIn(held)!;
    expect(idIn(await send())).toBe(id);
    // One key for the agent, whichever door the action comes in by.
    const rest = await api(gw.url, "POST", "/v1/actions", {
      token: agentToken,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "POST", path: "/refunds", body: { amount: 12 } },
        justification: "dup",
        idempotencyKey: "mcp-refund-1",
      },
    });
    expect(rest.body.id).toBe(id);
    expect((await vote(gw.url, id, await gw.token("reviewer", "bob@example.com"))).status).toBe(
      200,
    );
    const done = await send();
    expect(JSON.parse(text(done))).toMatchObject({ status: 200 });
    expect(refunds()).toBe(before + 1);
  });

  it("refuses an idempotency key used for another call, or malformed, as a JSON-RPC error", async () => {
    const submitted = (await audit()).filter((e) => e.type === "request.submitted").length;
    await client.callTool({
      name: "billing-api__request",
      arguments: { method: "GET", path: "/invoices/key-a" },
      _meta: { "dev.airlock/idempotency-key": "mcp-reused-1" },
    });
    const refusal = (meta: unknown, path = "/invoices/key-b") =>
      client
        .callTool({
          name: "billing-api__request",
          arguments: { method: "GET", path },
          _meta: { "dev.airlock/idempotency-key": meta },
        })
        .then(
          () => undefined,
          (error: { code: number; message: string; data: unknown }) => error,
        );
    const reused = await refusal("mcp-reused-1");
    expect(reused?.code).toBe(-32602);
    expect(reused?.message).toMatch(
      /^MCP error -32602: _meta\["dev\.airlock\/idempotency-key"\]: already used for request req_[0-9a-z]+, which asked for something different/,
    );
    expect(reused?.data).toEqual({
      code: "invalid_request",
      field: '_meta["dev.airlock/idempotency-key"]',
    });
    expect((await refusal("two words"))?.message).toMatch(
      /^MCP error -32602: _meta\["dev\.airlock\/idempotency-key"\]: must be printable ASCII without spaces/,
    );
    expect((await refusal(7))?.code).toBe(-32602);
    expect(upstream.calls.some((c) => c.url === "/api/invoices/key-b")).toBe(false);
    expect((await audit()).filter((e) => e.type === "request.submitted")).toHaveLength(
      submitted + 1,
    );
  });

  it("cancels a waiting call with airlock__cancel, and keeps other agents' requests apart", async () => {
    const held = await callTool("billing-api__request", { method: "POST", path: "/refunds" });
    const id = idIn(held)!;
    const cancelled = await callTool("airlock__cancel", { id });
    expect(cancelled.isError).toBeUndefined();
    expect(text(cancelled)).toBe(`Request ${id} is cancelled; it did not run, and it will not.`);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agentToken });
    expect(view.body.status).toBe("cancelled");
    // Sent again after its answer was lost: the same answer, and one cancel in the audit trail.
    expect(await callTool("airlock__cancel", { id })).toEqual(cancelled);
    expect(
      (await audit()).filter((e) => e.requestId === id && e.type === "request.cancelled"),
    ).toHaveLength(1);
    // A request that ran is not cancelled, however often it is asked.
    const ran = await api(gw.url, "POST", "/v1/actions", {
      token: agentToken,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "GET", path: "/invoices/ran" },
      },
    });
    expect(ran.body.status).toBe("succeeded");
    const late = await callTool("airlock__cancel", { id: ran.body.id });
    expect(late.isError).toBe(true);
    expect(text(late)).toBe(`not_pending: request ${ran.body.id} is succeeded, no longer pending`);
    const stranger = await callTool("airlock__status", { id: "req_0000000000nobodysrequest0" });
    expect(stranger.isError).toBe(true);
    expect(text(stranger)).toMatch(/^not_found/);
    const noId = await callTool("airlock__status", {});
    expect(text(noId)).toMatch(/^invalid_request: id/);
  });

  it("lists the agent's own actions with airlock__list, newest first, as GET /v1/actions does", async () => {
    // An agent of its own, whose actions no other test adds to.
    const token = await gw.token("agent", "lister-bot");
    const lister = await connect(token);
    try {
      const list = async (args: Record<string, unknown>) =>
        (await lister.callTool({ name: "airlock__list", arguments: args })) as ToolResult;
      const page = async (args: Record<string, unknown>) => {
        const result = await list(args);
        expect(result.isError).toBeUndefined();
        return JSON.parse(text(result)) as { actions: { id: string }[]; next?: string };
      };
      expect(await page({})).toEqual({ actions: [] });
      const ids: string[] = [];
      for (const path of ["/invoices/l1", "/invoices/l2", "/invoices/l3"]) {
        const { body } = await api(gw.url, "POST", "/v1/actions", {
          token,
          body: { connection: "billing-api", operation: "request", input: { method: "GET", path } },
        });
        ids.push(body.id);
      }
      const held = await lister.callTool({
        name: "billing-api__request",
        arguments: { method: "POST", path: "/refunds", body: { amount: 1 } },
      });
      ids.push(idIn(held as ToolResult)!);
      const newestFirst = [...ids].reverse();
      // What the REST API lists, as it lists it; another agent's actions are not there.
      const all = await page({});
      expect(all).toEqual((await api(gw.url, "GET", "/v1/actions", { token })).body);
      expect(all.actions.map((a) => a.id)).toEqual(newestFirst);
      // Page by page.
      const first = await page({ limit: 3 });
      expect(first.actions.map((a) => a.id)).toEqual(newestFirst.slice(0, 3));
      expect(first.next).toBe(newestFirst[2]);
      const second = await page({ limit: 3, before: first.next });
      expect(second.actions.map((a) => a.id)).toEqual(newestFirst.slice(3));
      expect(second.next).toBeUndefined();
      // By status, and by connection.
      const pending = await page({ status: "pending" });
      expect(pending.actions.map((a) => a.id)).toEqual([ids[3]]);
      expect((await page({ status: "succeeded,failed" })).actions).toHaveLength(3);
      expect((await page({ status: "all", connection: "docs" })).actions).toEqual([]);
      // Arguments it cannot take, named as the other airlock__ tools name theirs; nothing listed.
      const refused = async (args: Record<string, unknown>) => {
        const result = await list(args);
        expect(result.isError).toBe(true);
        return text(result);
      };
      expect(await refused({ limit: 0 })).toMatch(/^invalid_request: limit: /);
      expect(await refused({ limit: 201 })).toMatch(/^invalid_request: limit: /);
      expect(await refused({ limit: 2.5 })).toMatch(/^invalid_request: limit: /);
      expect(await refused({ limit: "5" })).toMatch(/^invalid_request: limit: /);
      expect(await refused({ status: "waiting" })).toMatch(
        /^invalid_request: status: "waiting" is not a status; use all or/,
      );
      expect(await refused({ before: "req 1" })).toMatch(/^invalid_request: before: /);
      expect(await refused({ connection: 7 })).toMatch(/^invalid_request: connection: /);
      expect(await refused({ verb: "x" })).toBe("invalid_request: verb: unknown field verb");
    } finally {
      await lister.close();
    }
  });

  it("takes agent tokens only, and answers POST only", async () => {
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const anonymous = await fetch(`${gw.url}/mcp`, { method: "POST", headers, body });
    expect(anonymous.status).toBe(401);
    const reviewer = await fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: {
        ...headers,
        authorization: `Bearer ${await gw.token("reviewer", "bob@example.com")}`,
      },
      body,
    });
    expect(reviewer.status).toBe(403);
    const get = await fetch(`${gw.url}/mcp`, {
      headers: { authorization: `Bearer ${agentToken}` },
    });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const doc = (await api(gw.url, "GET", "/openapi.json")).body;
    expect(doc.paths["/mcp"].post).toBeDefined();
  });

  it("answers a body it cannot read with a JSON-RPC error without an id", async () => {
    const send = async (body: string, headers: Record<string, string> = {}) => {
      const response = await postMcp(gw.url, agentToken, body, { headers });
      return { status: response.status, body: await response.json() };
    };
    const unreadable = (
      code: number,
      message: RegExp,
      field: string,
      airlockCode = "invalid_request",
    ) => ({
      jsonrpc: "2.0",
      error: { code, message: expect.stringMatching(message), data: { code: airlockCode, field } },
      id: null,
    });
    expect(await send('{"jsonrpc": "2.0", "id": 1, "method": ')).toEqual({
      status: 400,
      body: unreadable(-32700, /^Parse error: body: is not valid JSON \(/, "body"),
    });
    expect(await send("")).toEqual({
      status: 400,
      body: unreadable(-32700, /^Parse error: body: is empty/, "body"),
    });
    expect(await send("{}", { "content-type": "text/plain" })).toEqual({
      status: 415,
      body: unreadable(-32000, /^content-type: send the body as application\/json/, "content-type"),
    });
    const huge = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "ping",
      params: { pad: "x".repeat(1_100_000) },
    });
    expect(await send(huge)).toEqual({
      status: 413,
      body: unreadable(
        -32000,
        /^the body is larger than the limit of 1048576 bytes/,
        "body",
        "payload_too_large",
      ),
    });
    // A token refused is still the API's error.
    expect(await send("{}", { authorization: "Bearer nope" })).toMatchObject({
      status: 401,
      body: { error: { code: "unauthenticated" } },
    });
  });

  it("answers a batch with an array, even a batch with one request", async () => {
    const send = async (body: unknown) => {
      const response = await postMcp(gw.url, agentToken, body);
      expect(response.status).toBe(200);
      return response.json();
    };
    const ping = (id: number) => ({ jsonrpc: "2.0", id, method: "ping" });
    expect(await send([ping(1)])).toEqual([{ jsonrpc: "2.0", id: 1, result: {} }]);
    // A notification is not answered: the call beside it is, in an array.
    const answers = await send([
      { jsonrpc: "2.0", method: "notifications/initialized" },
      {
        jsonrpc: "2.0",
        id: 2,
        method: "tools/call",
        params: { name: "billing-api__request", arguments: { method: "GET", path: "/invoices/2" } },
      },
    ]);
    expect(answers).toMatchObject([{ id: 2, result: { content: [{ type: "text" }] } }]);
    expect(answers).toHaveLength(1);
    expect(await send([ping(3), ping(4)])).toHaveLength(2);
    // A message that is not a batch is answered bare.
    expect(await send(ping(5))).toEqual({ jsonrpc: "2.0", id: 5, result: {} });
  });

  it("refuses an empty batch, and one whose requests share an id, running none of them", async () => {
    const read = (id: number, path: string) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name: "billing-api__request", arguments: { method: "GET", path } },
    });
    const response = await postMcp(gw.url, agentToken, [
      read(1, "/invoices/dup-a"),
      read(1, "/invoices/dup-b"),
    ]);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error: {
        code: -32600,
        message: expect.stringMatching(/two requests in the batch have the id 1/),
      },
      id: null,
    });
    expect(upstream.calls.some((c) => c.url.startsWith("/api/invoices/dup-"))).toBe(false);
    // An empty batch, as JSON-RPC 2.0 answers it.
    const empty = await postMcp(gw.url, agentToken, "[]");
    expect(empty.status).toBe(400);
    expect(await empty.json()).toEqual({
      jsonrpc: "2.0",
      error: {
        code: -32600,
        message: "Invalid Request: the batch is empty; send at least one message",
      },
      id: null,
    });
  });

  it("answers a message MCP does not take as an invalid request (-32600), with id null unless it has one to give", async () => {
    const send = async (body: unknown) => {
      const response = await postMcp(gw.url, agentToken, body);
      return {
        status: response.status,
        body: response.status === 202 ? await response.text() : await response.json(),
      };
    };
    const escaped = (text: string) => text.replace(/[.[\]()]/g, "\\$&");
    const invalid = (id: string | number | null, field: string, why: string) => ({
      jsonrpc: "2.0",
      id,
      error: {
        code: -32600,
        message: expect.stringMatching(
          new RegExp(`^Invalid Request: ${escaped(field)}: .*${escaped(why)}`),
        ),
        data: { code: "invalid_request", field },
      },
    });
    const unread = (field: string, why: string) => ({
      jsonrpc: "2.0",
      id: null,
      error: {
        code: -32602,
        message: expect.stringMatching(new RegExp(`^${escaped(field)}: .*${escaped(why)}`)),
        data: { code: "invalid_request", field },
      },
    });
    const before = upstream.calls.length;
    const read = (id: unknown) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: "billing-api__request",
        arguments: { method: "GET", path: "/invoices/bad-id" },
      },
    });
    // MCP's ids are strings or integers: a fraction or null is no id to answer with.
    expect(await send(read(1.5))).toEqual({
      status: 400,
      body: invalid(null, "id", "must be a string or an integer"),
    });
    expect(await send(read(null))).toEqual({
      status: 400,
      body: invalid(null, "id", "must be a string or an integer"),
    });
    // An id that can be read is answered with, as a request is answered: 200, the error its
    // answer (Streamable HTTP keeps HTTP errors for input that gets no answer by id).
    expect(await send({ jsonrpc: "1.0", id: 3, method: "ping" })).toEqual({
      status: 200,
      body: invalid(3, "jsonrpc", 'must be "2.0"'),
    });
    expect(await send({ jsonrpc: "2.0", id: 4, method: "ping", extra: 1 })).toEqual({
      status: 200,
      body: invalid(4, "extra", "unknown field extra"),
    });
    expect(await send({ jsonrpc: "2.0", method: 1, params: "bar" })).toEqual({
      status: 400,
      body: invalid(null, "method", "must be a string"),
    });
    expect(await send({ jsonrpc: "2.0", id: 6 })).toEqual({
      status: 400,
      body: invalid(null, "method", "is missing"),
    });
    expect(await send(5)).toEqual({
      status: 400,
      body: invalid(null, "message", "must be a JSON object"),
    });
    // A notification Airlock reads whose params it cannot read is refused, and not taken.
    expect(
      await send({ jsonrpc: "2.0", method: "notifications/cancelled", params: "call-1" }),
    ).toEqual({ status: 400, body: unread("params", "expected object") });
    expect(
      await send({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: {} } }),
    ).toEqual({ status: 400, body: unread("params.requestId", "must be a string or an integer") });
    expect(
      await send({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1.5 } }),
    ).toEqual({ status: 400, body: unread("params.requestId", "must be a string or an integer") });
    expect(
      await send({ jsonrpc: "2.0", method: "notifications/initialized", params: { _meta: 5 } }),
    ).toEqual({ status: 400, body: unread("params._meta", "expected object") });
    // Well-formed notifications, and a response nothing waits for, are taken (202, no body).
    for (const taken of [
      { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 99 } },
      { jsonrpc: "2.0", method: "notifications/whatever", params: { a: 1 } },
      { jsonrpc: "2.0", id: 4, result: {} },
    ]) {
      expect(await send(taken)).toEqual({ status: 202, body: "" });
    }
    // In a batch, each malformed message is answered in its place, as JSON-RPC asks; the others
    // are answered as usual, and a notification is never answered.
    expect(
      await send([
        { jsonrpc: "2.0", id: 1, method: "ping" },
        3,
        read(2.5),
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: {} } },
        { jsonrpc: "1.0", id: 2, method: "ping" },
        { jsonrpc: "2.0", id: 7, method: "ping" },
      ]),
    ).toEqual({
      status: 200,
      body: [
        { jsonrpc: "2.0", id: 1, result: {} },
        invalid(null, "message", "must be a JSON object"),
        invalid(null, "id", "must be a string or an integer"),
        invalid(2, "jsonrpc", 'must be "2.0"'),
        { jsonrpc: "2.0", id: 7, result: {} },
      ],
    });
    // A batch whose only requests are malformed is answered as one with requests, its
    // notifications taken.
    expect(await send([{ jsonrpc: "1.0", id: 8, method: "ping" }, 4])).toEqual({
      status: 200,
      body: [
        invalid(8, "jsonrpc", 'must be "2.0"'),
        invalid(null, "message", "must be a JSON object"),
      ],
    });
    expect(
      await send([
        { jsonrpc: "2.0", method: "notifications/initialized" },
        { jsonrpc: "2.0", id: "nine", method: "ping", extra: 1 },
      ]),
    ).toEqual({ status: 200, body: [invalid("nine", "extra", "unknown field extra")] });
    // A batch with no request in it is taken whole, or refused whole.
    expect(
      await send([{ jsonrpc: "2.0", method: "notifications/initialized" }, read(0.5), [1]]),
    ).toEqual({
      status: 400,
      body: [
        invalid(null, "id", "must be a string or an integer"),
        invalid(null, "message", "must be a JSON object"),
      ],
    });
    expect(upstream.calls.length).toBe(before);
  });

  it("answers malformed params as invalid params naming the param, and runs nothing", async () => {
    const post = async (body: unknown) => {
      const response = await postMcp(gw.url, agentToken, body);
      expect(response.status).toBe(200);
      return response.json();
    };
    const call = (id: number, params?: unknown) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      ...(params === undefined ? {} : { params }),
    });
    const refusal = (id: number, field: string, why: string) => ({
      jsonrpc: "2.0",
      id,
      error: {
        code: -32602,
        message: expect.stringMatching(new RegExp(`^${field}: .*${why}`)),
        data: { code: "invalid_request", field },
      },
    });
    const before = upstream.calls.length;
    expect(await post(call(1, { arguments: { method: "GET", path: "/invoices" } }))).toEqual(
      refusal(1, "params.name", "expected string, received undefined"),
    );
    const read = { method: "GET", path: "/invoices/bad-params" };
    expect(
      await post(call(2, { name: "billing-api__request", arguments: Object.entries(read) })),
    ).toEqual(refusal(2, "params.arguments", "expected record, received array"));
    expect(await post(call(3, { name: "billing-api__request", arguments: "GET" }))).toEqual(
      refusal(3, "params.arguments", "expected record, received string"),
    );
    expect(await post(call(4))).toEqual(refusal(4, "params", "expected object"));
    expect(
      await post({ jsonrpc: "2.0", id: 5, method: "tools/list", params: { cursor: 5 } }),
    ).toEqual(refusal(5, "params.cursor", "expected string, received number"));
    // Every cursor is one this server never gave: it lists all its tools at once.
    expect(
      await post({ jsonrpc: "2.0", id: 8, method: "tools/list", params: { cursor: "page-2" } }),
    ).toEqual(refusal(8, "params.cursor", "gives no cursors"));
    // A method /mcp does not have is not found, whatever its params: that comes first.
    const notFound = {
      jsonrpc: "2.0",
      id: 9,
      error: { code: -32601, message: "Method not found" },
    };
    for (const params of [5, { _meta: 5 }, { _meta: { progressToken: {} } }, { a: 1 }]) {
      expect(await post({ jsonrpc: "2.0", id: 9, method: "resources/list", params })).toEqual(
        notFound,
      );
    }
    // In a batch, each request is answered for itself.
    const [bad, good] = (await post([
      call(6, { name: "billing-api__request", arguments: [] }),
      { jsonrpc: "2.0", id: 7, method: "ping" },
    ])) as unknown[];
    expect(bad).toEqual(refusal(6, "params.arguments", "expected record"));
    expect(good).toEqual({ jsonrpc: "2.0", id: 7, result: {} });
    expect(upstream.calls.length).toBe(before);
  });

  it("answers a malformed progress token or _meta as invalid params too, in a batch as alone", async () => {
    const post = async (body: unknown) => {
      const response = await postMcp(gw.url, agentToken, body);
      expect(response.status).toBe(200);
      return response.json();
    };
    const read = (id: number, params: Record<string, unknown>) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: "billing-api__request",
        arguments: { method: "GET", path: "/invoices/bad-meta" },
        ...params,
      },
    });
    const refusal = (id: number, field: string, why: string) => ({
      jsonrpc: "2.0",
      id,
      error: {
        code: -32602,
        message: expect.stringMatching(
          new RegExp(`^${field.replace(/[.[\]]/g, "\\$&")}: .*${why}`),
        ),
        data: { code: "invalid_request", field },
      },
    });
    const before = upstream.calls.length;
    expect(await post(read(1, { _meta: { progressToken: { step: 1 } } }))).toEqual(
      refusal(1, "params._meta.progressToken", "must be a string or an integer"),
    );
    expect(await post(read(2, { _meta: { progressToken: true } }))).toEqual(
      refusal(2, "params._meta.progressToken", "must be a string or an integer"),
    );
    expect(await post(read(3, { _meta: { progressToken: 1.5 } }))).toEqual(
      refusal(3, "params._meta.progressToken", "must be a string or an integer"),
    );
    expect(await post(read(4, { _meta: "token-1" }))).toEqual(
      refusal(4, "params._meta", "expected object, received string"),
    );
    expect(await post({ jsonrpc: "2.0", id: 5, method: "tools/call", params: 5 })).toEqual(
      refusal(5, "params", "expected object, received number"),
    );
    // The other requests of the batch are answered as usual.
    const [bad, good] = (await post([
      read(6, { _meta: { progressToken: false } }),
      { jsonrpc: "2.0", id: 7, method: "ping" },
    ])) as unknown[];
    expect(bad).toEqual(refusal(6, "params._meta.progressToken", "must be a string"));
    expect(good).toEqual({ jsonrpc: "2.0", id: 7, result: {} });
    expect(upstream.calls.length).toBe(before);
    // A well-formed token is taken.
    const taken = await post(read(8, { _meta: { progressToken: "p-8" } }));
    expect(taken).toMatchObject({ id: 8, result: { content: [{ type: "text" }] } });
  });

  it("passes the agent's rate limit on as a tool error with the wait", async () => {
    // An agent of its own, with a limit no other test uses up and no clock can refill.
    const hasty = await connect(await gw.token("agent", "hasty-bot"));
    try {
      const call = async () =>
        (await hasty.callTool({
          name: "billing-api__request",
          arguments: { method: "GET", path: "/invoices" },
        })) as ToolResult;
      expect((await call()).isError).toBeUndefined();
      const limited = await call();
      expect(limited.isError).toBe(true);
      expect(text(limited)).toMatch(/^rate_limited: agent hasty-bot submits actions faster/);
      // The wait, said once.
      expect(text(limited).match(/try again in \d+ s/g)).toHaveLength(1);
    } finally {
      await hasty.close();
    }
  });
});

describe("the MCP endpoint, with an MCP server that does not answer", () => {
  it("tells the log why an MCP connection's tools are listed without their schemas", async () => {
    const closed = createServer(() => {});
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await withGateway(
      `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
connections:
  docs:
    type: mcp
    url: http://127.0.0.1:${port}/mcp
    tools: { search: {} }
rules:
  - name: nothing
    decision: deny
`,
      async (gw) => {
        const mcp = await connectTo(gw.url, await gw.token("agent", "support-bot"));
        try {
          const { tools } = await mcp.listTools();
          expect(tools.find((tool) => tool.name === "docs__search")?.inputSchema).toMatchObject({
            type: "object",
          });
        } finally {
          await mcp.close();
        }
        await until(() =>
          gw.logs.some(
            (line) =>
              line.includes("could not list the MCP server's tools") && line.includes('"docs"'),
          ),
        );
      },
    );
  });

  it("runs other connections' tools without waiting for that server's tool list", async () => {
    // Takes requests and never answers them: the docs connection's server is down.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const upstream = await startUpstream();
    try {
      await withGateway(
        `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
  docs:
    type: mcp
    url: http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp
    tools: { search: {} }
rules:
  - name: reads pass
    when: action.connection == "billing-api"
    decision: allow
`,
        async (gw) => {
          const mcp = await connectTo(gw.url, await gw.token("agent", "support-bot"));
          try {
            const result = (await mcp.callTool({
              name: "billing-api__request",
              arguments: { method: "GET", path: "/invoices" },
            })) as ToolResult;
            expect(result.isError).toBeUndefined();
            // A call that waited for the docs server's list would be answered only after the
            // gateway gave that list up, and logged so.
            expect(gw.logs.join("")).not.toContain("could not list the MCP server's tools");
          } finally {
            await mcp.close();
          }
        },
      );
    } finally {
      await upstream.close();
      silent.closeAllConnections();
      silent.close();
    }
  });
});

/**
 * A refund held for finance, on `storage`, held for longer than any test lasts: a call ends
 * early only because its client cancelled it.
 */
function cancelConfig(upstreamUrl: string, storage: string): string {
  return `
server: { port: 0, publicUrl: "http://airlock.test", mcpToolWait: 40s }
storage: ${storage}
agents:
  - { name: support-bot, owner: alice@example.com }
reviewers:
  - { email: bob@example.com, groups: [finance] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstreamUrl}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: refunds need finance
    when: http.method == "POST" && http.path == "/refunds"
    decision: review
    review: { approvers: [finance] }
  - name: reads pass
    when: http.method == "GET"
    decision: allow
  - name: nothing else
    decision: deny
`;
}

describe("the MCP endpoint, with calls their clients cancel", () => {
  let upstream: Upstream;
  let gw: TestGateway;
  let agentToken: string;
  let bob: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(cancelConfig(upstream.url, "sqlite:./airlock.db"));
    agentToken = await gw.token("agent", "support-bot");
    bob = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await upstream?.close();
  });

  const refund = (justification: string) => ({
    name: "billing-api__request",
    arguments: { method: "POST", path: "/refunds", body: { amount: 3 }, justification },
  });
  /** The request a held call made, found by its justification once it is stored. */
  const requestOf = async (justification: string): Promise<string> => {
    let id: string | undefined;
    await until(async () => {
      const { body } = await api(gw.url, "GET", "/v1/requests?status=all", { token: bob });
      id = (body.requests as { id: string; justification: string }[]).find(
        (r) => r.justification === justification,
      )?.id;
      return id !== undefined;
    });
    return id!;
  };
  const statusOf = async (id: string) =>
    (await api(gw.url, "GET", `/v1/actions/${id}`, { token: agentToken })).body.status;
  const refunds = () => upstream.calls.filter((c) => c.url === "/api/refunds").length;
  const requestCount = async () =>
    (
      (await api(gw.url, "GET", "/v1/requests?status=all&limit=200", { token: bob })).body
        .requests as unknown[]
    ).length;
  const post = (body: unknown, signal?: AbortSignal) =>
    postMcp(gw.url, agentToken, body, signal ? { signal } : {});

  it("withdraws the request of a call its client cancels while it waits for review", async () => {
    const mcp = await connectTo(gw.url, agentToken);
    try {
      const stop = new AbortController();
      const call = mcp.callTool(refund("cancel me"), undefined, { signal: stop.signal }).then(
        () => "answered",
        (error: Error) => error.message,
      );
      const id = await requestOf("cancel me");
      stop.abort("the user changed their mind");
      expect(await call).toMatch(/the user changed their mind/);
      await until(async () => (await statusOf(id)) === "cancelled");
      const events = (await api(gw.url, "GET", `/v1/audit?requestId=${id}`, { token: bob })).body
        .events as { type: string; actor: { type: string; id: string } }[];
      expect(events.find((e) => e.type === "request.cancelled")?.actor).toEqual({
        type: "agent",
        id: "support-bot",
      });
      expect(await vote(gw.url, id, bob).then((r) => r.body.error?.code)).toBe("not_pending");
      expect(refunds()).toBe(0);
    } finally {
      await mcp.close();
    }
  });

  it("reaches only the call of the client that cancels, where two clients number calls alike", async () => {
    // Two clients of the SDK number their calls alike (from 0): both first calls are call 1.
    const [first, second] = [
      await connectTo(gw.url, agentToken),
      await connectTo(gw.url, agentToken),
    ];
    try {
      const stop = new AbortController();
      const cancelled = first
        .callTool(refund("first client"), undefined, { signal: stop.signal })
        .catch(() => undefined);
      const kept = second.callTool(refund("second client")) as Promise<ToolResult>;
      const [mine, theirs] = [await requestOf("first client"), await requestOf("second client")];
      stop.abort("stopped");
      await cancelled;
      await until(async () => (await statusOf(mine)) === "cancelled");
      expect((await vote(gw.url, theirs, bob)).status).toBe(200);
      const result = await kept;
      expect(JSON.parse(result.content[0]!.text)).toMatchObject({ status: 200 });
      expect(refunds()).toBe(1);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it("reaches the held call of a client without a session id, unless another such client's call has its number", async () => {
    const call = (id: number, justification: string) =>
      post({ jsonrpc: "2.0", id, method: "tools/call", params: refund(justification) }).then(
        (r) => r.json() as Promise<{ result: ToolResult }>,
      );
    const cancel = (requestId: number) =>
      post({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId } });
    const ignored = (requestId: number, why: string) =>
      until(() =>
        gw.logs.some(
          (line) => line.includes(`"mcpRequestId":"${requestId}"`) && line.includes(why),
        ),
      );
    const before = refunds();
    // The only call of that number held here: the cancel reaches it.
    const alone = call(31, "no session, alone");
    const id = await requestOf("no session, alone");
    expect((await cancel(31)).status).toBe(202);
    expect((await alone).result.content[0]!.text).toBe(
      `Request ${id} was cancelled; it did not run.`,
    );
    expect(await statusOf(id)).toBe("cancelled");
    // Two clients that share a token and send no session id, each with its call 32: which one
    // was meant cannot be told, and neither is cancelled.
    const both = [call(32, "no session, first"), call(32, "no session, second")];
    const ids = [await requestOf("no session, first"), await requestOf("no session, second")];
    expect((await cancel(32)).status).toBe(202);
    await ignored(32, "two calls held here have its number");
    // A number no call held here has: without a session id, no other replica is asked.
    expect((await cancel(33)).status).toBe(202);
    await ignored(33, "holds no call of that number from a client without a session id");
    for (const held of ids) {
      expect(await statusOf(held)).toBe("pending");
      await api(gw.url, "POST", `/v1/actions/${held}/cancel`, { token: agentToken });
    }
    await Promise.all(both);
    expect(refunds()).toBe(before);
  });

  it("ends airlock__status's wait when its call is cancelled, and leaves the request waiting", async () => {
    const submitted = await api(gw.url, "POST", "/v1/actions", {
      token: agentToken,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "POST", path: "/refunds" },
        justification: "watched",
      },
    });
    const id = submitted.body.id as string;
    const waiting = post({
      jsonrpc: "2.0",
      id: "watch-1",
      method: "tools/call",
      params: { name: "airlock__status", arguments: { id } },
    }).then((r) => r.json() as Promise<{ result: ToolResult }>);
    // Sent again until it finds the call, which may not be held yet when the first arrives.
    await until(async () => {
      await post({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        // Its reason is cut to 200 characters in the log: a credential in it, across the cut,
        // is redacted first, so that no piece of it is left.
        params: { requestId: "watch-1", reason: `done watching ${"x".repeat(176)} ${SECRET}` },
      });
      return gw.logs.some(
        (line) => line.includes("an MCP client cancelled a tool call") && line.includes("watch-1"),
      );
    });
    const logged = gw.logs.filter((line) => line.includes("an MCP client cancelled a tool call"));
    expect(logged.join("")).toContain("done watching xxx");
    expect(logged.join("")).not.toContain(SECRET.slice(0, 6));
    const answer = await waiting;
    expect(answer.result.content[0]!.text).toMatch(/waits for a person's approval/);
    expect(await statusOf(id)).toBe("pending");
    expect(
      (await api(gw.url, "POST", `/v1/actions/${id}/cancel`, { token: agentToken })).status,
    ).toBe(200);
  });

  it("withdraws the request of a call whose client timed out, which a retry with its key finds cancelled", async () => {
    const before = refunds();
    const mcp = await connectTo(gw.url, agentToken);
    try {
      const keyed = { ...refund("timed out"), _meta: { "dev.airlock/idempotency-key": "timed-1" } };
      // The SDK's client sends notifications/cancelled when its own timeout passes.
      const call = mcp.callTool(keyed, undefined, { timeout: 200 }).then(
        () => "answered",
        (error: Error) => error.message,
      );
      expect(await call).toMatch(/Request timed out/);
      const id = await requestOf("timed out");
      await until(async () => (await statusOf(id)) === "cancelled");
      const retried = (await mcp.callTool(keyed)) as ToolResult;
      expect(retried.isError).toBe(true);
      expect(retried.content[0]!.text).toBe(`Request ${id} was cancelled; it did not run.`);
      expect(refunds()).toBe(before);
    } finally {
      await mcp.close();
    }
  });

  it("leaves the request waiting when the client hangs up, for a retry with its key to find", async () => {
    const before = refunds();
    const keyed = {
      ...refund("hung up"),
      _meta: { "dev.airlock/idempotency-key": "hung-up-1" },
    };
    const hangUp = new AbortController();
    const first = post(
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: keyed },
      hangUp.signal,
    ).catch(() => "hung up");
    const id = await requestOf("hung up");
    hangUp.abort();
    expect(await first).toBe("hung up");
    await until(() =>
      gw.logs.some((line) => line.includes("hung up on a tool call") && line.includes(id)),
    );
    expect(await statusOf(id)).toBe("pending");
    const mcp = await connectTo(gw.url, agentToken);
    try {
      const retried = mcp.callTool(keyed) as Promise<ToolResult>;
      expect((await vote(gw.url, id, bob)).status).toBe(200);
      expect(JSON.parse((await retried).content[0]!.text)).toMatchObject({ status: 200 });
      expect(refunds()).toBe(before + 1);
    } finally {
      await mcp.close();
    }
  });

  it("refuses a call whose cancel came first, before it makes a request or runs", async () => {
    // Any replica takes any session id: the client's label for its calls.
    const headers = { "mcp-session-id": "early-cancel-session" };
    const send = (body: unknown) => postMcp(gw.url, agentToken, body, { headers });
    const cancel = (requestId: number) =>
      send({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId } });
    const answerOf = async (response: Promise<Response>) =>
      ((await (await response).json()) as { result: ToolResult }).result;
    const before = { calls: upstream.calls.length, requests: await requestCount() };
    expect((await cancel(51)).status).toBe(202);
    const held = await answerOf(
      send({ jsonrpc: "2.0", id: 51, method: "tools/call", params: refund("cancelled early") }),
    );
    expect(held).toEqual({
      content: [
        { type: "text", text: "The call was cancelled before it was submitted; nothing ran." },
      ],
      isError: true,
    });
    // An action the policy lets run at once does not run either.
    expect((await cancel(52)).status).toBe(202);
    const read = await answerOf(
      send({
        jsonrpc: "2.0",
        id: 52,
        method: "tools/call",
        params: {
          name: "billing-api__request",
          arguments: { method: "GET", path: "/invoices/early" },
        },
      }),
    );
    expect(read.isError).toBe(true);
    expect(upstream.calls.length).toBe(before.calls);
    expect(await requestCount()).toBe(before.requests);
    // Another call of the same client is taken as usual.
    const next = await answerOf(
      send({
        jsonrpc: "2.0",
        id: 53,
        method: "tools/call",
        params: {
          name: "billing-api__request",
          arguments: { method: "GET", path: "/invoices/late" },
        },
      }),
    );
    expect(JSON.parse(next.content[0]!.text)).toMatchObject({ status: 200 });
  });

  it("answers a batch that cancels its own call, and runs nothing", async () => {
    const before = refunds();
    const response = await post(
      [
        { jsonrpc: "2.0", id: 9, method: "tools/call", params: refund("batched") },
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 9 } },
      ],
      // The SDK's own handling of the cancel left the POST without an answer for good.
      AbortSignal.timeout(20_000),
    );
    expect(response.status).toBe(200);
    const [answer] = (await response.json()) as { id: number; result: ToolResult }[];
    expect(answer!.id).toBe(9);
    expect(answer!.result.isError).toBe(true);
    expect(answer!.result.content[0]!.text).toMatch(/cancelled/);
    const { body } = await api(gw.url, "GET", "/v1/requests", { token: bob });
    expect(
      (body.requests as { justification: string }[]).some((r) => r.justification === "batched"),
    ).toBe(false);
    expect(refunds()).toBe(before);
  });
});

describe.skipIf(!postgresAvailable)(
  "the MCP endpoint behind two replicas on one PostgreSQL database",
  () => {
    let db: ScratchSchema;
    let upstream: Upstream;
    let a: TestGateway;
    let b: TestGateway;
    let agentToken: string;
    let bob: string;

    beforeAll(async () => {
      db = await scratchSchema();
      upstream = await startUpstream();
      const config = cancelConfig(upstream.url, `"${db.url}"`);
      a = await startGateway(config);
      b = await startGateway(config);
      agentToken = await a.token("agent", "support-bot");
      bob = await a.token("reviewer", "bob@example.com");
    });
    afterAll(async () => {
      await a?.close();
      await b?.close();
      if (a) removeDir(a.dir);
      if (b) removeDir(b.dir);
      await upstream?.close();
      await db?.drop();
    });

    const refundCall = (id: number, justification: string) => ({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: "billing-api__request",
        arguments: { method: "POST", path: "/refunds", body: { amount: 5 }, justification },
      },
    });
    const cancel = (requestId: number) => ({
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId, reason: "the user stopped it" },
    });
    /** A client's session, as `initialize` gave it: its messages go to whichever replica. */
    const session = async () => {
      const response = await postMcp(a.url, agentToken, {
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "test-agent", version: "1.0.0" },
        },
      });
      const id = response.headers.get("mcp-session-id");
      expect(id).toBeTruthy();
      return Object.assign(
        (url: string, body: unknown) =>
          postMcp(url, agentToken, body, { headers: { "mcp-session-id": id! } }),
        { id: id! },
      );
    };
    const requestOf = async (justification: string): Promise<string> => {
      let id: string | undefined;
      await until(async () => {
        const { body } = await api(b.url, "GET", "/v1/requests?status=all", { token: bob });
        id = (body.requests as { id: string; justification: string }[]).find(
          (r) => r.justification === justification,
        )?.id;
        return id !== undefined;
      });
      return id!;
    };
    const statusOf = async (id: string) =>
      (await api(b.url, "GET", `/v1/actions/${id}`, { token: agentToken })).body.status;
    const textOf = async (response: Promise<Response>) =>
      ((await (await response).json()) as { result: ToolResult }).result.content[0]!.text;

    it("withdraws a call held by one replica when its cancel lands on the other", async () => {
      const send = await session();
      const call = send(a.url, refundCall(1, "cancelled across replicas"));
      const id = await requestOf("cancelled across replicas");
      // Whether A has yet recorded which request the call holds or not.
      expect((await send(b.url, cancel(1))).status).toBe(202);
      expect(await textOf(call)).toBe(`Request ${id} was cancelled; it did not run.`);
      expect(await statusOf(id)).toBe("cancelled");
      const events = (await api(b.url, "GET", `/v1/audit?requestId=${id}`, { token: bob })).body
        .events as { type: string; actor: { type: string; id: string } }[];
      expect(events.find((e) => e.type === "request.cancelled")?.actor).toEqual({
        type: "agent",
        id: "support-bot",
      });
      expect(upstream.calls.filter((c) => c.url === "/api/refunds")).toHaveLength(0);
    });

    it("leaves a call alone when another session of the same agent cancels its number", async () => {
      const [mine, theirs] = [await session(), await session()];
      const call = mine(a.url, refundCall(1, "kept across replicas"));
      const id = await requestOf("kept across replicas");
      expect((await theirs(b.url, cancel(1))).status).toBe(202);
      expect((await vote(b.url, id, bob)).status).toBe(200);
      expect(JSON.parse(await textOf(call))).toMatchObject({ status: 200 });
      expect(upstream.calls.filter((c) => c.url === "/api/refunds")).toHaveLength(1);
    });

    it("leaves the call of a client without a session id alone when its cancel lands on the other replica, and says so", async () => {
      const call = postMcp(a.url, agentToken, refundCall(41, "no session across replicas"));
      const id = await requestOf("no session across replicas");
      expect((await postMcp(b.url, agentToken, cancel(41))).status).toBe(202);
      await until(() =>
        b.logs.some(
          (line) =>
            line.includes('"mcpRequestId":"41"') &&
            line.includes("holds no call of that number from a client without a session id"),
        ),
      );
      expect(await statusOf(id)).toBe("pending");
      await api(b.url, "POST", `/v1/actions/${id}/cancel`, { token: agentToken });
      expect(await textOf(call)).toBe(`Request ${id} was cancelled; it did not run.`);
    });

    it("refuses a call whose cancel reached the other replica before the call did, making no request", async () => {
      const send = await session();
      const before = upstream.calls.length;
      expect((await send(b.url, cancel(7))).status).toBe(202);
      // The 202 comes as the notification is taken; its mark is written after.
      const key = createRecordedCalls(b.gateway.store, 1000, Date.now).key(
        "support-bot",
        send.id,
        7,
      )!;
      await until(() => b.gateway.store.mcpCallCancelled(key, Date.now()));
      const answer = await textOf(send(a.url, refundCall(7, "cancelled before it came")));
      expect(answer).toBe("The call was cancelled before it was submitted; nothing ran.");
      const { body } = await api(b.url, "GET", "/v1/requests?status=all", { token: bob });
      expect(
        (body.requests as { justification: string }[]).some(
          (r) => r.justification === "cancelled before it came",
        ),
      ).toBe(false);
      expect(upstream.calls.length).toBe(before);
    });
  },
);
