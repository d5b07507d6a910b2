/**
 * The agent SDK (`@airlock/sdk`) against a real gateway on loopback, and through a loopback
 * proxy that loses answers, refuses calls or never answers, as networks and balancers do.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type Action,
  AirlockClient,
  type AirlockClientOptions,
  AirlockError,
  type AirlockErrorCode,
  isFinal,
} from "@airlock/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import type { ErrorCode } from "../src/errors.js";
import { isTerminal, requestStatuses } from "../src/requests/request-types.js";
import type { AgentView } from "../src/requests/request-views.js";
import {
  api,
  read,
  refund,
  removeDir,
  SECRET,
  startGateway,
  type TestGateway,
  testConfig,
  until,
  vote,
  withGateway,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

/** What the proxy does with one call: pass it on, or fail it one way or another. */
type Fault =
  | "drop-answer"
  | "unavailable"
  | "ran-unrecorded"
  | "hang"
  | "html"
  | "redirect"
  | "full"
  | "slow-down"
  | "no-hold";

interface Proxy {
  url: string;
  /** Faults for the calls to come, in order; calls after them pass. */
  faults: Fault[];
  /** Every call that reached the proxy: method and path. */
  calls: string[];
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const faults: Fault[] = [];
  const calls: string[] = [];
  const hanging = new Set<ServerResponse>();
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    calls.push(`${request.method} ${request.url}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const fault = faults.shift();
    if (fault === "unavailable") {
      response.writeHead(503, { "content-type": "application/json", "retry-after": "0" });
      response.end(JSON.stringify({ error: { code: "store_unavailable", message: "down" } }));
      return;
    }
    // The gateway ran the action but its store took no outcome (as a store outage mid-run does).
    if (fault === "ran-unrecorded") {
      response.writeHead(503, { "content-type": "application/json", "retry-after": "0" });
      response.end(
        JSON.stringify({
          error: {
            code: "store_unavailable",
            message:
              "the action ran (HTTP 200) but its outcome could not be recorded; do not submit it again",
            requestId: "req_ran",
            executed: true,
          },
        }),
      );
      return;
    }
    // The gateway's refusal at agents[].maxPending: no Retry-After, as no time fixes it.
    if (fault === "full") {
      response.writeHead(429, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "rate_limited", message: "limit reached" } }));
      return;
    }
    if (fault === "slow-down") {
      response.writeHead(429, { "content-type": "application/json", "retry-after": "0" });
      response.end(JSON.stringify({ error: { code: "rate_limited", message: "too fast" } }));
      return;
    }
    // A balancer that sends http:// on to https://, say.
    if (fault === "redirect") {
      response.writeHead(301, { location: "https://airlock.example.com/v1/actions" });
      response.end();
      return;
    }
    if (fault === "html") {
      response.writeHead(502, { "content-type": "text/html" });
      response.end("<html><body>Bad gateway</body></html>");
      return;
    }
    if (fault === "hang") {
      hanging.add(response);
      return;
    }
    // The gateway answers at once, as a closing one answers the calls it holds.
    const path =
      fault === "no-hold" ? request.url?.replace(/\?wait=\d+(&version=\d+)?$/, "") : request.url;
    const answer = await fetch(target + path, {
      method: request.method ?? "GET",
      headers: request.headers as Record<string, string>,
      ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}),
    });
    const text = await answer.text();
    // The gateway did the work; its answer is lost on the way back.
    if (fault === "drop-answer") {
      request.socket.destroy();
      return;
    }
    response.writeHead(answer.status, { "content-type": "application/json" });
    response.end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    faults,
    calls,
    close: async () => {
      for (const response of hanging) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let upstream: Upstream;
let gw: TestGateway;
let proxy: Proxy;
let agentToken: string;
const reviewers: Record<string, string> = {};

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(testConfig(upstream.url));
  proxy = await startProxy(gw.url);
  agentToken = await gw.token("agent", "support-bot");
  for (const name of ["bob", "carol"]) {
    reviewers[name] = await gw.token("reviewer", `${name}@example.com`);
  }
});

afterAll(async () => {
  await proxy.close();
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

const client = (options: Partial<AirlockClientOptions> = {}) =>
  new AirlockClient({ url: gw.url, token: agentToken, ...options });
const callsTo = (path: string) => upstream.calls.filter((c) => c.url === `/api${path}`).length;
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => error,
  );

describe("the SDK's types", () => {
  it("describe what the gateway answers", () => {
    // Checked by the typecheck: a field the gateway renames or retypes breaks it.
    expectTypeOf<AgentView>().toExtend<Action>();
    // Every code the gateway answers with is one the SDK names.
    expectTypeOf<ErrorCode>().toExtend<AirlockErrorCode>();
    for (const status of requestStatuses) expect(isFinal(status)).toBe(isTerminal(status));
  });
});

describe("submitting", () => {
  it("runs an allowed action and answers with its result, the credential nowhere", async () => {
    const action = await client().submit(read("/sdk-allowed"));
    expect(action.status).toBe("succeeded");
    expect(action.decision).toMatchObject({ decision: "allow", rule: "reads pass" });
    expect(action.result).toMatchObject({ status: 200, body: { url: "/api/sdk-allowed" } });
    // A key of its own, so that its retries find this request.
    expect(action.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(action)).not.toContain(SECRET);
    expect(callsTo("/sdk-allowed")).toBe(1);
  });

  it("answers a policy's denial with the action, not an error", async () => {
    const action = await client().submit({ ...read(), input: { method: "DELETE", path: "/x" } });
    expect(action.status).toBe("denied");
    expect(action.decision).toMatchObject({ decision: "deny", rule: "nothing else" });
  });

  it("answers pending with where reviewers decide", async () => {
    const action = await client().submit(refund());
    expect(action.status).toBe("pending");
    expect(action.approvalUrl).toBe(`http://airlock.test/requests/${action.id}`);
    expect(action).toMatchObject({ quorum: 2, approvals: 0 });
    // Masked per policy, as every view of it is.
    expect(JSON.stringify(action.input)).not.toContain("4242424242424242");
  });

  it("throws the gateway's errors with their code, field and status", async () => {
    const unknown = await refusal(client().submit({ ...read(), connection: "nope" }));
    expect(unknown).toBeInstanceOf(AirlockError);
    expect(unknown).toMatchObject({ code: "unknown_connection", field: "connection", status: 400 });

    const badInput = await refusal(client().submit({ ...read(), justification: "a\u0000b" }));
    expect(badInput).toMatchObject({ code: "invalid_request", field: "justification" });

    const stranger = await refusal(client({ token: "not-a-token" }).submit(read()));
    expect(stranger).toMatchObject({ code: "unauthenticated", status: 401 });

    const missing = await refusal(client().get("req_nothing"));
    expect(missing).toMatchObject({ code: "not_found", status: 404 });
  });

  it("says how to fix a wait longer than the gateway holds calls", async () => {
    const error = await refusal(client().submit(refund(), { wait: 3_600_000 }));
    expect(error).toMatchObject({ code: "invalid_request", field: "wait" });
    expect((error as Error).message).toMatch(/at most 300 seconds.*longPoll/);
  });
});

