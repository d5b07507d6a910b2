/**
 * Invariants 5 and 9: credentials never leave Airlock, and masked input fields never reach
 * reviewers, the audit trail or the log. The upstream here echoes everything it receives,
 * credential included, so the gateway has to scrub it.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportAudit } from "../src/audit/audit-service.js";
import {
  type ApiResponse,
  api,
  onPostgres,
  read,
  refund,
  removeDir,
  SECRET,
  startGateway,
  type TestGateway,
  testConfig,
  testSchema,
  withGateway,
  withoutChanceDigits,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let agent: string;
// biome-ignore lint/suspicious/noExplicitAny: responses of every shape
const responses: ApiResponse<any>[] = [];
const CARD = "4000056655665556";
/** Sent inside a body given as JSON text, which the same mask must hide (with the text). */
const QUOTED_CARD = "5105105105105100";

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(testConfig(upstream.url));
  agent = await gw.token("agent", "support-bot");
  const bob = await gw.token("reviewer", "bob@example.com");
  const carol = await gw.token("reviewer", "carol@example.com");
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await api(gw.url, method, path, { token, ...(body === undefined ? {} : { body }) });
    responses.push(res);
    return res;
  };
  // An allowed call whose upstream reflects the credential in its body and headers.
  const echoed = await call("POST", "/v1/actions", agent, read("/echo"));
  expect(echoed.body.status).toBe("succeeded");
  // A reviewed call, with a masked card number, echoed too.
  const held = await call("POST", "/v1/actions", agent, {
    ...refund(),
    input: { method: "POST", path: "/refunds/echo", body: { amount: 5, card_number: CARD } },
  });
  await call("GET", `/v1/requests/${held.body.id}`, bob);
  const quoted = await call("POST", "/v1/actions", agent, {
    ...refund(),
    input: {
      method: "POST",
      path: "/refunds/echo",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ amount: 6, card_number: QUOTED_CARD }),
    },
  });
  await call("GET", `/v1/requests/${quoted.body.id}`, bob);
  await call("POST", `/v1/requests/${quoted.body.id}/reviews`, bob, { decision: "approve" });
  await call("POST", `/v1/requests/${quoted.body.id}/reviews`, carol, { decision: "approve" });
  await call("GET", `/v1/actions/${quoted.body.id}?wait=5`, agent);
  await call("GET", "/v1/requests?status=all", bob);
  await call("POST", `/v1/requests/${held.body.id}/reviews`, bob, { decision: "approve" });
  await call("POST", `/v1/requests/${held.body.id}/reviews`, carol, { decision: "approve" });
  await call("GET", `/v1/actions/${held.body.id}?wait=5`, agent);
  await call("GET", `/v1/requests/${held.body.id}`, bob);
  // Rules that name no masks of their own (a catch-all deny, a review for PUTs): the card
  // number a refund rule masks stays masked, in the refusal, the views and the audit trail.
  const denied = await call("POST", "/v1/actions", agent, {
    ...read(),
    input: { method: "DELETE", path: "/cards", body: { card_number: CARD } },
  });
  expect(denied.status).toBe(403);
  const put = await call("POST", "/v1/actions", agent, {
    ...read(),
    input: { method: "PUT", path: "/cards", body: { card_number: CARD } },
  });
  expect(put.status).toBe(202);
  await call("GET", `/v1/requests/${put.body.id}`, bob);
  await call("GET", "/v1/requests?status=denied", bob);
  // Failures carry messages: they must not carry the credential either.
  await call("POST", "/v1/actions", agent, read("/fail"));
  await call("POST", "/v1/actions", agent, {
    ...read(),
    input: { method: "GET", path: "/x", headers: { authorization: SECRET } },
  });
  await call("GET", "/v1/audit?limit=1000", bob);
  await call("GET", "/metrics", bob);
  await call("GET", "/openapi.json", bob);
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

