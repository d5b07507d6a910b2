/**
 * Reloading the config: the rules, agents and reviewers are taken up by a running gateway,
 * recorded in the audit trail first; a file that changes anything else, or does not load, is
 * refused whole and the gateway keeps what it runs.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../src/config/config-errors.js";
import { loadConfigText } from "../src/config/config-load.js";
import { freePort, killed, runCli, startServe } from "./support/cli.js";
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
} from "./support/gateway.js";
import { postgresAvailable, postgresUrl, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
const gateways: TestGateway[] = [];
const dirs: string[] = [];
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  for (const gw of gateways.splice(0)) {
    await gw.close();
    removeDir(gw.dir);
  }
  for (const dir of dirs.splice(0)) removeDir(dir);
});

const PATCHES_PASS = `
  - name: patches pass
    when: http.method == "PATCH"
    decision: allow`;

const patch = {
  connection: "billing-api",
  operation: "request",
  input: { method: "PATCH", path: "/invoices/inv_1" },
};

async function started(text: string): Promise<TestGateway> {
  const gw = await startGateway(text);
  gateways.push(gw);
  return gw;
}

/** The file as the gateway would read it again: same store, same secrets. */
function reloaded(gw: TestGateway, text: string, env: Record<string, string> = {}) {
  return loadConfigText(text, {
    env: { BILLING_API_TOKEN: SECRET, ...env },
    baseDir: gw.dir,
    source: "test.yaml",
  });
}

async function auditOf(gw: TestGateway, type: string) {
  const events = await gw.gateway.store.listAudit({ limit: 1000 });
  return events.filter((event) => event.type === type);
}

