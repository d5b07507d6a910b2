/**
 * Teams approvals end to end: the official Bot Framework SDK against a loopback server that
 * speaks the Bot Connector's protocol, issues the bot's tokens and signs clicks with a
 * published key, as the Bot Framework does.
 */
import { type AddressInfo, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from "vitest";
import { verbs } from "../src/channels/teams/teams-cards.js";
import {
  api,
  refund,
  removeDir,
  SECRET,
  startGateway,
  type TestGateway,
  until,
  vote,
  withGateway,
} from "./support/gateway.js";
import { holdChannelRefs } from "./support/held-recording.js";
import { type ConnectorCall, startTeamsServer, type TeamsServer } from "./support/teams-server.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const fast = { pollInterval: 20, backoff: () => 20, maxAttempts: 50 };

/** A thread of the approvals channel, as a rule may name it for its cards. */
const THREAD = "19:approvals@thread.tacv2;messageid=1700000000001";

function config(upstream: string, teams: TeamsServer): string {
  const t = teams.config();
  return `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
reviewers:
  - { email: alice@example.com, groups: [finance] }
  - { email: bob@example.com, groups: [finance] }
  - { email: carol@example.com, groups: [finance] }
  - { email: frank@example.com, groups: [eng] }
  - { email: dave@example.com, groups: [finance] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstream}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
channels:
  teams:
    appId: ${t.appId}
    appPassword: "${t.appPassword}"
    tenantId: ${t.tenantId}
    conversation: "${t.conversation}"
    serviceUrl: ${t.serviceUrl}
    loginUrl: ${t.loginUrl}
    openIdMetadataUrl: ${t.openIdMetadataUrl}
    notifyOwner: true
rules:
  - name: big refunds are risky
    when: http.method == "POST" && http.path == "/refunds/big"
    decision: review
    review: { approvers: [finance], risk: high, teamsConversation: "19:payments@thread.tacv2" }
  - name: disputed refunds go to their thread
    when: http.method == "POST" && http.path == "/refunds/disputed"
    decision: review
    review: { approvers: [finance], risk: medium, teamsConversation: "${THREAD}" }
  - name: chargebacks need a fresh sign-in
    when: http.method == "POST" && http.path == "/refunds/chargeback"
    decision: review
    review: { approvers: [finance], risk: high, stepUp: true }
  - name: payouts are for the console only
    when: http.method == "POST" && http.path == "/payouts"
    decision: review
    review: { approvers: [finance], channels: [] }
  - name: big payouts are risky and for the console only
    when: http.method == "POST" && http.path == "/payouts/big"
    decision: review
    review: { approvers: [finance], risk: critical, channels: [] }
  - name: refunds need finance
    when: http.method == "POST" && http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance], risk: medium }
    mask: { input: [body.card_number] }
  - name: nothing else
    decision: deny
`;
}

describe("Teams approvals", () => {
  let upstream: Upstream;
  let teams: TeamsServer;
  let gw: TestGateway;
  let agent: string;
  let untrust: (() => void) | undefined;
  let quiet: MockInstance | undefined;
  const member: Record<string, { id: string; aadObjectId?: string }> = {};

  beforeAll(async () => {
    // The SDK writes every refused token to console.error; the tests refuse many on purpose.
    quiet = vi.spyOn(console, "error").mockImplementation(() => {});
    upstream = await startUpstream();
    teams = await startTeamsServer();
    untrust = teams.trust();
    for (const name of ["alice", "bob", "carol", "frank", "dave"]) {
      member[name] = teams.addMember({ name, email: `${name}@example.com` });
    }
    member.stranger = teams.addMember({ name: "stranger", email: "stranger@elsewhere.example" });
    // Carol's e-mail on accounts that must not count as hers: a guest, and a member of
    // another organisation in a shared channel (whose admins choose e-mails).
    member.guest = teams.addMember({
      name: "carol-guest",
      email: "carol@example.com",
      userRole: "guest",
    });
    member.outsider = teams.addMember({
      name: "carol-elsewhere",
      email: "carol@example.com",
      tenantId: "6d7c2f1e-0000-4000-8000-000000000001",
    });
    // Frank's address but for its last letter, the Kelvin sign, which lowercases to k.
    member.kelvin = teams.addMember({ name: "kelvin", email: "fran\u212A@example.com" });
    gw = await startGateway(config(upstream.url, teams), { gateway: { delivery: fast } });
    agent = await gw.token("agent", "support-bot");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await teams?.close();
    await upstream?.close();
    untrust?.();
    quiet?.mockRestore();
  });

  /** The card posted for a request: its activity id and the card's content as last sent. */
  function cardOf(requestId: string) {
    const stored = [...teams.activities.values()].find(
      (a) => !a.replyToId && JSON.stringify(a.activity).includes(requestId),
    );
    if (!stored) return undefined;
    const attachments = stored.activity.attachments as { contentType: string; content: unknown }[];
    return {
      id: stored.id,
      version: stored.version,
      card: attachments[0]!.content,
      contentType: attachments[0]!.contentType,
    };
  }

  async function held(path = "/refunds", extra: Record<string, unknown> = {}) {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(extra), input: { ...refund().input, path } },
    });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    await until(() => cardOf(id) !== undefined);
    // Where it was posted is kept right after Teams answers: a click is taken only from there.
    await gw.gateway.dispatcher.idle();
    return { id, card: cardOf(id)! };
  }

  const click = (
    who: string,
    requestId: string,
    cardId: string,
    verb: string,
    data: Record<string, unknown> = {},
    conversation?: string,
  ) =>
    teams.post(
      gw.url,
      teams.invokeActivity({
        verb,
        data: { requestId, ...data },
        replyToId: cardId,
        from: member[who]!,
        ...(conversation ? { conversation } : {}),
      }),
    );

  const statusOf = async (id: string) =>
    (await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent })).body;

  it("posts a card for a request held for review, and a click on Approve runs it once", async () => {
    const { id, card } = await held("/refunds", { justification: "Charged twice **Risk: low**" });
    expect(card.contentType).toBe("application/vnd.microsoft.card.adaptive");
    const text = JSON.stringify(card.card);
    expect(text).toContain("Charged twice **Risk: low**");
    // The card's number is masked, and no credential is anywhere near Teams.
    expect(text).not.toContain("4242424242424242");
    const before = upstream.calls.length;

    const answer = await click("bob", id, card.id, verbs.approve, { comment: "matches Stripe" });
    expect(answer).toEqual({
      status: 200,
      body: {
        statusCode: 200,
        type: "application/vnd.microsoft.activity.message",
        value: "Approved, recorded as bob@example.com.",
      },
    });
    await until(async () => (await statusOf(id)).status === "succeeded");
    expect(upstream.calls.length - before).toBe(1);
    const done = await statusOf(id);
    expect(done.reviews).toMatchObject([
      {
        reviewer: "bob@example.com",
        decision: "approve",
        comment: "matches Stripe",
        verifiedBy: "teams",
      },
    ]);
    // The card becomes the record, and the outcome is told in its thread, as plain text.
    await until(() => JSON.stringify(cardOf(id)?.card).includes("Approved and done"));
    const updated = cardOf(id)!;
    expect(updated.id).toBe(card.id);
    expect((updated.card as { actions?: unknown[] }).actions).toBeUndefined();
    await until(() => [...teams.activities.values()].some((a) => a.replyToId === card.id));
    const reply = [...teams.activities.values()].find((a) => a.replyToId === card.id)!;
    expect(reply.activity).toMatchObject({ textFormat: "plain" });
    expect(String(reply.activity.text)).toContain("succeeded");
    // The agent's owner (alice) hears of it in a chat of her own.
    await until(() => teams.created.some((c) => c.memberId === member.alice!.id));
    const chat = teams.created.find((c) => c.memberId === member.alice!.id)!;
    expect(chat.tenantId).toBe(teams.tenantId);
    await until(() => [...teams.activities.values()].some((a) => a.conversationId === chat.id));
    const told = [...teams.activities.values()].find((a) => a.conversationId === chat.id)!;
    expect(told.activity).toMatchObject({ textFormat: "plain" });
    expect(String(told.activity.text)).toMatch(
      new RegExp(`^Your agent support-bot's request ${id}: Approved by bob@example.com; succeeded`),
    );

    // Everything Airlock sent Teams, and everything it logged, is free of credentials.
    const sent = JSON.stringify(teams.calls.map((c) => c.body));
    for (const secret of [SECRET, teams.appPassword]) {
      expect(sent).not.toContain(secret);
      expect(gw.logs.join("")).not.toContain(secret);
    }
  });

  it("refuses clicks the Bot Framework did not sign for this bot, and records nothing", async () => {
    const { id, card } = await held();
    const activity = teams.invokeActivity({
      verb: verbs.approve,
      data: { requestId: id },
      replyToId: card.id,
      from: member.bob!,
    });
    for (const token of [
      teams.channelToken({ key: "stranger" }),
      teams.channelToken({ aud: "00000000-0000-4000-8000-000000000000" }),
      teams.channelToken({ iss: "https://sts.windows.net/evil/" }),
      teams.channelToken({ exp: Math.floor(Date.now() / 1000) - 3600 }),
      teams.channelToken({ serviceurl: "https://smba.trafficmanager.net/emea/" }),
    ]) {
      const answer = await teams.post(gw.url, activity, token);
      expect(answer.status).toBe(401);
      expect(answer.body).toMatchObject({ error: { code: "unauthenticated" } });
    }
    const unsigned = await fetch(`${gw.url}/integrations/teams/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(activity),
    });
    expect(unsigned.status).toBe(401);
    expect((await statusOf(id)).reviews).toEqual([]);

    // A genuine click counts once; the same activity sent again counts nothing.
    const first = await teams.post(gw.url, activity);
    expect(first.status).toBe(200);
    const again = await teams.post(gw.url, activity);
    expect(again).toEqual(first);
    expect((await statusOf(id)).reviews).toHaveLength(1);
  });

  it("answers Teams' resend of a click as it answered the click, without an error, and counts it once", async () => {
    const { id, card } = await held();
    const activity = teams.invokeActivity({
      verb: verbs.deny,
      data: { requestId: id, comment: "no" },
      replyToId: card.id,
      from: member.carol!,
    });
    // Teams sends an invoke again when its answer is late: here the first is still waiting
    // for Teams to say who clicked when the resend comes.
    const lookup = teams.holdNext(
      (c) => c.method === "GET" && c.path.endsWith(`/members/${member.carol!.id}`),
    );
    const first = teams.post(gw.url, activity);
    await lookup.arrived;
    const resend = teams.post(gw.url, activity);
    lookup.release();
    const answers = await Promise.all([first, resend]);
    for (const answer of answers) {
      expect(answer).toEqual({
        status: 200,
        body: {
          statusCode: 200,
          type: "application/vnd.microsoft.activity.message",
          value:
            "Denied, recorded as carol@example.com. A deny is final: the request will not run.",
        },
      });
    }
    expect(await statusOf(id)).toMatchObject({ status: "denied", reviews: [{ comment: "no" }] });
    // A gateway that did not take the click (restarted, or another replica) has no answer to
    // give again: it says the click is in, with no error either, and still counts nothing.
    gw = await gw.restart();
    const later = await teams.post(gw.url, activity);
    expect(later).toMatchObject({
      status: 200,
      body: { statusCode: 200, type: "application/vnd.microsoft.activity.message" },
    });
    expect((later.body as { value: string }).value).toMatch(/already received this click/);
    expect((await statusOf(id)).reviews).toHaveLength(1);
  });

  it("maps nobody who is a guest, from another tenant, unknown or a look-alike; the owner and non-approvers cannot approve", async () => {
    const { id, card } = await held();
    const told = async (who: string) =>
      ((await click(who, id, card.id, verbs.approve)).body as { value: string }).value;
    for (const who of ["guest", "outsider", "stranger", "kelvin"]) {
      expect(await told(who)).toMatch(/^Airlock cannot tell who you are/);
    }
    expect(await told("alice")).toMatch(/you own the agent/);
    expect(await told("frank")).toMatch(/not an approver/);
    // A click that claims another tenant for the conversation is nobody's either.
    const elsewhere = "6d7c2f1e-0000-4000-8000-000000000001";
    const activity = teams.invokeActivity({
      verb: verbs.approve,
      data: { requestId: id },
      replyToId: card.id,
      from: member.bob!,
      channelData: { tenant: { id: elsewhere } },
    });
    activity.conversation = { ...activity.conversation!, tenantId: elsewhere };
    const foreign = await teams.post(gw.url, activity);
    expect((foreign.body as { value: string }).value).toMatch(/^Airlock cannot tell who you are/);
    // A conversation or a user whose id is no string is no click, not a failure.
    const odd = (change: (activity: Record<string, { id?: unknown }>) => void) => {
      const made = teams.invokeActivity({
        verb: verbs.approve,
        data: { requestId: id },
        replyToId: card.id,
        from: member.bob!,
      });
      change(made as unknown as Record<string, { id?: unknown }>);
      return made;
    };
    for (const made of [
      odd((a) => {
        a.conversation!.id = 42;
      }),
      odd((a) => {
        a.from!.id = { id: "29:x" };
      }),
    ]) {
      const strange = await teams.post(gw.url, made);
      expect(strange.status).toBe(200);
      expect((strange.body as { value: string }).value).toBe(
        "Airlock does not know this button; nothing was recorded.",
      );
    }
    const still = await statusOf(id);
    expect(still.status).toBe("pending");
    expect(still.reviews).toEqual([]);
  });

  it("reads where a request's card was posted only once a reviewer clicked", async () => {
    const { id, card } = await held();
    const reads = vi.spyOn(gw.gateway.store, "getChannelRef");
    try {
      // Clicks by people who map to no reviewer, on the request's own card: each is told only
      // that, and costs no read of where the card went.
      for (const who of ["guest", "outsider", "stranger"]) {
        const answer = await click(who, id, card.id, verbs.deny);
        expect((answer.body as { value: string }).value, who).toMatch(
          /^Airlock cannot tell who you are/,
        );
      }
      expect(reads).not.toHaveBeenCalled();
      // A reviewer's click is checked against it: from elsewhere, it is refused.
      const stray = await click("bob", id, card.id, verbs.deny, {}, "19:payments@thread.tacv2");
      expect((stray.body as { value: string }).value).toMatch(/not posted in this conversation/);
      expect(reads).toHaveBeenCalledWith(id, "teams");
    } finally {
      reads.mockRestore();
    }
    expect(await statusOf(id)).toMatchObject({ status: "pending", reviews: [] });
  });

  it("takes a click that comes between the post and the recording of where it went", async () => {
    // Where the card went is recorded right after Teams answers the post: held there, so that
    // a click comes in between, as one can in the milliseconds it takes.
    const hold = holdChannelRefs(gw.gateway.store);
    try {
      const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      const id = res.body.id as string;
      await until(() => cardOf(id) !== undefined && hold.recording());
      const before = hold.reads().length;
      const answer = click("bob", id, cardOf(id)!.id, verbs.approve);
      // The click found nothing recorded yet; the recording goes on.
      await until(() =>
        hold
          .reads()
          .slice(before)
          .some(([read]) => read === id),
      );
      hold.release();
      expect(((await answer).body as { value: string }).value).toBe(
        "Approved, recorded as bob@example.com.",
      );
      await until(async () => (await statusOf(id)).status === "succeeded");
    } finally {
      hold.restore();
    }
  });

  it("takes a click on a card posted in a channel's thread, which its rule names as its conversation", async () => {
    const { id, card } = await held("/refunds/disputed");
    expect(teams.activities.get(card.id)?.conversationId).toBe(THREAD);
    const answer = await click("bob", id, card.id, verbs.approve, {}, THREAD);
    expect((answer.body as { value: string }).value).toBe("Approved, recorded as bob@example.com.");
    await until(async () => (await statusOf(id)).status === "succeeded");
    // Another channel is not the thread's.
    const other = await held("/refunds/disputed");
    const stray = await click(
      "bob",
      other.id,
      other.card.id,
      verbs.approve,
      {},
      "19:payments@thread.tacv2",
    );
    expect((stray.body as { value: string }).value).toMatch(/not posted in this conversation/);
  });

  it("takes a click only from the account Teams named, and asks again before every vote", async () => {
    // Bob's Teams id with another Entra object id: not the account the member lookup found.
    const { id, card } = await held();
    const mismatched = await teams.post(
      gw.url,
      teams.invokeActivity({
        verb: verbs.approve,
        data: { requestId: id },
        replyToId: card.id,
        from: { ...member.bob!, aadObjectId: "0a1b2c3d-0000-4000-8000-00000000abcd" },
      }),
    );
    expect((mismatched.body as { value: string }).value).toMatch(
      /^Airlock cannot tell who you are/,
    );
    expect((await statusOf(id)).reviews).toEqual([]);

    // Dave is looked up (and remembered) at a deny, then becomes a guest: neither a deny, which
    // ends a request for good, nor an approval is taken on what was remembered.
    const first = await held();
    expect(
      ((await click("dave", first.id, first.card.id, verbs.deny)).body as { value: string }).value,
    ).toMatch(/^Denied/);
    teams.members.get(member.dave!.id)!.userRole = "guest";
    try {
      const second = await held();
      for (const verb of [verbs.deny, verbs.approve]) {
        const answer = await click("dave", second.id, second.card.id, verb);
        expect((answer.body as { value: string }).value).toMatch(
          /^Airlock cannot tell who you are/,
        );
      }
      expect(await statusOf(second.id)).toMatchObject({ status: "pending", reviews: [] });
    } finally {
      teams.members.get(member.dave!.id)!.userRole = "user";
    }
  });

  it("takes a remembered member only for the Entra account that was checked", async () => {
    // Carol is looked up (and remembered) at a deny; a click under her Teams id naming
    // another Entra object id is not hers, remembered or not.
    const first = await held();
    expect(
      ((await click("carol", first.id, first.card.id, verbs.deny)).body as { value: string }).value,
    ).toMatch(/^Denied/);
    const second = await held();
    const mismatched = await teams.post(
      gw.url,
      teams.invokeActivity({
        verb: verbs.deny,
        data: { requestId: second.id },
        replyToId: second.card.id,
        from: { ...member.carol!, aadObjectId: "0a1b2c3d-0000-4000-8000-00000000dcba" },
      }),
    );
    expect((mismatched.body as { value: string }).value).toMatch(
      /^Airlock cannot tell who you are/,
    );
    expect((await statusOf(second.id)).reviews).toEqual([]);
  });

  it("needs the ticked box to approve a risky action, and a deny with a reason ends another", async () => {
    const risky = await held("/refunds/big");
    // This rule's cards go to its own conversation.
    expect(teams.activities.get(risky.card.id)?.conversationId).toBe("19:payments@thread.tacv2");
    const before = await held();
    expect(teams.activities.get(before.card.id)?.conversationId).toBe("19:approvals@thread.tacv2");
    const payments = "19:payments@thread.tacv2";
    // Unticked, or with the card's data rewritten by the client to claim a lower risk.
    for (const data of [{ confirm: "no" }, {}, { risk: "low" }]) {
      const unticked = await click("bob", risky.id, risky.card.id, verbs.approve, data, payments);
      expect((unticked.body as { value: string }).value).toMatch(/tick the box/);
    }
    expect((await statusOf(risky.id)).reviews).toEqual([]);
    // Ticked, but from another conversation the bot is in: no click on the request's card.
    for (const elsewhere of ["19:approvals@thread.tacv2", "a:1personal-chat-with-the-bot"]) {
      const stray = await click(
        "bob",
        risky.id,
        risky.card.id,
        verbs.approve,
        { confirm: "yes" },
        elsewhere,
      );
      expect((stray.body as { value: string }).value).toMatch(
        /^This request's card was not posted in this conversation/,
      );
    }
    // A deny from there neither: a deny is final.
    const strayDeny = await click("carol", risky.id, risky.card.id, verbs.deny, {});
    expect((strayDeny.body as { value: string }).value).toMatch(/not posted in this conversation/);
    // Someone Airlock does not know learns nothing of where the request was posted.
    const stranger = await teams.post(
      gw.url,
      teams.invokeActivity({
        verb: verbs.deny,
        data: { requestId: risky.id },
        replyToId: risky.card.id,
      }),
    );
    expect((stranger.body as { value: string }).value).toMatch(/^Airlock cannot tell who you are/);
    expect((await statusOf(risky.id)).reviews).toEqual([]);
    const ticked = await click(
      "bob",
      risky.id,
      risky.card.id,
      verbs.approve,
      { confirm: "yes" },
      payments,
    );
    expect((ticked.body as { value: string }).value).toBe("Approved, recorded as bob@example.com.");
    await until(async () => (await statusOf(risky.id)).status === "succeeded");

    const other = await held();
    const denied = await click("carol", other.id, other.card.id, verbs.deny, {
      comment: "not this one",
    });
    expect((denied.body as { value: string }).value).toMatch(
      /^Denied, recorded as carol@example.com/,
    );
    expect((await statusOf(other.id)).status).toBe("denied");
    await until(() => JSON.stringify(cardOf(other.id)?.card).includes("not this one"));
    expect(JSON.stringify(cardOf(other.id)!.card)).toContain("Denied by carol@example.com");
  });

  it("refuses a hand-made Approve of a step-up action for the sign-in it needs, however risky", async () => {
    const { id, card } = await held("/refunds/chargeback");
    expect(
      (card.card as { actions: { verb?: string }[] }).actions.map((a) => a.verb),
    ).not.toContain(verbs.approve);
    // No box to tick on this card: the refusal names what is missing, a fresh sign-in.
    const forced = await click("bob", id, card.id, verbs.approve);
    expect((forced.body as { value: string }).value).toMatch(/needs a fresh sign-in/);
    expect((await statusOf(id)).reviews).toEqual([]);
  });

  it("judges a click against the card as posted, with credentials redacted as they were there", async () => {
    // Whole, the context would be cut on the card; redacted, as every channel shows it, it fits.
    const { id, card } = await held("/refunds", { context: { note: SECRET.repeat(25) } });
    const posted = JSON.stringify(card.card);
    expect(posted).not.toContain(SECRET);
    expect((card.card as { actions: { verb?: string }[] }).actions.map((a) => a.verb)).toContain(
      verbs.approve,
    );
    const approved = await click("bob", id, card.id, verbs.approve);
    expect((approved.body as { value: string }).value).toBe(
      "Approved, recorded as bob@example.com.",
    );
  });

  it("refuses a hand-made Approve on a card that could not show the whole action", async () => {
    const { id, card } = await held("/refunds", {
      justification: "long",
      context: { note: "x".repeat(3000) },
    });
    expect(
      (card.card as { actions: { verb?: string }[] }).actions.map((a) => a.verb),
    ).not.toContain(verbs.approve);
    const forced = await click("bob", id, card.id, verbs.approve);
    expect((forced.body as { value: string }).value).toMatch(/too long to show whole in Teams/);
    expect((await statusOf(id)).reviews).toEqual([]);
    // Deny needs no whole view: it runs nothing.
    const denied = await click("bob", id, card.id, verbs.deny);
    expect((denied.body as { value: string }).value).toMatch(/^Denied/);
  });

  /**
   * A gateway whose reminders are due 300 ms after a request is made (requests here expire
   * after an hour), with a request held on it and its card.
   */
  const withReminders = (
    fn: (held: { id: string; card: { id: string } }) => Promise<void>,
    clock?: () => number,
  ) =>
    withGateway(
      config(upstream.url, teams).replace(
        "    openIdMetadataUrl:",
        "    remindBefore: 59m59s700ms\n    openIdMetadataUrl:",
      ),
      async (reminding) => {
        const token = await reminding.token("agent", "support-bot");
        const res = await api(reminding.url, "POST", "/v1/actions", { token, body: refund() });
        const id = res.body.id as string;
        await until(() => cardOf(id) !== undefined);
        await reminding.gateway.dispatcher.idle();
        await fn({ id, card: cardOf(id)! });
      },
      { gateway: { delivery: fast, ...(clock ? { clock } : {}) } },
    );

  const remindsInTime = async ({ id, card }: { id: string; card: { id: string } }) => {
    const replies = () => [...teams.activities.values()].filter((a) => a.replyToId === card.id);
    await until(() => replies().length > 0);
    expect(replies()).toHaveLength(1);
    expect(replies()[0]!.activity).toMatchObject({ textFormat: "plain" });
    expect(String(replies()[0]!.activity.text)).toMatch(
      new RegExp(
        `^Reminder: request ${id} \\(POST billing-api/api/refunds on billing-api\\) is waiting for review, 0 of 1 approvals; 1 more approval needed from finance, and expires in 60 minutes`,
      ),
    );
  };

  it("reminds the card's thread before a request expires, while it is still pending", () =>
    withReminders(remindsInTime));

  it("counts a reminder's time left by the store's clock, which stamped the expiry, not the gateway's", () =>
    // Half an hour behind: on PostgreSQL the request expires an hour from now by the
    // database's clock, ninety minutes by this one.
    withReminders(remindsInTime, () => Date.now() - 30 * 60_000));

  it("gives up at once on a reminder for a card someone deleted", () =>
    // The card is gone by the time its reminder is due.
    withReminders(async ({ card }) => {
      teams.activities.delete(card.id);
      const replies = () =>
        teams.calls.filter((c) => c.method === "POST" && c.activityId === card.id).length;
      await until(() => replies() > 0);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(replies()).toBe(1);
    }));

  it("gives up on a Bot Connector that never answers, so clicks are answered and the gateway stops", async () => {
    // Accepts connections, never answers: each call must end at its own deadline.
    const held = new Set<Socket>();
    const silent = createServer((socket) => held.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const serviceUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/teams/`;
    const stuck = await startGateway(
      config(upstream.url, teams).replace(teams.serviceUrl, serviceUrl),
      {
        gateway: { delivery: fast },
      },
    );
    try {
      const token = await stuck.token("agent", "support-bot");
      const res = await api(stuck.url, "POST", "/v1/actions", { token, body: refund() });
      const started = Date.now();
      const answer = await teams.post(
        stuck.url,
        teams.invokeActivity({
          verb: verbs.deny,
          data: { requestId: res.body.id },
          replyToId: "1",
          from: member.bob!,
          serviceUrl,
        }),
        teams.channelToken({ serviceurl: serviceUrl }),
      );
      expect((answer.body as { value: string }).value).toMatch(/could not ask Teams who you are/);
      // Teams stops waiting for an invoke's answer after about five seconds.
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      // The card's delivery is under way, stuck: the stop waits for its deadline, not forever.
      await stuck.close();
      removeDir(stuck.dir);
      for (const socket of held) socket.destroy();
      silent.close();
    }
  }, 30_000);

  it("answers a click 503 in time when the Bot Framework's keys never come, and counts nothing", async () => {
    // A server of its own: the SDK keeps the keys it fetched per metadata URL, for the process.
    const keyless = await startTeamsServer();
    keyless.keysSilent = true;
    const untrustKeyless = keyless.trust();
    const stuck = await startGateway(config(upstream.url, keyless), {
      gateway: { delivery: fast },
    });
    try {
      const token = await stuck.token("agent", "support-bot");
      const res = await api(stuck.url, "POST", "/v1/actions", { token, body: refund() });
      const bob = keyless.addMember({ name: "bob", email: "bob@example.com" });
      const started = Date.now();
      const answer = await keyless.post(
        stuck.url,
        keyless.invokeActivity({
          verb: verbs.approve,
          data: { requestId: res.body.id },
          replyToId: "1",
          from: bob,
        }),
      );
      expect(answer.status).toBe(503);
      expect(answer.body).toMatchObject({
        error: {
          code: "identity_provider_unavailable",
          message: expect.stringContaining("channels.teams.openIdMetadataUrl"),
        },
      });
      // Teams stops waiting for an invoke's answer after about five seconds.
      expect(Date.now() - started).toBeLessThan(5000);
      const keyFetches = () =>
        keyless.identityRequests.filter((r) => r.includes("/botframework/v1/")).length;
      expect(keyFetches()).toBeGreaterThan(0);
      // The SDK starts a fetch per click while the keys are cold, and none ends: past a few
      // waiting, clicks are answered at once and start none.
      const more = await Promise.all(
        Array.from({ length: 12 }, () =>
          keyless.post(
            stuck.url,
            keyless.invokeActivity({
              verb: verbs.approve,
              data: { requestId: res.body.id },
              replyToId: "1",
              from: bob,
            }),
          ),
        ),
      );
      expect(more.map((m) => m.status)).toEqual(Array(12).fill(503));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(keyFetches()).toBeLessThanOrEqual(8);
      const after = await api(stuck.url, "GET", `/v1/actions/${res.body.id}`, { token });
      expect(after.body).toMatchObject({ status: "pending", reviews: [] });
    } finally {
      await stuck.close();
      removeDir(stuck.dir);
      await keyless.close();
      untrustKeyless();
    }
  }, 30_000);

  it("answers within Teams' wait when both the keys come slowly and who clicked never does", async () => {
    // A server of its own, so that its keys are cold; a Bot Connector that never answers.
    const slow = await startTeamsServer();
    slow.keysDelayMs = 1200;
    const untrustSlow = slow.trust();
    const held = new Set<Socket>();
    const silent = createServer((socket) => held.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const serviceUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/teams/`;
    const stuck = await startGateway(
      config(upstream.url, slow).replace(slow.serviceUrl, serviceUrl),
      { gateway: { delivery: fast } },
    );
    try {
      const token = await stuck.token("agent", "support-bot");
      const res = await api(stuck.url, "POST", "/v1/actions", { token, body: refund() });
      const bob = slow.addMember({ name: "bob", email: "bob@example.com" });
      const started = Date.now();
      const answer = await slow.post(
        stuck.url,
        slow.invokeActivity({
          verb: verbs.deny,
          data: { requestId: res.body.id },
          replyToId: "1",
          from: bob,
          serviceUrl,
        }),
        slow.channelToken({ serviceurl: serviceUrl }),
      );
      expect((answer.body as { value: string }).value).toMatch(/could not ask Teams who you are/);
      // The token's check took 2.4 s (metadata, then keys) of the 5 Teams waits; the look-up
      // got what was left.
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await stuck.close();
      removeDir(stuck.dir);
      for (const socket of held) socket.destroy();
      silent.close();
      await slow.close();
      untrustSlow();
    }
  }, 30_000);

  it("gives up at once on updates to a card someone deleted, holding nothing up", async () => {
    const { id, card } = await held();
    teams.activities.delete(card.id);
    const updates = () =>
      teams.calls.filter((c) => c.method === "PUT" && c.activityId === card.id).length;
    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    // One try for the vote's update and one for the outcome's: a 404 there is final.
    await until(() => updates() === 2);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await gw.gateway.dispatcher.idle();
    expect(updates()).toBe(2);
  });

  it("still tells the owner the outcome when the card was deleted", async () => {
    const { id, card } = await held();
    teams.activities.delete(card.id);
    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    // The card and its thread are gone; the owner's chat needs neither.
    const told = () =>
      [...teams.activities.values()].some(
        (a) =>
          teams.created.some((c) => c.id === a.conversationId) &&
          String(a.activity.text).includes(id),
      );
    await until(told);
  });

  it("tells the owner once, when Teams turned the first try at their chat away", async () => {
    const { id, card } = await held();
    // Starting the one-to-one chat fails once; nothing else does.
    const starts = (call: ConnectorCall) =>
      call.method === "POST" && call.path === "/teams/v3/conversations";
    teams.failNext(1, 503, { "Retry-After": "0" }, starts);
    const refused = () => teams.calls.filter((c) => starts(c) && c.status === 503).length;
    const refusedBefore = refused();
    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
    const told = () =>
      [...teams.activities.values()].filter(
        (a) =>
          teams.created.some((c) => c.id === a.conversationId) &&
          String(a.activity.text).includes(id),
      );
    await until(() => told().length > 0);
    await gw.gateway.dispatcher.idle();
    expect(refused()).toBe(refusedBefore + 1);
    expect(told()).toHaveLength(1);
    // The owner's retry is theirs alone: the card's thread heard the outcome once.
    const replies = [...teams.activities.values()].filter((a) => a.replyToId === card.id);
    expect(replies).toHaveLength(1);
  });

  it("tells the owner only on the account whose e-mail is the owner's, not another's that took the UPN", async () => {
    // Alice's UPN now belongs to someone else (she was renamed, and it was given out again):
    // that account's e-mail is not hers, and as a reviewer it would not count as her.
    const alice = teams.members.get(member.alice!.id)!;
    alice.email = "alice.brown@example.com";
    try {
      const { id, card } = await held();
      const bob = await gw.token("reviewer", "bob@example.com");
      expect((await vote(gw.url, id, bob)).status).toBe(200);
      await until(() => [...teams.activities.values()].some((a) => a.replyToId === card.id));
      await gw.gateway.dispatcher.idle();
      const told = [...teams.activities.values()].filter(
        (a) =>
          teams.created.some((c) => c.id === a.conversationId) &&
          String(a.activity.text).includes(id),
      );
      expect(told).toEqual([]);
    } finally {
      alice.email = "alice@example.com";
    }
  });

  it("finds an owner whose user principal name is not their e-mail among the members, page by page", async () => {
    // Alice was renamed: her UPN is the tenant's own name now, and her old one went to
    // someone else. Ahead of her in the members list: a guest and another tenant's member
    // with her e-mail, and more people than fit on one page.
    const alice = teams.members.get(member.alice!.id)!;
    const added: string[] = [];
    const add = (input: Parameters<TeamsServer["addMember"]>[0]) => {
      const account = teams.addMember(input);
      added.push(account.id);
      return account;
    };
    const heir = add({
      name: "alice-new",
      email: "alice.new@example.com",
      userPrincipalName: "alice@example.com",
    });
    add({ name: "alice-guest", email: "alice@example.com", userRole: "guest" });
    add({
      name: "alice-elsewhere",
      email: "alice@example.com",
      tenantId: "6d7c2f1e-0000-4000-8000-000000000001",
    });
    for (let i = 0; i < 600; i++) add({ name: `member ${i}`, email: `m${i}@example.com` });
    alice.userPrincipalName = "alice.brown@contoso.onmicrosoft.com";
    teams.members.delete(alice.id);
    teams.members.set(alice.id, alice);
    const pages = () => teams.calls.filter((c) => c.path.endsWith("/pagedmembers")).length;
    const pagesBefore = pages();
    try {
      const { id } = await held();
      const bob = await gw.token("reviewer", "bob@example.com");
      expect((await vote(gw.url, id, bob)).status).toBe(200);
      const chatsAbout = () =>
        teams.created.filter((c) =>
          [...teams.activities.values()].some(
            (a) => a.conversationId === c.id && String(a.activity.text).includes(id),
          ),
        );
      await until(() => chatsAbout().length > 0);
      await gw.gateway.dispatcher.idle();
      expect(chatsAbout().map((c) => c.memberId)).toEqual([alice.id]);
      expect(teams.created.some((c) => c.memberId === heir.id)).toBe(false);
      expect(pages() - pagesBefore).toBe(2);
    } finally {
      alice.userPrincipalName = "alice@example.com";
      for (const account of added) teams.members.delete(account);
    }
  });

  it("records the Entra account Teams looked up, also for a click that names none", async () => {
    const { id, card } = await held();
    const answer = await teams.post(
      gw.url,
      teams.invokeActivity({
        verb: verbs.deny,
        data: { requestId: id, comment: "no" },
        replyToId: card.id,
        from: { id: member.bob!.id, name: "bob", aadObjectId: undefined },
      }),
    );
    expect(String((answer.body as { value: unknown }).value)).toContain("Denied");
    const bob = await gw.token("reviewer", "bob@example.com");
    const events = await api(gw.url, "GET", `/v1/audit?requestId=${id}&type=request.reviewed`, {
      token: bob,
    });
    expect(events.body.events[0].data.evidence).toMatchObject({
      method: "teams",
      aadObjectId: member.bob!.aadObjectId,
    });
  });

  it("refuses a click naming a request whose rule keeps it out of Teams", async () => {
    // No card is posted for it; a modified client writes its id into another card's click.
    const { card } = await held();
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { ...refund().input, path: "/payouts" } },
    });
    expect(res.body.status).toBe("pending");
    const id = res.body.id as string;
    expect(cardOf(id)).toBeUndefined();
    const answer = await click("bob", id, card.id, verbs.approve);
    expect(answer.status).toBe(200);
    expect(String((answer.body as { value: unknown }).value)).toContain(
      "this request is decided in the console and the API only (its rule's review.channels), not in teams",
    );
    const after = await statusOf(id);
    expect(after.status).toBe("pending");
    expect(after.reviews).toEqual([]);
    // The API still takes the same reviewer's vote.
    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
  });

  it("refuses a click on a request kept out of Teams as forbidden before judging anything else about it", async () => {
    // Approve without the box on a critical request, and a click by a reviewer who may not
    // approve: each is told only that Teams is not where this request is decided (not what
    // its risk is).
    const { card } = await held();
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { ...refund().input, path: "/payouts/big" } },
    });
    expect(res.body.status).toBe("pending");
    const id = res.body.id as string;
    const forbidden =
      "this request is decided in the console and the API only (its rule's review.channels), not in teams";
    for (const [who, verb] of [
      ["bob", verbs.approve],
      ["frank", verbs.approve],
    ] as const) {
      const answer = await click(who, id, card.id, verb);
      expect(String((answer.body as { value: unknown }).value)).toBe(
        `Airlock could not record your decision: ${forbidden} (forbidden).`,
      );
    }
    // Someone Airlock cannot map hears only that, as for any request: not that this one
    // exists, nor where it is decided.
    for (const [who, verb] of [
      ["guest", verbs.deny],
      ["stranger", verbs.approve],
    ] as const) {
      const answer = await click(who, id, card.id, verb);
      const told = String((answer.body as { value: unknown }).value);
      expect(told, who).toMatch(/^Airlock cannot tell who you are/);
      expect(told, who).not.toMatch(/console|review\.channels|decided/);
    }
    expect((await statusOf(id)).reviews).toEqual([]);
  });

  it("stops looking for the owner among the members when the gateway stops, and looks again after", async () => {
    // A Teams of its own, where alice is found only on the members list's second page.
    const far = await startTeamsServer();
    const untrustFar = far.trust();
    for (let i = 0; i < 600; i++)
      far.addMember({ name: `filler ${i}`, email: `f${i}@example.com` });
    const alice = far.addMember({
      name: "alice",
      email: "alice@example.com",
      userPrincipalName: "alice.brown@contoso.onmicrosoft.com",
    });
    const pages = () => far.calls.filter((c) => c.path.endsWith("/pagedmembers")).length;
    const own = await startGateway(config(upstream.url, far), { gateway: { delivery: fast } });
    try {
      const ownAgent = await own.token("agent", "support-bot");
      const bob = await own.token("reviewer", "bob@example.com");
      const first = far.holdNext((c) => c.path.endsWith("/pagedmembers"));
      const res = await api(own.url, "POST", "/v1/actions", { token: ownAgent, body: refund() });
      expect((await vote(own.url, res.body.id, bob)).status).toBe(200);
      await first.arrived;
      // The first page is under way when the stop begins; the second is never asked for.
      const dispatcher = own.gateway.dispatcher;
      const stop = dispatcher.stop.bind(dispatcher);
      let stopBegun!: () => void;
      const begun = new Promise<void>((resolve) => {
        stopBegun = resolve;
      });
      dispatcher.stop = () => {
        const stopped = stop();
        stopBegun();
        return stopped;
      };
      const closed = own.close();
      await begun;
      first.release();
      await closed;
      expect(pages()).toBe(1);
      expect(far.created.some((c) => c.memberId === alice.id)).toBe(false);
      // The notice was handed back, not given up: the next start tells her.
      const again = await own.restart();
      try {
        await until(() => far.created.some((c) => c.memberId === alice.id), 20_000);
      } finally {
        await again.close();
      }
    } finally {
      removeDir(own.dir);
      await far.close();
      untrustFar();
    }
  }, 40_000);

  it("posts the card again when Teams lost its answer to a post that went through, and says it may be there twice", async () => {
    // The Bot Connector has no idempotency key and cannot list a conversation's messages:
    // after a post whose outcome is unknown, the card is posted again, and is there twice.
    const posts = (call: ConnectorCall) =>
      call.method === "POST" && call.path.endsWith("/activities") && call.activityId === undefined;
    teams.failAfterNext(1, 504, posts);
    const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    const id = res.body.id as string;
    const cards = () =>
      [...teams.activities.values()].filter(
        (a) => !a.replyToId && JSON.stringify(a.activity).includes(id),
      );
    await until(() => cards().length === 2);
    await gw.gateway.dispatcher.idle();
    const [extra, kept] = cards().sort((a, b) => Number(a.id) - Number(b.id));
    // The operator is told, where the failure is logged, that the card may be there twice.
    expect(gw.logs.join("")).toContain(
      "Teams may have posted the card all the same, and then the next try shows it twice",
    );
    // A click on the extra card counts as on the other: both show the same stored request.
    const answer = await click("bob", id, extra!.id, verbs.approve);
    expect((answer.body as { value: string }).value).toBe("Approved, recorded as bob@example.com.");
    await until(() =>
      JSON.stringify(teams.activities.get(kept!.id)?.activity).includes("Approved and done"),
    );
    // Only the card whose id Teams returned is kept up to date.
    expect(teams.activities.get(extra!.id)?.version).toBe(1);
  });

  it("posts the card once Teams is back after an outage", async () => {
    // The outbox tries again after each failure, six of them here.
    teams.failNext(6, 503, { "Retry-After": "0" });
    const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    const id = res.body.id as string;
    await until(() => cardOf(id) !== undefined, 20_000);
    const posts = teams.calls.filter(
      (c) => c.method === "POST" && c.status === 201 && JSON.stringify(c.body).includes(id),
    );
    expect(posts).toHaveLength(1);
  }, 30_000);
});