it("sends the credential upstream, so the scrubbing below is not vacuous", () => {
  const echo = upstream.calls.find((c) => c.url === "/api/echo")!;
  expect(echo.headers.authorization).toBe(`Bearer ${SECRET}`);
  const reflected = responses.find((r) => r.body?.result?.body?.headers)!;
  expect(reflected.body.result.body.headers.authorization).toBe("[redacted]");
  expect(reflected.body.result.headers["x-seen-auth"]).toBe("[redacted]");
});

it("never puts the credential in a response body or header", () => {
  expect(responses.length).toBeGreaterThan(10);
  for (const response of responses) {
    expect(response.text).not.toContain(SECRET);
    for (const [name, value] of response.headers) expect(`${name}: ${value}`).not.toContain(SECRET);
  }
});

it("never puts the credential or a masked card number in the log", () => {
  const log = gw.logs.join("");
  expect(log.length).toBeGreaterThan(1000);
  expect(log).toContain("execution finished");
  expect(log).not.toContain(SECRET);
  expect(log).not.toContain(CARD);
  expect(log).not.toContain(QUOTED_CARD);
});

it("never puts the credential or a masked card number in an audit event or export", async () => {
  const events = await gw.gateway.store.listAudit({ limit: 10_000 });
  expect(events.length).toBeGreaterThan(10);
  const all = JSON.stringify(events);
  expect(all).not.toContain(SECRET);
  expect(all).not.toContain(CARD);
  expect(all).not.toContain(QUOTED_CARD);
  expect(all).toContain("[masked]");
  for (const format of ["jsonl", "csv"] as const) {
    let text = "";
    for await (const line of exportAudit(gw.gateway.store, format)) text += line;
    expect(text.split("\n").length).toBeGreaterThan(events.length);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(CARD);
    expect(text).not.toContain(QUOTED_CARD);
  }
});

it("keeps masked fields from reviewers, even when the upstream echoes them, while the connector got the real value", () => {
  const refundCall = upstream.calls.find(
    (c) => c.url === "/api/refunds/echo" && c.body.toString().includes(CARD),
  )!;
  expect(JSON.parse(refundCall.body.toString()).card_number).toBe(CARD);
  const reviewerViews = responses.filter((r) => r.body?.preview !== undefined);
  expect(reviewerViews.length).toBeGreaterThan(0);
  for (const view of reviewerViews) {
    expect(view.text).not.toContain(CARD);
    expect(view.text).not.toContain(QUOTED_CARD);
  }
  // The body given as JSON text went upstream exactly as sent, its card number included.
  const quotedCall = upstream.calls.find((c) => c.body.toString().includes(QUOTED_CARD))!;
  expect(quotedCall.body.toString()).toBe(JSON.stringify({ amount: 6, card_number: QUOTED_CARD }));
});