describe("a config reload", () => {
  it("takes up new rules, records the change before it applies, and decides by them", async () => {
    const gw = await started(testConfig(upstream.url));
    const agent = await gw.token("agent", "support-bot");
    const before = await api(gw.url, "POST", "/v1/actions", { token: agent, body: patch });
    expect(before.status).toBe(403);
    const oldDigest = gw.gateway.live.policy.digest;

    const changes = await gw.gateway.reload(
      reloaded(gw, testConfig(upstream.url, PATCHES_PASS)),
      "test",
    );
    expect(changes?.rules).toEqual({ added: ["patches pass"], removed: [], changed: [] });

    const after = await api(gw.url, "POST", "/v1/actions", { token: agent, body: patch });
    expect(after.status).toBe(200);
    expect(after.body.status).toBe("succeeded");
    expect(
      upstream.calls.some((c) => c.method === "PATCH" && c.url === "/api/invoices/inv_1"),
    ).toBe(true);

    const newDigest = gw.gateway.live.policy.digest;
    expect(newDigest).not.toBe(oldDigest);
    const [event] = await auditOf(gw, "config.reloaded");
    expect(event?.actor).toEqual({ type: "operator", id: "test" });
    expect(event?.data).toMatchObject({
      policyDigest: { from: oldDigest, to: newDigest },
      rules: { added: ["patches pass"] },
    });
    // The reload is in the chain before the first decision made under it.
    const decided = (await auditOf(gw, "request.decided")).filter(
      (e) => e.requestId === after.body.id,
    );
    expect(decided[0]?.data).toMatchObject({ policyDigest: newDigest, rule: "patches pass" });
    expect(decided[0]!.seq).toBeGreaterThan(event!.seq);

    const bob = await gw.token("reviewer", "bob@example.com");
    const rules = await api(gw.url, "GET", "/v1/rules", { token: bob });
    expect(rules.body.policyDigest).toBe(newDigest);
    expect(rules.body.rules.map((r: { name: string }) => r.name)).toContain("patches pass");
  });

  it("is refused whole when it changes a part that needs a restart, naming each", async () => {
    const gw = await started(testConfig(upstream.url));
    const agent = await gw.token("agent", "support-bot");
    const digest = gw.gateway.live.policy.digest;
    const text = testConfig(upstream.url, PATCHES_PASS)
      .replace("timeout: 2s", "timeout: 3s")
      .replace("sweepInterval: 50ms", "sweepInterval: 60ms");

    const refused = await gw.gateway.reload(reloaded(gw, text), "test").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    const paths = (refused as ConfigError).issues.map((issue) => issue.path.join("."));
    expect(paths.sort()).toEqual(["connections.billing-api", "server.sweepInterval"]);
    expect((refused as ConfigError).message).toContain(
      "takes effect only when the gateway restarts",
    );

    // Nothing of it was taken up, the new rule included, and nothing was recorded.
    expect(gw.gateway.live.policy.digest).toBe(digest);
    const after = await api(gw.url, "POST", "/v1/actions", { token: agent, body: patch });
    expect(after.status).toBe(403);
    expect(await auditOf(gw, "config.reloaded")).toEqual([]);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toContain('airlock_config_reloads_total{result="refused"} 1');
  });

  it("is not refused for a $schema line, which only editors read", async () => {
    const gw = await started(testConfig(upstream.url));
    const text = `$schema: ./node_modules/@airlock/gateway/airlock.schema.json\n${testConfig(upstream.url, PATCHES_PASS)}`;
    const changes = await gw.gateway.reload(reloaded(gw, text), "test");
    expect(changes?.rules.added).toEqual(["patches pass"]);
  });

  it("refuses a secret it did not read at start, which the log's redaction would not know", async () => {
    const gw = await started(testConfig(upstream.url));
    const text = testConfig(
      upstream.url,
      `
  - name: patches refused with a secret reason
    when: http.method == "PATCH"
    decision: deny
    reason: \${env:NEW_SECRET}`,
    );
    const refused = await gw.gateway
      .reload(reloaded(gw, text, { NEW_SECRET: "a-new-secret-value-4d2f" }), "test")
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).message).toContain(
      "(root): the values of its ${env:} and ${file:} references are not the ones read at start",
    );
    expect((refused as ConfigError).message).not.toContain("a-new-secret-value-4d2f");
    expect(await auditOf(gw, "config.reloaded")).toEqual([]);
  });

  it("refuses a rule naming an approval channel that is not configured", async () => {
    const gw = await started(testConfig(upstream.url));
    const text = testConfig(
      upstream.url,
      `
  - name: patches reviewed in slack
    when: http.method == "PATCH"
    decision: review
    review: { channels: [slack] }`,
    );
    const refused = await gw.gateway.reload(reloaded(gw, text), "test").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).message).toMatch(
      /rules\[4\]\.review\.channels\[0\]: no approval channel named "slack"/,
    );
    expect(await auditOf(gw, "config.reloaded")).toEqual([]);
  });

  it("of the same file changes nothing and records nothing", async () => {
    const gw = await started(testConfig(upstream.url));
    expect(await gw.gateway.reload(reloaded(gw, testConfig(upstream.url)), "test")).toBeUndefined();
    expect(await auditOf(gw, "config.reloaded")).toEqual([]);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toContain('airlock_config_reloads_total{result="unchanged"} 1');
  });

  it("revokes a removed agent's token and a removed reviewer's vote at once", async () => {
    const gw = await started(testConfig(upstream.url));
    const opsBot = await gw.token("agent", "ops-bot");
    const supportBot = await gw.token("agent", "support-bot");
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const erin = await gw.token("reviewer", "erin@example.com");
    expect((await api(gw.url, "POST", "/v1/actions", { token: opsBot, body: read() })).status).toBe(
      200,
    );
    const pending = await api(gw.url, "POST", "/v1/actions", { token: supportBot, body: refund() });
    expect(pending.body.status).toBe("pending");
    expect((await vote(gw.url, pending.body.id, bob)).status).toBe(200);

    const text = testConfig(upstream.url)
      .replace("  - { name: ops-bot, owner: Dave@Example.com }\n", "")
      .replace("  - { email: bob@example.com, groups: [finance, eng] }\n", "");
    const changes = await gw.gateway.reload(reloaded(gw, text), "test");
    expect(changes?.agents.removed).toEqual(["ops-bot"]);
    expect(changes?.reviewers.removed).toEqual(["bob@example.com"]);

    const refusedAgent = await api(gw.url, "POST", "/v1/actions", { token: opsBot, body: read() });
    expect(refusedAgent.status).toBe(401);
    expect(refusedAgent.body.error.message).toContain("agent ops-bot is no longer configured");
    const refusedReviewer = await vote(gw.url, pending.body.id, bob);
    expect(refusedReviewer.status).toBe(401);

    // Bob's earlier approval no longer counts toward the quorum of two: carol's alone does
    // not run the refund; erin's makes two that count.
    const carols = await vote(gw.url, pending.body.id, carol);
    expect(carols.status).toBe(200);
    // What reviewers are shown counts as the gateway does: one of two, not two.
    expect(carols.body.review).toMatchObject({ approvals: 1, quorum: 2 });
    const held = await api(gw.url, "GET", `/v1/actions/${pending.body.id}`, { token: supportBot });
    expect(held.body.status).toBe("pending");
    expect((await vote(gw.url, pending.body.id, erin)).status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${pending.body.id}?wait=5`, {
      token: supportBot,
    });
    expect(done.body.status).toBe("succeeded");
  });

  it("says what a required group still needs after its reviewer left it, as the votes are counted", async () => {
    const payouts = `
  - name: payouts need ops among two
    when: http.method == "POST" && http.path == "/payouts"
    decision: review
    review: { approvers: [finance, ops], quorum: 2, require: { ops: 1 } }`;
    const gw = await started(testConfig(upstream.url, payouts));
    const agent = await gw.token("agent", "support-bot");
    const carol = await gw.token("reviewer", "carol@example.com");
    const dave = await gw.token("reviewer", "dave@example.com");
    const pending = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: {
        connection: "billing-api",
        operation: "request",
        input: { method: "POST", path: "/payouts" },
      },
    });
    const id = pending.body.id as string;
    expect((await vote(gw.url, id, dave)).body.review.needed).toEqual({});

    // Dave leaves ops: his approval still counts, as finance only.
    const text = testConfig(upstream.url, payouts).replace(
      "{ email: dave@example.com, groups: [finance, ops] }",
      "{ email: dave@example.com, groups: [finance] }",
    );
    await gw.gateway.reload(reloaded(gw, text), "test");
    const second = await vote(gw.url, id, carol);
    expect(second.body.status).toBe("pending");
    const [, reviewed] = (await auditOf(gw, "request.reviewed")).filter((e) => e.requestId === id);
    expect(reviewed?.data).toMatchObject({ approvals: 2, needed: { ops: 1 } });
    // What the reviewers are shown says the same as the trail: ops is still needed.
    expect(second.body.review).toMatchObject({ approvals: 2, quorum: 2, needed: { ops: 1 } });
    const seen = await api(gw.url, "GET", `/v1/requests/${id}`, { token: carol });
    expect(seen.body.review.needed).toEqual({ ops: 1 });
  });

  it("applies an agent's new rate limit", async () => {
    const limited = (perMinute: number) =>
      testConfig(upstream.url).replace(
        "  - { name: support-bot, owner: alice@example.com }",
        `  - { name: support-bot, owner: alice@example.com, rateLimit: { perMinute: ${perMinute}, burst: 1 } }`,
      );
    const gw = await started(limited(1));
    const agent = await gw.token("agent", "support-bot");
    expect((await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() })).status).toBe(
      200,
    );
    expect((await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() })).status).toBe(
      429,
    );

    const changes = await gw.gateway.reload(reloaded(gw, limited(6000)), "test");
    expect(changes?.agents.changed).toEqual(["support-bot"]);
    // 100 a second: the bucket has a token again within a few hundredths of a second.
    await until(
      async () =>
        (await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() })).status === 200,
      2000,
    );
  });
});

/** A config file for `airlock serve` on a free port, with an agent token made for it. */
async function served(storage?: string) {
  const dir = mkdtempSync(join(tmpdir(), "airlock-hup-"));
  dirs.push(dir);
  const port = await freePort();
  const config = join(dir, "airlock.yaml");
  const text = (extra = "") => {
    const base = testConfig(upstream.url, extra).replace(
      "server: { port: 0,",
      `server: { port: ${port},`,
    );
    return storage ? base.replace("storage: sqlite:./airlock.db", `storage: "${storage}"`) : base;
  };
  writeFileSync(config, text());
  const env = { BILLING_API_TOKEN: "reload-test-credential", AIRLOCK_LOG_LEVEL: "info" };
  const created = await runCli(["token", "create", "--agent", "support-bot", "--config", config], {
    env,
  });
  expect(created.code, created.stderr).toBe(0);
  return { config, port, env, text, agent: created.stdout.trim() };
}

describe("airlock serve on SIGHUP", () => {
  it("reads its file again, takes up new rules, and keeps them when the next file is broken", async () => {
    const { config, port, env, text, agent } = await served();
    const serve = await startServe(config, port, env);
    try {
      const status = async () =>
        (await api(serve.url, "POST", "/v1/actions", { token: agent, body: patch })).status;
      expect(await status()).toBe(403);

      writeFileSync(config, text(PATCHES_PASS));
      serve.child.kill("SIGHUP");
      await until(async () => (await status()) === 200);

      // A broken file: the error is logged with its path, and the rules in force stay.
      writeFileSync(config, text(PATCHES_PASS).replace("decision: allow", "decision: alow"));
      serve.child.kill("SIGHUP");
      await until(() => serve.output().includes("config reload refused"));
      expect(serve.output()).toMatch(/rules\[0\]\.decision/);
      expect(serve.child.exitCode).toBeNull();
      expect(await status()).toBe(200);

      writeFileSync(config, text(PATCHES_PASS));
      const verified = await runCli(["audit", "verify", "--config", config], { env });
      expect(verified.code, verified.stderr).toBe(0);
    } finally {
      serve.child.kill("SIGTERM");
      await killed(serve.child);
    }
    const exported = await runCli(["audit", "export", "--format", "jsonl", "--config", config], {
      env,
    });
    const reloads = exported.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line))
      .filter((event) => event.type === "config.reloaded");
    expect(reloads).toHaveLength(1);
    expect(reloads[0].actor).toEqual({ type: "operator", id: "signal:SIGHUP" });
  });
});

describe("airlock serve and a SIGHUP outside serving", () => {
  it("lets the work under way finish when it comes while the gateway stops", async () => {
    const { config, port, env, agent } = await served();
    const reviewer = await runCli(
      ["token", "create", "--reviewer", "bob@example.com", "--config", config],
      { env },
    );
    const bob = reviewer.stdout.trim();
    const serve = await startServe(config, port, env);
    const slow = upstream.hold("/api/invoices/slow");
    try {
      const put = { ...patch, input: { method: "PUT", path: "/invoices/slow" } };
      const pending = await api(serve.url, "POST", "/v1/actions", { token: agent, body: put });
      expect(pending.body.status).toBe("pending");
      expect((await vote(serve.url, pending.body.id, bob)).status).toBe(200);
      await slow.arrived;
      serve.child.kill("SIGTERM");
      await until(() => serve.output().includes("stopping: finishing work under way"));
      serve.child.kill("SIGHUP");
      await until(() => serve.output().includes("SIGHUP while stopping"));
      slow.release();
      await killed(serve.child);
      expect(serve.child.signalCode).toBeNull();
      expect(serve.child.exitCode).toBe(0);
      const exported = await runCli(["audit", "export", "--format", "jsonl", "--config", config], {
        env,
      });
      const types = exported.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
        .filter((event) => event.requestId === pending.body.id)
        .map((event) => event.type);
      expect(types).toContain("execution.succeeded");
    } finally {
      slow.release();
      serve.child.kill("SIGKILL");
      await killed(serve.child);
    }
  });

  it("lets it pass while the command still loads, and serves the file it then reads", async () => {
    const { config, port, env, text, agent } = await served();
    // A module hook holds `airlock serve` while its modules load, for as long as the test likes.
    const dir = mkdtempSync(join(tmpdir(), "airlock-hup-load-"));
    dirs.push(dir);
    const loading = join(dir, "loading");
    const release = join(dir, "release");
    writeFileSync(
      join(dir, "hooks.mjs"),
      `import { existsSync, writeFileSync } from "node:fs";
export async function load(url, context, next) {
  if (url.endsWith("/cli/commands/serve.js")) {
    writeFileSync(${JSON.stringify(loading)}, "");
    while (!existsSync(${JSON.stringify(release)})) await new Promise((r) => setTimeout(r, 20));
  }
  return next(url, context);
}
`,
    );
    writeFileSync(
      join(dir, "register.mjs"),
      `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n`,
    );
    let child: ChildProcess | undefined;
    const serve = startServe(
      config,
      port,
      { ...env, NODE_OPTIONS: `--import=${join(dir, "register.mjs")}` },
      (spawned) => {
        child = spawned;
      },
    );
    serve.catch(() => {});
    try {
      await until(() => existsSync(loading), 30_000);
      writeFileSync(config, text(PATCHES_PASS));
      child!.kill("SIGHUP");
      // Time for the signal to act, were it to end the process.
      await new Promise((resolve) => setTimeout(resolve, 300));
      writeFileSync(release, "");
      const started = await serve;
      const submitted = await api(started.url, "POST", "/v1/actions", {
        token: agent,
        body: patch,
      });
      expect(submitted.status).toBe(200);
      started.child.kill("SIGTERM");
      await killed(started.child);
      expect(started.child.exitCode).toBe(0);
    } finally {
      writeFileSync(release, "");
      child?.kill("SIGKILL");
      if (child) await killed(child);
    }
  });

  it.skipIf(!postgresAvailable)(
    "takes the file up once serving when it comes while the gateway starts",
    async () => {
      const db = await scratchSchema();
      // The store is reached through a relay that holds the first connection: the gateway
      // is then inside its start, for as long as the test likes.
      const target = new URL(postgresUrl);
      let hold = true;
      let arrived!: () => void;
      const connected = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      const waiting: Socket[] = [];
      const sockets = new Set<Socket>();
      const pipe = (socket: Socket) => {
        const upstreamSocket = connect(Number(target.port || 5432), target.hostname);
        sockets.add(upstreamSocket);
        socket.pipe(upstreamSocket).pipe(socket);
        const end = () => {
          socket.destroy();
          upstreamSocket.destroy();
        };
        socket.on("error", end).on("close", end);
        upstreamSocket.on("error", end).on("close", end);
      };
      const relay = createServer((socket) => {
        sockets.add(socket);
        socket.pause();
        if (hold) {
          waiting.push(socket);
          arrived();
        } else pipe(socket);
      });
      await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
      const relayed = new URL(db.url);
      relayed.host = `127.0.0.1:${(relay.address() as { port: number }).port}`;
      try {
        const { config, port, env, agent, text } = await served(db.url);
        writeFileSync(config, text().replace(db.url, relayed.toString()));
        let child: ChildProcess | undefined;
        const serve = startServe(config, port, env, (spawned) => {
          child = spawned;
        });
        await connected;
        // While it starts, the file gains a rule, and the operator signals.
        writeFileSync(config, text(PATCHES_PASS).replace(db.url, relayed.toString()));
        child!.kill("SIGHUP");
        await new Promise((r) => setTimeout(r, 200));
        hold = false;
        for (const socket of waiting.splice(0)) pipe(socket);
        const started = await serve;
        try {
          const status = async () =>
            (await api(started.url, "POST", "/v1/actions", { token: agent, body: patch })).status;
          await until(async () => (await status()) === 200);
          expect(started.output()).toContain("SIGHUP came while starting");
        } finally {
          started.child.kill("SIGTERM");
          await killed(started.child);
        }
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => relay.close(resolve));
        await db.drop();
      }
    },
  );
});
