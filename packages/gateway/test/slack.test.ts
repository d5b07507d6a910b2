/**
 * Slack approvals end to end: the official Web API client against a loopback server that
 * speaks Slack's protocol, and interaction payloads signed exactly as Slack signs them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  api,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  until,
  vote,
} from "./support/gateway.js";
import { holdChannelRefs } from "./support/held-recording.js";
import { type FakeSlack, startFakeSlack } from "./support/slack.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const fast = { pollInterval: 20, backoff: () => 20, maxAttempts: 50 };

function config(upstream: string, slack: FakeSlack): string {
  return `
server: { port: 0, publicUrl: "http://airlock.test", sweepInterval: 50ms }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
reviewers:
  - { email: alice@example.com, groups: [finance] }
  - { email: bob@example.com, groups: [finance] }
  - { email: carol@example.com, groups: [finance] }
  - { email: frank@example.com, groups: [eng] }
  - { email: gina@example.com, groups: [finance] }
  - { email: kim@example.com, groups: [finance] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstream}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
channels:
  slack:
    botToken: ${slack.botToken}
    signingSecret: ${slack.signingSecret}
    channel: "#approvals"
    apiUrl: ${slack.apiUrl}
    notifyOwner: true
rules:
  - name: big refunds need step-up
    when: http.method == "POST" && http.path == "/refunds/big"
    decision: review
    review: { approvers: [finance], stepUp: true, slackChannel: "#payments-approvals" }
  - name: refunds need two finance reviewers
    when: http.method == "POST" && http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance], quorum: 2, expiresIn: 15m, risk: high }
    mask: { input: [body.card_number] }
  - name: payouts are decided in the console and the API only
    when: http.method == "POST" && http.path == "/payouts"
    decision: review
    review: { approvers: [finance], channels: [] }
  - name: nothing else
    decision: deny
`;
}

describe("Slack approvals", () => {
  let upstream: Upstream;
  let slack: FakeSlack;
  let gw: TestGateway;
  let agent: string;
  let interactions: string;
  const user: Record<string, string> = {};

  beforeAll(async () => {
    upstream = await startUpstream();
    slack = await startFakeSlack();
    for (const name of ["alice", "bob", "carol", "frank", "gina"]) {
      user[name] = slack.addUser(`${name}@example.com`, name);
    }
    user.stranger = slack.addUser("stranger@elsewhere.example", "stranger");
    user.noEmail = slack.addUser(undefined, "bot-like");
    // Carol's and Bob's e-mails, held by accounts that must not count as theirs: a member of
    // another workspace (a Slack Connect channel, whose admin chose the e-mail) and an
    // account whose e-mail Slack has not confirmed.
    user.outsider = slack.addUser("carol@example.com", "carol-elsewhere");
    slack.users.get(user.outsider)!.teamId = "T0OTHERORG";
    user.unconfirmed = slack.addUser("bob@example.com", "bob-unconfirmed");
    slack.users.get(user.unconfirmed)!.emailConfirmed = false;
    // Slack leaves is_email_confirmed out of some answers: that confirms nothing either.
    user.unsaid = slack.addUser("carol@example.com", "carol-unsaid");
    slack.users.get(user.unsaid)!.emailConfirmed = null;
    // Reviewers' e-mails on accounts that are not full members: guests and a bot.
    user.guest = slack.addUser("gina@example.com", "gina-guest");
    slack.users.get(user.guest)!.guest = "multi";
    user.singleGuest = slack.addUser("bob@example.com", "bob-single-channel");
    slack.users.get(user.singleGuest)!.guest = "single";
    user.bot = slack.addUser("carol@example.com", "carol-bot");
    slack.users.get(user.bot)!.bot = true;
    // Kim's address but for its first letter, the Kelvin sign, which lowercases to k.
    user.kelvin = slack.addUser("\u212Aim@example.com", "kelvin");
    gw = await startGateway(config(upstream.url, slack), { gateway: { delivery: fast } });
    agent = await gw.token("agent", "support-bot");
    interactions = `${gw.url}/integrations/slack/interactions`;
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await slack?.close();
    await upstream?.close();
  });
  beforeEach(() => {
    slack.setDown(false);
  });

  /** Submits a refund and waits for its Slack message; returns the request id and where it is. */
  async function held(path = "/refunds") {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { ...refund().input, path } },
    });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    await until(() => messageOf(id) !== undefined);
    // Where it was posted is kept right after Slack answers: a click is taken only from there.
    await gw.gateway.dispatcher.idle();
    return { id, message: messageOf(id)! };
  }

  /** The same on another gateway sharing the fake Slack; with the agent's token there. */
  async function heldOn(other: TestGateway) {
    const token = await other.token("agent", "support-bot");
    const res = await api(other.url, "POST", "/v1/actions", { token, body: refund() });
    const id = res.body.id as string;
    await until(() => messageOf(id) !== undefined);
    await other.gateway.dispatcher.idle();
    return { token, id, message: messageOf(id)! };
  }

  function messageOf(id: string) {
    return [...slack.messages.values()].find(
      (m) => !m.thread_ts && JSON.stringify(m.blocks ?? []).includes(id),
    );
  }

  /** `who` clicks `actionId` on the message `at`, sent to this file's gateway or to `gateway`. */
  const click = (
    who: string,
    id: string,
    actionId: string,
    at: { channel: string; ts: string },
    gateway?: { url: string },
  ) =>
    slack.interact(
      gateway ? `${gateway.url}/integrations/slack/interactions` : interactions,
      slack.click({
        user: user[who]!,
        channel: at.channel,
        ts: at.ts,
        actionId,
        value: id,
        triggerId: `trig-${who}-${id}`,
      }),
    );

  const ephemeralsFor = (who: string) => slack.ephemerals.filter((e) => e.user === user[who]);

  const statusOf = async (id: string) =>
    (await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent })).body;

  /** Waits until the request has `count` reviews, as its agent sees it. */
  const untilReviews = (id: string, count: number) =>
    until(async () => {
      const res = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
      return res.body.reviews.length === count;
    });

  it("posts the request, updates it after each vote, and runs it once on the quorum", async () => {
    const refunds = () => upstream.calls.filter((c) => c.url === "/api/refunds").length;
    const before = refunds();
    const { id, message } = await held();
    const posted = JSON.stringify(message.blocks);
    expect(posted).toContain("Customer was charged twice");
    expect(posted).toContain("support-bot");
    expect(posted).not.toContain("4242424242424242");
    expect(message.channel).toMatch(/^C/);

    const first = await click("bob", id, "airlock_approve", message);
    expect(first.status).toBe(200);
    await until(() => slack.messages.get(`${message.channel}:${message.ts}`)!.updates >= 1);
    expect(
      JSON.stringify(slack.messages.get(`${message.channel}:${message.ts}`)!.blocks),
    ).toContain("bob@example.com");

    await click("carol", id, "airlock_approve", message);
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(refunds() - before).toBe(1);
    await until(() => [...slack.messages.values()].some((m) => m.thread_ts === message.ts));
    const final = slack.messages.get(`${message.channel}:${message.ts}`)!;
    expect(JSON.stringify(final.blocks)).not.toContain('airlock_approve"');
    // The owner hears the outcome by direct message.
    await until(() => [...slack.messages.values()].some((m) => m.channel.startsWith("D")));

    const audit = await api(gw.url, "GET", `/v1/requests/${id}`, {
      token: await gw.token("reviewer", "bob@example.com"),
    });
    expect(audit.body.reviews.map((r: { verifiedBy: string }) => r.verifiedBy)).toEqual([
      "slack",
      "slack",
    ]);
  });

  it("refuses forged, stale and replayed payloads with 401, deciding nothing", async () => {
    const { id, message } = await held();
    const payload = slack.click({
      user: user.bob!,
      channel: message.channel,
      ts: message.ts,
      actionId: "airlock_approve",
      value: id,
    });
    const forged = await slack.interact(interactions, payload, { secret: "not-the-secret-at-all" });
    expect(forged.status).toBe(401);
    const stale = await slack.interact(interactions, payload, {
      timestamp: Math.floor(Date.now() / 1000) - 600,
    });
    expect(stale.status).toBe(401);
    // Signed over the text the body reads as, not over the bytes sent: a byte that is not
    // UTF-8 (0xff, read as U+FFFD) makes the two differ.
    const [before, after] = new URLSearchParams({
      payload: JSON.stringify({ ...payload, note: "\uFFFD" }),
    })
      .toString()
      .split("%EF%BF%BD") as [string, string];
    const reencoded = await slack.interact(interactions, payload, {
      body: Buffer.concat([Buffer.from(before), Buffer.from([0xff]), Buffer.from(after)]),
      signOver: `${before}\uFFFD${after}`,
    });
    expect(reencoded.status).toBe(401);
    const now = Math.floor(Date.now() / 1000);
    // Who clicked is asked of Slack slowly: the restart below comes while the click, already
    // acknowledged, is still being recorded, and it waits for that.
    slack.delay("users.info", 400);
    try {
      expect((await slack.interact(interactions, payload, { timestamp: now })).status).toBe(200);
      const replayed = await slack.interact(interactions, payload, { timestamp: now });
      expect(replayed.status).toBe(401);
      expect(replayed.text).toContain("already received");
      // Remembered by the store, not the process: a restarted gateway refuses it too, as does
      // another replica on the same PostgreSQL.
      gw = await gw.restart();
    } finally {
      slack.delay("users.info", 0);
    }
    interactions = `${gw.url}/integrations/slack/interactions`;
    const afterRestart = await slack.interact(interactions, payload, { timestamp: now });
    expect(afterRestart.status).toBe(401);
    expect(afterRestart.text).toContain("already received");
    await new Promise((r) => setTimeout(r, 200));
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.status).toBe("pending");
    expect(view.body.reviews).toHaveLength(1);
  });

  it("asks Slack again before every vote: a deactivated account neither approves nor denies", async () => {
    const first = await held();
    await click("gina", first.id, "airlock_approve", first.message);
    await untilReviews(first.id, 1);
    // Slack's answer for Gina is still remembered (userCacheTtl) when she is deactivated: a
    // deny, which ends a request for good, is not taken on it any more than an approval.
    slack.users.get(user.gina!)!.deleted = true;
    const second = await held();
    for (const [n, action] of [
      [1, "airlock_deny"],
      [2, "airlock_approve"],
    ] as const) {
      await click("gina", second.id, action, second.message);
      await until(() => ephemeralsFor("gina").length >= n);
      expect(ephemeralsFor("gina")[n - 1]!.text).toMatch(/e-mail/i);
    }
    const res = await api(gw.url, "GET", `/v1/actions/${second.id}`, { token: agent });
    expect(res.body).toMatchObject({ status: "pending", reviews: [] });
  });

  it("refuses, with a message only they see, the unmapped, the owner and non-approvers", async () => {
    const { id, message } = await held();
    for (const who of ["stranger", "noEmail", "alice", "frank"]) {
      expect((await click(who, id, "airlock_approve", message)).status).toBe(200);
    }
    await until(() =>
      ["stranger", "noEmail", "alice", "frank"].every((w) => ephemeralsFor(w).length > 0),
    );
    expect(ephemeralsFor("stranger")[0]!.text).toMatch(/e-mail/i);
    expect(ephemeralsFor("noEmail")[0]!.text).toMatch(/e-mail/i);
    expect(ephemeralsFor("alice")[0]!.text).toMatch(/own/i);
    expect(ephemeralsFor("frank")[0]!.text).toMatch(/approver/i);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.reviews).toEqual([]);
    expect(view.body.status).toBe("pending");
  });

  it("maps nobody from another workspace, unconfirmed, a guest, a bot or a look-alike to a reviewer", async () => {
    const { id, message } = await held();
    const nobodies = ["outsider", "unconfirmed", "unsaid", "guest", "singleGuest", "bot", "kelvin"];
    for (const who of nobodies) {
      expect((await click(who, id, "airlock_approve", message)).status).toBe(200);
    }
    await until(() => nobodies.every((w) => ephemeralsFor(w).length > 0));
    for (const who of nobodies) expect(ephemeralsFor(who)[0]!.text).toMatch(/e-mail/i);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.reviews).toEqual([]);
    // The real Carol, in the bot's own workspace, still counts.
    await click("carol", id, "airlock_approve", message);
    await untilReviews(id, 1);
  });

  it("takes reviewers from the configured workspaces only, when they are named", async () => {
    const other = await startGateway(
      config(upstream.url, slack).replace(
        "    notifyOwner: true",
        "    notifyOwner: true\n    teams: [T0OTHERORG]",
      ),
      { gateway: { delivery: fast } },
    );
    try {
      const { token, id, message: at } = await heldOn(other);
      const clickThere = (who: string) => click(who, id, "airlock_approve", at, other);
      // Bob is in the bot's workspace, which is not listed; the outsider's workspace is.
      const bobBefore = ephemeralsFor("bob").length;
      await clickThere("bob");
      await clickThere("outsider");
      await until(async () => {
        const view = await api(other.url, "GET", `/v1/actions/${id}`, { token });
        return view.body.reviews.length === 1;
      });
      const view = await api(other.url, "GET", `/v1/actions/${id}`, { token });
      expect(view.body.reviews.map((r: { reviewer: string }) => r.reviewer)).toEqual([
        "carol@example.com",
      ]);
      // The evidence names the workspace that was checked: the user's, not the click's.
      const audit = await api(other.url, "GET", `/v1/audit?requestId=${id}`, {
        token: await other.token("reviewer", "alice@example.com"),
      });
      const reviewed = audit.body.events.find(
        (e: { type: string }) => e.type === "request.reviewed",
      );
      expect(reviewed.data.evidence).toMatchObject({ method: "slack", slackTeam: "T0OTHERORG" });
      await until(() => ephemeralsFor("bob").length > bobBefore);
      expect(ephemeralsFor("bob")[bobBefore]!.text).toMatch(/e-mail/i);
    } finally {
      await other.close();
      removeDir(other.dir);
    }
  });

  it("takes e-mails Slack leaves unconfirmed where an SSO provider sets them, and only there", async () => {
    const sso = await startGateway(
      config(upstream.url, slack).replace(
        "    notifyOwner: true",
        "    notifyOwner: true\n    ssoEmails: true",
      ),
      { gateway: { delivery: fast } },
    );
    try {
      const { token, id, message: at } = await heldOn(sso);
      const clickThere = (who: string) => click(who, id, "airlock_approve", at, sso);
      // A guest is still nobody, whoever vouches for the e-mail.
      const guestBefore = ephemeralsFor("guest").length;
      await clickThere("guest");
      await until(() => ephemeralsFor("guest").length > guestBefore);
      expect(ephemeralsFor("guest")[guestBefore]!.text).toMatch(/e-mail/i);
      await clickThere("unconfirmed");
      await clickThere("unsaid");
      const done = await api(sso.url, "GET", `/v1/actions/${id}?wait=5`, { token });
      expect(done.body.status).toBe("succeeded");
      expect(done.body.reviews.map((r: { reviewer: string }) => r.reviewer).sort()).toEqual([
        "bob@example.com",
        "carol@example.com",
      ]);
    } finally {
      await sso.close();
      removeDir(sso.dir);
    }
  });

  it("follows an org-wide Enterprise Grid install to its organisation's members", async () => {
    const grid = await startGateway(config(upstream.url, slack), { gateway: { delivery: fast } });
    const member = slack.addUser("carol@example.com", "carol-grid");
    user.carolGrid = member;
    slack.users.get(member)!.teamId = "T0GRIDWS2";
    slack.users.get(member)!.enterpriseId = "E0GRIDORG";
    try {
      const { token, id, message: at } = await heldOn(grid);
      const clickThere = () => click("carolGrid", id, "airlock_approve", at, grid);
      const told = () => slack.ephemerals.filter((e) => e.user === member);
      // auth.test names no workspace at all: nobody maps, and the clicker is told.
      slack.setAuthTest({ team_id: undefined, enterprise_id: undefined });
      await clickThere();
      await until(() => told().length === 1);
      expect(told()[0]!.text).toMatch(/could not ask Slack/i);
      // Installed org-wide: members of the organisation's other workspaces count.
      slack.setAuthTest({
        team_id: undefined,
        is_enterprise_install: true,
        enterprise_id: "E0GRIDORG",
      });
      await clickThere();
      await until(async () => {
        const view = await api(grid.url, "GET", `/v1/actions/${id}`, { token });
        return view.body.reviews.length === 1;
      });
    } finally {
      slack.setAuthTest({});
      slack.users.delete(member);
      await grid.close();
      removeDir(grid.dir);
    }
  });

  it("tells the owner only through an account of their own workspace, never an outsider's", async () => {
    // Dave has no account in the bot's workspace; a Slack Connect member's workspace gave
    // one of theirs his e-mail, and Slack finds that account by it.
    const outsider = slack.addUser("dave@example.com", "dave-elsewhere");
    slack.users.get(outsider)!.teamId = "T0OTHERORG";
    const other = await startGateway(
      config(upstream.url, slack).replace("owner: alice@example.com", "owner: dave@example.com"),
      { gateway: { delivery: fast } },
    );
    try {
      const { token, id, message } = await heldOn(other);
      const bob = await other.token("reviewer", "bob@example.com");
      const res = await api(other.url, "POST", `/v1/requests/${id}/reviews`, {
        token: bob,
        body: { decision: "deny", comment: "not now" },
      });
      expect(res.status).toBe(200);
      const done = await api(other.url, "GET", `/v1/actions/${id}?wait=5`, { token });
      expect(done.body.status).toBe("denied");
      await until(() => [...slack.messages.values()].some((m) => m.thread_ts === message.ts));
      await other.gateway.dispatcher.idle();
      const opened = slack
        .callsTo("conversations.open")
        .map((c) => c.args.users)
        .filter((u) => u === outsider);
      expect(opened).toEqual([]);
    } finally {
      slack.users.delete(outsider);
      await other.close();
      removeDir(other.dir);
    }
  });

  it("tells the owner once, when Slack turned the first try at their message away", async () => {
    const { id, message } = await held();
    const opens = () => slack.limited.filter((method) => method === "conversations.open").length;
    const refusedBefore = opens();
    slack.rateLimit(1, 0, "conversations.open");
    const bob = await gw.token("reviewer", "bob@example.com");
    const res = await api(gw.url, "POST", `/v1/requests/${id}/reviews`, {
      token: bob,
      body: { decision: "deny", comment: "not now" },
    });
    expect(res.status).toBe(200);
    const told = () =>
      [...slack.messages.values()].filter(
        (m) => m.channel.startsWith("D") && (m.text ?? "").includes(id),
      );
    await until(() => told().length > 0);
    await gw.gateway.dispatcher.idle();
    expect(opens()).toBe(refusedBefore + 1);
    expect(told()).toHaveLength(1);
    expect(told()[0]!.text).toMatch(/denied/i);
    // The owner's retry is theirs alone: the card's thread heard the outcome once.
    const replies = [...slack.messages.values()].filter((m) => m.thread_ts === message.ts);
    expect(replies).toHaveLength(1);
  });

  it("tells a clicker when Slack cannot say who they are, and records nothing", async () => {
    const { id, message } = await held();
    const before = ephemeralsFor("bob").length;
    slack.rateLimit(1, 1, "users.info");
    await click("bob", id, "airlock_approve", message);
    await until(() => ephemeralsFor("bob").length > before);
    expect(ephemeralsFor("bob")[before]!.text).toMatch(/could not ask Slack/i);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.reviews).toEqual([]);
    // The next click works.
    await click("bob", id, "airlock_approve", message);
    await untilReviews(id, 1);
  });

  it("never approves a step-up request from Slack, whatever is clicked", async () => {
    const { id, message } = await held("/refunds/big");
    // The rule names its own channel.
    expect(message.channel).toBe(slack.channelId("#payments-approvals"));
    expect(message.channel).not.toBe(slack.channelId("#approvals"));
    const actions = JSON.stringify(message.blocks);
    expect(actions).not.toContain('"airlock_approve"');
    expect(actions).toContain("http://airlock.test/requests/");
    await click("bob", id, "airlock_open_console", message);
    // A hand-made click on an approve button the message never had is refused too.
    await click("bob", id, "airlock_approve", message);
    await until(() =>
      ephemeralsFor("bob").some((e) => /sign-in|step-up|identity provider/i.test(e.text ?? "")),
    );
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.status).toBe("pending");
    expect(view.body.reviews).toEqual([]);
  });

  it("never approves from Slack an action too long to show whole, whatever is clicked", async () => {
    const long = refund();
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: {
        ...long,
        input: { ...long.input, body: { ...long.input.body, note: "x".repeat(4000) } },
      },
    });
    const id = res.body.id as string;
    await until(() => messageOf(id) !== undefined);
    await gw.gateway.dispatcher.idle();
    const message = messageOf(id)!;
    expect(JSON.stringify(message.blocks)).not.toContain('"airlock_approve"');
    expect(JSON.stringify(message.blocks)).not.toContain('"airlock_approve_comment"');
    const before = ephemeralsFor("bob").length;
    // Hand-made clicks on approve buttons the message never had, and a hand-made modal.
    await click("bob", id, "airlock_approve", message);
    await click("carol", id, "airlock_approve_comment", message);
    await slack.interact(
      interactions,
      slack.submitView({
        user: user.frank!,
        callbackId: "airlock_review_modal",
        privateMetadata: JSON.stringify({
          requestId: id,
          decision: "approve",
          channel: message.channel,
          ts: message.ts,
        }),
        values: { comment: { comment: { type: "plain_text_input", value: "fine" } } },
      }),
    );
    await until(() => ephemeralsFor("bob").length > before);
    expect(ephemeralsFor("bob")[before]!.text).toMatch(/too long to show whole/);
    await until(() => ephemeralsFor("carol").some((e) => /too long/.test(e.text ?? "")));
    await until(() => ephemeralsFor("frank").some((e) => /too long/.test(e.text ?? "")));
    expect(slack.views.some((v) => v.trigger_id === `trig-carol-${id}`)).toBe(false);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.status).toBe("pending");
    expect(view.body.reviews).toEqual([]);
    // Deny needs no whole view: it runs nothing.
    await click("bob", id, "airlock_deny", message);
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("denied");
  });

  it("neither decides nor shows in a modal a request whose rule keeps it out of Slack", async () => {
    // No message is posted for it; a modified client writes its id into another card's click.
    const { message } = await held();
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { ...refund(), input: { ...refund().input, path: "/payouts" } },
    });
    expect(res.body.status).toBe("pending");
    const id = res.body.id as string;
    await gw.gateway.dispatcher.idle();
    expect(messageOf(id)).toBeUndefined();
    // A reviewer is told where it is decided, before what the click offered is judged.
    for (const [who, action] of [
      ["bob", "airlock_approve"],
      ["carol", "airlock_deny_reason"],
      ["frank", "airlock_deny"],
    ] as const) {
      const before = ephemeralsFor(who).length;
      await click(who, id, action, message);
      await until(() => ephemeralsFor(who).length > before);
      expect(ephemeralsFor(who)[before]!.text, who).toContain(
        "decided in the console and the API only",
      );
    }
    // Someone who maps to no reviewer (a guest, another workspace's member) hears only that,
    // as for any request: not that this one exists, nor where it is decided.
    for (const [who, action] of [
      ["guest", "airlock_approve_comment"],
      ["outsider", "airlock_deny"],
    ] as const) {
      const before = ephemeralsFor(who).length;
      await click(who, id, action, message);
      await until(() => ephemeralsFor(who).length > before);
      const told = ephemeralsFor(who)[before]!.text;
      expect(told, who).toMatch(/^Airlock cannot tell who you are/);
      expect(told, who).not.toMatch(/console|review\.channels|decided/);
    }
    // The modal would have named the action to whoever clicked.
    expect(slack.views.some((v) => v.trigger_id === `trig-carol-${id}`)).toBe(false);
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body.status).toBe("pending");
    expect(view.body.reviews).toEqual([]);
    // The API still takes the same reviewer's vote.
    const bob = await gw.token("reviewer", "bob@example.com");
    expect((await vote(gw.url, id, bob)).status).toBe(200);
  });

  it("decides a request only from the channel its message was posted to", async () => {
    // A request whose message is in #payments-approvals, and the message of another in
    // #approvals: a click there (a copied card, a hand-made payload, all signed by Slack for
    // this app) that names the first request is not a click on its message.
    const elsewhere = await held("/refunds/big");
    const here = await held();
    expect(elsewhere.message.channel).not.toBe(here.message.channel);
    const notHere = /not posted in this channel/;
    const before = {
      bob: ephemeralsFor("bob").length,
      carol: ephemeralsFor("carol").length,
      frank: ephemeralsFor("frank").length,
    };
    await click("bob", elsewhere.id, "airlock_deny", here.message);
    await until(() => ephemeralsFor("bob").length > before.bob);
    expect(ephemeralsFor("bob")[before.bob]!.text).toMatch(notHere);
    expect(ephemeralsFor("bob")[before.bob]!.channel).toBe(here.message.channel);
    // Nor does a modal open from there, nor is one submitted from there taken.
    await click("carol", here.id, "airlock_deny_reason", {
      channel: slack.channelId("#payments-approvals"),
      ts: here.message.ts,
    });
    await until(() => ephemeralsFor("carol").length > before.carol);
    expect(ephemeralsFor("carol")[before.carol]!.text).toMatch(notHere);
    expect(slack.views.some((v) => v.trigger_id === `trig-carol-${here.id}`)).toBe(false);
    await slack.interact(
      interactions,
      slack.submitView({
        user: user.frank!,
        callbackId: "airlock_review_modal",
        privateMetadata: JSON.stringify({
          requestId: here.id,
          decision: "deny",
          channel: elsewhere.message.channel,
          ts: here.message.ts,
        }),
        values: { comment: { comment: { type: "plain_text_input", value: "no" } } },
      }),
    );
    await until(() => ephemeralsFor("frank").length > before.frank);
    expect(ephemeralsFor("frank")[before.frank]!.text).toMatch(notHere);
    for (const { id } of [elsewhere, here]) {
      const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
      expect(view.body).toMatchObject({ status: "pending", reviews: [] });
    }
    // From the message's own channel, the same click counts.
    await click("bob", here.id, "airlock_deny", here.message);
    const done = await api(gw.url, "GET", `/v1/actions/${here.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("denied");
  });

  it("reads where a request's message was posted only once a reviewer clicked", async () => {
    const { id, message } = await held();
    const reads = vi.spyOn(gw.gateway.store, "getChannelRef");
    try {
      // Clicks by people who map to no reviewer, on the request's own message: each is told
      // only that, and costs no read of where the message went.
      for (const [who, action] of [
        ["guest", "airlock_approve"],
        ["stranger", "airlock_deny"],
        ["outsider", "airlock_deny_reason"],
      ] as const) {
        const before = ephemeralsFor(who).length;
        await click(who, id, action, message);
        await until(() => ephemeralsFor(who).length > before);
        expect(ephemeralsFor(who)[before]!.text, who).toMatch(/^Airlock cannot tell who you are/);
      }
      expect(reads).not.toHaveBeenCalled();
      // A reviewer's click is checked against it: from elsewhere, it is refused.
      const before = ephemeralsFor("bob").length;
      await click("bob", id, "airlock_deny", {
        channel: slack.channelId("#payments-approvals"),
        ts: message.ts,
      });
      await until(() => ephemeralsFor("bob").length > before);
      expect(ephemeralsFor("bob")[before]!.text).toMatch(/not posted in this channel/);
      expect(reads).toHaveBeenCalledWith(id, "slack");
    } finally {
      reads.mockRestore();
    }
    const view = await api(gw.url, "GET", `/v1/actions/${id}`, { token: agent });
    expect(view.body).toMatchObject({ status: "pending", reviews: [] });
  });

  it("takes a click that comes between the post and the recording of where it went", async () => {
    // Where the message went is recorded right after Slack answers the post: held there, so
    // that a click comes in between, as one can in the milliseconds it takes.
    const hold = holdChannelRefs(gw.gateway.store);
    try {
      const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
      const id = res.body.id as string;
      await until(() => messageOf(id) !== undefined && hold.recording());
      const message = messageOf(id)!;
      const before = hold.reads().length;
      const told = ephemeralsFor("bob").length;
      await click("bob", id, "airlock_approve", message);
      // The click found nothing recorded yet; the recording goes on.
      await until(() =>
        hold
          .reads()
          .slice(before)
          .some(([read]) => read === id),
      );
      hold.release();
      const refused = () =>
        ephemeralsFor("bob")
          .slice(told)
          .some((e) => /not posted/.test(String(e.text)));
      await until(async () => refused() || (await statusOf(id)).reviews.length === 1);
      expect(refused()).toBe(false);
    } finally {
      hold.restore();
    }
  });

  it("opens a modal, which names the action, only for someone who maps to a reviewer", async () => {
    // A request posted to another channel, and a card in #approvals that a guest there sees.
    const { id } = await held("/refunds/big");
    const { message } = await held();
    const before = {
      guest: ephemeralsFor("guest").length,
      outsider: ephemeralsFor("outsider").length,
    };
    // Hand-made clicks naming that request, from people who never count.
    await click("guest", id, "airlock_deny_reason", message);
    await click("outsider", id, "airlock_approve_comment", message);
    await until(() => ephemeralsFor("guest").length > before.guest);
    await until(() => ephemeralsFor("outsider").length > before.outsider);
    expect(ephemeralsFor("guest")[before.guest]!.text).toMatch(/e-mail/i);
    expect(ephemeralsFor("outsider")[before.outsider]!.text).toMatch(/e-mail/i);
    expect(slack.views.some((v) => v.trigger_id.endsWith(`-${id}`))).toBe(false);
  });

  it("counts a person once, in Slack or the console, whatever e-mail Slack gives them later", async () => {
    // An account of its own: the gateway keeps what Slack said of it for userCacheTtl.
    user.kim = slack.addUser("kim@example.com", "kim");
    const { id, message } = await held();
    await click("kim", id, "airlock_approve", message);
    await untilReviews(id, 1);
    const kim = await gw.token("reviewer", "kim@example.com");
    const again = await vote(gw.url, id, kim);
    expect(again.body.error.code).toBe("already_reviewed");
    // Kim's Slack account now carries Gina's e-mail; it is still the account that voted.
    slack.users.get(user.kim!)!.email = "gina@example.com";
    await click("kim", id, "airlock_approve", message);
    await until(() => ephemeralsFor("kim").length > 0);
    expect(ephemeralsFor("kim")[0]!.text).toMatch(/already reviewed/);
    // A console vote first, then a Slack click by the same reviewer.
    const second = await held();
    const carol = await gw.token("reviewer", "carol@example.com");
    expect((await vote(gw.url, second.id, carol)).status).toBe(200);
    const carolBefore = ephemeralsFor("carol").length;
    await click("carol", second.id, "airlock_approve", second.message);
    await until(() => ephemeralsFor("carol").length > carolBefore);
    expect(ephemeralsFor("carol")[carolBefore]!.text).toMatch(/already reviewed/);
    const view = await api(gw.url, "GET", `/v1/actions/${second.id}`, { token: agent });
    expect(view.body.reviews).toHaveLength(1);
  });

  it("opens a modal for a reason, and records the reason given", async () => {
    const { id, message } = await held();
    await click("bob", id, "airlock_deny_reason", message);
    await until(() => slack.views.some((v) => v.trigger_id === `trig-bob-${id}`));
    const modal = slack.views.find((v) => v.trigger_id === `trig-bob-${id}`)!.view;
    const submitted = await slack.interact(
      interactions,
      slack.submitView({
        user: user.bob!,
        callbackId: modal.callback_id,
        privateMetadata: modal.private_metadata,
        values: { comment: { comment: { type: "plain_text_input", value: "duplicate of #123" } } },
      }),
    );
    expect(submitted.status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("denied");
    expect(done.body.reviews[0]).toMatchObject({
      reviewer: "bob@example.com",
      comment: "duplicate of #123",
    });
  });

  it("delivers once through a 429, and catches up after an outage with the request reviewable", async () => {
    await gw.gateway.dispatcher.idle();
    const before = slack.limited.length;
    slack.rateLimit(1, 1, "chat.postMessage");
    const limited = await held();
    expect(slack.limited.slice(before)).toEqual(["chat.postMessage"]);
    const copies = [...slack.messages.values()].filter(
      (m) => !m.thread_ts && JSON.stringify(m.blocks ?? []).includes(limited.id),
    );
    expect(copies).toHaveLength(1);

    slack.setDown(true);
    const res = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
    const id = res.body.id as string;
    await new Promise((r) => setTimeout(r, 300));
    expect(messageOf(id)).toBeUndefined();
    const bob = await gw.token("reviewer", "bob@example.com");
    const reviewable = await api(gw.url, "GET", `/v1/requests/${id}`, { token: bob });
    expect(reviewable.body.status).toBe("pending");
    slack.setDown(false);
    await until(() => messageOf(id) !== undefined, 8000);
  });

  it("gives up at once on updates to a card someone deleted, holding nothing up", async () => {
    const { id, message } = await held();
    slack.messages.delete(`${message.channel}:${message.ts}`);
    const updates = () =>
      slack.callsTo("chat.update").filter((c) => c.args.ts === message.ts).length;
    for (const who of ["bob", "carol"]) {
      const token = await gw.token("reviewer", `${who}@example.com`);
      expect((await vote(gw.url, id, token)).status).toBe(200);
    }
    const done = await api(gw.url, "GET", `/v1/actions/${id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    // One try for each vote's update and one for the outcome's: "message_not_found" is final.
    await until(() => updates() === 3);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await gw.gateway.dispatcher.idle();
    expect(updates()).toBe(3);
    // The owner still hears the outcome: their message does not need the card.
    const told = [...slack.messages.values()].filter(
      (m) => m.channel.startsWith("D") && (m.text ?? "").includes(id),
    );
    expect(told).toHaveLength(1);
  });

  it("counts a reminder's time left by the store's clock, which stamped the expiry, not the gateway's", async () => {
    const text = config(upstream.url, slack).replace(
      "notifyOwner: true",
      "notifyOwner: false\n    remindBefore: 14m59s700ms",
    );
    // Half an hour behind: on PostgreSQL the request expires 15 minutes from now by the
    // database's clock, 45 by this one.
    const other = await startGateway(text, {
      gateway: { delivery: fast, clock: () => Date.now() - 30 * 60_000 },
    });
    try {
      const { message } = await heldOn(other);
      const thread = () =>
        [...slack.messages.values()]
          .filter((m) => m.thread_ts === message.ts)
          .map((m) => m.text ?? "");
      await until(() => thread().length >= 1, 5000);
      expect(thread()[0]).toMatch(/expires in 15 minutes/);
    } finally {
      await other.close();
      removeDir(other.dir);
    }
  });

  it("reminds in the thread before expiry, and escalates when nobody answers", async () => {
    const text = config(upstream.url, slack)
      .replace(
        "notifyOwner: true",
        "notifyOwner: false\n    remindBefore: 1s\n    escalation: { after: 300ms, mention: S0123ABCD }",
      )
      .replace("expiresIn: 15m", "expiresIn: 1500ms");
    const other = await startGateway(text, { gateway: { delivery: fast } });
    try {
      const { message } = await heldOn(other);
      const thread = () =>
        [...slack.messages.values()]
          .filter((m) => m.thread_ts === message.ts)
          .map((m) => m.text ?? "");
      await until(() => thread().length >= 2, 5000);
      expect(thread().some((t) => t.includes("<!subteam^S0123ABCD>"))).toBe(true);
      expect(thread().some((t) => /expires|left/i.test(t))).toBe(true);
      await until(() => thread().some((t) => /expired/i.test(t)), 5000);
    } finally {
      await other.close();
      removeDir(other.dir);
    }
  });
});