describe("a reflecting upstream cannot be used to pull the credential out in pieces", () => {
  const windows = (secret: string, size: number) =>
    Array.from({ length: secret.length - size + 1 }, (_, i) => secret.slice(i, i + size));
  // biome-ignore lint/suspicious/noExplicitAny: responses of every shape
  const shown = (res: ApiResponse<any>) => {
    const body = res.body?.result?.body;
    const text = typeof body === "string" ? body : JSON.stringify(body ?? "");
    return res.body?.result?.encoding === "base64"
      ? Buffer.from(text, "base64").toString("latin1")
      : text;
  };

  it("refuses an agent's own accept-encoding, range and method-override headers", async () => {
    for (const header of ["Accept-Encoding", "range", "X-HTTP-Method-Override", "x-original-url"]) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          ...read("/echo"),
          input: { method: "GET", path: "/echo", headers: { [header]: "gzip" } },
        },
      });
      expect(res.status, header).toBe(400);
      expect(res.body.error.field).toBe(`input.headers.${header}`);
    }
  });

  it("scrubs a body the upstream compressed anyway", async () => {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: read("/echo-gzip"),
    });
    expect(res.body.status).toBe("succeeded");
    expect(res.body.result.body.headers["accept-encoding"]).toBe("identity");
    expect(res.body.result.body.headers.authorization).toBe("[redacted]");
    expect(res.text).not.toContain(SECRET.slice(0, 8));
  });

  it("does not tell an agent, a guessed byte at a time, how the credential starts", async () => {
    const small = await startGateway(
      testConfig(upstream.url).replace("timeout: 2s", "timeout: 2s\n    maxResponseBytes: 1024"),
    );
    try {
      const token = await small.token("agent", "support-bot");
      // The reflected query, cut at the cap: GET is allowed, so every guess costs nothing.
      const echo = async (q: string) => {
        const res = await api(small.url, "POST", "/v1/actions", {
          token,
          body: { ...read("/echo"), input: { method: "GET", path: "/echo", query: { q } } },
        });
        expect(res.body.status).toBe("succeeded");
        return shown(res);
      };
      const start = (await echo("z".repeat(2000))).indexOf("zzzz");
      expect(start).toBeGreaterThan(0);
      // Each guess sits at the very end of what is shown; a right one must look like a wrong one.
      const answers = new Set<string>();
      for (const c of "abcdefghijklmnopqrstuvwxy0123456789") {
        const text = await echo("z".repeat(1024 - start - 1) + c);
        // The guess itself may show; what else shows must not depend on it.
        answers.add(text.endsWith(c) ? `${text.slice(0, -1)}?` : text);
      }
      expect(SECRET.startsWith("s")).toBe(true);
      expect(answers.size).toBe(1);
    } finally {
      await small.close();
      removeDir(small.dir);
    }
  });

  it("leaves no piece of the credential at a cut, however the agent shifts it", async () => {
    const small = await startGateway(
      testConfig(upstream.url).replace("timeout: 2s", "timeout: 2s\n    maxResponseBytes: 1024"),
    );
    try {
      const token = await small.token("agent", "support-bot");
      const probe = await api(small.url, "POST", "/v1/actions", { token, body: read("/echo") });
      const at = JSON.stringify(probe.body.result.body).indexOf("[redacted]");
      expect(at).toBeGreaterThan(0);
      const seen: string[] = [];
      for (let shift = 0; shift <= 60; shift++) {
        const pad = Math.max(0, 1024 - at - shift);
        const res = await api(small.url, "POST", "/v1/actions", {
          token,
          body: {
            ...read("/echo"),
            input: { method: "GET", path: "/echo", headers: { "x-pad": "a".repeat(pad) } },
          },
        });
        seen.push(shown(res));
      }
      for (const path of ["/echo-text"]) {
        const res = await api(small.url, "POST", "/v1/actions", { token, body: read(path) });
        seen.push(shown(res));
      }
      const all = seen.join("\n");
      // Pieces with a digit in them: the plain words of the test secret occur in ordinary headers.
      const pieces = windows(SECRET, 5).filter((piece) => /\d/.test(piece));
      expect(pieces.length).toBeGreaterThan(10);
      for (const piece of pieces) expect(all).not.toContain(piece);
      expect(all).toContain("[redacted]");
    } finally {
      await small.close();
      removeDir(small.dir);
    }
  });
});