describe("listing", () => {
  it("pages through the agent's actions, newest first, in the statuses asked for", async () => {
    const a = await client().submit(refund({ justification: "list a" }));
    const b = await client().submit(read("/sdk-list"));
    const c = await client().submit(refund({ justification: "list c" }));
    const ids = (page: { actions: Action[] }) => page.actions.map((x) => x.id);

    const first = await client().list({ limit: 2 });
    expect(ids(first)).toEqual([c.id, b.id]);
    expect(first.next).toBe(b.id);
    const second = await client().list({ limit: 2, before: first.next! });
    expect(ids(second)[0]).toBe(a.id);
    expect(second.actions[0]).toEqual(await client().get(a.id));

    const pending = ids(await client().list({ status: "pending", limit: 200 }));
    expect(pending).toEqual(expect.arrayContaining([a.id, c.id]));
    expect(pending).not.toContain(b.id);
    expect(ids(await client().list({ status: ["succeeded", "failed"], limit: 1 }))).toEqual([b.id]);
    expect(ids(await client().list({ status: "all", limit: 1 }))).toEqual([c.id]);
  });

  it("refuses what it cannot ask for, and passes on the gateway's refusals", async () => {
    await expect(client().list({ limit: 0 })).rejects.toThrow(/limit must be a whole number/);
    await expect(client().list({ status: [] })).rejects.toThrow(/status must name/);
    const refused = await refusal(client().list({ status: "waiting" as never }));
    expect(refused).toMatchObject({ code: "invalid_request", field: "status", status: 400 });
  });
});

