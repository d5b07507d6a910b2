/**
 * The fake Teams against the official Bot Framework SDK, through Airlock's own glue: if these
 * hold, what the gateway's Teams tests see is what Teams itself would make the SDK do.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Activity, TeamsChannelAccount } from "botframework-schema";
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from "vitest";
import { createTeamsBot, type TeamsBot } from "../src/channels/teams/teams-bot.js";
import { teamsSchema } from "../src/channels/teams/teams-config.js";
import {
  type ChannelTokenOverrides,
  startTeamsServer,
  type TeamsServer,
} from "./support/teams-server.js";

const SCOPE = "https://api.botframework.com/.default";
/** The Bot Framework Emulator's issuer, which the SDK also takes, signed by the same keys. */
const EMULATOR_ISSUER = "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/";

const message = (text: string): Partial<Activity> => ({
  type: "message",
  text,
  attachments: [
    {
      contentType: "application/vnd.microsoft.card.adaptive",
      content: {
        type: "AdaptiveCard",
        version: "1.4",
        body: [{ type: "TextBlock", text }],
        actions: [
          { type: "Action.Execute", title: "Approve", verb: "approve", data: { id: "r1" } },
        ],
      },
    },
  ],
});

describe("fake Teams", () => {
  let teams: TeamsServer;
  let bot: TeamsBot;
  let untrust: (() => void) | undefined;
  // The SDK logs every refused token with console.error.
  let quiet: MockInstance | undefined;

  beforeAll(async () => {
    quiet = vi.spyOn(console, "error").mockImplementation(() => {});
    teams = await startTeamsServer({ otherKey: { endorsements: ["webchat"] } });
    untrust = teams.trust();
    bot = createTeamsBot(teamsSchema.parse(teams.config()));
  });
  afterAll(async () => {
    untrust?.();
    quiet?.mockRestore();
    await teams?.close();
  });

  describe("verify", () => {
    const click = (fields: Record<string, unknown> = {}) =>
      teams.invokeActivity({
        verb: "approve",
        data: { id: "r1" },
        replyToId: "1712345678901",
        ...fields,
      });

    it("accepts a click on an Action.Execute button, signed by the Bot Framework's key", async () => {
      const activity = click();
      expect(activity).toMatchObject({
        type: "invoke",
        name: "adaptiveCard/action",
        channelId: "msteams",
        serviceUrl: teams.serviceUrl,
        recipient: { id: `28:${teams.appId}` },
        conversation: {
          id: "19:approvals@thread.tacv2;messageid=1712345678901",
          conversationType: "channel",
          tenantId: teams.tenantId,
        },
        channelData: { tenant: { id: teams.tenantId } },
        replyToId: "1712345678901",
        value: {
          action: { type: "Action.Execute", verb: "approve", data: { id: "r1" } },
          trigger: "manual",
        },
      });
      expect(activity.from?.id).toMatch(/^29:/);
      expect(await bot.verify(activity, `Bearer ${teams.channelToken()}`)).toBeUndefined();
      expect(teams.identityRequests).toEqual([
        "GET /botframework/v1/.well-known/openidconfiguration",
        "GET /botframework/v1/.well-known/keys",
      ]);
    });

    const now = () => Math.floor(Date.now() / 1000);
    // Each differs from the accepted click in one thing only, and the reason says which check
    // caught it: without that check, it would have passed.
    const refusals: {
      what: string;
      token?: () => ChannelTokenOverrides;
      activity?: Record<string, unknown>;
      reason: RegExp;
    }[] = [
      {
        what: "signed by a key that is not published, under its kid",
        token: () => ({ key: "stranger" }),
        reason: /invalid signature/,
      },
      {
        what: "signed under a kid that is not published",
        token: () => ({ kid: "not-a-published-kid" }),
        reason: /Signing Key could not be retrieved/,
      },
      {
        what: "for another app",
        token: () => ({ aud: randomUUID() }),
        reason: /Invalid AppId passed on token/,
      },
      {
        what: "with no audience",
        token: () => ({ aud: undefined }),
        reason: /Invalid AppId passed on token/,
      },
      {
        what: "from another issuer",
        token: () => ({ iss: "https://login.botframework.com" }),
        reason: /No valid identity/,
      },
      {
        what: "from the Emulator's issuer (which the SDK accepts)",
        token: () => ({ iss: EMULATOR_ISSUER, ver: "1.0", appid: teams.appId }),
        reason: /^the token was not issued by the Bot Framework for a channel$/,
      },
      {
        what: "expired beyond the SDK's five minutes of leeway",
        token: () => ({ iat: now() - 4200, nbf: now() - 4200, exp: now() - 600 }),
        reason: /token has expired/,
      },
      { what: "not valid yet", token: () => ({ nbf: now() + 600 }), reason: /jwt not active/ },
      {
        // The SDK would take it for good, and no replay could be refused for that long.
        what: "with no expiry",
        token: () => ({ exp: undefined }),
        reason: /^the Bot Framework token has no expiry \(exp\)/,
      },
      {
        what: "naming another serviceUrl",
        token: () => ({ serviceurl: "https://smba.trafficmanager.net/teams/" }),
        reason: /ServiceUrl claim do not match/,
      },
      {
        what: "signed by a key endorsed for another channel only",
        token: () => ({ key: "other" }),
        reason: /Could not validate endorsement for key/,
      },
      {
        // The other key is endorsed for webchat, so the SDK takes it: only Airlock refuses.
        what: "from another channel, with a key endorsed for it",
        token: () => ({ key: "other" }),
        activity: { channelId: "webchat" },
        reason: /^the activity did not come through Teams$/,
      },
      {
        what: "from no channel (the SDK skips endorsements then)",
        activity: { channelId: "" },
        reason: /^the activity did not come through Teams$/,
      },
    ];

    it.each(refusals)("refuses a token $what", async ({ token, activity, reason }) => {
      const refused = await bot.verify(click(activity), `Bearer ${teams.channelToken(token?.())}`);
      expect(refused).toMatch(reason);
    });

    it.each([
      ["the bare token", (token: string) => token],
      ["another scheme", (token: string) => `Basic ${token}`],
      ["a lower-case scheme", (token: string) => `bearer ${token}`],
      ["nothing", () => ""],
    ])("refuses an Authorization header with %s", async (_, header) => {
      expect(await bot.verify(click(), header(teams.channelToken()))).toBe(
        "no Bot Framework token (Authorization: Bearer)",
      );
    });

    it("refuses an activity that names no serviceUrl, which the SDK would not bind to the token", async () => {
      const elsewhere = teams.channelToken({
        serviceurl: "https://smba.trafficmanager.net/teams/",
      });
      expect(await bot.verify(click({ serviceUrl: undefined }), `Bearer ${elsewhere}`)).toBe(
        "the activity names no serviceUrl",
      );
      expect(await bot.verify(click({ serviceUrl: "" }), `Bearer ${elsewhere}`)).toBe(
        "the activity names no serviceUrl",
      );
    });

    it("posts an activity as the Bot Framework does, for a receiver to verify", async () => {
      const receiver = createServer(async (request, response) => {
        const chunks: Buffer[] = [];
        for await (const chunk of request) chunks.push(chunk as Buffer);
        const activity = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Partial<Activity>;
        const refused = await bot.verify(activity, request.headers.authorization ?? "");
        response.writeHead(request.url === "/integrations/teams/messages" && !refused ? 200 : 401, {
          "content-type": "application/json",
        });
        response.end(
          JSON.stringify({ refused: refused ?? null, verb: activity.value?.action?.verb }),
        );
      });
      await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
      const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
      try {
        expect(await teams.post(base, click())).toEqual({
          status: 200,
          body: { refused: null, verb: "approve" },
        });
        const forged = await teams.post(base, click(), teams.channelToken({ key: "stranger" }));
        expect(forged.status).toBe(401);
        expect(forged.body).toMatchObject({ refused: expect.stringMatching(/invalid signature/) });
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    });
  });

  describe("connector", () => {
    const conversation = "19:approvals@thread.tacv2";

    it("sends, updates and replies with a token MSAL got from the token endpoint", async () => {
      const client = await bot.connector();
      const sent = await client.conversations.sendToConversation(conversation, message("Approve?"));
      expect(sent.id).toMatch(/^\d{13,}$/);

      expect(teams.tokenRequests).toHaveLength(1);
      const [request] = teams.tokenRequests;
      expect(request).toMatchObject({
        tenant: teams.tenantId,
        grantType: "client_credentials",
        clientId: teams.appId,
        clientSecret: teams.appPassword,
        scope: SCOPE,
        status: 200,
      });
      expect(teams.identityRequests).toContain(
        `GET /login/${teams.tenantId}/v2.0/.well-known/openid-configuration`,
      );
      expect(teams.calls.at(-1)).toMatchObject({
        method: "POST",
        path: `/teams/v3/conversations/${conversation}/activities`,
        conversationId: conversation,
        token: request?.accessToken,
        authorized: true,
        status: 201,
        body: message("Approve?"),
      });
      expect(teams.activities.get(sent.id)).toMatchObject({
        conversationId: conversation,
        version: 1,
        activity: { ...message("Approve?"), id: sent.id },
      });

      const updated = await client.conversations.updateActivity(conversation, sent.id, {
        ...message("Approved by Ada"),
        id: sent.id,
      });
      expect(updated.id).toBe(sent.id);
      expect(teams.activities.get(sent.id)).toMatchObject({
        version: 2,
        activity: { text: "Approved by Ada" },
      });
      // An invoke names the card's thread: updating through that conversation id works too.
      const thread = `${conversation};messageid=${sent.id}`;
      await client.conversations.updateActivity(thread, sent.id, { type: "message", text: "Done" });
      expect(teams.calls.at(-1)).toMatchObject({
        method: "PUT",
        conversationId: thread,
        activityId: sent.id,
      });
      expect(
        teams.history.filter((version) => version.id === sent.id).map((v) => v.version),
      ).toEqual([1, 2, 3]);

      const reply = await client.conversations.replyToActivity(conversation, sent.id, {
        type: "message",
        text: "Executed",
      });
      expect(teams.activities.get(reply.id)).toMatchObject({ replyToId: sent.id, version: 1 });
      // One token, kept by the SDK for the calls after the first.
      expect(teams.tokenRequests).toHaveLength(1);
    });

    it("answers 404 for an activity it does not know", async () => {
      const client = await bot.connector();
      const missing = client.conversations.updateActivity(conversation, "1", message("Lost"));
      await expect(missing).rejects.toMatchObject({
        statusCode: 404,
        details: { error: { code: "ActivityNotFound" } },
      });
      const elsewhere = await client.conversations.sendToConversation(
        "19:other@thread.tacv2",
        message("x"),
      );
      await expect(
        client.conversations.updateActivity(conversation, elsewhere.id, message("y")),
      ).rejects.toMatchObject({ statusCode: 404 });
    });

    it("looks members up by id or AAD object id, with their Teams fields", async () => {
      const client = await bot.connector();
      const ada = teams.addMember({ name: "Ada Lovelace", email: "ada@example.com" });
      const guest = teams.addMember({
        name: "Gus Guest",
        email: "gus@partner.example",
        userRole: "guest",
      });
      // The SDK types it as a ChannelAccount, but keeps every field: botbuilder's TeamsInfo casts it.
      const member = (await client.conversations.getConversationMember(
        conversation,
        ada.id,
      )) as TeamsChannelAccount;
      expect(member).toMatchObject({
        id: ada.id,
        name: "Ada Lovelace",
        aadObjectId: ada.aadObjectId,
        email: "ada@example.com",
        userPrincipalName: "ada@example.com",
        tenantId: teams.tenantId,
        userRole: "user",
      });
      const byObjectId = (await client.conversations.getConversationMember(
        conversation,
        guest.aadObjectId!,
      )) as TeamsChannelAccount;
      expect(byObjectId).toMatchObject({
        id: guest.id,
        userRole: "guest",
        tenantId: teams.tenantId,
      });

      await expect(
        client.conversations.getConversationMember(conversation, "29:nobody"),
      ).rejects.toMatchObject({
        statusCode: 404,
        details: { error: { code: "MemberNotFoundInConversation" } },
      });
    });

    it("fails the next calls on demand, once each: the bot's client leaves retrying to the outbox", async () => {
      const client = await bot.connector();
      const before = teams.calls.length;
      teams.failNext(1, 429, { "Retry-After": "7" });
      const throttled = await client.conversations
        .sendToConversation(conversation, message("Again"))
        .catch((error: unknown) => error);
      // The SDK would have waited the 7 s out and tried again; the outbox is told instead.
      expect(throttled).toMatchObject({ statusCode: 429 });
      expect(
        (
          throttled as { response: { headers: { get(name: string): string } } }
        ).response.headers.get("retry-after"),
      ).toBe("7");
      const sent = await client.conversations.sendToConversation(conversation, message("Again"));
      expect(teams.calls.slice(before).map((call) => call.status)).toEqual([429, 201]);
      expect(teams.activities.get(sent.id)?.activity).toMatchObject({ text: "Again" });

      const after = teams.calls.length;
      teams.failNext(1, 503);
      await expect(
        client.conversations.sendToConversation(conversation, message("Down")),
      ).rejects.toMatchObject({ statusCode: 503 });
      expect(teams.calls.slice(after).map((call) => call.status)).toEqual([503]);
    });

    it("carries a call out and loses its answer on demand, as a gateway that gave up on it", async () => {
      const client = await bot.connector();
      const before = teams.calls.length;
      teams.failAfterNext(1, 504);
      await expect(
        client.conversations.sendToConversation(conversation, message("Lost")),
      ).rejects.toMatchObject({ statusCode: 504 });
      expect(teams.calls.slice(before).map((call) => call.status)).toEqual([504]);
      // The bot was told it failed; Teams has the message all the same.
      const posted = [...teams.activities.values()].filter(
        (a) => (a.activity as { text?: unknown }).text === "Lost",
      );
      expect(posted).toHaveLength(1);
    });

    it("asks Entra ID once for calls made at once, and gives up on one that does not answer", async () => {
      // A bot of a fresh app registration: no token of it is cached anywhere yet.
      const other = await startTeamsServer();
      const undo = other.trust();
      try {
        const fresh = createTeamsBot(teamsSchema.parse(other.config()));
        const client = await fresh.connector();
        await Promise.all(
          Array.from({ length: 5 }, (_, i) =>
            client.conversations.sendToConversation(conversation, message(`at once ${i}`)),
          ),
        );
        expect(other.tokenRequests).toHaveLength(1);

        // A hung Entra ID, one that drips its answer, and a proxy's error page: each call
        // ends within the token deadline, with what went wrong.
        const broken = await startTeamsServer();
        const undoBroken = broken.trust();
        try {
          for (const [fault, said] of [
            ["silent", /did not answer within 3 s/],
            ["drip", /did not answer within 3 s/],
            ["html", /502/],
          ] as const) {
            broken.tokenFault = fault;
            const stuck = await createTeamsBot(teamsSchema.parse(broken.config())).connector();
            const started = Date.now();
            const failure = await stuck.conversations
              .sendToConversation(conversation, message("never"))
              .then(
                () => undefined,
                (error: unknown) => error,
              );
            expect(String((failure as Error)?.message ?? failure)).toMatch(said);
            expect(Date.now() - started).toBeLessThan(7000);
          }
        } finally {
          undoBroken();
          await broken.close();
        }
      } finally {
        undo();
        await other.close();
      }
    }, 30_000);

    it("refuses a token it did not issue", async () => {
      const response = await fetch(
        `${teams.serviceUrl}v3/conversations/${encodeURIComponent(conversation)}/activities`,
        {
          method: "POST",
          headers: { authorization: "Bearer made-up", "content-type": "application/json" },
          body: JSON.stringify({ type: "message", text: "forged" }),
        },
      );
      expect(response.status).toBe(401);
      expect(teams.calls.at(-1)).toMatchObject({
        token: "made-up",
        authorized: false,
        status: 401,
      });
    });

    it("gets no token with a wrong app password, so the call fails", async () => {
      // Its own server: the SDK keeps tokens per appId for the whole process, whatever the secret.
      const other = await startTeamsServer();
      const undo = other.trust();
      try {
        const wrong = createTeamsBot(
          teamsSchema.parse({ ...other.config(), appPassword: "not-the-password" }),
        );
        const client = await wrong.connector();
        await expect(
          client.conversations.sendToConversation(conversation, message("Nope")),
        ).rejects.toMatchObject({ errorCode: "invalid_client" });
        expect(other.tokenRequests).toMatchObject([
          { clientId: other.appId, clientSecret: "not-the-password", scope: SCOPE, status: 401 },
        ]);
        expect(other.issuedTokens.size).toBe(0);
        expect(other.calls).toEqual([]);
      } finally {
        undo();
        await other.close();
      }
    });
  });
});