it("hides masked values of any length from previews, and from errors that quote the input", async () => {
  const extra = `  - name: pins
    when: http.method == "PATCH" && http.path == "/pins"
    decision: review
    mask: { input: [body.pin, body.vip] }
  - name: lookups
    when: http.method == "PATCH" && action.input.body[action.input.body.card] == 1
    decision: allow
    mask: { input: [body.card] }`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const bob = await own.token("reviewer", "bob@example.com");
    const pins = await api(own.url, "POST", "/v1/actions", {
      token,
      body: {
        ...read(),
        input: { method: "PATCH", path: "/pins", body: { pin: "42", vip: true, note: "n" } },
      },
    });
    const view = await api(own.url, "GET", `/v1/requests/${pins.body.id}`, { token: bob });
    expect(view.body.preview).toContain('"pin": "[masked]"');
    expect(view.body.preview).toContain('"vip": "[masked]"');
    expect(view.body.preview).toContain('"note": "n"');

    const lookup = await api(own.url, "POST", "/v1/actions", {
      token,
      body: {
        ...read(),
        input: { method: "PATCH", path: "/other", body: { card: "4111111111111111" } },
      },
    });
    expect(lookup.status).toBe(403);
    const denied = await api(own.url, "GET", "/v1/requests?status=denied", { token: bob });
    const record = denied.body.requests.find((r: { id: string }) => r.id === lookup.body.action.id);
    expect(record.decision.error).toContain("[masked]");
    const everything = [
      denied.text,
      JSON.stringify(await own.gateway.store.listAudit({ limit: 1000 })),
      own.logs.join(""),
    ].join("\n");
    expect(everything).toContain("could not be evaluated");
    expect(everything).not.toContain("4111111111111111");
  });
});

it("hides a masked header however the agent capitalises it, and masked values the agent repeats", async () => {
  const KEY = "k3y-0f-the-customer-9d8e7f";
  const extra = `  - name: keyed calls
    when: http.method == "PATCH" && http.path.startsWith("/keyed")
    decision: review
    mask: { input: [headers.x-api-key, body.card] }`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const bob = await own.token("reviewer", "bob@example.com");
    const held = await api(own.url, "POST", "/v1/actions", {
      token,
      body: {
        ...read(),
        input: {
          method: "PATCH",
          path: "/keyed/echo",
          headers: { "X-Api-Key": KEY },
          // Repeated in fields no rule masks, where the preview and the input show them.
          query: { ref: `card ${CARD}` },
          body: { card: CARD, note: `for key ${KEY}` },
        },
        justification: `Card ${CARD}, key ${KEY}`,
        context: { note: `card ${CARD}`, [`key ${KEY}`]: true },
      },
    });
    expect(held.status).toBe(202);
    // One spelling: the rule's mask names the header the upstream will receive.
    expect(held.body.input.headers).toEqual({ "x-api-key": "[masked]" });
    const view = await api(own.url, "GET", `/v1/requests/${held.body.id}`, { token: bob });
    expect(view.body.justification).toBe("Card [masked], key [masked]");
    expect(view.body.context).toEqual({ note: "card [masked]", "key [masked]": true });
    expect(view.body.input.query).toEqual({ ref: "card [masked]" });
    expect(view.body.input.body).toEqual({ card: "[masked]", note: "for key [masked]" });
    expect(view.body.preview).toContain('"note": "for key [masked]"');
    await api(own.url, "POST", `/v1/requests/${held.body.id}/reviews`, {
      token: bob,
      body: { decision: "approve" },
    });
    const done = await api(own.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token });
    expect(done.body.status).toBe("succeeded");
    const call = upstream.calls.find((c) => c.url.startsWith("/api/keyed/echo"))!;
    expect(call.headers["x-api-key"]).toBe(KEY);
    expect(new URL(call.url, upstream.url).searchParams.get("ref")).toBe(`card ${CARD}`);
    expect(JSON.parse(call.body.toString())).toEqual({ card: CARD, note: `for key ${KEY}` });
    const shown = [
      view.text,
      (await api(own.url, "GET", "/v1/requests?status=all", { token: bob })).text,
      (await api(own.url, "GET", `/v1/audit?requestId=${held.body.id}`, { token: bob })).text,
      own.logs.join(""),
    ].join("\n");
    expect(shown).toContain("[masked]");
    for (const value of [KEY, CARD]) expect(shown).not.toContain(value);
  });
});

