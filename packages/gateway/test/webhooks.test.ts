/**
 * Signed webhooks: a receiver on loopback verifies every delivery with the Standard Webhooks
 * library and sees each state change exactly once, in order, through failures and a restart.
 */
import { createHmac, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webhookNames } from "../src/channels/channel-registry.js";
import { runCli } from "./support/cli.js";
import {
  api,
  onPostgres,
  onTestStorage,
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
import { startUpstream, type Upstream } from "./support/upstream.js";

const secret = `whsec_${randomBytes(32).toString("base64")}`;

interface Delivery {
  id: string;
  type: string;
  requestId: string;
  version: number;
  status: string;
  body: string;
  headers: Record<string, string>;
}

/** A webhook receiver that verifies signatures and can be told to fail, or to hang. */
async function startReceiver() {
  const verifier = new Webhook(secret);
  const deliveries: Delivery[] = [];
  const rejected: string[] = [];
  let failures = 0;
  let attempts = 0;
  let hanging = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      attempts++;
      const body = Buffer.concat(chunks).toString();
      // Takes the delivery and never answers it.
      if (hanging) return;
      if (failures > 0) {
        failures--;
        res.writeHead(503).end();
        return;
      }
      try {
        const payload = verifier.verify(body, req.headers as Record<string, string>) as {
          type: string;
          data: { id: string; version: number; status: string };
        };
        deliveries.push({
          id: req.headers["webhook-id"] as string,
          type: payload.type,
          requestId: payload.data.id,
          version: payload.data.version,
          status: payload.data.status,
          body,
          headers: req.headers as Record<string, string>,
        });
        res.writeHead(204).end();
      } catch (error) {
        rejected.push(String(error));
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    deliveries,
    rejected,
    fail(n: number) {
      failures = n;
    },
    hang(on: boolean) {
      hanging = on;
    },
    get attempts() {
      return attempts;
    },
    of: (requestId: string) => deliveries.filter((d) => d.requestId === requestId),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

const fast = { pollInterval: 20, backoff: () => 20, maxAttempts: 5 };

const config = (upstreamUrl: string, receiverUrl: string, extra = "") =>
  `${testConfig(upstreamUrl)}
channels:
  webhooks:
    - { url: "${receiverUrl}", secret: "${secret}"${extra} }
`;

describe("webhooks", () => {
  let upstream: Upstream;
  let receiver: Receiver;
  let gw: TestGateway;
  let agent: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    receiver = await startReceiver();
    gw = await startGateway(config(upstream.url, receiver.url), {
      gateway: { delivery: fast },
    });
    agent = await gw.token("agent", "support-bot");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await receiver?.close();
    await upstream?.close();
  });

  it("sends an allowed action's changes, signed, in order, with masked data", async () => {
    const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read("/echo") });
    expect(res.body.status).toBe("succeeded");
    await until(() => receiver.of(res.body.id).length === 2);
    expect(receiver.of(res.body.id).map((d) => [d.type, d.status])).toEqual([
      ["request.executing", "executing"],
      ["request.succeeded", "succeeded"],
    ]);
    const [first, second] = receiver.of(res.body.id);
    expect(second!.version).toBeGreaterThan(first!.version);
    expect(first!.id).toBe(`msg_${res.body.id}_${first!.version}`);
    expect(receiver.rejected).toEqual([]);
    expect(second!.body).not.toContain(SECRET);
  });

  it("follows a review from pending to the end, one delivery per change, input masked", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    await vote(gw.url, held.body.id, bob);
    await vote(gw.url, held.body.id, carol);
    await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
    await until(() => receiver.of(held.body.id).some((d) => d.type === "request.succeeded"));
    expect(receiver.of(held.body.id).map((d) => d.type)).toEqual([
      "request.pending",
      "request.reviewed",
      "request.approved",
      "request.executing",
      "request.succeeded",
    ]);
    for (const delivery of receiver.of(held.body.id)) {
      expect(delivery.body).not.toContain("4242424242424242");
    }
  });

  it("is signed: the same delivery fails verification with another secret or an edit", () => {
    const delivery = receiver.deliveries[0]!;
    expect(() => new Webhook(secret).verify(delivery.body, delivery.headers)).not.toThrow();
    const other = new Webhook(`whsec_${randomBytes(32).toString("base64")}`);
    expect(() => other.verify(delivery.body, delivery.headers)).toThrow();
    const edited = delivery.body
      .replace('"succeeded"', '"failed"')
      .replace('"executing"', '"failed"');
    expect(edited).not.toBe(delivery.body);
    expect(() => new Webhook(secret).verify(edited, delivery.headers)).toThrow();
    // The README's recipe, for receivers without a library.
    const key = Buffer.from(secret.slice("whsec_".length), "base64");
    const signed = `${delivery.headers["webhook-id"]}.${delivery.headers["webhook-timestamp"]}.${delivery.body}`;
    expect(delivery.headers["webhook-signature"]).toBe(
      `v1,${createHmac("sha256", key).update(signed).digest("base64")}`,
    );
    expect(
      Math.abs(Number(delivery.headers["webhook-timestamp"]) - Date.now() / 1000),
    ).toBeLessThan(600);
  });

  it("retries a failing receiver with backoff and delivers each change once", async () => {
    receiver.fail(3);
    const before = receiver.attempts;
    const denied = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...read(), input: { method: "DELETE", path: "/invoices/1" } },
    });
    expect(denied.status).toBe(403);
    await until(() => receiver.of(denied.body.action.id).length === 1);
    expect(receiver.attempts - before).toBe(4);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.of(denied.body.action.id).map((d) => d.type)).toEqual(["request.denied"]);
  });
});

