/** Invariant 10: bad input gets a precise error naming the field, and changes nothing. */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestStatuses } from "../src/requests/request-types.js";
import {
  api,
  read,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let agent: string;
let bob: string;
let pendingId: string;

async function snapshot() {
  return {
    requests: (
      await gw.gateway.store.listRequests({
        limit: 10_000,
        statuses: [...requestStatuses],
      })
    ).length,
    events: (await gw.gateway.store.listAudit({ limit: 100_000 })).length,
    calls: upstream.calls.length,
  };
}

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(
    testConfig(upstream.url).replace(
      "sweepInterval: 50ms",
      "sweepInterval: 50ms, maxBodyBytes: 4096, maxWaitSeconds: 30, requestTimeout: 500ms",
    ),
  );
  agent = await gw.token("agent", "support-bot");
  bob = await gw.token("reviewer", "bob@example.com");
  pendingId = (await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() })).body.id;
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

const action = (body: unknown) => ({ ...read(), ...(body as object) });

const cases: {
  name: string;
  method?: string;
  path?: string;
  as?: "agent" | "bob";
  body?: unknown;
  raw?: string | Buffer;
  contentType?: string;
  status: number;
  code: string;
  field?: string;
}[] = [
  {
    name: "malformed JSON",
    raw: '{"connection": "billing-api",',
    status: 400,
    code: "invalid_request",
    field: "body",
  },
  { name: "an empty JSON body", raw: "", status: 400, code: "invalid_request", field: "body" },
  { name: "a JSON array", body: [1, 2], status: 400, code: "invalid_request", field: "body" },
  { name: "a JSON string", raw: '"hello"', status: 400, code: "invalid_request", field: "body" },
  {
    name: "a body that is not JSON",
    raw: "connection=billing-api",
    contentType: "application/x-www-form-urlencoded",
    status: 415,
    code: "invalid_request",
    field: "content-type",
  },
  {
    name: "a text/plain body",
    raw: '{"connection": "billing-api"}',
    contentType: "text/plain",
    status: 415,
    code: "invalid_request",
    field: "content-type",
  },
  {
    // Read as UTF-8, "/café" would become "/caf\uFFFD": reviewed and run as something else.
    name: "a body that is not UTF-8",
    raw: Buffer.from(
      '{"connection":"billing-api","operation":"request","input":{"method":"PUT","path":"/caf\u00e9"}}',
      "latin1",
    ),
    status: 400,
    code: "invalid_request",
    field: "body",
  },
  {
    name: "a body in another charset than UTF-8",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"PUT","path":"/x"}}',
    contentType: "application/json; charset=iso-8859-1",
    status: 415,
    code: "invalid_request",
    field: "content-type",
  },
  {
    name: "a key named __proto__",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"PUT","path":"/x","body":{"__proto__":{"a":1}}}}',
    status: 400,
    code: "invalid_request",
    field: "input.body.__proto__",
  },
  {
    name: "a key named __proto__, escaped",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"PUT","path":"/x","body":[{"\\u005f_proto__":1}]}}',
    status: 400,
    code: "invalid_request",
    field: "input.body.0.__proto__",
  },
  {
    name: "constructor.prototype",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"PUT","path":"/x","body":{"constructor":{"prototype":{}}}}}',
    status: 400,
    code: "invalid_request",
    field: "input.body.constructor.prototype",
  },
  {
    name: "an oversize body",
    body: action({ justification: "x".repeat(5000) }),
    status: 413,
    code: "payload_too_large",
    field: "body",
  },
  {
    name: "no connection",
    body: { operation: "request", input: {} },
    status: 400,
    code: "invalid_request",
    field: "connection",
  },
  {
    name: "a connection that is not a string",
    body: action({ connection: 7 }),
    status: 400,
    code: "invalid_request",
    field: "connection",
  },
  {
    name: "an unknown field",
    body: action({ sudo: true }),
    status: 400,
    code: "invalid_request",
    field: "sudo",
  },
  {
    name: "an unknown connection",
    body: action({ connection: "payroll" }),
    status: 400,
    code: "unknown_connection",
    field: "connection",
  },
  {
    name: "an unknown operation",
    body: action({ operation: "drop" }),
    status: 400,
    code: "unknown_operation",
    field: "operation",
  },
  {
    name: "a bad HTTP method",
    body: action({ input: { method: "BREW", path: "/x" } }),
    status: 400,
    code: "invalid_request",
    field: "input.method",
  },
  {
    name: "a missing path",
    body: action({ input: { method: "GET" } }),
    status: 400,
    code: "invalid_request",
    field: "input.path",
  },
  {
    name: "an unknown input field",
    body: action({ input: { method: "GET", path: "/x", verb: 1 } }),
    status: 400,
    code: "invalid_request",
    field: "input.verb",
  },
  {
    name: "a header with a line break",
    body: action({ input: { method: "GET", path: "/x", headers: { "x-a": "1\r\nx-b: 2" } } }),
    status: 400,
    code: "invalid_request",
    field: "input.headers.x-a",
  },
  {
    // HTTP cannot carry it: accepted, it would be approved and then fail when run.
    name: "a header value outside what HTTP carries (beyond Latin-1)",
    body: action({ input: { method: "GET", path: "/x", headers: { "x-note": "refund €20" } } }),
    status: 400,
    code: "invalid_request",
    field: "input.headers.x-note",
  },
  {
    name: "a header value with a control character",
    body: action({ input: { method: "GET", path: "/x", headers: { "x-note": "a\u0001b" } } }),
    status: 400,
    code: "invalid_request",
    field: "input.headers.x-note",
  },
  {
    name: "one header twice, in two cases",
    body: action({
      input: { method: "GET", path: "/x", headers: { "X-Acct": "alice", "x-acct": "mallory" } },
    }),
    status: 400,
    code: "invalid_request",
    field: "input.headers.x-acct",
  },
  {
    name: "input nested too deep",
    body: action({ input: JSON.parse(`${"[".repeat(40)}${"]".repeat(40)}`) }),
    status: 400,
    code: "invalid_request",
    field: "input",
  },
  {
    name: "a number too large to represent",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"POST","path":"/x","body":{"n":1e400}}}',
    status: 400,
    code: "invalid_request",
    field: "input.body.n",
  },
  {
    name: "an integer beyond 2^53",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"POST","path":"/x","body":{"id":12345678901234567891}}}',
    status: 400,
    code: "invalid_request",
    field: "input.body.id",
  },
  {
    name: "a huge number in the context",
    raw: '{"connection":"billing-api","operation":"request","input":{"method":"GET","path":"/x"},"context":{"x":1e999}}',
    status: 400,
    code: "invalid_request",
    field: "context.x",
  },
  {
    name: "a lone surrogate in the justification",
    body: action({ justification: "ok \ud800 then" }),
    status: 400,
    code: "invalid_request",
    field: "justification",
  },
  {
    name: "a NUL character in the justification",
    body: action({ justification: "fine\u0000then" }),
    status: 400,
    code: "invalid_request",
    field: "justification",
  },
  {
    name: "a lone surrogate in the input",
    body: action({ input: { method: "GET", path: "/x", query: { q: "\udc00" } } }),
    status: 400,
    code: "invalid_request",
    field: "input.query.q",
  },
  {
    name: "a justification too long",
    body: action({ justification: "x".repeat(4001) }),
    status: 413,
    code: "payload_too_large",
    field: "body",
  },
  {
    name: "an idempotency key with spaces",
    body: action({ idempotencyKey: "a b" }),
    status: 400,
    code: "invalid_request",
    field: "idempotencyKey",
  },
  {
    name: "a context that is not an object",
    body: action({ context: "ticket 1" }),
    status: 400,
    code: "invalid_request",
    field: "context",
  },
  {
    name: "a wait that is not a number",
    path: "/v1/actions?wait=soon",
    body: action({}),
    status: 400,
    code: "invalid_request",
    field: "wait",
  },
  {
    name: "a wait over the maximum",
    path: "/v1/actions?wait=31",
    body: action({}),
    status: 400,
    code: "invalid_request",
    field: "wait",
  },
  {
    name: "an unknown query parameter",
    path: "/v1/actions?debug=1",
    body: action({}),
    status: 400,
    code: "invalid_request",
    field: "debug",
  },
  {
    name: "a vote that is neither approve nor deny",
    path: "/v1/requests/PENDING/reviews",
    as: "bob",
    body: { decision: "maybe" },
    status: 400,
    code: "invalid_request",
    field: "decision",
  },
  {
    name: "a vote with a comment too long",
    path: "/v1/requests/PENDING/reviews",
    as: "bob",
    body: { decision: "approve", comment: "x".repeat(2001) },
    status: 400,
    code: "invalid_request",
    field: "comment",
  },
  {
    name: "a vote with a NUL character in its comment",
    path: "/v1/requests/PENDING/reviews",
    as: "bob",
    body: { decision: "approve", comment: "ok\u0000" },
    status: 400,
    code: "invalid_request",
    field: "comment",
  },
  {
    name: "a vote with a lone surrogate in its comment",
    path: "/v1/requests/PENDING/reviews",
    as: "bob",
    body: { decision: "deny", comment: "no \udc00" },
    status: 400,
    code: "invalid_request",
    field: "comment",
  },
  {
    name: "a vote on an unknown request",
    path: "/v1/requests/req_nope/reviews",
    as: "bob",
    body: { decision: "approve" },
    status: 404,
    code: "not_found",
  },
  {
    name: "an unknown status filter",
    method: "GET",
    path: "/v1/requests?status=waiting",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "status",
  },
  {
    name: "a limit out of range",
    method: "GET",
    path: "/v1/requests?limit=0",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "limit",
  },
  {
    name: "an agent's list over its limit",
    method: "GET",
    path: "/v1/actions?limit=201",
    status: 400,
    code: "invalid_request",
    field: "limit",
  },
  {
    name: "an agent's list paged from something that is not an id",
    method: "GET",
    path: "/v1/actions?before=req%20x",
    status: 400,
    code: "invalid_request",
    field: "before",
  },
  {
    name: "an agent's list filtered by agent, which is always its own",
    method: "GET",
    path: "/v1/actions?agent=ops-bot",
    status: 400,
    code: "invalid_request",
    field: "agent",
  },
  {
    name: "an audit since that is not a time",
    method: "GET",
    path: "/v1/audit?since=yesterday",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "since",
  },
  {
    // Read in the server's own time zone, it would mean different times on different servers.
    name: "an audit since with a time but no offset",
    method: "GET",
    path: "/v1/audit?since=2026-01-01T03:00",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "since",
  },
  {
    // +010000-… sorts before 2026-… as stored text: it would select everything.
    name: "an audit since past the year 9999",
    method: "GET",
    path: "/v1/audit?since=%2B010000-01-01T00:00:00Z",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "since",
  },
  {
    // The same year reached through an offset: 9999-12-31T20:00-05:00 is +010000-01-01T01:00Z.
    name: "an audit since whose offset takes it past the year 9999",
    method: "GET",
    path: "/v1/audit?since=9999-12-31T20:00:00-05:00",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "since",
  },
  // A NUL reached PostgreSQL, which refused it as store_unavailable (503).
  {
    name: "a NUL in a request id",
    method: "GET",
    path: "/v1/actions/req_%00",
    status: 400,
    code: "invalid_request",
    field: "id",
  },
  {
    name: "a NUL in a reviewer's request id",
    method: "POST",
    path: "/v1/requests/%00/reviews",
    as: "bob",
    body: { decision: "approve" },
    status: 400,
    code: "invalid_request",
    field: "id",
  },
  {
    name: "a NUL in a list filter",
    method: "GET",
    path: "/v1/requests?status=all&agent=%00",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "agent",
  },
  {
    name: "a NUL in an audit filter",
    method: "GET",
    path: "/v1/audit?type=%00",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "type",
  },
  {
    name: "an audit request id of the wrong shape",
    method: "GET",
    path: "/v1/audit?requestId=req%201",
    as: "bob",
    status: 400,
    code: "invalid_request",
    field: "requestId",
  },
  { name: "an unknown route", method: "GET", path: "/v1/nope", status: 404, code: "not_found" },
];

