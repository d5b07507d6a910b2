/** The http connector against a real server on loopback. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Json } from "../../common/canonical-json.js";
import { MAX_JSON_DEPTH } from "../../common/json-depth.js";
import { AirlockError } from "../../errors.js";
import { MASKED, scrubHidden } from "../../masking/input-mask.js";
import { httpConnectionSchema } from "./http-config.js";
import { createHttpConnector } from "./http-connector.js";

// Assembled at run time so that secret scanners do not flag this file.
const GITHUB_TOKEN = `ghp_${"a1B2c3D4e5".repeat(3)}f6G7h8`;
const CARD = "4929837150216347";

let server: Server;
let base: string;
const seen: { url: string; headers: Record<string, unknown>; body: string }[] = [];

beforeAll(async () => {
  server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    seen.push({ url: req.url ?? "", headers: req.headers, body });
    if (req.url?.startsWith("/base/slow")) return; // never answers
    if (req.url?.startsWith("/base/big")) {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("y".repeat(5000));
      return;
    }
    if (req.url?.startsWith("/base/values")) {
      // A token and a card after `y` bytes, then `z` bytes more: cuts fall where tests say.
      const query = new URL(req.url, "http://x").searchParams;
      res.writeHead(200, { "content-type": query.get("type") ?? "text/plain" });
      res.end(
        `${"y".repeat(Number(query.get("y")))} ${GITHUB_TOKEN} ${CARD} ${"z".repeat(Number(query.get("z")))}`,
      );
      return;
    }
    if (req.url?.startsWith("/base/reflect")) {
      // The header as it came off the wire, byte for byte.
      const at = req.rawHeaders.findIndex((name) => name.toLowerCase() === "authorization");
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(Buffer.from(`you sent ${req.rawHeaders[at + 1]}`, "latin1"));
      return;
    }
    if (req.url?.startsWith("/base/deep")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(nested(Number(new URL(req.url, "http://x").searchParams.get("n"))));
      return;
    }
    if (req.url?.startsWith("/base/snowflake")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id":9007199254740993,"amount":12.5}');
      return;
    }
    if (req.url?.startsWith("/base/float")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ratio":1.5e300,"bytes":2e21,"count":3}');
      return;
    }
    if (req.url?.startsWith("/base/order")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id":12501,"amount":250,"note":"paid 250"}');
      return;
    }
    if (req.url?.startsWith("/base/bin")) {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(Buffer.from([0xff, 0xfe, 0x00, 0x01]));
      return;
    }
    res.writeHead(req.url?.startsWith("/base/missing") ? 404 : 200, {
      "content-type": "application/json",
      "set-cookie": "sid=1",
      "keep-alive": "timeout=5",
      "x-kept": "yes",
    });
    res.end(JSON.stringify({ url: req.url, method: req.method }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** JSON nested `n` deep, with brackets and an escaped quote in its one string. */
function nested(n: number): string {
  return `${"[".repeat(n - 1)}{"a":"[\\"{"}${"]".repeat(n - 1)}`;
}

function connector(extra: Record<string, unknown> = {}) {
  return createHttpConnector(
    "api",
    httpConnectionSchema.parse({
      type: "http",
      baseUrl: `${base}/base`,
      headers: { Authorization: "Bearer conn-secret" },
      ...extra,
    }),
  );
}

const never = new AbortController().signal;

