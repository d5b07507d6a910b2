/**
 * The fake Slack against the official client: if these hold, what the gateway's Slack tests
 * see is what Slack itself would make the client do.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { LogLevel, WebClient } from "@slack/web-api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FakeSlack, startFakeSlack } from "./support/slack.js";

describe("fake Slack", () => {
  let slack: FakeSlack;
  let client: WebClient;

  beforeAll(async () => {
    slack = await startFakeSlack();
  });
  afterAll(async () => {
    await slack?.close();
  });
  beforeEach(() => {
    slack.setDown(false);
    client = new WebClient(slack.botToken, {
      slackApiUrl: slack.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      logLevel: LogLevel.ERROR,
    });
  });

  it("posts, updates and threads messages, recording decoded arguments", async () => {
    const blocks = [
      {
        type: "actions",
        block_id: "decide",
        elements: [
          { type: "button", action_id: "approve", text: { type: "plain_text", text: "Approve" } },
        ],
      },
    ];
    const posted = await client.chat.postMessage({ channel: "#approvals", text: "hi", blocks });
    expect(posted.ok).toBe(true);
    expect(posted.channel).toMatch(/^C[A-Z0-9]+$/);
    expect(posted.channel).toBe(slack.channelId("#approvals"));
    expect(posted.ts).toMatch(/^\d{10}\.\d{6}$/);
    expect(posted.message).toMatchObject({ text: "hi", ts: posted.ts, blocks });
    expect(slack.callsTo("chat.postMessage").at(-1)?.args).toEqual({
      channel: "#approvals",
      text: "hi",
      blocks,
    });

    const channel = posted.channel!;
    const ts = posted.ts!;
    const updated = await client.chat.update({ channel, ts, text: "decided", blocks: [] });
    expect(updated).toMatchObject({ ok: true, channel, ts, text: "decided" });
    expect(slack.messages.get(`${channel}:${ts}`)).toMatchObject({
      text: "decided",
      blocks: [],
      updates: 1,
    });

    const reply = await client.chat.postMessage({ channel, thread_ts: ts, text: "done" });
    expect(Number(reply.ts)).toBeGreaterThan(Number(ts));
    expect(slack.messages.get(`${channel}:${reply.ts}`)).toMatchObject({
      thread_ts: ts,
      text: "done",
    });

    await expect(
      client.chat.postMessage({ channel, thread_ts: "1.000001", text: "lost" }),
    ).rejects.toMatchObject({ data: { error: "thread_not_found" } });
    await expect(client.chat.update({ channel, ts: "1.000001", text: "x" })).rejects.toMatchObject({
      data: { error: "message_not_found" },
    });
    await expect(client.apiCall("chat.postMessage", { channel })).rejects.toMatchObject({
      data: { error: "no_text" },
    });
  });

  it("finds users by id and by e-mail, and opens DMs with them", async () => {
    const dana = slack.addUser("Dana@Example.com", "dana");
    const info = await client.users.info({ user: dana });
    expect(info.user).toMatchObject({
      id: dana,
      name: "dana",
      deleted: false,
      is_bot: false,
      profile: { email: "Dana@Example.com" },
    });
    // What Airlock reads to tell a member from a guest, a bot or an unconfirmed e-mail.
    expect(info.user).toMatchObject({
      is_restricted: false,
      is_ultra_restricted: false,
      is_email_confirmed: true,
    });
    const guest = slack.addUser("gus@example.com");
    Object.assign(slack.users.get(guest)!, { guest: "single", bot: true, emailConfirmed: null });
    const seen = (await client.users.info({ user: guest })).user!;
    expect(seen).toMatchObject({ is_restricted: true, is_ultra_restricted: true, is_bot: true });
    expect(seen).not.toHaveProperty("is_email_confirmed");
    // A Slack Connect member's click names their own workspace, as users.info does.
    const outsider = slack.addUser("olga@elsewhere.example");
    slack.users.get(outsider)!.teamId = "T0ELSEWHERE";
    const click = slack.click({
      user: outsider,
      channel: "C0X",
      ts: "1.000001",
      actionId: "a",
      value: "v",
    });
    expect(click).toMatchObject({ user: { id: outsider, team_id: "T0ELSEWHERE" } });
    expect((await client.users.info({ user: outsider })).user).toMatchObject({
      team_id: "T0ELSEWHERE",
    });
    const found = await client.users.lookupByEmail({ email: "dana@example.com" });
    expect(found.user?.id).toBe(dana);
    await expect(client.users.info({ user: "U0NOBODY00" })).rejects.toMatchObject({
      data: { error: "user_not_found" },
    });
    await expect(client.users.lookupByEmail({ email: "nobody@example.com" })).rejects.toMatchObject(
      {
        data: { error: "users_not_found" },
      },
    );

    const dm = await client.conversations.open({ users: dana });
    expect(dm.channel?.id).toMatch(/^D/);
    const direct = await client.chat.postMessage({ channel: dana, text: "your request" });
    expect(direct.channel).toBe(dm.channel?.id);

    const ephemeral = await client.chat.postEphemeral({
      channel: dm.channel!.id!,
      user: dana,
      text: "only you",
    });
    expect(ephemeral.message_ts).toMatch(/^\d+\.\d{6}$/);
    expect(slack.ephemerals.at(-1)).toMatchObject({ user: dana, text: "only you" });
  });

  it("opens a modal only for a trigger a click issued, and only once", async () => {
    const user = slack.addUser("erin@example.com");
    const click = slack.click({
      user,
      channel: slack.channelId("#approvals"),
      ts: "1700000000.000100",
      actionId: "deny",
      value: "req_1",
    }) as { trigger_id: string; actions: { action_id: string; value: string }[] };
    expect(click.actions[0]).toMatchObject({ action_id: "deny", value: "req_1" });
    const view = {
      type: "modal" as const,
      callback_id: "why",
      private_metadata: "m",
      title: { type: "plain_text" as const, text: "Why" },
      blocks: [],
    };
    const opened = await client.views.open({ trigger_id: click.trigger_id, view });
    expect(opened.view).toMatchObject({ callback_id: "why", private_metadata: "m" });
    expect(opened.view?.id).toMatch(/^V/);
    expect(slack.views.at(-1)?.trigger_id).toBe(click.trigger_id);
    await expect(client.views.open({ trigger_id: click.trigger_id, view })).rejects.toMatchObject({
      data: { error: "exchanged_trigger_id" },
    });
    await expect(client.views.open({ trigger_id: "made.up.trigger", view })).rejects.toMatchObject({
      data: { error: "invalid_trigger_id" },
    });

    const submitted = slack.submitView({
      user,
      callbackId: "why",
      privateMetadata: "m",
      values: { comment: { comment: { type: "plain_text_input", value: "dup" } } },
    });
    expect(submitted).toMatchObject({
      type: "view_submission",
      user: { id: user },
      view: { id: opened.view?.id, state: { values: { comment: { comment: { value: "dup" } } } } },
    });
  });

  it("rate-limits with 429 and Retry-After, which the client reports with its delay", async () => {
    slack.rateLimit(1, 7, "chat.postMessage");
    await client.auth.test(); // other methods are not limited
    const before = slack.callsTo("chat.postMessage").length;
    const error = await client.chat
      .postMessage({ channel: "#approvals", text: "x" })
      .catch((e) => e);
    expect(error).toMatchObject({ code: "slack_webapi_rate_limited_error", retryAfter: 7 });
    expect(slack.callsTo("chat.postMessage")).toHaveLength(before);
    await client.chat.postMessage({ channel: "#approvals", text: "x" });
    expect(slack.callsTo("chat.postMessage")).toHaveLength(before + 1);

    // Without rejectRateLimitedCalls the client waits Retry-After and tries again itself.
    const patient = new WebClient(slack.botToken, {
      slackApiUrl: slack.apiUrl,
      retryConfig: { retries: 1, minTimeout: 0 },
      logLevel: LogLevel.ERROR,
    });
    slack.rateLimit(1, 0);
    expect((await patient.auth.test()).ok).toBe(true);
  });

  it("fails at the network while down, or with a 503", async () => {
    const before = slack.calls.length;
    slack.setDown(true);
    const reset = await client.auth.test().catch((e) => e);
    expect(reset).toMatchObject({ code: "slack_webapi_request_error" });
    expect(reset.original).toBeInstanceOf(Error);

    slack.setDown(true, "503");
    const unavailable = await client.auth.test().catch((e) => e);
    expect(unavailable).toMatchObject({ code: "slack_webapi_http_error", statusCode: 503 });
    expect(slack.calls).toHaveLength(before);

    slack.setDown(false);
    expect((await client.auth.test()).ok).toBe(true);
  });

  it("refuses another token, and an unknown method", async () => {
    const stranger = new WebClient("xoxb-not-the-token", {
      slackApiUrl: slack.apiUrl,
      retryConfig: { retries: 0 },
      logLevel: LogLevel.ERROR,
    });
    const error = await stranger.auth.test().catch((e) => e);
    expect(error).toMatchObject({
      code: "slack_webapi_platform_error",
      data: { ok: false, error: "invalid_auth" },
    });
    await expect(client.apiCall("chat.teleport", {})).rejects.toMatchObject({
      code: "slack_webapi_platform_error",
      data: { error: "unknown_method" },
    });
  });

  it("signs interactions so that an independent check accepts them, and not forgeries", async () => {
    const received: { headers: IncomingHttpHeaders; body: string }[] = [];
    const receiver = createServer(async (request, response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      response.end("ok");
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/interactions`;
    const verify = (secret: string, got: { headers: IncomingHttpHeaders; body: string }) => {
      const ts = String(got.headers["x-slack-request-timestamp"]);
      const expected = `v0=${createHmac("sha256", secret).update(`v0:${ts}:${got.body}`).digest("hex")}`;
      const given = String(got.headers["x-slack-signature"]);
      return (
        given.length === expected.length &&
        timingSafeEqual(Buffer.from(given), Buffer.from(expected))
      );
    };
    try {
      const payload = { type: "block_actions", note: "spaces & symbols = +ok" };
      expect(await slack.interact(url, payload)).toEqual({ status: 200, text: "ok" });
      await slack.interact(url, payload, { secret: "forged" });
      await slack.interact(url, payload, { timestamp: 1_600_000_000, body: "raw=1" });

      const [genuine, forged, stale] = received;
      expect(genuine!.headers["content-type"]).toBe("application/x-www-form-urlencoded");
      expect(JSON.parse(new URLSearchParams(genuine!.body).get("payload")!)).toEqual(payload);
      expect(
        Math.abs(Number(genuine!.headers["x-slack-request-timestamp"]) - Date.now() / 1000),
      ).toBeLessThan(5);
      expect(verify(slack.signingSecret, genuine!)).toBe(true);
      expect(verify(slack.signingSecret, forged!)).toBe(false);
      expect(stale!.headers["x-slack-request-timestamp"]).toBe("1600000000");
      expect(stale!.body).toBe("raw=1");
      expect(verify(slack.signingSecret, stale!)).toBe(true);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });
});
