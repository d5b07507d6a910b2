/**
 * Invariant 4 across stops: a gateway killed mid-execution never runs that action again and
 * ends it `failed` with "outcome unknown"; pending requests survive a restart; two approvals
 * landing together lead to exactly one execution.
 */
import { once } from "node:events";
import { mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, killed, runCli, startServe } from "./support/cli.js";
import {
  api,
  read,
  refund,
  removeDir,
  startGateway,
  testConfig,
  until,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
const dirs: string[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
  for (const dir of dirs) removeDir(dir);
});

/**
 * Writes approvals and the approved status straight into the database, as if they had been
 * committed and the process had then lost the hand-off to the executor.
 */
function forceApproved(
  dir: string,
  request: { id: string; hash: string },
  reviewers: string[],
): void {
  const db = new Database(join(dir, "airlock.db"));
  const insert = db.prepare(
    `INSERT INTO reviews (id, request_id, reviewer, decision, comment, request_hash, evidence, created_at)
     VALUES (?, ?, ?, 'approve', '', ?, '{"method":"personal_token"}', ?)`,
  );
  for (const reviewer of reviewers)
    insert.run(`rev_${reviewer}`, request.id, reviewer, request.hash, Date.now());
  db.prepare("UPDATE requests SET status = 'approved', version = version + 1 WHERE id = ?").run(
    request.id,
  );
  db.close();
}

/** An `airlock serve` config in a directory of its own, on a free port; `extra` follows it. */
async function serveConfig(extra = ""): Promise<{ port: number; config: string }> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-serve-"));
  dirs.push(dir);
  const port = await freePort();
  const config = join(dir, "airlock.yaml");
  const text = testConfig(upstream.url).replace("server: { port: 0,", `server: { port: ${port},`);
  writeFileSync(config, `${text}${extra}`);
  return { port, config };
}

const callsTo = (path: string) => upstream.calls.filter((c) => c.url === `/api${path}`).length;