describe("parse", () => {
  it("normalises the method and refuses unknown operations and the connection's own headers", () => {
    const c = connector();
    expect(c.parse("request", { method: "get", path: "/x" })).toEqual({
      method: "GET",
      path: "/x",
    });
    expect(() => c.parse("query", { method: "GET", path: "/x" })).toThrow(AirlockError);
    try {
      c.parse("request", { method: "GET", path: "/x", headers: { authorization: "mine" } });
      expect.unreachable();
    } catch (error) {
      expect((error as AirlockError).field).toBe("input.headers.authorization");
    }
  });

  it("refuses the proxy headers an upstream behind Airlock may trust as Airlock's word", () => {
    const c = connector();
    for (const header of ["X-Forwarded-For", "forwarded", "x-forwarded-host", "X-Real-IP"]) {
      try {
        c.parse("request", { method: "GET", path: "/x", headers: { [header]: "10.0.0.1" } });
        expect.unreachable(header);
      } catch (error) {
        expect(error).toMatchObject({ code: "invalid_request", field: `input.headers.${header}` });
        expect((error as Error).message).toMatch(/proxy header/);
      }
    }
  });

  it("reads a body for _method as the upstream does: under the connection's content type, as the text sent", () => {
    const form = "application/x-www-form-urlencoded";
    // The connection's content type wins over the agent's, so the body is sent as a form.
    const formConnection = connector({ headers: { "Content-Type": form } });
    // A JSON body is sent as its text, which a form reading splits at its & and =.
    const asForm = connector();
    for (const [c, input] of [
      [formConnection, { method: "POST", path: "/x", body: "invoice=1&_method=DELETE" }],
      [formConnection, { method: "POST", path: "/x", body: { note: "&_method=DELETE&" } }],
      [
        asForm,
        {
          method: "POST",
          path: "/x",
          headers: { "content-type": form },
          body: { "a&_method=DELETE&b": 1 },
        },
      ],
    ] as const) {
      try {
        c.parse("request", input);
        expect.unreachable(JSON.stringify(input));
      } catch (error) {
        expect(error).toMatchObject({ code: "invalid_request", field: "input.body" });
      }
    }
  });

  it("refuses a reserved or connection header spelt with _, which CGI servers read as -", () => {
    const c = connector({ headers: { "X-Api-Key": "k" } });
    for (const [headers, field, message] of [
      [{ x_http_method_override: "POST" }, "x_http_method_override", /change the method or path/],
      [{ X_Original_URL: "/refunds" }, "X_Original_URL", /read as x-original-url/],
      [{ transfer_encoding: "chunked" }, "transfer_encoding", /transport header/],
      [{ x_api_key: "mine" }, "x_api_key", /set by Airlock/],
      [{ "x-trace": "1", x_trace: "2" }, "x_trace", /given twice/],
    ] as const) {
      try {
        c.parse("request", { method: "GET", path: "/x", headers });
        expect.unreachable(field);
      } catch (error) {
        expect(error).toMatchObject({ code: "invalid_request", field: `input.headers.${field}` });
        expect((error as Error).message).toMatch(message);
      }
    }
    expect(c.parse("request", { method: "GET", path: "/x", headers: { x_trace: "1" } })).toEqual({
      method: "GET",
      path: "/x",
      headers: { x_trace: "1" },
    });
  });

  it("refuses a body on GET and HEAD, which is never sent, rather than show it to reviewers", () => {
    const c = connector();
    for (const method of ["GET", "head"]) {
      try {
        c.parse("request", { method, path: "/x", body: { refund: 100 } });
        expect.unreachable();
      } catch (error) {
        expect(error).toMatchObject({ code: "invalid_request", field: "input.body" });
        expect((error as Error).message).toContain("input.query");
      }
    }
    expect(c.parse("request", { method: "POST", path: "/x", body: { refund: 100 } })).toEqual({
      method: "POST",
      path: "/x",
      body: { refund: 100 },
    });
  });
});

describe("config", () => {
  it("refuses a header value HTTP cannot carry, such as a secret file's extra line break", () => {
    const parsed = httpConnectionSchema.safeParse({
      type: "http",
      baseUrl: base,
      headers: { authorization: "Bearer from-a-file\n" },
    });
    expect(parsed.error?.issues[0]?.path).toEqual(["headers", "authorization"]);
    expect(parsed.error?.issues[0]?.message).toContain("line break");
    expect(parsed.error?.issues[0]?.message).not.toContain("from-a-file");
    const latin1 = httpConnectionSchema.safeParse({
      type: "http",
      baseUrl: base,
      headers: { "x-team": "équipe\tA" },
    });
    expect(latin1.success).toBe(true);
  });
});