it("leaves no start of a masked value where a cut falls, however the agent shifts it", async () => {
  const MASKED_CARD = "4929837150216347";
  const extra = `  - name: card checks
    when: http.method == "PATCH" && http.path == "/cards/echo"
    decision: allow
    mask: { input: [body.card_number] }`;
  const config = testConfig(upstream.url, extra).replace(
    "timeout: 2s",
    "timeout: 2s\n    maxResponseBytes: 1024",
  );
  await withGateway(config, async (own) => {
    const token = await own.token("agent", "support-bot");
    const bob = await own.token("reviewer", "bob@example.com");
    const check = (pad: number) =>
      api(own.url, "POST", "/v1/actions", {
        token,
        body: {
          ...read(),
          input: {
            method: "PATCH",
            path: "/cards/echo",
            // Text after the card too, so that the cut can fall anywhere in it.
            body: { pad: "a".repeat(pad), card_number: MASKED_CARD, note: "z".repeat(80) },
          },
        },
      });
    // The upstream reflects the body after the headers: where the card sits, uncut.
    const probe = await check(0);
    expect(probe.body.status).toBe("succeeded");
    const at = JSON.stringify(probe.body.result.body).indexOf("[masked]");
    expect(at).toBeGreaterThan(0);
    const seen: string[] = [];
    let cut = 0;
    // The cut falls after the card, inside it, and before it.
    for (let shift = -20; shift <= 80; shift++) {
      const res = await check(Math.max(0, 1024 - at - shift));
      expect(res.body.status).toBe("succeeded");
      const body = res.body.result.body;
      seen.push(typeof body === "string" ? body : JSON.stringify(body));
      if (res.body.result.truncated) {
        expect(res.body.result.truncated).toBe("the body was cut at 1024 bytes");
        cut++;
      }
    }
    const all = seen.join("\n");
    // Each answer was cut, the card in it showing masked when whole; it went upstream whole.
    expect(cut).toBe(seen.length);
    expect(all).toContain("[masked]");
    const sent = upstream.calls.filter((c) => c.url === "/api/cards/echo");
    expect(sent.length).toBe(102);
    for (const call of sent) expect(JSON.parse(call.body.toString()).card_number).toBe(MASKED_CARD);
    // Not even its first digit where a cut falls.
    for (const text of seen) {
      for (let size = 1; size < MASKED_CARD.length; size++) {
        expect(text.endsWith(`"${MASKED_CARD.slice(0, size)}`)).toBe(false);
      }
    }
    const views = await api(own.url, "GET", "/v1/requests?status=all&limit=200", { token: bob });
    expect(views.body.requests.length).toBe(102);
    const shown = withoutChanceDigits(
      [
        all,
        views.text,
        JSON.stringify(await own.gateway.store.listAudit({ limit: 10_000 })),
        own.logs.join(""),
      ].join("\n"),
    );
    // Six digits or more of the card, anywhere: no port or length reads so.
    for (let size = 6; size <= MASKED_CARD.length; size++) {
      expect(shown).not.toContain(MASKED_CARD.slice(0, size));
    }
  });
});