describe("a gateway process killed while an action runs", () => {
  it("ends the action failed with outcome unknown after restart, and never runs it again", async () => {
    const { port, config } = await serveConfig();
    const env = { BILLING_API_TOKEN: "crash-test-credential", AIRLOCK_LOG_LEVEL: "warn" };
    const token = async (flag: string, subject: string) => {
      const result = await runCli(["token", "create", flag, subject, "--config", config], { env });
      expect(result.code, result.stderr).toBe(0);
      return result.stdout.trim();
    };
    const agent = await token("--agent", "support-bot");
    const bob = await token("--reviewer", "bob@example.com");
    const carol = await token("--reviewer", "carol@example.com");

    let serve = await startServe(config, port, env);
    // One reviewed action that will be running when the process dies, one allowed action too,
    // and one that is still pending.
    const slowRefund = upstream.hold("/api/refunds/slow");
    const reviewed = await api(serve.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { method: "POST", path: "/refunds/slow", body: { amount: 1 } } },
    });
    const waiting = await api(serve.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: "survives" }),
    });
    expect(waiting.body.status).toBe("pending");
    await vote(serve.url, reviewed.body.id, bob);
    await vote(serve.url, reviewed.body.id, carol);
    await slowRefund.arrived;

    const slowRead = upstream.hold("/api/slow");
    const allowed = fetch(`${serve.url}/v1/actions`, {
      method: "POST",
      headers: { authorization: `Bearer ${agent}`, "content-type": "application/json" },
      body: JSON.stringify(read("/slow")),
    }).catch(() => undefined);
    await slowRead.arrived;

    serve.child.kill("SIGKILL");
    await killed(serve.child);
    slowRefund.release();
    slowRead.release();
    await allowed;
    expect(callsTo("/refunds/slow")).toBe(1);
    expect(callsTo("/slow")).toBe(1);

    serve = await startServe(config, port, env);
    try {
      const after = await api(serve.url, "GET", `/v1/actions/${reviewed.body.id}`, {
        token: agent,
      });
      expect(after.body.status).toBe("failed");
      expect(after.body.outcome.reason).toContain("outcome unknown");
      const reads = await api(serve.url, "GET", "/v1/requests?status=failed", { token: bob });
      const interrupted = reads.body.requests.filter(
        (r: { outcome?: { summary: string } }) => r.outcome?.summary === "outcome unknown",
      );
      expect(interrupted).toHaveLength(2);

      // The pending one is still there, still reviewable, and runs once approved.
      const stillPending = await api(serve.url, "GET", `/v1/requests/${waiting.body.id}`, {
        token: bob,
      });
      expect(stillPending.body.status).toBe("pending");
      await vote(serve.url, waiting.body.id, bob);
      await vote(serve.url, waiting.body.id, carol);
      const done = await api(serve.url, "GET", `/v1/actions/${waiting.body.id}?wait=5`, {
        token: agent,
      });
      expect(done.body.status).toBe("succeeded");

      // Give any wrongful retry a chance to happen before counting.
      await new Promise((r) => setTimeout(r, 300));
      expect(callsTo("/refunds/slow")).toBe(1);
      expect(callsTo("/slow")).toBe(1);
    } finally {
      serve.child.kill("SIGTERM");
      await killed(serve.child);
    }
    const verified = await runCli(["audit", "verify", "--config", config], { env });
    expect(verified.stdout).toContain("audit chain OK");
    const exported = await runCli(["audit", "export", "--config", config], { env });
    const types = exported.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.requestId === reviewed.body.id)
      .map((e) => e.type);
    expect(types).toEqual([
      "request.submitted",
      "request.decided",
      "request.reviewed",
      "request.reviewed",
      "request.approved",
      "execution.started",
      "execution.failed",
    ]);
  });

  it("makes again at once, after a restart, the deliveries it had under way when it was killed", async () => {
    // The upstream stands in for a webhook receiver; it answers 200 to what it does not hold.
    const { port, config } = await serveConfig(`
channels:
  webhooks:
    - { url: "${upstream.url}/hooks/killed", secret: "whsec_${Buffer.alloc(32, 1).toString("base64")}", timeout: 60s }
`);
    const env = { BILLING_API_TOKEN: "crash-test-credential", AIRLOCK_LOG_LEVEL: "warn" };
    const made = await runCli(["token", "create", "--agent", "support-bot", "--config", config], {
      env,
    });
    const agent = made.stdout.trim();
    const hooked = () => upstream.calls.filter((c) => c.url === "/hooks/killed");
    const receiving = upstream.hold("/hooks/killed");
    let serve = await startServe(config, port, env);
    try {
      await api(serve.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await receiving.arrived;
      // Killed (or stopped by a second SIGTERM) while the receiver had not answered yet.
      serve.child.kill("SIGKILL");
      await killed(serve.child);
      receiving.release();
      serve = await startServe(config, port, env);
      // Before, the delivery waited for its claim's lease to run out: five minutes.
      await until(() => hooked().length === 2);
      const [first, again] = hooked();
      expect(again!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    } finally {
      serve.child.kill("SIGTERM");
      await killed(serve.child);
    }
  });

  it("refuses to start a second gateway on the same SQLite file", async () => {
    const { port, config } = await serveConfig();
    const env = { BILLING_API_TOKEN: "lock-test-credential" };
    const serve = await startServe(config, port, env);
    try {
      const second = await runCli(["serve", "--config", config], { env });
      expect(second.code).toBe(1);
      expect(second.stderr).toContain("another gateway is serving");
    } finally {
      serve.child.kill("SIGTERM");
      await killed(serve.child);
    }
  });
});