describe("describe", () => {
  it("previews the call and gives facts and a risk hint by method", async () => {
    const c = connector();
    const read = await c.describe(
      "request",
      c.parse("request", { method: "GET", path: "/invoices", query: { page: "2" } }),
    );
    expect(read.preview).toBe("GET api/base/invoices?page=2");
    expect(read.facts).toEqual({ http: { method: "GET", path: "/invoices" } });
    expect(read.risk.level).toBe("low");
    const del = await c.describe(
      "request",
      c.parse("request", { method: "DELETE", path: "/invoices/1" }),
    );
    expect(del.risk.level).toBe("high");
    const post = await c.describe(
      "request",
      c.parse("request", { method: "POST", path: "/x", body: { a: 1 } }),
    );
    expect(post.risk.level).toBe("medium");
    expect(post.preview).toContain('"a": 1');
  });

  it("leaves out a base path that is part of a secret (a base URL from ${env:})", async () => {
    const url = `${base}/hooks/hook-secret-path-4e1b`;
    const c = createHttpConnector(
      "hooks",
      httpConnectionSchema.parse({ type: "http", baseUrl: url }),
      [url],
    );
    const described = await c.describe(
      "request",
      c.parse("request", { method: "POST", path: "/x" }),
    );
    expect(described.preview).toBe("POST hooks/x");
    // Nor does an upstream that echoes the path it was called on give it away.
    const echoed = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/x" }),
      never,
    );
    expect(echoed.result).toMatchObject({ body: { url: "[redacted]/x" } });
    expect(c.secrets).toContain("/hooks/hook-secret-path-4e1b");
    await c.close();
    // A base path that is no secret's stays in view.
    const plain = createHttpConnector(
      "hooks",
      httpConnectionSchema.parse({ type: "http", baseUrl: url }),
      ["an-unrelated-secret"],
    );
    expect(plain.preview("request", { method: "POST", path: "/x" })).toBe(
      "POST hooks/hooks/hook-secret-path-4e1b/x",
    );
    expect(plain.secrets).toEqual([]);
    await plain.close();
  });
});

