/** The whole loop over HTTP, on a real SQLite file and a real upstream on loopback. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalJson } from "../src/common/canonical-json.js";
import { actionAnswer } from "../src/http/mcp-tools.js";
import { interruptExecution } from "../src/requests/request-transitions.js";
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
  withGateway,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(testConfig(upstream.url));
  tokens.agent = await gw.token("agent", "support-bot");
  tokens.ops = await gw.token("agent", "ops-bot");
  for (const name of ["alice", "bob", "carol", "erin", "dave"]) {
    tokens[name] = await gw.token("reviewer", `${name}@example.com`);
  }
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

const submit = (body: unknown, token = tokens.agent, query = "") =>
  api(gw.url, "POST", `/v1/actions${query}`, { token: token!, body });
const vote = (id: string, who: string, decision: "approve" | "deny", comment?: string) =>
  api(gw.url, "POST", `/v1/requests/${id}/reviews`, {
    token: tokens[who]!,
    body: { decision, ...(comment ? { comment } : {}) },
  });
const callsTo = (path: string) =>
  upstream.calls.filter((c) => c.url.startsWith(`/api${path}`)).length;

describe("policy decisions", () => {
  it("runs an allowed action at once with the connection's credential and returns the result", async () => {
    const res = await submit(read("/invoices"));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("succeeded");
    expect(res.body.decision).toMatchObject({ decision: "allow", rule: "reads pass" });
    expect(res.body.result.status).toBe(200);
    expect(res.body.result.body).toMatchObject({ ok: true, method: "GET", url: "/api/invoices" });
    const call = upstream.calls.find((c) => c.url === "/api/invoices")!;
    expect(call.headers.authorization).toBe(`Bearer ${SECRET}`);
    // hop-by-hop and cookies of the upstream stay with Airlock
    expect(res.body.result.headers["set-cookie"]).toBeUndefined();
    expect(res.body.result.headers.connection).toBeUndefined();
    expect(res.body.result.headers["x-upstream"]).toBe("yes");
  });

  it("runs many allowed actions at once, with no listener-leak warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const held = upstream.hold("/api/many");
      const answers = Array.from({ length: 15 }, () => submit(read("/many")));
      await until(() => callsTo("/many") === 15);
      held.release();
      const statuses = (await Promise.all(answers)).map((res) => res.body.status);
      expect(statuses).toEqual(Array(15).fill("succeeded"));
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
  });

  it("denies what no rule allows with 403, records it, and never calls the upstream", async () => {
    const before = callsTo("/invoices/inv_1");
    const res = await submit({
      connection: "billing-api",
      operation: "request",
      input: { method: "DELETE", path: "/invoices/inv_1" },
    });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: "denied" });
    expect(res.body.error.message).toContain("nothing else");
    expect(res.body.action.status).toBe("denied");
    expect(callsTo("/invoices/inv_1")).toBe(before);
    const audit = await api(gw.url, "GET", `/v1/audit?requestId=${res.body.action.id}`, {
      token: tokens.bob!,
    });
    expect(audit.body.events.map((e: { type: string }) => e.type)).toEqual([
      "request.submitted",
      "request.decided",
    ]);
    expect(audit.body.events[1].data).toMatchObject({ decision: "deny", rule: "nothing else" });
  });

  it("holds a reviewable action with 202, an approval link and an expiry", async () => {
    const res = await submit(refund());
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: "pending", quorum: 2, approvals: 0 });
    expect(res.body.approvalUrl).toBe(`http://airlock.test/requests/${res.body.id}`);
    const expires = Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt);
    expect(expires).toBe(15 * 60_000);
    expect(res.body.input.body.card_number).toBe("[masked]");
  });
});

describe("masked input", () => {
  const card = "4242424242424242";
  const shown = async (id: string) =>
    JSON.stringify([
      (await api(gw.url, "GET", `/v1/requests/${id}`, { token: tokens.bob! })).body,
      (await api(gw.url, "GET", `/v1/actions/${id}`, { token: tokens.agent! })).body,
      (await api(gw.url, "GET", `/v1/audit?requestId=${id}`, { token: tokens.bob! })).body,
    ]);

  it("hides a masked value the agent also uses as a key: a header's name, a query's, the body's", async () => {
    const res = await submit({
      ...refund(),
      input: {
        method: "POST",
        path: "/refunds",
        query: { [card]: "1" },
        headers: { [`x-${card}`]: "1" },
        body: { invoice: "inv_1001", card_number: card, copy: { [card]: true } },
      },
    });
    expect(res.status).toBe(202);
    expect(res.body.input).toMatchObject({
      query: { "[masked]": "1" },
      headers: { "x-[masked]": "1" },
      body: { card_number: "[masked]", copy: { "[masked]": true } },
    });
    const everything = await shown(res.body.id);
    expect(everything).not.toContain(card);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: tokens.bob! });
    expect(view.body.preview).toContain('"[masked]": true');
  });

  it("leaves no piece of a masked value, nor of its marker, where a long preview is cut", async () => {
    // The preview shows 4,000 characters of the body: the card, as a key and as a value,
    // lands across that cut.
    const previews: string[] = [];
    for (let pad = 3935; pad <= 3985; pad += 2) {
      const res = await submit({
        ...refund(),
        input: {
          method: "POST",
          path: "/refunds",
          body: { pad: "a".repeat(pad), copy: { [card]: card }, card_number: card },
        },
      });
      expect(res.status).toBe(202);
      const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: tokens.bob! });
      previews.push(view.body.preview);
    }
    const all = previews.join("\n");
    expect(all).toContain("… (");
    for (let size = 4; size <= card.length; size++) expect(all).not.toContain(card.slice(0, size));
    for (const preview of previews) expect(preview).not.toMatch(/\[[a-z]*\n…/);
  });

  it("hides a masked value the agent built its idempotency key from, in the audit trail", async () => {
    const res = await submit(refund({ idempotencyKey: `refund-${card}-1` }));
    expect(res.status).toBe(202);
    const audit = await api(gw.url, "GET", `/v1/audit?requestId=${res.body.id}`, {
      token: tokens.bob!,
    });
    expect(audit.body.events[0].data.idempotencyKey).toBe("refund-[masked]-1");
    expect(audit.text).not.toContain(card);
    // The key itself still finds the request.
    const again = await submit(refund({ idempotencyKey: `refund-${card}-1` }));
    expect(again.body.id).toBe(res.body.id);
  });

  it("still previews the body when a masked value is the name of an input field", async () => {
    const res = await submit({
      ...refund(),
      input: { method: "POST", path: "/refunds", body: { invoice: "inv_7", card_number: "body" } },
    });
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: tokens.bob! });
    expect(view.body.preview).toContain('"invoice": "inv_7"');
    expect(view.body.input).toMatchObject({ "[masked]": { card_number: "[masked]" } });
  });
});

describe("reviews", () => {
  it("counts distinct reviewers toward the quorum and runs the action once, after the second approval", async () => {
    const { body } = await submit(refund({ idempotencyKey: "quorum-1" }));
    const first = await vote(body.id, "bob", "approve", "checked the invoice");
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ status: "pending", review: { approvals: 1, quorum: 2 } });
    const again = await vote(body.id, "bob", "approve");
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("already_reviewed");
    expect(callsTo("/refunds")).toBe(0);
    const second = await vote(body.id, "carol", "approve");
    expect(second.body.review.approvals).toBe(2);
    const done = await api(gw.url, "GET", `/v1/actions/${body.id}?wait=5`, {
      token: tokens.agent!,
    });
    expect(done.body.status).toBe("succeeded");
    expect(done.body.reviews.map((r: { reviewer: string }) => r.reviewer)).toEqual([
      "bob@example.com",
      "carol@example.com",
    ]);
    expect(callsTo("/refunds")).toBe(1);
  });

  it("executes byte for byte what was approved", async () => {
    const proposal = refund({
      input: {
        method: "POST",
        path: "/refunds",
        query: { reason: "duplicate", tag: ["a", "b"] },
        headers: { "x-trace": "t-1" },
        body: {
          amount: 12.5,
          nested: { z: 1, a: [true, null, "é"] },
          card_number: "5555555555554444",
        },
      },
    });
    const { body } = await submit(proposal);
    const before = upstream.calls.length;
    await vote(body.id, "carol", "approve");
    await vote(body.id, "erin", "approve");
    const done = await api(gw.url, "GET", `/v1/actions/${body.id}?wait=5`, {
      token: tokens.agent!,
    });
    expect(done.body.status).toBe("succeeded");
    const calls = upstream.calls.slice(before);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.method).toBe("POST");
    expect(call.url).toBe("/api/refunds?reason=duplicate&tag=a&tag=b");
    expect(call.headers["x-trace"]).toBe("t-1");
    expect(call.body.toString("utf8")).toBe(JSON.stringify(proposal.input.body));
    // The hash the reviewers approved is the hash of exactly this proposal.
    const reviewer = await api(gw.url, "GET", `/v1/requests/${body.id}`, { token: tokens.bob! });
    expect(reviewer.body.hash).toBe(body.hash);
    const { requestHash } = await import("../src/requests/request-hash.js");
    const stored = await gw.gateway.store.getRequest(body.id);
    expect(JSON.stringify(reviewer.body)).not.toContain(stored!.nonce);
    expect(
      requestHash(
        {
          agent: "support-bot",
          connection: "billing-api",
          operation: "request",
          input: proposal.input as never,
          justification: proposal.justification,
          context: {},
        },
        stored!.nonce,
      ),
    ).toBe(body.hash);
    expect(canonicalJson(JSON.parse(call.body.toString()))).toBe(
      canonicalJson(proposal.input.body),
    );
  });

  it("refuses the agent's owner, whatever the case of the e-mail", async () => {
    const res = await submit(refund(), tokens.ops);
    const owner = await vote(res.body.id, "dave", "approve");
    expect(owner.status).toBe(403);
    expect(owner.body.error.code).toBe("self_approval");
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: tokens.dave! });
    expect(view.body.reviews).toHaveLength(0);
    expect(view.body.you.canApprove).toBe(false);
  });

  it("refuses reviewers outside the approver groups", async () => {
    const res = await submit(refund());
    const alice = await vote(res.body.id, "alice", "approve");
    expect(alice.status).toBe(403);
    expect(alice.body.error.code).toBe("self_approval"); // alice owns support-bot
    const ops = await submit(refund(), tokens.ops);
    const outsider = await vote(ops.body.id, "alice", "approve");
    expect(outsider.status).toBe(403);
    expect(outsider.body.error.code).toBe("not_an_approver");
    expect(outsider.body.error.message).toContain("finance");
    const denyToo = await vote(ops.body.id, "alice", "deny");
    expect(denyToo.body.error.code).toBe("not_an_approver");
  });

  it("makes any deny final, even after approvals", async () => {
    const res = await submit(refund());
    await vote(res.body.id, "bob", "approve");
    const deny = await vote(res.body.id, "carol", "deny", "not a duplicate");
    expect(deny.body.status).toBe("denied");
    const late = await vote(res.body.id, "erin", "approve");
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe("not_pending");
    const agentView = await api(gw.url, "GET", `/v1/actions/${res.body.id}`, {
      token: tokens.agent!,
    });
    expect(agentView.body.status).toBe("denied");
    expect(agentView.body.reviews.at(-1)).toMatchObject({
      reviewer: "carol@example.com",
      decision: "deny",
      comment: "not a duplicate",
    });
  });

  it("binds a vote to the hash the reviewer saw", async () => {
    const res = await submit(refund());
    const wrong = await api(gw.url, "POST", `/v1/requests/${res.body.id}/reviews`, {
      token: tokens.bob!,
      body: { decision: "approve", requestHash: "0".repeat(64) },
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.field).toBe("requestHash");
    const right = await api(gw.url, "POST", `/v1/requests/${res.body.id}/reviews`, {
      token: tokens.bob!,
      body: { decision: "approve", requestHash: res.body.hash },
    });
    expect(right.status).toBe(200);
  });

  it("lists for each reviewer only what they may decide", async () => {
    const mine = await submit(refund({ justification: "list test" }));
    const bobList = await api(gw.url, "GET", "/v1/requests", { token: tokens.bob! });
    expect(bobList.body.requests.map((r: { id: string }) => r.id)).toContain(mine.body.id);
    const aliceList = await api(gw.url, "GET", "/v1/requests", { token: tokens.alice! });
    expect(aliceList.body.requests.map((r: { id: string }) => r.id)).not.toContain(mine.body.id);
    await vote(mine.body.id, "bob", "approve");
    const bobAgain = await api(gw.url, "GET", "/v1/requests", { token: tokens.bob! });
    expect(bobAgain.body.requests.map((r: { id: string }) => r.id)).not.toContain(mine.body.id);
    const all = await api(gw.url, "GET", "/v1/requests?status=all&limit=200", {
      token: tokens.alice!,
    });
    expect(all.body.requests.map((r: { id: string }) => r.id)).toContain(mine.body.id);
  });

  it("keeps agents and reviewers to their own endpoints and requests", async () => {
    const asReviewer = await api(gw.url, "POST", "/v1/actions", {
      token: tokens.bob!,
      body: read(),
    });
    expect(asReviewer.status).toBe(403);
    expect(asReviewer.body.error.code).toBe("forbidden");
    const asAgent = await api(gw.url, "GET", "/v1/requests", { token: tokens.agent! });
    expect(asAgent.status).toBe(403);
    const theirs = await submit(refund(), tokens.ops);
    const peek = await api(gw.url, "GET", `/v1/actions/${theirs.body.id}`, {
      token: tokens.agent!,
    });
    expect(peek.status).toBe(404);
    const cancelTheirs = await api(gw.url, "POST", `/v1/actions/${theirs.body.id}/cancel`, {
      token: tokens.agent!,
    });
    expect(cancelTheirs.status).toBe(404);
    const none = await api(gw.url, "GET", "/v1/requests", {});
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe("unauthenticated");
    const bogus = await api(gw.url, "GET", "/v1/requests", { token: `alk_${"x".repeat(43)}` });
    expect(bogus.status).toBe(401);
  });
});

describe("an agent's own requests", () => {
  it("lists them newest first, filtered and paged, and never another agent's", async () => {
    // No sweep meanwhile: a request whose time is up is expired by the listing that finds it.
    const unswept = testConfig(upstream.url).replace("sweepInterval: 50ms", "sweepInterval: 10m");
    await withGateway(unswept, async (own) => {
      const agent = await own.token("agent", "support-bot");
      const ops = await own.token("agent", "ops-bot");
      const bob = await own.token("reviewer", "bob@example.com");
      const send = (body: unknown, token = agent) =>
        api(own.url, "POST", "/v1/actions", { token, body });
      const list = (query = "", token = agent) =>
        api(own.url, "GET", `/v1/actions${query}`, { token });
      const ran = await send(read("/invoices"));
      const denied = (await send({ ...read("/x"), input: { method: "DELETE", path: "/x" } })).body
        .action;
      const waiting = await send(refund());
      const short = await send({
        connection: "billing-api",
        operation: "request",
        input: { method: "POST", path: "/short" },
      });
      const theirs = await send(refund(), ops);
      expect(
        [ran.body, denied, waiting.body, short.body, theirs.body].map((a) => a.status),
      ).toEqual(["succeeded", "denied", "pending", "pending", "pending"]);
      const ids = (res: Awaited<ReturnType<typeof list>>) =>
        res.body.actions.map((a: { id: string }) => a.id);

      const everything = await list();
      expect(everything.status).toBe(200);
      expect(ids(everything)).toEqual([short.body.id, waiting.body.id, denied.id, ran.body.id]);
      expect(everything.body.next).toBeUndefined();
      // Each as the agent reads it alone: masked input, its result, its version.
      const one = await api(own.url, "GET", `/v1/actions/${ran.body.id}`, { token: agent });
      expect(everything.body.actions[3]).toEqual(one.body);
      expect(everything.body.actions[1].input.body.card_number).toBe("[masked]");

      // The short-lived one's time runs out: listed as pending, it is expired as it is read.
      await until(async () => Date.now() > Date.parse(short.body.expiresAt));
      const pending = await list("?status=pending");
      expect(ids(pending)).toEqual([waiting.body.id]);
      const ended = await list("?status=expired,denied");
      expect(ids(ended)).toEqual([short.body.id, denied.id]);
      expect(ended.body.actions[0].status).toBe("expired");

      const first = await list("?limit=2");
      expect(ids(first)).toEqual([short.body.id, waiting.body.id]);
      expect(first.body.next).toBe(waiting.body.id);
      const second = await list(`?limit=2&before=${first.body.next}`);
      expect(ids(second)).toEqual([denied.id, ran.body.id]);
      const third = await list(`?limit=2&before=${second.body.next}`);
      expect(ids(third)).toEqual([]);
      expect(third.body.next).toBeUndefined();

      expect(ids(await list("?connection=other-api"))).toEqual([]);
      expect(ids(await list("", ops))).toEqual([theirs.body.id]);

      const bad = await list("?status=waiting");
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ code: "invalid_request", field: "status" });
      const foreignFilter = await list("?agent=ops-bot");
      expect(foreignFilter.status).toBe(400);
      expect(foreignFilter.body.error.code).toBe("invalid_request");
      const asReviewer = await list("", bob);
      expect(asReviewer.status).toBe(403);
      expect(asReviewer.body.error.code).toBe("forbidden");
    });
  });
});

describe("approvals required from named groups", () => {
  const payoutRules = `
  - name: payouts need ops among two
    when: http.method == "POST" && http.path == "/payouts"
    decision: review
    review: { approvers: [finance, ops], quorum: 2, require: { ops: 1 } }
  - name: transfers need one of finance and one of ops
    when: http.method == "POST" && http.path == "/transfers"
    decision: review
    review: { approvers: [finance, ops], require: { finance: 1, ops: 1 } }`;
  const post = (path: string) => ({
    connection: "billing-api",
    operation: "request",
    input: { method: "POST", path, body: { amount: 10 } },
  });

  it("holds a request whose count is made until the required group approves, then runs it once", async () => {
    await withGateway(testConfig(upstream.url, payoutRules), async (own) => {
      const agent = await own.token("agent", "support-bot");
      const reviewer = async (name: string) => own.token("reviewer", `${name}@example.com`);
      const voteAs = async (id: string, name: string) =>
        api(own.url, "POST", `/v1/requests/${id}/reviews`, {
          token: await reviewer(name),
          body: { decision: "approve" },
        });
      const res = await api(own.url, "POST", "/v1/actions", {
        token: agent,
        body: post("/payouts"),
      });
      expect(res.status).toBe(202);
      const id = res.body.id as string;
      // Two finance approvals make the count, but nobody from ops has approved.
      expect((await voteAs(id, "carol")).body.status).toBe("pending");
      const second = await voteAs(id, "erin");
      expect(second.body.status).toBe("pending");
      expect(second.body.review).toMatchObject({
        approvals: 2,
        quorum: 2,
        require: { ops: 1 },
        needed: { ops: 1 },
      });
      expect(callsTo("/payouts")).toBe(0);
      // The agent is told what its request waits for, too.
      const seen = await api(own.url, "GET", `/v1/actions/${id}`, { token: agent });
      expect(seen.body).toMatchObject({ status: "pending", approvals: 2, needed: { ops: 1 } });
      expect(JSON.stringify(actionAnswer(seen.body))).toContain(
        "waits for a person's approval (2 of 2; still needed: 1 from ops)",
      );
      // Dave, in finance and ops, fills the place ops holds.
      const third = await voteAs(id, "dave");
      expect(third.status).toBe(200);
      expect(["approved", "executing", "succeeded"]).toContain(third.body.status);
      const done = await api(own.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
      expect(done.body.status).toBe("succeeded");
      expect(callsTo("/payouts")).toBe(1);
      // The trail says what each vote counted as, and what was still needed after it.
      const events = await own.gateway.store.listAudit({ requestId: id, limit: 100 });
      const reviewed = events.filter((e) => e.type === "request.reviewed").map((e) => e.data);
      expect(reviewed).toMatchObject([
        { reviewer: "carol@example.com", groups: ["finance"], needed: { ops: 1 } },
        { reviewer: "erin@example.com", groups: ["finance"], needed: { ops: 1 } },
        { reviewer: "dave@example.com", groups: ["finance", "ops"], needed: {} },
      ]);
      const decided = events.find((e) => e.type === "request.decided")!.data as {
        review: unknown;
      };
      expect(decided.review).toMatchObject({ quorum: 2, require: { ops: 1 } });
    });
  });

  it("lets someone in two required groups stand for one of them only, whatever the order of the votes", async () => {
    await withGateway(testConfig(upstream.url, payoutRules), async (own) => {
      const agent = await own.token("agent", "support-bot");
      const voteAs = async (id: string, name: string) =>
        api(own.url, "POST", `/v1/requests/${id}/reviews`, {
          token: await own.token("reviewer", `${name}@example.com`),
          body: { decision: "approve" },
        });
      const submitted = async () => {
        const res = await api(own.url, "POST", "/v1/actions", {
          token: agent,
          body: post("/transfers"),
        });
        expect(res.body.status).toBe("pending");
        return res.body.id as string;
      };
      // The quorum is what the groups add up to: two.
      const first = await submitted();
      const alone = await voteAs(first, "dave");
      expect(alone.body.status).toBe("pending");
      expect(alone.body.review).toMatchObject({ approvals: 1, quorum: 2 });
      // Dave stands for finance or ops, not both; carol (finance) completes it either way.
      const done = await voteAs(first, "carol");
      expect(["approved", "executing", "succeeded"]).toContain(done.body.status);
      // Carol first, then bob (finance too): ops is still missing.
      const second = await submitted();
      await voteAs(second, "carol");
      const stillOps = await voteAs(second, "bob");
      expect(stillOps.body.status).toBe("pending");
      expect(stillOps.body.review.needed).toEqual({ ops: 1 });
      // The console's list for dave (ops) holds it; what he sees says what is missing.
      const seen = await api(own.url, "GET", `/v1/requests/${second}`, {
        token: await own.token("reviewer", "dave@example.com"),
      });
      expect(seen.body.you.canApprove).toBe(true);
      expect((await voteAs(second, "dave")).body.status).not.toBe("pending");
    });
  });
});

describe("waiting, expiry, cancellation, idempotency", () => {
  it("wakes a waiting agent when the last approval lands", async () => {
    const pending = submit(refund({ justification: "wake me" }), tokens.agent, "?wait=10");
    let id: string | undefined;
    const deadline = Date.now() + 5000;
    while (!id && Date.now() < deadline) {
      const list = await api(gw.url, "GET", "/v1/requests", { token: tokens.carol! });
      id = list.body.requests.find(
        (r: { justification: string }) => r.justification === "wake me",
      )?.id;
      if (!id) await new Promise((r) => setTimeout(r, 20));
    }
    expect(id).toBeDefined();
    await vote(id!, "carol", "approve");
    await vote(id!, "erin", "approve");
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("succeeded");
    expect(res.body.id).toBe(id);
  });

  it("wakes an agent waiting from the version it has at each vote, not only at the end", async () => {
    const submitted = await submit(refund({ justification: "tell me each vote" }));
    const first = submitted.body.version;
    expect(first).toEqual(expect.any(Number));
    const path = (version: number) => `/v1/actions/${submitted.body.id}?wait=60&version=${version}`;
    const waiting = api(gw.url, "GET", path(first), { token: tokens.agent! });
    await vote(submitted.body.id, "carol", "approve");
    // Held for 60 s past the test's own timeout unless the vote ends the wait.
    const heard = await waiting;
    expect(heard.status).toBe(200);
    expect(heard.body).toMatchObject({ status: "pending", approvals: 1 });
    expect(heard.body.version).toBeGreaterThan(first);
    // A version already behind answers at once with the request as it is.
    const behind = await api(gw.url, "GET", path(first), { token: tokens.agent! });
    expect(behind.body).toMatchObject({ version: heard.body.version, approvals: 1 });
    for (const query of [
      "wait=1&version=0",
      "wait=1&version=1.5",
      "wait=1&version=x",
      "wait=1&version=9999999999",
      "version=1",
    ]) {
      const refused = await api(gw.url, "GET", `/v1/actions/${submitted.body.id}?${query}`, {
        token: tokens.agent!,
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: "invalid_request", field: "version" });
    }
  });

  it("ends a long-poll at its deadline with the request still pending", async () => {
    const res = await submit(refund());
    const started = Date.now();
    const polled = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=1`, {
      token: tokens.agent!,
    });
    expect(polled.body.status).toBe("pending");
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it("expires a request nobody decided, and refuses votes on it", async () => {
    const put = {
      connection: "billing-api",
      operation: "request",
      input: { method: "POST", path: "/short" },
    };
    const waited = await submit(put, tokens.agent, "?wait=5");
    expect(waited.status).toBe(200);
    expect(waited.body.status).toBe("expired");
    const late = await vote(waited.body.id, "bob", "approve");
    expect(late.status).toBe(410);
    expect(late.body.error.code).toBe("expired");
    expect(callsTo("/short")).toBe(0);
    const audit = await api(gw.url, "GET", `/v1/audit?requestId=${waited.body.id}`, {
      token: tokens.bob!,
    });
    expect(audit.body.events.map((e: { type: string }) => e.type)).toContain("request.expired");
  });

  it("lets the agent cancel its own pending request, and only a pending one", async () => {
    const res = await submit({
      connection: "billing-api",
      operation: "request",
      input: { method: "PUT", path: "/x" },
    });
    const cancelled = await api(gw.url, "POST", `/v1/actions/${res.body.id}/cancel`, {
      token: tokens.agent!,
    });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe("cancelled");
    const twice = await api(gw.url, "POST", `/v1/actions/${res.body.id}/cancel`, {
      token: tokens.agent!,
    });
    expect(twice.status).toBe(409);
    expect(twice.body.error.code).toBe("not_pending");
    const voteAfter = await vote(res.body.id, "bob", "approve");
    expect(voteAfter.body.error.code).toBe("not_pending");
  });

  it("returns the same request for the same idempotency key, and refuses the key for a different action", async () => {
    const first = await submit({ ...read("/invoices/idem"), idempotencyKey: "read-idem-1" });
    const calls = callsTo("/invoices/idem");
    const second = await submit({ ...read("/invoices/idem"), idempotencyKey: "read-idem-1" });
    expect(second.body.id).toBe(first.body.id);
    expect(callsTo("/invoices/idem")).toBe(calls);
    const other = await submit({ ...read("/invoices/other"), idempotencyKey: "read-idem-1" });
    expect(other.status).toBe(400);
    expect(other.body.error).toMatchObject({ code: "invalid_request", field: "idempotencyKey" });
    // keys belong to an agent: another agent may use the same one
    const ops = await submit(
      { ...read("/invoices/idem"), idempotencyKey: "read-idem-1" },
      tokens.ops,
    );
    expect(ops.body.id).not.toBe(first.body.id);
  });
});

describe("the http connector's boundaries", () => {
  it("refuses paths that would leave the base URL, before anything runs", async () => {
    const before = upstream.calls.length;
    for (const path of [
      "/../admin",
      "/%2e%2e/admin",
      "//evil.example/x",
      "/a/./b",
      "relative",
      "/a\\b",
      "/a?x=1",
    ]) {
      const res = await submit(read(path));
      expect(res.status, path).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", field: "input.path" });
    }
    expect(upstream.calls.length).toBe(before);
  });

  it("gives rules, reviewers and the upstream one spelling of a percent-encoded path", async () => {
    const refundInDisguise = await submit({
      ...refund(),
      input: { method: "POST", path: "/%72efunds", body: { amount: 1 } },
    });
    expect(refundInDisguise.status).toBe(202);
    expect(refundInDisguise.body.decision.rule).toBe("refunds need two finance reviewers");
    expect(refundInDisguise.body.input.path).toBe("/refunds");
    const read = await submit({
      connection: "billing-api",
      operation: "request",
      input: { method: "GET", path: "/%69nvoices/%41-1" },
    });
    expect(read.body.status).toBe("succeeded");
    expect(upstream.calls.at(-1)!.url).toBe("/api/invoices/A-1");
  });

  it("gives rules, the hash reviewers approve and the upstream the path as sent, however a URL needs it encoded", async () => {
    const put = (path: string) => ({
      connection: "billing-api",
      operation: "request",
      input: { method: "PUT", path },
      idempotencyKey: "cafe-put",
    });
    const res = await submit(put("/caf\u00e9/{id}"));
    expect(res.status).toBe(202);
    expect(res.body.input.path).toBe("/caf%C3%A9/%7Bid%7D");
    // The same request spelled as the upstream receives it: one hash, so the same request.
    const again = await submit(put("/caf%c3%a9/%7bid%7d"));
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(res.body.id);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: tokens.bob! });
    expect(view.body.facts.http).toEqual({ method: "PUT", path: "/caf%C3%A9/%7Bid%7D" });
    expect(view.body.preview).toBe("PUT billing-api/api/caf%C3%A9/%7Bid%7D");
    expect((await vote(res.body.id, "bob", "approve")).status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, {
      token: tokens.agent!,
    });
    expect(done.body.status).toBe("succeeded");
    expect(upstream.calls.at(-1)!.url).toBe(`/api${view.body.facts.http.path}`);
  });

  it("refuses an agent's attempt to set the connection's own headers or transport headers", async () => {
    const spoof = await submit({
      ...read(),
      input: { method: "GET", path: "/x", headers: { Authorization: "Bearer mine" } },
    });
    expect(spoof.status).toBe(400);
    expect(spoof.body.error.field).toBe("input.headers.Authorization");
    const host = await submit({
      ...read(),
      input: { method: "GET", path: "/x", headers: { host: "evil" } },
    });
    expect(host.body.error.field).toBe("input.headers.host");
  });

  it("refuses a method override spelt with _, which Rack, WSGI and PHP read as X-HTTP-Method-Override", async () => {
    const before = upstream.calls.length;
    for (const header of ["x_http_method_override", "X_HTTP_Method", "x_original_url"]) {
      const res = await submit({
        ...read("/refunds"),
        input: { method: "GET", path: "/refunds", headers: { [header]: "POST" } },
      });
      expect(res.status, header).toBe(400);
      expect(res.body.error).toMatchObject({
        code: "invalid_request",
        field: `input.headers.${header}`,
      });
    }
    expect(upstream.calls.length).toBe(before);
  });

  it("refuses a _method parameter, which frameworks read as the method to run, before anything runs", async () => {
    const before = upstream.calls.length;
    for (const [input, field] of [
      [{ method: "GET", path: "/refunds", query: { _method: "POST" } }, "input.query._method"],
      [{ method: "POST", path: "/refunds", body: { _method: "DELETE" } }, "input.body._method"],
      [
        {
          method: "POST",
          path: "/refunds",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "invoice=inv_1&_method=DELETE",
        },
        "input.body",
      ],
    ] as const) {
      const res = await submit({ ...refund(), input });
      expect(res.status, field).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", field });
      expect(res.body.error.message).toContain(`policy decided on`);
    }
    expect(upstream.calls.length).toBe(before);
  });

  it("ends the request failed, with the reason, when the upstream fails", async () => {
    const res = await submit(read("/fail"));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("failed");
    expect(res.body.outcome.reason).toContain("HTTP 500");
    expect(res.body.result.body).toEqual({ error: "upstream broke" });
  });

  it("says the outcome is unknown when a connector throws after its call went out, and never runs it again", async () => {
    const http = gw.gateway.connectors.get("billing-api")!;
    const execute = http.execute;
    http.execute = async (...args) => {
      await execute(...args);
      throw new Error("a bug after the call");
    };
    try {
      const res = await submit(read("/thrown"));
      expect(res.status).toBe(200);
      expect(res.body.status).toBe("failed");
      expect(res.body.outcome.reason).toContain("a bug after the call");
      expect(res.body.outcome.reason).toMatch(/whether the action took effect is unknown/);
      await gw.gateway.executor.recover({ all: true });
      const again = await api(gw.url, "GET", `/v1/actions/${res.body.id}`, {
        token: tokens.agent!,
      });
      expect(again.body.status).toBe("failed");
      expect(callsTo("/thrown")).toBe(1);
    } finally {
      http.execute = execute;
    }
  });

  it("keeps a masked field out of a thrown connector's message", async () => {
    const http = gw.gateway.connectors.get("billing-api")!;
    const execute = http.execute;
    http.execute = async (_operation, input) => {
      throw new Error(
        `card ${(input as { body: { card_number: string } }).body.card_number} refused`,
      );
    };
    try {
      const held = await submit(refund());
      expect(held.status).toBe(202);
      await vote(held.body.id, "bob", "approve");
      await vote(held.body.id, "carol", "approve");
      const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, {
        token: tokens.agent!,
      });
      expect(done.body.status).toBe("failed");
      expect(done.body.outcome.reason).toMatch(/^the connector failed: card .* refused/);
      const everything = JSON.stringify([
        done.body,
        (await api(gw.url, "GET", `/v1/audit?requestId=${held.body.id}`, { token: tokens.bob! }))
          .body,
      ]);
      expect(everything).not.toContain("4242424242424242");
    } finally {
      http.execute = execute;
    }
  });

  it("masks what the result detectors find in a thrown connector's message, in the outcome and the log", async () => {
    const extra = `  - name: card lookups
    when: http.method == "PATCH" && http.path == "/cards/lookup"
    decision: allow
    mask: { result: [card] }`;
    await withGateway(testConfig(upstream.url, extra), async (own) => {
      const token = await own.token("agent", "support-bot");
      const http = own.gateway.connectors.get("billing-api")!;
      http.execute = async () => {
        // A parser's error quotes what it read: the upstream's words, a card among them.
        throw new SyntaxError(
          `Unexpected token 'c', "card 4242 4242 4242 4242 declined" is not valid JSON`,
        );
      };
      const res = await api(own.url, "POST", "/v1/actions", {
        token,
        body: { ...read(), input: { method: "PATCH", path: "/cards/lookup" } },
      });
      expect(res.body.status).toBe("failed");
      expect(res.body.outcome.reason).toContain('"card **** 4242 declined"');
      const everything = [
        res.text,
        JSON.stringify(await own.gateway.store.listAudit({ limit: 1000 })),
        own.logs.join(""),
      ].join("\n");
      expect(own.logs.join("")).toContain("the connector failed");
      expect(everything).not.toContain("4242 4242");
    });
  });

  it("records an action that ran as run, its result withheld, when the result cannot be masked", async () => {
    const http = gw.gateway.connectors.get("billing-api")!;
    const execute = http.execute;
    http.execute = async (...args) => {
      const done = await execute(...args);
      // A result no walk can read: the masking throws on it.
      const result = Object.defineProperty({}, "body", {
        enumerable: true,
        get: () => {
          throw new Error("unreadable field");
        },
      });
      return { ...done, result };
    };
    try {
      const res = await submit(read("/unmaskable"));
      expect(res.status).toBe(200);
      expect(res.body.status).toBe("succeeded");
      expect(res.body.result).toBeNull();
      expect(res.body.outcome.reason).toMatch(
        /the action ran .* but Airlock could not process the result, so it is not kept/,
      );
      expect(callsTo("/unmaskable")).toBe(1);
    } finally {
      http.execute = execute;
    }
  });

  it("keeps what an action did when its request was ended while it ran, beside that verdict", async () => {
    const held = upstream.hold("/api/late");
    const answer = submit(read("/late"));
    await held.arrived;
    const running = await api(gw.url, "GET", "/v1/requests?status=executing", {
      token: tokens.bob!,
    });
    const id = running.body.requests.find(
      (r: { input: { path: string } }) => r.input.path === "/late",
    ).id as string;
    // As a replica that took the lease for lapsed would: the request ends "outcome unknown".
    await gw.gateway.store.transition(
      id,
      (current) => interruptExecution(current, Date.now()),
      gw.gateway.dispatcher.plan,
    );
    held.release();
    const res = await answer;
    expect(res.body.status).toBe("failed");
    expect(res.body.outcome.summary).toBe("outcome unknown");
    const trail = await api(gw.url, "GET", `/v1/audit?requestId=${id}`, { token: tokens.bob! });
    const types = trail.body.events.map((e: { type: string }) => e.type);
    expect(types.slice(-2)).toEqual(["execution.failed", "execution.late_outcome"]);
    expect(trail.body.events.at(-1).data).toMatchObject({
      ok: true,
      summary: expect.stringMatching(/^HTTP 200/),
      recordedStatus: "failed",
    });
    expect(callsTo("/late")).toBe(1);
  });

  it("records as succeeded an action whose answer holds a number no double can hold", async () => {
    // JSON.parse reads 1e999 as Infinity, which the result's digest cannot encode: the run
    // was recorded as "the connector failed" although the upstream had done it.
    const res = await submit(read("/beyond-double"));
    expect(callsTo("/beyond-double")).toBe(1);
    expect(res.body.status).toBe("succeeded");
    expect(res.body.outcome.summary).toMatch(/^HTTP 200/);
    expect(res.body.result.body).toEqual({ refunded: true, amount: "Infinity" });
  });
});

describe("audit verification over the API", () => {
  it("verifies the chain, checks a recorded head, and shares one run among callers at once", async () => {
    await submit(read("/verify-me"));
    const first = await api(gw.url, "GET", "/v1/audit/verify", { token: tokens.bob! });
    expect(first.status).toBe(200);
    expect(first.body.ok).toBe(true);
    const { seq, hash } = first.body.head as { seq: number; hash: string };
    const check = (expectHead: string) =>
      api(gw.url, "GET", `/v1/audit/verify?expectHead=${expectHead}`, { token: tokens.bob! });
    expect((await check(`${seq}:${hash}`)).body.ok).toBe(true);
    const rewritten = await check(`${seq}:${"0".repeat(64)}`);
    expect(rewritten.body).toMatchObject({ ok: false, problem: { kind: "rewritten", seq } });
    const cut = await check(`${seq + 1000}:${hash}`);
    expect(cut.body).toMatchObject({ ok: false, problem: { kind: "cut_off" } });
    for (const wrong of ["latest", `0:${hash}`, `${seq}:${hash.slice(1)}`]) {
      const bad = await check(wrong);
      expect(bad.status).toBe(400);
      expect(bad.body.error.field).toBe("expectHead");
    }

    // Five reviewers at once, asking about different heads: the chain is walked once.
    const store = gw.gateway.store;
    const original = store.auditEvents.bind(store);
    let reads = 0;
    // The first read waits a moment, so the other four callers arrive while it runs.
    store.auditEvents = async function* (options) {
      reads++;
      await new Promise((resolve) => setTimeout(resolve, 500));
      yield* original(options);
    };
    try {
      const heads = ["", `?expectHead=${seq}:${hash}`, `?expectHead=1:${"a".repeat(64)}`];
      const answers = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          api(gw.url, "GET", `/v1/audit/verify${heads[i % 3]}`, { token: tokens.bob! }),
        ),
      );
      expect(answers.map((a) => a.body.ok)).toEqual([true, true, false, true, true]);
      expect(answers[2]!.body.problem).toMatchObject({ kind: "rewritten", seq: 1 });
      expect(reads).toBe(1);
    } finally {
      store.auditEvents = original;
    }
  });
});

describe("audit verification of a long chain", () => {
  it("lets other calls through while it walks", async () => {
    await withGateway(testConfig(upstream.url), async (own) => {
      const bob = await own.token("reviewer", "bob@example.com");
      for (let batch = 0; batch < 40; batch++) {
        await own.gateway.store.appendAudit(
          Array.from({ length: 1000 }, (_, i) => ({
            type: "test.filler",
            requestId: null,
            actor: { type: "system" as const, id: "test" },
            at: Date.now(),
            data: { n: batch * 1000 + i },
          })),
        );
      }
      const order: string[] = [];
      const walk = api(own.url, "GET", "/v1/audit/verify", { token: bob }).then((answer) => {
        order.push("verify");
        return answer;
      });
      await new Promise((resolve) => setTimeout(resolve, 30));
      const health = api(own.url, "GET", "/healthz").then(() => order.push("healthz"));
      const [verified] = await Promise.all([walk, health]);
      expect(verified.body.ok).toBe(true);
      // Before, the walk held the event loop to its end, and /healthz waited behind it.
      expect(order).toEqual(["healthz", "verify"]);
    });
  });
});

describe("an agent's submission rate", () => {
  it("is capped by agents[].rateLimit: past its burst, submissions are refused with Retry-After and nothing runs", async () => {
    await withGateway(
      testConfig(upstream.url).replace(
        "{ name: ops-bot, owner: Dave@Example.com }",
        "{ name: ops-bot, owner: Dave@Example.com, rateLimit: { perMinute: 6, burst: 3 } }",
      ),
      async (own) => {
        const token = await own.token("agent", "ops-bot");
        const submit = () => api(own.url, "POST", "/v1/actions", { token, body: read() });
        const calls = upstream.calls.length;
        for (let i = 0; i < 3; i++) expect((await submit()).status).toBe(200);
        const requests = () => own.gateway.store.listRequests({ limit: 100 });
        const before = (await requests()).length;
        const refused = await submit();
        expect(refused.status).toBe(429);
        // A token comes back every 10 s: the wait is that, less what has passed since.
        expect(refused.body.error.code).toBe("rate_limited");
        expect(refused.body.error.retryAfter).toBeGreaterThanOrEqual(8);
        expect(refused.body.error.retryAfter).toBeLessThanOrEqual(10);
        expect(refused.body.error.message).toContain("agents[].rateLimit");
        expect(refused.headers.get("retry-after")).toBe(String(refused.body.error.retryAfter));
        // The OpenAPI document says so.
        const doc = (await api(own.url, "GET", "/openapi.json")).body;
        expect(doc.components.schemas.Error.properties.error.properties.retryAfter).toMatchObject({
          type: "integer",
        });
        expect(doc.paths["/v1/actions"].post.responses["429"].headers["Retry-After"]).toBeDefined();
        // Refused before anything: nothing stored, the upstream not called.
        expect((await requests()).length).toBe(before);
        expect(upstream.calls.length).toBe(calls + 3);
        // Another agent, without a limit, is not held back.
        const other = await own.token("agent", "support-bot");
        for (let i = 0; i < 5; i++) {
          const res = await api(own.url, "POST", "/v1/actions", { token: other, body: read() });
          expect(res.status).toBe(200);
        }
      },
    );
  });
});

describe("an agent's requests waiting for review", () => {
  it("are capped by agents[].maxPending: past it, reviews are refused and nothing is stored", async () => {
    await withGateway(
      testConfig(upstream.url).replace(
        "{ name: ops-bot, owner: Dave@Example.com }",
        "{ name: ops-bot, owner: Dave@Example.com, maxPending: 2 }",
      ),
      async (own) => {
        const token = await own.token("agent", "ops-bot");
        const submit = (body: unknown) =>
          api(own.url, "POST", "/v1/actions", { token, body: body as Record<string, unknown> });
        const first = await submit(refund({ idempotencyKey: "first" }));
        expect((await submit(refund())).status).toBe(202);
        const requests = () => own.gateway.store.listRequests({ limit: 100 });
        const before = (await requests()).length;
        const refused = await submit(refund());
        expect(refused.status).toBe(429);
        expect(refused.body.error.code).toBe("rate_limited");
        expect(refused.body.error.message).toContain("agents[].maxPending");
        expect((await requests()).length).toBe(before);
        // What needs no review still runs; a request already made is still found by its key.
        expect((await submit(read())).status).toBe(200);
        const again = await submit(refund({ idempotencyKey: "first" }));
        expect(again.body.id).toBe(first.body.id);
        // Another agent has its own count.
        const other = await own.token("agent", "support-bot");
        const byOther = await api(own.url, "POST", "/v1/actions", { token: other, body: refund() });
        expect(byOther.status).toBe(202);
        // Once one is decided or cancelled, there is room again.
        await api(own.url, "POST", `/v1/actions/${first.body.id}/cancel`, { token });
        expect((await submit(refund())).status).toBe(202);
      },
    );
  });

  it("stay capped under a burst: of 40 submissions at once, exactly maxPending wait, and the refused leave no trace", async () => {
    await withGateway(
      testConfig(upstream.url).replace(
        "{ name: ops-bot, owner: Dave@Example.com }",
        "{ name: ops-bot, owner: Dave@Example.com, maxPending: 5 }",
      ),
      async (own) => {
        const token = await own.token("agent", "ops-bot");
        const reviewer = await own.token("reviewer", "bob@example.com");
        const store = own.gateway.store;
        const agent = own.gateway.config.agents.find((a) => a.name === "ops-bot")!;
        const message = "already has 5 requests waiting for review";
        /** The burst's recorded requests, after checking that only they left events. */
        const recorded = async (eventsBefore: number) => {
          const pending = await store.listRequests({
            agent: "ops-bot",
            statuses: ["pending"],
            limit: 100,
          });
          const events = (await store.listAudit({ limit: 100_000 })).slice(eventsBefore);
          expect(new Set(events.map((e) => e.requestId))).toEqual(
            new Set(pending.map((r) => r.id)),
          );
          return pending.map((r) => r.id).sort();
        };

        // Through the service in one turn of the event loop: every submission passes the
        // early count before any of them is recorded.
        let eventsBefore = (await store.listAudit({ limit: 100_000 })).length;
        const settled = await Promise.allSettled(
          Array.from({ length: 40 }, (_, i) =>
            own.gateway.requests.submit(agent, { ...refund(), idempotencyKey: `service-${i}` }),
          ),
        );
        const kept = settled.filter((r) => r.status === "fulfilled").map((r) => r.value.id);
        expect(kept).toHaveLength(5);
        for (const r of settled.filter((r) => r.status === "rejected")) {
          expect(r.reason).toMatchObject({ code: "rate_limited" });
          expect((r.reason as Error).message).toContain(message);
        }
        expect(await recorded(eventsBefore)).toEqual(kept.sort());
        // A refused key was never used: once there is room, it makes a new request.
        const refusedKey = settled.findIndex((r) => r.status === "rejected");
        for (const id of kept) await api(own.url, "POST", `/v1/actions/${id}/cancel`, { token });
        const retried = await own.gateway.requests.submit(agent, {
          ...refund(),
          idempotencyKey: `service-${refusedKey}`,
        });
        expect(kept).not.toContain(retried.id);
        await api(own.url, "POST", `/v1/actions/${retried.id}/cancel`, { token });

        // And over HTTP.
        eventsBefore = (await store.listAudit({ limit: 100_000 })).length;
        const answers = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            api(own.url, "POST", "/v1/actions", {
              token,
              body: refund({ idempotencyKey: `http-${i}` }),
            }),
          ),
        );
        const accepted = answers.filter((res) => res.status === 202);
        const refused = answers.filter((res) => res.status === 429);
        expect(accepted).toHaveLength(5);
        expect(refused).toHaveLength(35);
        for (const res of refused) {
          expect(res.body.error.code).toBe("rate_limited");
          expect(res.body.error.message).toContain(message);
          expect(res.headers.get("retry-after")).toBeNull();
        }
        expect(await recorded(eventsBefore)).toEqual(
          accepted.map((res) => res.body.id as string).sort(),
        );
        const verified = await api(own.url, "GET", "/v1/audit/verify", { token: reviewer });
        expect(verified.body.ok).toBe(true);
      },
    );
  });

  it("does not count a request whose time is up, even before the sweeper ends it", async () => {
    await withGateway(
      testConfig(upstream.url)
        .replace("sweepInterval: 50ms", "sweepInterval: 1h")
        .replace(
          "{ name: ops-bot, owner: Dave@Example.com }",
          "{ name: ops-bot, owner: Dave@Example.com, maxPending: 1 }",
        ),
      async (own) => {
        const token = await own.token("agent", "ops-bot");
        const short = { ...read(), input: { method: "POST", path: "/short" } };
        const held = await api(own.url, "POST", "/v1/actions", { token, body: short });
        expect(held.status).toBe(202);
        await new Promise((resolve) => setTimeout(resolve, 400));
        const next = await api(own.url, "POST", "/v1/actions", { token, body: refund() });
        expect(next.status).toBe(202);
      },
    );
  });
});