describe("waiting for reviewers", () => {
  it("runs a reviewed action once the quorum approves, reporting each vote", async () => {
    const seen: Action[] = [];
    const outcome = client({ longPoll: 1_000 }).run(refund(), {
      onUpdate: (action) => seen.push(action),
    });
    await until(() => seen.length > 0);
    const id = seen[0]!.id;
    expect(seen[0]!.status).toBe("pending");
    expect((await vote(gw.url, id, reviewers.bob!)).status).toBe(200);
    await until(() => seen.some((action) => action.approvals === 1), 5_000);
    expect((await vote(gw.url, id, reviewers.carol!)).status).toBe(200);
    const action = await outcome;
    expect(action.status).toBe("succeeded");
    expect(action.reviews.map((r) => r.reviewer)).toEqual(["bob@example.com", "carol@example.com"]);
    expect(seen.at(-1)).toEqual(action);
    expect(
      upstream.calls.filter((c) => c.method === "POST" && c.url === "/api/refunds"),
    ).toHaveLength(1);
  });

  it("hears a vote as it is cast, not when its long poll runs out", async () => {
    const seen: Action[] = [];
    // Polls held past the test's timeout: only the gateway's answer at the vote is heard in time.
    const outcome = client({ longPoll: 60_000 }).run(refund(), {
      onUpdate: (action) => seen.push(action),
    });
    await until(() => seen.length > 0);
    const id = seen[0]!.id;
    expect((await vote(gw.url, id, reviewers.bob!)).status).toBe(200);
    await until(() => seen.some((action) => action.approvals === 1), 20_000);
    expect(seen.at(-1)!.version).toBeGreaterThan(seen[0]!.version!);
    expect((await vote(gw.url, id, reviewers.carol!)).status).toBe(200);
    expect((await outcome).status).toBe("succeeded");
  });

  it("tells the request's id before waiting, so that a run stopped by its signal can cancel it", async () => {
    proxy.calls.length = 0;
    const controller = new AbortController();
    const seen: Action[] = [];
    const running = client({ url: proxy.url, longPoll: 10_000 }).run(refund(), {
      signal: controller.signal,
      onUpdate: (action) => seen.push(action),
    });
    // The submission is not held: the wait is the read that follows it.
    await until(() => seen.length > 0, 2_000);
    expect(seen[0]!.status).toBe("pending");
    expect(proxy.calls[0]).toBe("POST /v1/actions");
    controller.abort(new Error("agent gave up"));
    await expect(running).rejects.toThrow("agent gave up");
    expect((await client().cancel(seen[0]!.id)).status).toBe("cancelled");
  });

  it("runs an allowed action in one call", async () => {
    proxy.calls.length = 0;
    const action = await client({ url: proxy.url }).run(read("/sdk-run-allowed"));
    expect(action.status).toBe("succeeded");
    expect(proxy.calls).toEqual(["POST /v1/actions"]);
  });

  it("answers a reviewer's denial with the action and their comment", async () => {
    const submitted = await client().submit(refund());
    const outcome = client({ longPoll: 1_000 }).wait(submitted.id);
    await denyAs("bob", submitted.id, "not today");
    const action = await outcome;
    expect(action.status).toBe("denied");
    expect(action.reviews[0]).toMatchObject({ reviewer: "bob@example.com", comment: "not today" });
  });

  it("gives up at its timeout with the action still pending, and cancels it", async () => {
    const started = Date.now();
    const action = await client({ longPoll: 1_000 }).run(refund(), { timeout: 1_500 });
    expect(action.status).toBe("pending");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    const cancelled = await client().cancel(action.id);
    expect(cancelled.status).toBe("cancelled");
    // Cancelling again finds it cancelled: a retried cancel is not an error.
    expect((await client().cancel(action.id)).status).toBe("cancelled");
  });

  it("waits out a part of a second with a short timeout: the call is held the whole second", async () => {
    const submitted = await client().submit(refund());
    // The gateway holds whole seconds: 1.1 s is asked as 2 s, which the call must allow for.
    const action = await client({ timeout: 200, retries: 0 }).wait(submitted.id, {
      timeout: 1_100,
    });
    expect(action.status).toBe("pending");
    await client().cancel(submitted.id);
  });

  it("stops waiting when its signal aborts", async () => {
    const submitted = await client().submit(refund());
    const controller = new AbortController();
    const waiting = client().wait(submitted.id, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("agent shut down")), 200);
    const started = Date.now();
    await expect(waiting).rejects.toThrow("agent shut down");
    expect(Date.now() - started).toBeLessThan(5_000);
    await client().cancel(submitted.id);
  });
});