describe("each bad input gets its code and field, and changes nothing", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const before = await snapshot();
      const token = c.as === "bob" ? bob : agent;
      const path = (c.path ?? "/v1/actions").replace("PENDING", pendingId);
      const res = await api(gw.url, c.method ?? "POST", path, {
        token,
        ...(c.raw !== undefined
          ? { rawBody: c.raw, contentType: c.contentType ?? "application/json" }
          : {}),
        ...(c.body !== undefined ? { body: c.body } : {}),
      });
      expect(res.status).toBe(c.status);
      expect(res.body.error.code).toBe(c.code);
      if (c.field) expect(res.body.error.field).toBe(c.field);
      expect(typeof res.body.error.message).toBe("string");
      expect(res.body.error.message.length).toBeGreaterThan(5);
      expect(await snapshot()).toEqual(before);
    });
  }

  it("says where malformed JSON breaks, and why a prototype key is refused", async () => {
    const broken = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      rawBody: '{"connection": "billing-api", "operation": }',
    });
    expect(broken.body.error.message).toMatch(
      /^body: is not valid JSON \(Unexpected token .}., .*": }/,
    );
    const proto = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      rawBody: '{"connection":"billing-api","operation":"request","input":{"__proto__":{}}}',
    });
    expect(proto.body.error.message).toContain("keys named __proto__");
  });

  it("answers URLs the router cannot read in the contract's shape", async () => {
    for (const path of ["/v1/actions/%ZZ", "/v1/actions/%ED%A0%80"]) {
      const before = await snapshot();
      const res = await api(gw.url, "GET", path, { token: agent });
      expect(res.status, path).toBe(400);
      expect(res.body.error.code, path).toBe("invalid_request");
      expect(res.body.error.message, path).toContain("percent-escape");
      expect(await snapshot()).toEqual(before);
    }
    // Longer than any id, and answered alike whether the console is built or not: its pages
    // are not a route that would take this URL.
    const long = await api(gw.url, "GET", `/v1/actions/req_${"a".repeat(120)}`, { token: agent });
    expect(long.status).toBe(400);
    expect(long.body.error.code).toBe("invalid_request");
    expect(long.body.error.message).toContain("longer than 100 characters");
  });

  it("answers malformed HTTP in the contract's shape", async () => {
    const { hostname, port } = new URL(gw.url);
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname, () => socket.write(text));
        let answer = "";
        socket.on("data", (chunk) => {
          answer += chunk;
        });
        socket.on("close", () => resolve(answer));
        socket.on("error", reject);
      });
    const smuggled = await raw(
      "POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    expect(smuggled).toMatch(/^HTTP\/1.1 400 /);
    expect(JSON.parse(smuggled.slice(smuggled.indexOf("\r\n\r\n") + 4)).error.code).toBe(
      "invalid_request",
    );
    // Headers and one byte of a promised hundred, then nothing: answered, and closed.
    const before = await snapshot();
    const started = Date.now();
    const stalled = await raw(
      `POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agent}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
    );
    expect(stalled).toMatch(/^HTTP\/1.1 408 /);
    expect(stalled).toContain("server.requestTimeout");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await snapshot()).toEqual(before);
    // A long-poll waits after its request is in: the limit does not cut it short.
    const polled = Date.now();
    const poll = await api(gw.url, "GET", `/v1/actions/${pendingId}?wait=1`, { token: agent });
    expect(poll.status).toBe(200);
    expect(Date.now() - polled).toBeGreaterThanOrEqual(900);
    const badLength = await raw("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
    expect(badLength).toMatch(/^HTTP\/1.1 400 /);
    expect(badLength).toContain('"code":"invalid_request"');
    // Headers past what Node reads (16 KiB), however they got there: thousands of query parameters.
    const crowded = await raw(
      `GET /v1/requests?${"a=1&".repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    expect(crowded).toMatch(/^HTTP\/1.1 431 /);
    expect(crowded).toContain('"code":"payload_too_large"');
  });

  it("refuses a context nested far too deep with its field, not a crash", async () => {
    // Deeper than JSON.stringify can recurse, within the default body size.
    const wide = await startGateway(testConfig(upstream.url));
    try {
      const token = await wide.token("agent", "support-bot");
      const depth = 50_000;
      const raw = `{"connection":"billing-api","operation":"request","input":{"method":"GET","path":"/x"},"context":{"a":${"[".repeat(depth)}${"]".repeat(depth)}}}`;
      const res = await api(wide.url, "POST", "/v1/actions", { token, rawBody: raw });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", field: "context" });
      expect(res.body.error.message).toContain("nests deeper than 32 levels");
      expect((await api(wide.url, "GET", "/healthz")).status).toBe(200);
    } finally {
      await wide.close();
      removeDir(wide.dir);
    }
  });

  it("keeps serving after all of that", async () => {
    const health = await api(gw.url, "GET", "/healthz");
    expect(health.body).toEqual({ status: "ok" });
    const ok = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
    expect(ok.body.status).toBe("succeeded");
    const view = await api(gw.url, "GET", `/v1/requests/${pendingId}`, { token: bob });
    expect(view.body.reviews).toEqual([]);
  });
});