it("leaves no piece of a value the result detectors find where a cut falls, nor a piece of a marker", async () => {
  // Assembled at run time so that secret scanners do not flag this file.
  const TOKEN = `ghp_${"R8x2Kq7ZpL".repeat(3)}4mN9vB`;
  const CARD = "4929837150216347";
  const extra = `  - name: token checks
    when: http.method == "PATCH" && http.path == "/tokens/echo"
    decision: allow
    mask: { input: [body.card_number], result: [secret] }`;
  const config = testConfig(upstream.url, extra).replace(
    "timeout: 2s",
    "timeout: 2s\n    maxResponseBytes: 1024",
  );
  await withGateway(config, async (own) => {
    const token = await own.token("agent", "support-bot");
    const check = (pad: number) =>
      api(own.url, "POST", "/v1/actions", {
        token,
        body: {
          ...read(),
          input: {
            method: "PATCH",
            path: "/tokens/echo",
            // The upstream echoes the body: the token, then the masked card, then more.
            body: { pad: "a".repeat(pad), token: TOKEN, card_number: CARD, note: "z".repeat(80) },
          },
        },
      });
    const probe = await check(0);
    expect(probe.body.status).toBe("succeeded");
    const at = JSON.stringify(probe.body.result.body).indexOf("ghp_***");
    expect(at).toBeGreaterThan(0);
    const seen: string[] = [];
    // The cut falls before the token and the card, inside each, and after them.
    for (let shift = -60; shift <= 180; shift += 3) {
      const res = await check(Math.max(0, 1024 - at - shift));
      expect(res.body.status).toBe("succeeded");
      if (res.body.result.truncated === undefined) break;
      expect(res.body.result.truncated).toBe("the body was cut at 1024 bytes");
      seen.push(res.body.result.body);
    }
    expect(seen.length).toBeGreaterThan(50);
    const all = seen.join("\n");
    expect(all).toContain("ghp_***");
    expect(all).toContain("[masked]");
    // Not a piece of the token past its prefix, and no marker or hint cut in two.
    for (let start = 4; start + 6 <= TOKEN.length; start++) {
      expect(all).not.toContain(TOKEN.slice(start, start + 6));
    }
    for (const text of seen) expect(text).not.toMatch(/\[[a-z]*$|ghp_\*{0,2}$/);
    // (The agent's own input holds the token: what the executions recorded must not.)
    const events = await own.gateway.store.listAudit({ limit: 10_000 });
    const executions = events.filter((event) => event.type.startsWith("execution."));
    expect(executions.length).toBeGreaterThan(seen.length);
    expect(JSON.stringify(executions)).not.toContain(TOKEN.slice(4, 12));
  });
});

it("reads a body that is no text with the result detectors when its bytes are text, and leaves other bytes intact", async () => {
  const extra = `  - name: downloads
    when: http.method == "PATCH" && http.path == "/bytes"
    decision: allow
    mask: { result: [card, email] }`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const fetch = async (bytes: Buffer, type?: string) => {
      const res = await api(own.url, "POST", "/v1/actions", {
        token,
        body: {
          ...read(),
          input: {
            method: "PATCH",
            path: "/bytes",
            query: { b: bytes.toString("base64"), ...(type ? { t: type } : {}) },
          },
        },
      });
      expect(res.body.status).toBe("succeeded");
      expect(res.body.result.encoding).toBe("base64");
      return Buffer.from(String(res.body.result.body), "base64");
    };
    // A CSV served as octet-stream: UTF-8 text, read as such.
    const csv = await fetch(Buffer.from("name,card\nAnn Émile,4242 4242 4242 4242\n"));
    expect(csv.toString()).toBe("name,card\nAnn Émile,**** 4242\n");
    // Text in another charset than it says, or none: read as Latin-1, which keeps ASCII.
    const latin1 = Buffer.from("caf\xe9 paid with 4242424242424242, ann@example.com", "latin1");
    const legacy = await fetch(latin1, "text/plain; charset=iso-8859-1");
    expect(legacy.toString("latin1")).toBe("caf\xe9 paid with **** 4242, a***@example.com");
    // Bytes that are no text (a JPEG's start, then an e-mail-like run) stay as they came.
    const image = Buffer.concat([
      Buffer.from([0xff, 0xd8, 0xff, 0xe0]),
      Buffer.from("a@b.co 4242424242424242"),
    ]);
    expect((await fetch(image)).equals(image)).toBe(true);
  });
});