describe("webhooks across a restart, and for good failures", () => {
  it("delivers each change once: none repeated, none lost while the receiver was down", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    let gw = await startGateway(config(upstream.url, receiver.url), {
      gateway: { delivery: { pollInterval: 20, backoff: () => 20, maxAttempts: 1000 } },
    });
    try {
      const agent = await gw.token("agent", "support-bot");
      const early = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      await until(() => receiver.of(early.body.id).length === 2);

      receiver.fail(1_000_000);
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await api(gw.url, "POST", `/v1/actions/${held.body.id}/cancel`, { token: agent });
      const tried = receiver.attempts;
      await until(() => receiver.attempts > tried + 2);
      gw = await gw.restart();
      receiver.fail(0);

      await until(() => receiver.of(held.body.id).length === 2);
      await new Promise((r) => setTimeout(r, 200));
      expect(receiver.of(held.body.id).map((d) => d.type)).toEqual([
        "request.pending",
        "request.cancelled",
      ]);
      expect(receiver.of(early.body.id)).toHaveLength(2);
      const ids = receiver.deliveries.map((d) => d.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(receiver.rejected).toEqual([]);
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });

  it("stops without waiting for receivers that hang, and delivers what they did not answer after the restart", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    // Two webhooks, each waiting up to a minute for its receiver.
    const text = `${config(upstream.url, receiver.url, ", name: first, timeout: 60s")}    - { url: "${receiver.url}", secret: "${secret}", name: second, timeout: 60s }
`;
    let gw = await startGateway(text);
    try {
      const agent = await gw.token("agent", "support-bot");
      receiver.hang(true);
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      // Each webhook delivers on its own: one or both may be under way.
      await until(() => receiver.attempts >= 1);
      // Before, the stop waited out the delivery under way, then made the other webhook's and
      // waited that out too: two minutes.
      await gw.close();
      receiver.hang(false);
      gw = await gw.restart();
      // Handed back at the stop: not left for the minutes of the claim's lease.
      await until(() => receiver.of(held.body.id).length === 2);
      expect(receiver.of(held.body.id).map((d) => d.type)).toEqual([
        "request.pending",
        "request.pending",
      ]);
      expect(receiver.rejected).toEqual([]);
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });

  // It writes the outbox straight into the SQLite file.
  it.skipIf(onPostgres)(
    "gives up on entries for a channel no longer configured once they have waited a day",
    async () => {
      const upstream = await startUpstream();
      const receiver = await startReceiver();
      let gw = await startGateway(config(upstream.url, receiver.url));
      try {
        await gw.close();
        const file = join(gw.dir, "airlock.db");
        const hour = 3_600_000;
        let db = new Database(file);
        const add = db.prepare(
          "INSERT INTO outbox (topic, request_id, payload, available_at, created_at) VALUES (?, 'req_gone', '{}', ?, ?)",
        );
        add.run("channel:removed", Date.now() - 25 * hour, Date.now() - 25 * hour);
        add.run("channel:removed", Date.now() - hour, Date.now() - hour);
        db.close();
        gw = await gw.restart();
        db = new Database(file, { readonly: true });
        try {
          const states = () =>
            (
              db
                .prepare("SELECT state FROM outbox WHERE topic = 'channel:removed' ORDER BY id")
                .all() as {
                state: string;
              }[]
            ).map((row) => row.state);
          await until(() => states()[0] === "dead");
          // The newer one may still find a gateway that has the channel (a rolling change).
          expect(states()).toEqual(["dead", "pending"]);
          expect(gw.logs.join("")).toContain(
            "gave up on notifications for channels no gateway has",
          );
        } finally {
          db.close();
        }
      } finally {
        await gw.close();
        removeDir(gw.dir);
        await receiver.close();
        await upstream.close();
      }
    },
  );

  it("shows an operator the dead letters, and delivers them again when told", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    const text = config(upstream.url, receiver.url, ", events: [request.succeeded]");
    const gw = await startGateway(text, {
      gateway: { delivery: { pollInterval: 20, backoff: () => 20, maxAttempts: 2 } },
    });
    const configPath = join(gw.dir, "operator.yaml");
    writeFileSync(configPath, await onTestStorage(text, gw.dir));
    const env = { BILLING_API_TOKEN: SECRET };
    const outbox = (...args: string[]) =>
      runCli(["outbox", ...args, "--config", configPath], { env });
    const dead = async () =>
      (await api(gw.url, "GET", "/metrics")).text.match(
        /^airlock_outbox_entries\{state="dead"\} (\d+)$/m,
      )?.[1];
    try {
      const agent = await gw.token("agent", "support-bot");
      receiver.fail(1_000_000);
      const ran = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      expect(ran.body.status).toBe("succeeded");
      await until(async () => (await gw.gateway.store.countOutbox()).dead === 1);
      expect(await dead()).toBe("1");
      const [name] = webhookNames([{ url: receiver.url }]);

      const listed = await outbox("list", "--dead", "--json");
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([
        expect.objectContaining({
          channel: name,
          requestId: ran.body.id,
          event: "request.succeeded",
          state: "dead",
          attempts: 2,
          lastError: `webhook ${name} answered HTTP 503`,
        }),
      ]);
      const plain = await outbox("list", "--dead");
      expect(plain.stdout).toContain(ran.body.id);
      expect(plain.stdout).toContain("last error: webhook");
      // Nothing is sent again until the operator says so, and only dead letters are.
      const unknown = await outbox("redeliver", "999999");
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/no dead letter/);
      expect(receiver.of(ran.body.id)).toEqual([]);

      receiver.fail(0);
      const sent = await outbox("redeliver", "--all", "--channel", name!);
      expect(sent.code).toBe(0);
      expect(sent.stdout).toMatch(/^1 dead letter to deliver again/);
      await until(() => receiver.of(ran.body.id).length === 1);
      expect(receiver.of(ran.body.id)[0]!.type).toBe("request.succeeded");
      await gw.gateway.dispatcher.idle();
      const none = await outbox("list", "--dead");
      expect(none.stdout).toBe("");
      expect(none.stderr).toMatch(/No dead letters/);
      expect(await dead()).toBe("0");
      // Given wrong, the command says how it is used and changes nothing.
      expect((await outbox("redeliver")).code).toBe(2);
      expect((await outbox("redeliver", "1", "--all")).code).toBe(2);
      const typo = await outbox("redeliver", "--all", "--channel", "slakc");
      expect(typo.code).toBe(1);
      expect(typo.stderr).toContain(`no channel slakc in the config`);
      expect(typo.stderr).toContain(name!);
      expect((await outbox("list", "--limit", "x")).stderr).toMatch(/--limit takes a whole number/);
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });

  it("counts a dead letter named twice once, and lists no empty page", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    const text = config(upstream.url, receiver.url, ", events: [request.succeeded]");
    const gw = await startGateway(text, {
      gateway: { delivery: { pollInterval: 20, backoff: () => 20, maxAttempts: 1 } },
    });
    const configPath = join(gw.dir, "operator.yaml");
    writeFileSync(configPath, await onTestStorage(text, gw.dir));
    const outbox = (...args: string[]) =>
      runCli(["outbox", ...args, "--config", configPath], { env: { BILLING_API_TOKEN: SECRET } });
    try {
      const agent = await gw.token("agent", "support-bot");
      receiver.fail(1_000_000);
      await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      await until(async () => (await gw.gateway.store.countOutbox()).dead === 1);
      // What is made pending again stays there to be looked at.
      await gw.gateway.dispatcher.stop();
      const [letter] = await gw.gateway.store.listOutbox({ state: "dead", limit: 10 });
      const id = String(letter!.id);

      const empty = await outbox("list", "--dead", "--limit", "0");
      expect(empty.code).toBe(2);
      expect(empty.stderr).toMatch(/--limit takes a whole number from 1 to 10000/);

      const twice = await outbox("redeliver", id, id);
      expect(twice.stderr).toBe("");
      expect(twice.stdout).toBe("1 dead letter to deliver again\n");
      expect(twice.code).toBe(0);
      expect(await gw.gateway.store.countOutbox()).toEqual({ pending: 1, dead: 0 });
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });

  it("delivers a dead letter sent again at once, whatever the clock of the host it was sent from", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    const text = config(upstream.url, receiver.url, ", events: [request.succeeded]");
    // The gateway's clock is a minute behind the operator's (another host, say).
    const gw = await startGateway(text, {
      gateway: {
        clock: () => Date.now() - 60_000,
        delivery: { pollInterval: 20, backoff: () => 20, maxAttempts: 1 },
      },
    });
    const configPath = join(gw.dir, "operator.yaml");
    writeFileSync(configPath, await onTestStorage(text, gw.dir));
    try {
      const agent = await gw.token("agent", "support-bot");
      receiver.fail(1_000_000);
      const ran = await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      await until(async () => (await gw.gateway.store.countOutbox()).dead === 1);
      receiver.fail(0);
      const sent = await runCli(["outbox", "redeliver", "--all", "--config", configPath], {
        env: { BILLING_API_TOKEN: SECRET },
      });
      expect(sent.stdout).toBe("1 dead letter to deliver again\n");
      // Not a minute later, when the gateway's clock reaches the operator's.
      await until(() => receiver.of(ran.body.id).length === 1);
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });

  // It reads the outbox straight from the SQLite file.
  it.skipIf(onPostgres)("keeps a delivery that never succeeds as a dead letter", async () => {
    const upstream = await startUpstream();
    const receiver = await startReceiver();
    const gw = await startGateway(
      config(upstream.url, receiver.url, ", events: [request.denied]"),
      {
        gateway: { delivery: { pollInterval: 20, backoff: () => 20, maxAttempts: 3 } },
      },
    );
    try {
      const agent = await gw.token("agent", "support-bot");
      receiver.fail(1_000_000);
      await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
      const denied = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { ...read(), input: { method: "DELETE", path: "/invoices/1" } },
      });
      expect(denied.status).toBe(403);
      const db = new Database(join(gw.dir, "airlock.db"), { readonly: true });
      try {
        const outbox = () =>
          db.prepare("SELECT topic, state, attempts, last_error FROM outbox").all() as {
            topic: string;
            state: string;
            attempts: number;
            last_error: string;
          }[];
        await until(() => outbox()[0]?.state === "dead");
        const [name] = webhookNames([{ url: receiver.url }]);
        // Only the event the webhook asked for was queued at all.
        expect(outbox()).toEqual([
          {
            topic: `channel:${name}`,
            state: "dead",
            attempts: 3,
            last_error: `webhook ${name} answered HTTP 503`,
          },
        ]);
      } finally {
        db.close();
      }
    } finally {
      await gw.close();
      removeDir(gw.dir);
      await receiver.close();
      await upstream.close();
    }
  });
});