describe("calls that fail on the way", () => {
  const viaProxy = (options: Partial<AirlockClientOptions> = {}) =>
    client({ url: proxy.url, ...options });

  beforeEach(() => {
    proxy.calls.length = 0;
    proxy.faults.length = 0;
  });

  it("retries a submission whose answer was lost, and the action runs once", async () => {
    proxy.faults.push("drop-answer");
    const action = await viaProxy().submit(read("/sdk-lost-answer"));
    expect(action.status).toBe("succeeded");
    // Both tries reached the gateway; the key made the second find the first's request.
    expect(proxy.calls.filter((c) => c.startsWith("POST /v1/actions"))).toHaveLength(2);
    expect(callsTo("/sdk-lost-answer")).toBe(1);
  });

  it("retries a lost answer of a rate-limited agent: the retry finds the action, not the limit", async () => {
    await withGateway(
      testConfig(upstream.url).replace(
        "{ name: ops-bot, owner: Dave@Example.com }",
        "{ name: ops-bot, owner: Dave@Example.com, rateLimit: { perMinute: 1, burst: 1 } }",
      ),
      async (own) => {
        const lossy = await startProxy(own.url);
        try {
          lossy.faults.push("drop-answer");
          const token = await own.token("agent", "ops-bot");
          const action = await new AirlockClient({ url: lossy.url, token }).submit(
            read("/sdk-lost-limited"),
          );
          // The first try ran it and took the agent's one token; its retry is the same action.
          expect(action.status).toBe("succeeded");
          expect(callsTo("/sdk-lost-limited")).toBe(1);
        } finally {
          await lossy.close();
        }
      },
    );
  });

  it("follows an allowed action that a retried submission finds still running", async () => {
    const slow = upstream.hold("/api/sdk-still-running");
    const submitting = viaProxy({ timeout: 500 }).submit(read("/sdk-still-running"));
    await slow.arrived;
    // The first try gave up at 500 ms; the second found the action executing.
    const posts = () => proxy.calls.filter((c) => c.startsWith("POST /v1/actions"));
    await until(() => posts().length === 2, 3_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    slow.release();
    const action = await submitting;
    expect(action.status).toBe("succeeded");
    expect(action.result).toMatchObject({ status: 200 });
    expect(callsTo("/sdk-still-running")).toBe(1);
  });

  it("retries a 503 and then succeeds; without retries the caller hears it", async () => {
    proxy.faults.push("unavailable");
    expect((await viaProxy().submit(read("/sdk-503"))).status).toBe("succeeded");
    expect(callsTo("/sdk-503")).toBe(1);

    proxy.faults.push("unavailable");
    const error = await refusal(viaProxy({ retries: 0 }).submit(read("/sdk-503-once")));
    expect(error).toMatchObject({ code: "store_unavailable", status: 503 });
    expect(callsTo("/sdk-503-once")).toBe(0);
  });

  it("retries a 429 only when told when to come back", async () => {
    proxy.faults.push("slow-down");
    expect((await viaProxy().submit(read("/sdk-429-after"))).status).toBe("succeeded");
    expect(proxy.calls).toHaveLength(2);

    // Reviewers deciding or the agent cancelling fixes this, not a retry a second later.
    proxy.calls.length = 0;
    proxy.faults.push("full");
    const error = await refusal(viaProxy().submit(refund()));
    expect(error).toMatchObject({ code: "rate_limited", status: 429 });
    expect(proxy.calls).toHaveLength(1);
  });

  it("does not retry an answer that says the action ran, and says so", async () => {
    // The store is down: the action ran but nothing can be recorded, nor read by a retry.
    proxy.faults.push("ran-unrecorded", "unavailable", "unavailable");
    const error = await refusal(viaProxy().submit(read("/sdk-ran-unrecorded")));
    expect(error).toMatchObject({
      code: "store_unavailable",
      executed: true,
      requestId: "req_ran",
    });
    expect((error as Error).message).toContain("do not submit it again");
    expect(proxy.calls).toHaveLength(1);
  });

  it("says so when something other than Airlock answers", async () => {
    proxy.faults.push("html");
    const error = await refusal(viaProxy({ retries: 0 }).get("req_x"));
    expect(error).toMatchObject({ code: "unexpected_response", status: 502 });
    expect((error as Error).message).toContain("check that the url is the gateway's");
  });

  it("says a redirect is one, and does not follow it or retry it", async () => {
    // Every call is redirected, as by a balancer that does so.
    proxy.faults.push("redirect", "redirect", "redirect");
    const error = await refusal(viaProxy().submit(read("/sdk-redirected")));
    expect(error).toMatchObject({ code: "unexpected_response", status: 301 });
    expect((error as Error).message).toContain("redirect");
    expect(proxy.calls).toHaveLength(1);
    expect(callsTo("/sdk-redirected")).toBe(0);
  });

  it("hands back the key of a submission it gave up on, which finds the request it made", async () => {
    // Every try reaches the gateway and runs nothing twice; every answer is lost.
    proxy.faults.push("drop-answer", "drop-answer");
    const error = await refusal(viaProxy({ retries: 1 }).submit(read("/sdk-gave-up")));
    if (!(error instanceof AirlockError)) throw error;
    expect(error.code).toBe("network_error");
    expect(error.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(callsTo("/sdk-gave-up")).toBe(1);
    // Submitted again with it, the request the first try made is found, not made again.
    const found = await client().submit({
      ...read("/sdk-gave-up"),
      idempotencyKey: error.idempotencyKey!,
    });
    expect(found.status).toBe("succeeded");
    expect(found.idempotencyKey).toBe(error.idempotencyKey);
    expect(callsTo("/sdk-gave-up")).toBe(1);
  });

  it("gives up on a call that is never answered", async () => {
    proxy.faults.push("hang");
    const error = await refusal(viaProxy({ retries: 0, timeout: 300 }).get("req_x"));
    expect(error).toMatchObject({ code: "timeout" });
  });

  it("polls once a second when told the gateway holds no calls", async () => {
    const submitted = await client().submit(refund());
    const action = await viaProxy({ longPoll: 0 }).wait(submitted.id, { timeout: 2_500 });
    expect(action.status).toBe("pending");
    const polls = proxy.calls.filter((c) => c.includes(submitted.id));
    // The first read, then one a second; none asks the gateway to hold it.
    expect(polls.length).toBeGreaterThanOrEqual(3);
    expect(polls.length).toBeLessThanOrEqual(4);
    expect(polls.every((c) => !c.includes("wait="))).toBe(true);
    await client().cancel(submitted.id);
  });

  it("pauses when a long poll comes back early with nothing new, as from a closing gateway", async () => {
    const submitted = await client().submit(refund());
    proxy.faults.push(...Array.from({ length: 100 }, () => "no-hold" as const));
    const action = await viaProxy({ longPoll: 5_000 }).wait(submitted.id, { timeout: 2_500 });
    expect(action.status).toBe("pending");
    // The first read, then about one a second; it asked again at once, a hundred times.
    const polls = proxy.calls.filter((c) => c.includes(submitted.id));
    expect(polls.length).toBeGreaterThanOrEqual(3);
    expect(polls.length).toBeLessThanOrEqual(5);
    await client().cancel(submitted.id);
  });

  it("names the address it could not reach, without the token", async () => {
    const closed = await startProxy(gw.url);
    const url = closed.url;
    await closed.close();
    const error = await refusal(client({ url, retries: 0 }).submit(read()));
    expect(error).toMatchObject({ code: "network_error" });
    expect((error as Error).message).toContain(url);
    expect((error as Error).message).toContain("ECONNREFUSED");
    expect((error as Error).message).not.toContain(agentToken);
  });

  it("refuses a token that cannot go in a header without quoting it", () => {
    // Pasted with a line break, a space or a typographic character; fetch would refuse the
    // header with a message quoting it, which ended up in a network_error and was retried.
    for (const token of [
      "alk_0123456789\nSECRETPART",
      "alk_0123456789\r\nSECRETPART",
      "alk_0123456789\u0000SECRETPART",
      "alk_0123456789 SECRETPART",
      "alk_0123456789\u2019SECRETPART",
      "alk_0123456789\u00e9SECRETPART",
    ]) {
      const error = (() => {
        try {
          new AirlockClient({ url: gw.url, token });
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(/^token has a character/);
      expect((error as Error).message).not.toContain("SECRETPART");
    }
  });

  it("says a network failure by its code only, never by the error's text", async () => {
    // A fetch whose error quotes the request, as fetch's own header errors do.
    const quoting: typeof fetch = async (_url, init) => {
      throw new TypeError(`invalid header ${JSON.stringify(init?.headers)}`);
    };
    const error = await refusal(client({ fetch: quoting, retries: 0 }).get("req_x"));
    expect(error).toMatchObject({ code: "network_error" });
    expect((error as Error).message).not.toContain(agentToken);
    expect((error as Error).message).toContain("check the url");
    expect((error as Error).cause).toBeUndefined();
  });

  it("refuses options it cannot work with, before any call", () => {
    expect(() => new AirlockClient({ url: "airlock.example.com", token: "t" })).toThrow(
      /not a URL/,
    );
    expect(() => new AirlockClient({ url: "ftp://airlock.example.com", token: "t" })).toThrow(
      /http/,
    );
    expect(() => new AirlockClient({ url: gw.url, token: "" })).toThrow(/token create/);
  });

  it("refuses a url with a user name or password, without repeating them", () => {
    // The token is the credential; these would be printed in every error's message.
    for (const url of [
      "http://user:hunter2@127.0.0.1:7070",
      "https://hunter2@airlock.example.com",
    ]) {
      const make = () => new AirlockClient({ url, token: "t" });
      expect(make).toThrow(TypeError);
      expect(make).toThrow(/url must not hold a user name or password/);
      expect(make).not.toThrow(/hunter2/);
    }
  });

  it("refuses durations and counts it cannot keep, naming the option", () => {
    // setTimeout(Infinity) fires at once, and ?wait=Infinity is refused by the gateway.
    const options: [Partial<AirlockClientOptions>, RegExp][] = [
      [{ timeout: Number.POSITIVE_INFINITY }, /^timeout must be/],
      [{ timeout: Number.NaN }, /^timeout must be/],
      [{ timeout: 0 }, /^timeout must be/],
      [{ longPoll: Number.POSITIVE_INFINITY }, /^longPoll must be/],
      [{ longPoll: -1 }, /^longPoll must be/],
      [{ longPoll: 3_600_001 }, /^longPoll must be/],
      [{ retries: Number.POSITIVE_INFINITY }, /^retries must be/],
      [{ retries: 1.5 }, /^retries must be/],
      [{ retries: -1 }, /^retries must be/],
    ];
    for (const [option, message] of options) {
      expect(() => client(option)).toThrow(TypeError);
      expect(() => client(option)).toThrow(message);
    }
    expect(() => client({ timeout: 1, longPoll: 3_600_000, retries: 10 })).not.toThrow();
  });

  it("keeps a timeout longer than a timer can run", async () => {
    // Past about 24.8 days, setTimeout fires at once: the call timed out in a millisecond.
    const action = await client({ timeout: 2 ** 31 }).submit(read("/sdk-long-timeout"));
    expect(action.status).toBe("succeeded");
  });

  it("refuses a wait it cannot ask the gateway for", async () => {
    for (const wait of [Number.POSITIVE_INFINITY, Number.NaN, -1]) {
      await expect(client().get("req_x", { wait })).rejects.toThrow(/^wait must be/);
    }
    for (const timeout of [Number.NaN, -1]) {
      await expect(client().wait("req_x", { timeout })).rejects.toThrow(/^timeout must be/);
    }
  });
});

async function denyAs(who: string, id: string, comment: string): Promise<void> {
  const res = await api(gw.url, "POST", `/v1/requests/${id}/reviews`, {
    token: reviewers[who]!,
    body: { decision: "deny", comment },
  });
  expect(res.status).toBe(200);
}