it("returns a body that is no text intact when its base64 spells a masked value by chance", async () => {
  const CVV = "729";
  const extra = `  - name: card checks
    when: http.method == "PATCH" && http.path == "/bytes"
    decision: allow
    mask: { input: [body.cvv] }`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const fetch = async (bytes: Buffer) => {
      const res = await api(own.url, "POST", "/v1/actions", {
        token,
        body: {
          ...read(),
          input: {
            method: "PATCH",
            path: "/bytes",
            query: { b: bytes.toString("base64") },
            body: { cvv: CVV },
          },
        },
      });
      expect(res.body.status).toBe("succeeded");
      expect(res.body.result.encoding).toBe("base64");
      return String(res.body.result.body);
    };
    // A JPEG's first bytes, then three whose base64 starts with the CVV: none of them is it.
    const image = Buffer.from(`/9j/${CVV}AAAAAAAA`, "base64");
    expect(image.includes(CVV)).toBe(false);
    const shown = await fetch(image);
    expect(shown).toContain(CVV);
    expect(Buffer.from(shown, "base64").equals(image)).toBe(true);
    // Bytes that do hold it still have it scrubbed.
    const echo = await fetch(Buffer.from(`\xffcvv ${CVV}!`, "latin1"));
    expect(Buffer.from(echo, "base64").toString("latin1")).toBe("\xffcvv [masked]!");
  });
});

it("keeps a configured secret that a rule's evaluation error quotes out of the record", async () => {
  const extra = `  - name: keyed lookups
    when: http.method == "PATCH" && action.input.body["\${env:BILLING_API_TOKEN}"] == 1
    decision: allow`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const bob = await own.token("reviewer", "bob@example.com");
    const res = await api(own.url, "POST", "/v1/actions", {
      token,
      body: { ...read(), input: { method: "PATCH", path: "/x", body: {} } },
    });
    expect(res.status).toBe(403);
    const denied = await api(own.url, "GET", "/v1/requests?status=denied", { token: bob });
    const record = denied.body.requests.find((r: { id: string }) => r.id === res.body.action.id);
    expect(record.decision.error).toContain("[redacted]");
    const everything = [
      res.text,
      denied.text,
      JSON.stringify(await own.gateway.store.listAudit({ limit: 1000 })),
      own.logs.join(""),
    ].join("\n");
    expect(everything).not.toContain(SECRET);
  });
});

it("never stores the credential in the database", async () => {
  await gw.close();
  if (onPostgres) {
    const dump = execFileSync("pg_dump", [
      "--data-only",
      `--schema=${testSchema(gw.dir)}`,
      process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test",
    ]).toString();
    expect(dump).toContain("request.submitted");
    expect(dump.includes(SECRET)).toBe(false);
  } else {
    const files = readdirSync(gw.dir).filter((f) => f.startsWith("airlock.db"));
    expect(files).toContain("airlock.db");
    for (const file of files) expect(readFileSync(join(gw.dir, file)).includes(SECRET)).toBe(false);
  }
  gw = await gw.restart();
});

it("keeps a configured secret in a deny rule's reason out of the answer, the rules page and the record", async () => {
  const extra = `  - name: patches
    when: http.method == "PATCH"
    decision: deny
    reason: "ask the owner of \${env:BILLING_API_TOKEN}"`;
  await withGateway(testConfig(upstream.url, extra), async (own) => {
    const token = await own.token("agent", "support-bot");
    const res = await api(own.url, "POST", "/v1/actions", {
      token,
      body: { ...read(), input: { method: "PATCH", path: "/x", body: {} } },
    });
    expect(res.status).toBe(403);
    // The rules page shows the rule itself: its reason is the same config text.
    const bob = await own.token("reviewer", "bob@example.com");
    const rules = await api(own.url, "GET", "/v1/rules", { token: bob });
    expect(rules.status).toBe(200);
    expect(rules.body.rules.find((r: { name: string }) => r.name === "patches").reason).toBe(
      "ask the owner of [redacted]",
    );
    const everything = [
      res.text,
      rules.text,
      JSON.stringify(await own.gateway.store.listAudit({ limit: 1000 })),
      own.logs.join(""),
    ].join("\n");
    expect(everything).not.toContain(SECRET);
  });
});
