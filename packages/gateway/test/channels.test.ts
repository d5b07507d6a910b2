/**
 * The channel seam and the outbox behind it: channels hear about committed changes only,
 * in order per request, with masked content; failures are retried, and what was not yet
 * delivered survives a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Channel, ChannelNotice } from "../src/channels/channel.js";
import {
  api,
  refund,
  removeDir,
  startGateway,
  testConfig,
  until,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

/** A channel that keeps what it is told, and fails while `down` is set. */
class RecordingChannel implements Channel {
  constructor(readonly name = "recorder") {}
  readonly posts: ChannelNotice[] = [];
  readonly updates: { ref: string; notice: ChannelNotice }[] = [];
  attempts = 0;
  down = 0;

  async post(notice: ChannelNotice): Promise<string> {
    this.attempts++;
    if (this.down > 0) {
      this.down--;
      throw new Error("channel unreachable");
    }
    this.posts.push(notice);
    return `msg-${notice.request.id}`;
  }

  async update(ref: string, notice: ChannelNotice): Promise<void> {
    this.attempts++;
    if (this.down > 0) {
      this.down--;
      throw new Error("channel unreachable");
    }
    this.updates.push({ ref, notice });
  }
}

let upstream: Upstream;
const dirs: string[] = [];
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
  for (const dir of dirs) removeDir(dir);
});

const fast = { pollInterval: 20, backoff: () => 20, maxAttempts: 4 };