describe("in-process restarts and races", () => {
  it("refuses a second gateway on the same file even in the same process (one PID, as in containers)", async () => {
    const first = await startGateway(testConfig(upstream.url));
    dirs.push(first.dir);
    try {
      await expect(startGateway(testConfig(upstream.url), { dir: first.dir })).rejects.toThrow(
        "another gateway is serving",
      );
    } finally {
      await first.close();
    }
    const again = await startGateway(testConfig(upstream.url), { dir: first.dir });
    await again.close();
  });

  it("takes a SQLite file reached through a symlink for that file: one gateway on it, and one that serves", async () => {
    const first = await startGateway(testConfig(upstream.url));
    dirs.push(first.dir);
    symlinkSync(join(first.dir, "airlock.db"), join(first.dir, "link.db"));
    const linked = testConfig(upstream.url).replace("sqlite:./airlock.db", "sqlite:./link.db");
    try {
      const agent = await first.token("agent", "support-bot");
      const held = upstream.hold("/api/linked-slow");
      const pending = api(first.url, "POST", "/v1/actions", {
        token: agent,
        body: read("/linked-slow"),
      });
      await held.arrived;
      try {
        // Its lock file was named after the link: a second gateway started, and its start
        // ended the first one's execution, still running, as "outcome unknown".
        await expect(startGateway(linked, { dir: first.dir })).rejects.toThrow(
          "another gateway is serving",
        );
      } finally {
        held.release();
      }
      expect((await pending).body.status).toBe("succeeded");
    } finally {
      await first.close();
    }
    // SQLite names the WAL after the file the link points to: the gateway synced one by the
    // link's name, which is not there, and failed its first write.
    const again = await startGateway(linked, { dir: first.dir });
    try {
      const agent = await again.token("agent", "support-bot");
      const res = await api(again.url, "POST", "/v1/actions", {
        token: agent,
        body: read("/linked"),
      });
      expect(res.body.status).toBe("succeeded");
    } finally {
      await again.close();
    }
  });

  it("stops although a client holds a connection it never sent a request on", async () => {
    const gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    // A balancer's or an HTTP client's spare connection: open, silent.
    const spare = connect(Number(new URL(gw.url).port), "127.0.0.1");
    await once(spare, "connect");
    const ended = once(spare, "close");
    const stopped = gw.close();
    // Node alone leaves it open until the client gives up; the stop would wait for that.
    await ended;
    await stopped;
    expect(spare.destroyed).toBe(true);
  });

  it("stops although a kept-alive connection has begun its next request and stalled", async () => {
    const gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    const socket = connect(Number(new URL(gw.url).port), "127.0.0.1");
    await once(socket, "connect");
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    socket.write("GET /healthz HTTP/1.1\r\nHost: airlock\r\n\r\n");
    await until(() => answer.includes('"status":"ok"'));
    // The next request's headers, not all sent: Node no longer counts the connection idle.
    socket.write("GET /healthz HTTP/1.1\r\nHost: airlock\r\nX-Stalled: ");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const ended = once(socket, "close");
    // Before, the stop waited out the keep-alive timeout, 72 s.
    await gw.close();
    await ended;
    expect(answer.match(/HTTP\/1\.1/g)).toHaveLength(1);
  });

  it("stops once an answer under way is out, though its client would keep the connection", async () => {
    const gw = await startGateway(testConfig(upstream.url).replace("timeout: 2s", "timeout: 20s"));
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const slow = upstream.hold("/api/slow-at-stop");
    // An HTTP/1.1 client that keeps its connection alive, as the SDK's does.
    const socket = connect(Number(new URL(gw.url).port), "127.0.0.1");
    await once(socket, "connect");
    const body = JSON.stringify(read("/slow-at-stop"));
    socket.write(
      `POST /v1/actions HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer ${agent}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n${body}`,
    );
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    const closed = once(socket, "close");
    await slow.arrived;
    const stopped = gw.close();
    slow.release();
    // Before, the answer came kept alive, and the stop waited out the keep-alive timeout
    // (72 s) for a client that had no more to ask.
    await closed;
    await stopped;
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.toLowerCase()).toContain("connection: close");
    expect(answer).toContain('"status":"succeeded"');
  });

  it("stops at once although a client is still sending a request's body, which is answered 503", async () => {
    // A long body deadline: the stop must not wait for it.
    const gw = await startGateway(
      testConfig(upstream.url).replace(
        "sweepInterval: 50ms",
        "sweepInterval: 50ms, requestTimeout: 5m",
      ),
    );
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const received = once(gw.gateway.app.server, "request");
    const socket = connect(Number(new URL(gw.url).port), "127.0.0.1");
    await once(socket, "connect");
    const body = JSON.stringify(read("/never-sent"));
    socket.write(
      `POST /v1/actions HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer ${agent}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 10)}`,
    );
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    const closed = once(socket, "close");
    // The headers are in and the body is being read when the stop comes.
    await received;
    // Before, the stop waited for the body deadline (server.requestTimeout), here 5 minutes.
    await gw.close();
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(answer).toContain('"code":"store_unavailable"');
    expect(callsTo("/never-sent")).toBe(0);
  });

  it("keeps pending requests and their votes across a restart", async () => {
    let gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const bob = await gw.token("reviewer", "bob@example.com");
    const erin = await gw.token("reviewer", "erin@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: "restart" }),
    });
    await vote(gw.url, held.body.id, bob);
    gw = await gw.restart();
    try {
      const again = await vote(gw.url, held.body.id, bob);
      expect(again.body.error.code).toBe("already_reviewed");
      const second = await vote(gw.url, held.body.id, erin);
      expect(second.body.status).toMatch(/approved|executing|succeeded/);
      const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
      expect(done.body.status).toBe("succeeded");
    } finally {
      await gw.close();
    }
  });

  it("stops counting a vote whose reviewer no longer qualifies after a config change", async () => {
    const config = testConfig(upstream.url);
    let gw = await startGateway(config);
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const erin = await gw.token("reviewer", "erin@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { method: "POST", path: "/refunds/requalified", body: {} } },
    });
    await vote(gw.url, held.body.id, bob);
    // Bob now owns the agent: his earlier approval must not carry the request over the line.
    await gw.close();
    gw = await startGateway(
      config.replace(
        "{ name: support-bot, owner: alice@example.com }",
        "{ name: support-bot, owner: bob@example.com }",
      ),
      { dir: gw.dir },
    );
    try {
      const second = await vote(gw.url, held.body.id, carol);
      expect(second.body.status).toBe("pending");
      const third = await vote(gw.url, held.body.id, erin);
      expect(third.body.status).not.toBe("pending");
      const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
      expect(done.body.status).toBe("succeeded");
      expect(callsTo("/refunds/requalified")).toBe(1);
    } finally {
      await gw.close();
    }
  });

  it("starts although an interrupted execution cannot be ended, and ends the others it finds", async () => {
    let gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const submit = async (path: string) =>
      (
        await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: { ...refund(), input: { method: "POST", path, body: {} } },
        })
      ).body as { id: string };
    const stuck = await submit("/refunds/start-stuck");
    const other = await submit("/refunds/start-other");
    await gw.close();
    // As if the gateway had been killed while both ran; and the database refuses, for good,
    // any change to the first.
    const db = new Database(join(gw.dir, "airlock.db"));
    db.prepare(
      "UPDATE requests SET status = 'executing', version = version + 1 WHERE id IN (?, ?)",
    ).run(stuck.id, other.id);
    db.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON requests WHEN OLD.id = '${stuck.id}'
      BEGIN SELECT RAISE(ABORT, 'refused by test'); END`);
    db.close();
    gw = await startGateway(testConfig(upstream.url), { dir: gw.dir });
    try {
      const again = await gw.token("agent", "support-bot");
      const ended = await api(gw.url, "GET", `/v1/actions/${other.id}`, { token: again });
      expect(ended.body.status).toBe("failed");
      expect(ended.body.outcome.summary).toBe("outcome unknown");
      const left = await api(gw.url, "GET", `/v1/actions/${stuck.id}`, { token: again });
      expect(left.body.status).toBe("executing");
      expect(gw.logs.filter((line) => line.includes(stuck.id)).join("")).toContain(
        "refused by test",
      );
      expect(callsTo("/refunds/start-stuck") + callsTo("/refunds/start-other")).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it("runs an approved request whose start was lost at the next sweep, once", async () => {
    const gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const bob = await gw.token("reviewer", "bob@example.com");
      const held = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { ...refund(), input: { method: "POST", path: "/refunds/stranded", body: {} } },
      });
      await vote(gw.url, held.body.id, bob);
      forceApproved(gw.dir, held.body, ["carol@example.com"]);
      const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
      expect(done.body.status).toBe("succeeded");
      await new Promise((r) => setTimeout(r, 200));
      expect(callsTo("/refunds/stranded")).toBe(1);
    } finally {
      await gw.close();
    }
  });

  it("does not run an approved request whose approvals no longer make the quorum", async () => {
    const gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const held = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { ...refund(), input: { method: "POST", path: "/refunds/unqualified", body: {} } },
      });
      // Two approvals on record, one of them by the agent's owner, and the request approved.
      forceApproved(gw.dir, held.body, ["alice@example.com", "carol@example.com"]);
      const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
      expect(done.body.status).toBe("failed");
      expect(done.body.outcome.reason).toContain("1 of the 2 approvals needed still count");
      expect(done.body.outcome.reason).toContain("alice@example.com owns agent support-bot");
      expect(callsTo("/refunds/unqualified")).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it("acts no more for an agent taken out of the config: its requests are not approved, nor run", async () => {
    const config = testConfig(upstream.url);
    let gw = await startGateway(config);
    dirs.push(gw.dir);
    const opsBot = await gw.token("agent", "ops-bot");
    const tokens = Object.fromEntries(
      await Promise.all(
        ["bob", "carol", "erin"].map(async (n) => [
          n,
          await gw.token("reviewer", `${n}@example.com`),
        ]),
      ),
    ) as Record<string, string>;
    const submit = async (path: string) =>
      (
        await api(gw.url, "POST", "/v1/actions", {
          token: opsBot,
          body: { ...refund(), input: { method: "POST", path, body: {} } },
        })
      ).body as { id: string; hash: string; status: string };
    const waiting = await submit("/refunds/retired-agent");
    const stranded = await submit("/refunds/retired-agent-approved");
    expect([waiting.status, stranded.status]).toEqual(["pending", "pending"]);
    expect((await vote(gw.url, waiting.id, tokens.bob!)).status).toBe(200);
    await gw.close();
    // Approved while no gateway ran, the agent then removed: at the start, nothing runs.
    forceApproved(gw.dir, stranded, ["carol@example.com", "erin@example.com"]);
    gw = await startGateway(
      config.replace("  - { name: ops-bot, owner: Dave@Example.com }\n", ""),
      {
        dir: gw.dir,
      },
    );
    try {
      const refused = await vote(gw.url, waiting.id, tokens.carol!);
      expect(refused.status).toBe(403);
      expect(refused.body.error).toMatchObject({ code: "forbidden" });
      expect(refused.body.error.message).toContain("agent ops-bot is no longer configured");
      const shown = await api(gw.url, "GET", `/v1/requests/${waiting.id}`, { token: tokens.erin! });
      expect(shown.body.review).toMatchObject({ approvals: 0, quorum: 2 });
      // A denial still ends it.
      const denied = await vote(gw.url, waiting.id, tokens.erin!, "deny");
      expect(denied.body.status).toBe("denied");
      await until(async () => {
        const res = await api(gw.url, "GET", `/v1/requests/${stranded.id}`, { token: tokens.bob! });
        return res.body.status === "failed";
      });
      const ended = await api(gw.url, "GET", `/v1/requests/${stranded.id}`, { token: tokens.bob! });
      expect(ended.body.outcome.reason).toContain("agent ops-bot is no longer configured");
      expect(callsTo("/refunds/retired-agent-approved")).toBe(0);
      expect(callsTo("/refunds/retired-agent")).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it("runs exactly once when the approvals that reach the quorum land at the same time", async () => {
    const gw = await startGateway(testConfig(upstream.url));
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const reviewers = await Promise.all(
        ["bob", "carol", "erin"].map((n) => gw.token("reviewer", `${n}@example.com`)),
      );
      const ids: string[] = [];
      for (let i = 0; i < 15; i++) {
        const res = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: { ...refund(), input: { method: "POST", path: `/refunds/race-${i}`, body: { i } } },
        });
        ids.push(res.body.id);
      }
      const outcomes = await Promise.all(
        ids.flatMap((id) =>
          reviewers.map((token) =>
            api(gw.url, "POST", `/v1/requests/${id}/reviews`, {
              token,
              body: { decision: "approve" },
            }),
          ),
        ),
      );
      // Two of three votes count per request; the third finds it no longer pending.
      expect(outcomes.filter((o) => o.status === 200)).toHaveLength(30);
      expect(outcomes.filter((o) => o.body.error?.code === "not_pending")).toHaveLength(15);
      for (const id of ids) {
        const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
        expect(done.body.status).toBe("succeeded");
      }
      for (let i = 0; i < 15; i++) expect(callsTo(`/refunds/race-${i}`)).toBe(1);
      // Nobody can make an approved request run twice, however often it is asked to.
      const again = await Promise.all(ids.map((id) => gw.gateway.executor.execute(id)));
      expect(again.every((r) => r === null)).toBe(true);
      for (let i = 0; i < 15; i++) expect(callsTo(`/refunds/race-${i}`)).toBe(1);
    } finally {
      await gw.close();
    }
  });
});