describe("execute", () => {
  it("calls under the base path with the connection's header last, and hides hop-by-hop headers and cookies", async () => {
    const c = connector();
    const out = await c.execute(
      "request",
      c.parse("request", {
        method: "POST",
        path: "/items",
        query: { q: ["a b", "c"] },
        headers: { "x-agent": "1" },
        body: { n: 1 },
      }),
      never,
    );
    const call = seen.at(-1)!;
    expect(call.url).toBe("/base/items?q=a+b&q=c");
    expect(call.headers.authorization).toBe("Bearer conn-secret");
    expect(call.headers["x-agent"]).toBe("1");
    expect(call.headers["content-type"]).toBe("application/json");
    expect(call.body).toBe('{"n":1}');
    expect(out.ok).toBe(true);
    const result = out.result as { status: number; headers: Record<string, string>; body: unknown };
    expect(result.status).toBe(200);
    expect(result.body).toEqual({ url: "/base/items?q=a+b&q=c", method: "POST" });
    expect(result.headers["x-kept"]).toBe("yes");
    expect(result.headers["set-cookie"]).toBeUndefined();
    expect(result.headers["keep-alive"]).toBeUndefined();
    expect(c.secrets).toContain("Bearer conn-secret");
    await c.close();
  });

  it("fails with the status when the upstream answers an error", async () => {
    const c = connector();
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/missing" }),
      never,
    );
    expect(out.ok).toBe(false);
    expect(out.reason).toBe("the upstream answered HTTP 404");
    await c.close();
  });

  it("fails with a clear reason when the upstream does not answer in time", async () => {
    const c = connector({ timeout: "300ms" });
    const started = Date.now();
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/slow" }),
      never,
    );
    expect(out.ok).toBe(false);
    expect(out.reason).toBe(
      "the upstream did not answer within 300 ms; the upstream may have acted on the request",
    );
    expect(Date.now() - started).toBeLessThan(5000);
    await c.close();
  });

  it("fails with a clear reason when the upstream cannot be reached", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const c = createHttpConnector(
      "down",
      httpConnectionSchema.parse({ type: "http", baseUrl: `http://127.0.0.1:${port}` }),
    );
    const out = await c.execute("request", c.parse("request", { method: "GET", path: "/" }), never);
    expect(out.ok).toBe(false);
    expect(out.reason).toBe(
      "the upstream could not be reached: connection refused; the request was not sent",
    );
    await c.close();
  });

  it("says the upstream may have acted when the connection breaks after the request went out", async () => {
    const server = createServer((request) => {
      // It read the request (and may have acted on it), then the connection broke.
      request.resume();
      request.on("end", () => request.socket.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const c = createHttpConnector(
      "flaky",
      httpConnectionSchema.parse({
        type: "http",
        baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      }),
    );
    try {
      const out = await c.execute(
        "request",
        c.parse("request", { method: "POST", path: "/refunds", body: { amount: 5 } }),
        never,
      );
      expect(out.ok).toBe(false);
      expect(out.reason).toMatch(
        /^the connection to the upstream failed: .+; the upstream may have acted on the request$/,
      );
    } finally {
      await c.close();
      await new Promise((r) => server.close(r));
    }
  });

  it("scrubs a credential reflected as the header's own bytes, Latin-1 letters and all", async () => {
    const c = connector({ headers: { authorization: "Basic s\u00e9cr\u00e8t-p\u00e4ss" } });
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/reflect" }),
      never,
    );
    expect(out.result).toMatchObject({ body: "you sent [redacted]" });
    await c.close();
  });

  it("passes JSON nested deeper than Airlock walks as text, so the result can still be scrubbed and stored", async () => {
    const c = connector();
    const get = async (n: number) =>
      (
        await c.execute(
          "request",
          c.parse("request", { method: "GET", path: "/deep", query: { n: String(n) } }),
          never,
        )
      ).result as { body: unknown };
    const deep = await get(10_000);
    expect(deep.body).toBe(nested(10_000));
    // What the gateway does with every result next: none of it may overflow the stack.
    expect(() => JSON.stringify(deep)).not.toThrow();
    // Brackets in strings do not count; nesting within the bound is parsed as before.
    expect(JSON.stringify((await get(MAX_JSON_DEPTH - 1)).body)).toBe(nested(MAX_JSON_DEPTH - 1));
    expect((await get(MAX_JSON_DEPTH)).body).toBe(nested(MAX_JSON_DEPTH));
    await c.close();
  });

  it("passes JSON with an integer beyond 2^53 as text, so the agent reads the id it was sent", async () => {
    const c = connector();
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/snowflake" }),
      never,
    );
    // Parsed, 9007199254740993 would become 9007199254740992: another record's id.
    expect((out.result as { body: unknown }).body).toBe('{"id":9007199254740993,"amount":12.5}');
    await c.close();
  });

  it("passes JSON with a large number written with an exponent as JSON: it is no integer sent", async () => {
    const c = connector();
    const input = c.parse("request", { method: "GET", path: "/float" });
    const out = await c.execute("request", input, never);
    expect((out.result as { body: unknown }).body).toEqual({
      ratio: 1.5e300,
      bytes: 2e21,
      count: 3,
    });
    await c.close();
  });

  it("keeps JSON read whole as JSON when a masked value's digits are in its numbers", async () => {
    const c = connector();
    const input = c.parse("request", { method: "GET", path: "/order" });
    const out = await c.execute("request", input, never, { hidden: ["250"], detectors: [] });
    // The bytes scrubbed of it would read {"id":1[masked]1,…}: no JSON. The executor hides it
    // in the parsed body, as a whole number or within text, and 12501 is another number.
    const body = (out.result as { body: Json }).body;
    expect(body).toEqual({ id: 12501, amount: 250, note: "paid 250" });
    expect(scrubHidden(body, ["250"])).toEqual({
      id: 12501,
      amount: MASKED,
      note: `paid ${MASKED}`,
    });
    await c.close();
  });

  it("cuts a body over the cap and says so, and passes binary as base64", async () => {
    const c = connector({ maxResponseBytes: 1024 });
    const big = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/big" }),
      never,
    );
    const result = big.result as { body: string; truncated: string };
    expect(result.body).toHaveLength(1024);
    expect(result.truncated).toBe("the body was cut at 1024 bytes");
    expect(big.summary).toBe("HTTP 200, 1024+ bytes");
    const bin = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/bin" }),
      never,
    );
    expect(bin.result).toMatchObject({ body: "//4AAQ==", encoding: "base64" });
    await c.close();
  });

  it("masks what the detectors find where it cuts a body, and cuts no value, hint or marker in two", async () => {
    const c = connector({ maxResponseBytes: 1024 });
    // What the body reads masked: its start, up to where a cut may fall.
    const full = `ghp_*** ${MASKED} `;
    const cuts = new Set<number>();
    for (const z of [10, 3000]) {
      for (let y = 1024 - GITHUB_TOKEN.length - 4; y <= 1024 + 2; y++) {
        const out = await c.execute(
          "request",
          c.parse("request", { method: "GET", path: "/values", query: { y: `${y}`, z: `${z}` } }),
          never,
          { hidden: [CARD], detectors: ["secret"] },
        );
        const result = out.result as { body: string; truncated?: string };
        // Read whole and short enough once scrubbed (or masked): not cut. What was short
        // enough as scrubbed is left to the detectors after, with the rest of the result.
        if (result.truncated === undefined) {
          expect(result.body.replace(GITHUB_TOKEN, "ghp_***")).toBe(
            `${"y".repeat(y)} ghp_*** ${MASKED} ${"z".repeat(z)}`,
          );
          continue;
        }
        expect(result.truncated).toBe("the body was cut at 1024 bytes");
        const shown = result.body.replace(/^y* ?/, "");
        expect(shown.length).toBeLessThan(full.length + 10);
        expect(`${full}${"z".repeat(10)}`.startsWith(shown), shown).toBe(true);
        // Never inside the hint or the marker.
        for (const piece of ["ghp_***", MASKED]) {
          const at = full.indexOf(piece);
          expect(shown.length > at && shown.length < at + piece.length, shown).toBe(false);
        }
        cuts.add(shown.length);
      }
    }
    // Cuts fell before, after and between both.
    expect([...cuts].some((n) => n === 0)).toBe(true);
    expect([...cuts].some((n) => n >= full.length)).toBe(true);
    await c.close();
  });

  it("leaves a body it does not cut to the detectors after, as it came", async () => {
    const c = connector();
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/values", query: { y: "3", z: "3" } }),
      never,
      { hidden: [], detectors: ["secret", "card"] },
    );
    expect((out.result as { body: string }).body).toBe(`yyy ${GITHUB_TOKEN} ${CARD} zzz`);
    await c.close();
  });

  it("cuts a body it read whole at the cap, however long a masked value is", async () => {
    const c = connector({ maxResponseBytes: 1024 });
    // Its longest form (\u00e9 escapes, percent-encoding) is 6,000 bytes: the 5,000 of the
    // body are read whole, and hold no value to leave a piece of at the cut.
    const out = await c.execute(
      "request",
      c.parse("request", { method: "GET", path: "/big" }),
      never,
      { hidden: ["é".repeat(1000)], detectors: [] },
    );
    const result = out.result as { body: string; truncated: string };
    expect(result.body).toBe("y".repeat(1024));
    expect(result.truncated).toBe("the body was cut at 1024 bytes");
    await c.close();
  });
});