describe("channels", () => {
  it("are told of a request, each vote and the end, in order, with masked content", async () => {
    const channel = new RecordingChannel();
    const gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [channel], delivery: fast },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const bob = await gw.token("reviewer", "bob@example.com");
      const carol = await gw.token("reviewer", "carol@example.com");
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await until(() => channel.posts.length === 1);
      const first = channel.posts[0]!;
      expect(first.event).toBe("requested");
      expect(first.request).toMatchObject({
        id: held.body.id,
        status: "pending",
        review: { approvals: 0, quorum: 2 },
      });
      expect(JSON.stringify(first)).not.toContain("4242424242424242");
      expect(first.request.input).toMatchObject({ body: { card_number: "[masked]" } });

      await vote(gw.url, held.body.id, bob);
      await vote(gw.url, held.body.id, carol);
      await until(() => channel.updates.some((u) => u.notice.event === "resolved"));
      expect(channel.updates.every((u) => u.ref === `msg-${held.body.id}`)).toBe(true);
      const events = channel.updates.map((u) => u.notice.event);
      expect(events).toEqual(["reviewed", "reviewed", "resolved"]);
      expect(channel.updates.at(-1)!.notice.request.status).toBe("succeeded");
      expect(channel.updates.at(-1)!.notice.request.outcome?.summary).toMatch(/^HTTP 200/);

      // Allowed and denied actions need nobody's attention.
      const before = channel.attempts;
      await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "billing-api",
          operation: "request",
          input: { method: "GET", path: "/x" },
        },
      });
      await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "billing-api",
          operation: "request",
          input: { method: "DELETE", path: "/x" },
        },
      });
      await gw.gateway.dispatcher.idle();
      expect(channel.attempts).toBe(before);
    } finally {
      await gw.close();
    }
  });

  it("post only to the channels a rule names, and a name no channel has keeps the gateway from starting", async () => {
    const named = testConfig(upstream.url).replace(
      "review: { approvers: [finance], quorum: 2, expiresIn: 15m, risk: high }",
      "review: { approvers: [finance], quorum: 2, expiresIn: 15m, risk: high, channels: [recorder] }",
    );
    expect(named).toContain("channels: [recorder]");
    const chosen = new RecordingChannel("recorder");
    const other = new RecordingChannel("other");
    const gw = await startGateway(named, {
      gateway: { channels: [chosen, other], delivery: fast },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await until(() => chosen.posts.length === 1);
      await gw.gateway.dispatcher.idle();
      expect(other.attempts).toBe(0);
    } finally {
      await gw.close();
    }

    // A misspelt name would leave every review of that rule unseen: refused with its path.
    const misspelt = startGateway(named.replace("channels: [recorder]", "channels: [recoder]"), {
      dir: gw.dir,
      gateway: { channels: [chosen, other], delivery: fast },
    });
    await expect(misspelt).rejects.toThrow(
      /rules\[\d+\]\.review\.channels\[0\]: no approval channel named "recoder" is configured \(configured: recorder, other\)/,
    );
  });

  it("retries a failing channel, keeps the request reviewable meanwhile, and gives up after the last attempt", async () => {
    const channel = new RecordingChannel();
    channel.down = 2;
    const gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [channel], delivery: fast },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const bob = await gw.token("reviewer", "bob@example.com");
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      const view = await api(gw.url, "GET", `/v1/requests/${held.body.id}`, { token: bob });
      expect(view.body.status).toBe("pending");
      await until(() => channel.posts.length === 1);
      expect(channel.attempts).toBe(3);

      channel.down = 100;
      const second = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: refund({ justification: "never delivered" }),
      });
      await until(() => channel.attempts >= 3 + fast.maxAttempts);
      await new Promise((r) => setTimeout(r, 200));
      expect(channel.attempts).toBe(3 + fast.maxAttempts);
      expect(channel.posts.map((p) => p.request.id)).not.toContain(second.body.id);
      expect(gw.logs.join("")).toContain("delivery failed for good; kept as a dead letter");
    } finally {
      await gw.close();
    }
  });

  it("holds a request's later messages until its first one went out, however long that takes", async () => {
    const channel = new RecordingChannel();
    // Down for the first message only: the cancellation's would go through, first.
    channel.down = 1;
    const gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [channel], delivery: { ...fast, backoff: () => 600 } },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await until(() => channel.attempts >= 1);
      // Cancelled while its first message waits to be tried again.
      await api(gw.url, "POST", `/v1/actions/${held.body.id}/cancel`, { token: agent });
      await until(() => channel.updates.length === 1);
      expect(channel.posts.map((p) => p.event)).toEqual(["requested"]);
      expect(channel.updates[0]).toMatchObject({
        ref: `msg-${held.body.id}`,
        notice: { event: "resolved", request: { status: "cancelled" } },
      });
    } finally {
      await gw.close();
    }
  });

  it("delivers to one channel while another is still busy with a delivery", async () => {
    // A channel whose calls take long (a Bot Connector slow to answer, a webhook receiver
    // that holds the connection until its timeout): it holds up only its own messages.
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = new RecordingChannel("slow");
    const slowPost = slow.post.bind(slow);
    slow.post = async (notice) => {
      await held;
      return slowPost(notice);
    };
    const other = new RecordingChannel("other");
    const gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [slow, other], delivery: fast },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const first = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      await until(() => other.posts.length === 1);
      // The slow channel is still on the first request's message; the second one's goes out
      // to the other channel all the same.
      const second = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: refund({ justification: "the second one" }),
      });
      await until(() => other.posts.some((p) => p.request.id === second.body.id));
      expect(slow.posts).toEqual([]);
      release();
      await until(() => slow.posts.length === 2);
      expect(slow.posts.map((p) => p.request.id)).toEqual([first.body.id, second.body.id]);
    } finally {
      release();
      await gw.close();
    }
  });

  it("still does what a later event does when the first message never went out", async () => {
    const channel = new RecordingChannel();
    channel.down = fast.maxAttempts;
    const gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [channel], delivery: fast },
    });
    dirs.push(gw.dir);
    try {
      const agent = await gw.token("agent", "support-bot");
      const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      // The first message fails for good; then the request is cancelled.
      await until(() => channel.attempts >= fast.maxAttempts);
      await new Promise((r) => setTimeout(r, 100));
      await api(gw.url, "POST", `/v1/actions/${held.body.id}/cancel`, { token: agent });
      await until(() => channel.updates.length === 1);
      // The card goes out with the outcome, and the outcome's own follow-up runs on it.
      expect(channel.posts.map((p) => [p.event, p.request.status])).toEqual([
        ["resolved", "cancelled"],
      ]);
      expect(channel.updates[0]).toMatchObject({
        ref: `msg-${held.body.id}`,
        notice: { event: "resolved" },
      });
    } finally {
      await gw.close();
    }
  });

  it("delivers after a restart what could not be delivered before it", async () => {
    const down = new RecordingChannel();
    down.down = 1_000;
    let gw = await startGateway(testConfig(upstream.url), {
      gateway: { channels: [down], delivery: { pollInterval: 20, backoff: () => 200 } },
    });
    dirs.push(gw.dir);
    const agent = await gw.token("agent", "support-bot");
    const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    await until(() => down.attempts >= 1);
    await gw.close();

    const up = new RecordingChannel();
    gw = await startGateway(testConfig(upstream.url), {
      dir: gw.dir,
      gateway: { channels: [up], delivery: { pollInterval: 20, backoff: () => 20 } },
    });
    try {
      await until(() => up.posts.length === 1);
      expect(down.posts).toHaveLength(0);
      expect(up.posts.map((p) => p.request.id)).toEqual([held.body.id]);
    } finally {
      await gw.close();
    }
  });
});
