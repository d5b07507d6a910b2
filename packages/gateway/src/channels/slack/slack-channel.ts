/**
 * Slack as a place to decide: one message per request posted with the official Web API
 * client, updated in place after every vote and at the end, and the clicks on its buttons
 * received, verified and decided under the same rules as the API.
 */
import { type UsersInfoResponse, WebClient } from "@slack/web-api";
import type { FastifyInstance } from "fastify";
import { createLruCache } from "../../common/lru-cache.js";
import { truncateText } from "../../common/storable-text.js";
import { AirlockError, callerMessage, errorMessage } from "../../errors.js";
import { emailKey } from "../../identity/email-key.js";
import { channelRefusal } from "../../requests/request-transitions.js";
import type { ActionRequest } from "../../requests/request-types.js";
import {
  type Channel,
  type ChannelNotice,
  ChannelUnavailable,
  type ChannelView,
  type ChatChannelDeps,
  type DecisionSink,
  type ViewReader,
} from "../channel.js";
import { postedPlaceCheck } from "../posted-place.js";
import type { SlackConfig } from "./slack-config.js";
import {
  actionIds,
  escalationText,
  modalCallbackId,
  outcomeReply,
  parseModalMetadata,
  refusalText,
  reminderText,
  requestMessage,
  reviewModal,
} from "./slack-messages.js";
import { createSlackVerifier, type SignatureProblem } from "./slack-signature.js";

export type SlackDeps = ChatChannelDeps;

interface Ref {
  channel: string;
  ts: string;
}

/** What an interaction asks for, once its payload is read. */
type Interaction =
  | {
      kind: "vote";
      user: string;
      requestId: string;
      decision: "approve" | "deny";
      comment: string;
      channel: string | undefined;
    }
  | {
      kind: "modal";
      user: string;
      triggerId: string;
      requestId: string;
      decision: "approve" | "deny";
      channel: string;
      ts: string;
    }
  | { kind: "ignore" };

/**
 * Slack's answers that the same call will get again: the message is gone or can no longer be
 * edited, or Slack cannot take what was sent. Others (not_in_channel, invalid_auth, …) are
 * fixed by an admin, so they are tried again.
 */
const REFUSED_FOR_GOOD = new Set([
  "message_not_found",
  "cant_update_message",
  "edit_window_closed",
  "thread_not_found",
  "msg_too_long",
  "no_text",
  "invalid_blocks",
  "invalid_blocks_format",
  "invalid_arguments",
]);

/**
 * Slack users whose look-up is remembered at most: the workspace's members who clicked last,
 * each a few hundred bytes, however large the workspace (an Enterprise Grid's may be huge).
 */
const USERS_KEPT = 10_000;

/** The Slack channel's name, as a rule's `review.channels` names it. */
export const SLACK_CHANNEL = "slack";

export function createSlackChannel(config: SlackConfig, deps: SlackDeps): Channel {
  const clock = deps.clock ?? Date.now;
  const storeTime = deps.storeTime ?? clock;
  const logger = deps.logger;
  // Failures go back to the outbox, which retries with backoff (and Slack's Retry-After),
  // so nothing is lost while Slack is away and nothing is retried twice.
  const client = new WebClient(config.botToken, {
    slackApiUrl: config.apiUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: 10_000,
  });
  const verifier = createSlackVerifier(config.signingSecret, deps.claimOnce, clock);
  const users = createLruCache<{ email: string; team: string }>(USERS_KEPT);

  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      throw unavailable(what, error);
    }
  };

  const parseRef = (ref: string): Ref => {
    const at = ref.indexOf(":");
    return { channel: ref.slice(0, at), ts: ref.slice(at + 1) };
  };

  /**
   * The workspaces whose members may review: configured, or else the bot's own (its whole
   * Enterprise Grid organisation when the app is installed org-wide). Asked of Slack once.
   */
  let ownTeam: Promise<string[]> | undefined;
  const allowedTeams = (): Promise<string[]> => {
    if (config.teams) return Promise.resolve(config.teams);
    if (!ownTeam) {
      ownTeam = call("auth.test", () => client.auth.test()).then((answer) => {
        const teams = [
          answer.team_id,
          answer.is_enterprise_install ? answer.enterprise_id : undefined,
        ].filter((team): team is string => typeof team === "string" && team !== "");
        if (teams.length === 0) {
          throw new ChannelUnavailable(
            "Slack's auth.test named no workspace for the bot; set channels.slack.teams to the workspaces whose members may review",
          );
        }
        return teams;
      });
      // A failed answer is not kept: the next click asks Slack again.
      ownTeam.catch(() => {
        ownTeam = undefined;
      });
    }
    return ownTeam;
  };

  /**
   * The Slack user's e-mail, cached for `userCacheTtl`; who maps to nobody is `memberOf`'s to
   * say. A refusal is not cached, so a fixed account works at its next click.
   */
  const accountOf = async (
    user: string,
    fresh: boolean,
  ): Promise<{ email: string; team: string } | undefined> => {
    const cached = fresh ? undefined : users.get(user, clock());
    if (cached) return cached;
    const [info, teams] = await Promise.all([
      call("users.info", () => client.users.info({ user })),
      allowedTeams(),
    ]);
    const member = memberOf(info.user, teams, config.ssoEmails);
    if (!member) {
      users.delete(user);
      return undefined;
    }
    users.set(user, member, clock() + config.userCacheTtl);
    return member;
  };

  const notifyOwner = async (notice: ChannelNotice): Promise<void> => {
    const owner = notice.request.agent.owner;
    let found: SlackUser | undefined;
    try {
      found = (await client.users.lookupByEmail({ email: owner })).user;
    } catch (error) {
      // An owner without a Slack account is told nothing, now or on a retry.
      if ((error as { data?: { error?: string } }).data?.error === "users_not_found") return;
      throw unavailable("users.lookupByEmail", error);
    }
    // Slack finds deactivated accounts too, and members of other workspaces (a Slack Connect
    // channel, whose admin chose the e-mail): only an account that would count as the owner's
    // own, were it a reviewer's, hears about the owner's agent.
    const user = found?.id;
    const own = memberOf(found, await allowedTeams(), config.ssoEmails);
    if (!user || own?.email !== owner.toLowerCase()) return;
    const dm = await call("conversations.open", () => client.conversations.open({ users: user }));
    const channel = dm.channel?.id;
    if (!channel) return;
    await call("chat.postMessage", () =>
      client.chat.postMessage({
        channel,
        text: `Your agent ${notice.request.agent.name}'s request ${notice.request.id}: ${outcomeReply(notice.request)}`,
      }),
    );
  };

  const post = async (notice: ChannelNotice): Promise<string> => {
    const message = requestMessage(notice.request);
    const channel = notice.request.review?.slackChannel ?? config.channel;
    const posted = await call("chat.postMessage", () =>
      client.chat.postMessage({ channel, text: message.text, blocks: message.blocks }),
    );
    if (!posted.channel || !posted.ts) throw new ChannelUnavailable("Slack returned no message ts");
    return `${posted.channel}:${posted.ts}`;
  };

  const update = async (ref: string, notice: ChannelNotice): Promise<void> => {
    const { channel, ts } = parseRef(ref);
    const view = notice.request;
    if (notice.event === "remind" || notice.event === "escalate") {
      if (view.status !== "pending") return;
      if (notice.event === "escalate" && view.reviews.length > 0) return;
      const text =
        notice.event === "remind"
          ? reminderText(view, storeTime())
          : escalationText(view, config.escalation?.mention ?? "here");
      await call("chat.postMessage", () =>
        client.chat.postMessage({ channel, thread_ts: ts, text }),
      );
      return;
    }
    const message = requestMessage(view);
    await call("chat.update", () =>
      client.chat.update({ channel, ts, text: message.text, blocks: message.blocks }),
    );
    if (notice.event === "resolved") {
      await call("chat.postMessage", () =>
        client.chat.postMessage({ channel, thread_ts: ts, text: outcomeReply(view) }),
      );
    }
  };

  const schedule = (request: ActionRequest) => {
    const out: { event: "remind" | "escalate"; at: number }[] = [];
    if (config.remindBefore !== undefined && request.expiresAt !== null) {
      const at = request.expiresAt - config.remindBefore;
      if (at > request.createdAt) out.push({ event: "remind", at });
    }
    if (config.escalation) {
      const at = request.createdAt + config.escalation.after;
      if (request.expiresAt === null || at < request.expiresAt) out.push({ event: "escalate", at });
    }
    return out;
  };

  const readInteraction = (payload: SlackPayload): Interaction => {
    const user = payload.user?.id;
    if (!user) return { kind: "ignore" };
    if (payload.type === "block_actions") {
      const action = payload.actions?.[0];
      const requestId = action?.value;
      if (!action || !requestId) return { kind: "ignore" };
      const channel = payload.channel?.id ?? payload.container?.channel_id;
      const ts = payload.container?.message_ts ?? payload.message?.ts;
      switch (action.action_id) {
        case actionIds.approve:
        case actionIds.deny:
          return {
            kind: "vote",
            user,
            requestId,
            decision: action.action_id === actionIds.approve ? "approve" : "deny",
            comment: "",
            channel,
          };
        case actionIds.approveWithComment:
        case actionIds.denyWithReason:
          if (!payload.trigger_id || !channel || !ts) return { kind: "ignore" };
          return {
            kind: "modal",
            user,
            triggerId: payload.trigger_id,
            requestId,
            decision: action.action_id === actionIds.approveWithComment ? "approve" : "deny",
            channel,
            ts,
          };
        default:
          // The console link and anything unknown: a click on a link never decides.
          return { kind: "ignore" };
      }
    }
    if (payload.type === "view_submission" && payload.view?.callback_id === modalCallbackId) {
      const meta = parseModalMetadata(payload.view.private_metadata ?? "");
      if (!meta) return { kind: "ignore" };
      const comment = payload.view.state?.values?.comment?.comment?.value ?? "";
      return {
        kind: "vote",
        user,
        requestId: meta.requestId,
        decision: meta.decision,
        comment: truncateText(comment, 2000),
        channel: meta.channel,
      };
    }
    return { kind: "ignore" };
  };

  const refuse = async (channel: string | undefined, user: string, text: string) => {
    if (!channel) return;
    await call("chat.postEphemeral", () => client.chat.postEphemeral({ channel, user, text }));
  };

  /**
   * The reviewer who clicked, or undefined once they are told why Airlock cannot say. `fresh`
   * asks Slack again whatever the cache holds.
   */
  const clicker = async (
    interaction: { user: string; channel: string | undefined },
    fresh: boolean,
  ) => {
    let account: { email: string; team: string } | undefined;
    try {
      account = await accountOf(interaction.user, fresh);
    } catch (error) {
      // Slack could not be asked who clicked: nothing is recorded, and the person is told.
      logger.warn({ err: error }, "could not look up a Slack user");
      await refuse(interaction.channel, interaction.user, refusalText("lookup_failed", ""));
      return undefined;
    }
    const reviewer = account && deps.reviewer(account.email);
    if (!account || !reviewer) {
      await refuse(interaction.channel, interaction.user, refusalText("not_mapped", ""));
      return undefined;
    }
    return { account, reviewer };
  };

  const postedHere = postedPlaceCheck({
    channel: SLACK_CHANNEL,
    postedRef: deps.postedRef,
    placeOf: (ref) => parseRef(ref).channel,
    logger,
    refused: "refused a Slack click from a channel the request's message was not posted in",
  });

  /** Clicks acknowledged to Slack and still being recorded. */
  const unsettled = new Set<Promise<void>>();

  /**
   * Why Slack may not judge the request at all, whoever clicked (told only to a reviewer), or
   * undefined. A request its rule keeps out of Slack is not Slack's to judge in any way: a
   * reviewer is told where it is decided before what the click offered is looked at.
   */
  const requestRefusal = (view: ChannelView | undefined): string | undefined => {
    const elsewhere = channelRefusal(view?.review, SLACK_CHANNEL);
    if (elsewhere) return refusalText(elsewhere.code, elsewhere.message);
    return view ? undefined : refusalText("not_here", "");
  };

  /**
   * Why a click from where the request's message was posted would still be refused, or
   * undefined. What the message offered is checked against the request itself: a click's data
   * (its action, its request id, a modal's metadata) is not the message's. A request out of
   * review is refused by the vote itself ("no longer waiting"), and a step-up approval by the
   * review rules, in their own words.
   */
  const offerRefusal = (
    interaction: Exclude<Interaction, { kind: "ignore" }>,
    view: ChannelView,
  ): string | undefined =>
    interaction.decision === "approve" &&
    view.status === "pending" &&
    !view.review?.stepUp &&
    !requestMessage(view).approvable
      ? refusalText("not_shown_whole", "")
      : undefined;

  /** Why a click is refused for where it came from: only from where the message was posted. */
  const placeRefusal = async (
    interaction: Exclude<Interaction, { kind: "ignore" }>,
  ): Promise<string | undefined> => {
    const who = { slackUser: interaction.user };
    return (await postedHere(interaction.requestId, interaction.channel, who))
      ? undefined
      : refusalText("not_posted_here", "");
  };

  const act = async (
    interaction: Interaction,
    decide: DecisionSink,
    read: ViewReader,
  ): Promise<void> => {
    if (interaction.kind === "ignore") return;
    const view = await read(interaction.requestId);
    const outOfSlack = requestRefusal(view);
    const notOffered = view && offerRefusal(interaction, view);
    // Who clicked comes first: someone who maps to no reviewer (a guest, another workspace's
    // member) is told only that, whatever the click names, and so learns nothing of the
    // request (that it exists, where it is decided, whether it fits in a message). A click
    // that may cast a vote asks Slack again, whatever the cache holds: a deactivated account
    // must neither approve nor deny (a deny ends the request for good, and its evidence says
    // that Slack vouched for the account at the click). What casts none takes the cache: the
    // words of a refusal, and the modal, whose submission is a vote, looked up then; the modal
    // so keeps within Slack's 3 s for the trigger.
    const found = await clicker(
      interaction,
      interaction.kind === "vote" && !outOfSlack && !notOffered,
    );
    if (!found) return;
    // Where the message went is read only now that a reviewer clicked: a stranger's click
    // costs no read of it (a reviewer's vote from elsewhere so asks Slack again, the place not
    // yet known). Refusals come in this order: the request, the place, the offer.
    const refusal = outOfSlack ?? (await placeRefusal(interaction)) ?? notOffered;
    if (refusal) {
      await refuse(interaction.channel, interaction.user, refusal);
      return;
    }
    if (interaction.kind === "modal") {
      // Refused above when there is no view: the modal names the action.
      if (!view) return;
      await call("views.open", () =>
        client.views.open({
          trigger_id: interaction.triggerId,
          view: reviewModal({
            requestId: interaction.requestId,
            decision: interaction.decision,
            channel: interaction.channel,
            ts: interaction.ts,
            summary: interaction.requestId,
            view,
          }),
        }),
      );
      return;
    }
    const { account, reviewer } = found;
    try {
      await decide({
        requestId: interaction.requestId,
        reviewer: {
          email: reviewer.email,
          groups: reviewer.groups,
          evidence: {
            method: "slack",
            slackUser: interaction.user,
            // The workspace checked: the user's own, not the one the click came through.
            slackTeam: account.team,
            verifiedEmail: account.email,
            signature: "v0",
          },
        },
        decision: interaction.decision,
        comment: interaction.comment,
      });
    } catch (error) {
      if (!(error instanceof AirlockError)) throw error;
      // A fault's details are in its cause, and what the store said in its message: for the
      // log, not the person who clicked.
      if (error.code === "internal" || error.code === "store_unavailable")
        logger.error({ err: error }, "a Slack vote was not recorded");
      await refuse(
        interaction.channel,
        interaction.user,
        refusalText(error.code, callerMessage(error)),
      );
    }
  };

  const routes = (app: FastifyInstance, decide: DecisionSink, read: ViewReader): void => {
    app.register(async (scope) => {
      // The signature covers the bytes received, so they are kept as they came and parsed
      // here: text decoded first reads a byte that is not UTF-8 as U+FFFD, so a signature over
      // that text would match bytes Slack never signed.
      scope.addContentTypeParser(
        "application/x-www-form-urlencoded",
        { parseAs: "buffer", bodyLimit: 1024 * 1024 },
        (_request, body, done) => done(null, body),
      );
      scope.post("/integrations/slack/interactions", async (request, reply) => {
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const problem = await verifier.verify(
          {
            timestamp: header(request.headers["x-slack-request-timestamp"]),
            signature: header(request.headers["x-slack-signature"]),
          },
          raw,
        );
        if (problem) {
          logger.warn({ problem }, "refused a Slack interaction");
          throw new AirlockError("unauthenticated", signatureMessage[problem]);
        }
        let payload: SlackPayload;
        try {
          const form = new TextDecoder("utf-8", { fatal: true }).decode(raw);
          payload = JSON.parse(new URLSearchParams(form).get("payload") ?? "") as SlackPayload;
        } catch {
          throw new AirlockError("invalid_request", "payload: not a Slack interaction payload", {
            field: "payload",
          });
        }
        const interaction = readInteraction(payload);
        // Slack wants an answer within 3 seconds: acknowledge now, decide right after. Slack
        // will not send an acknowledged click again, so a stop waits for it (settle).
        const acting = new Promise<void>((resolve) => setImmediate(resolve))
          .then(() => act(interaction, decide, read))
          .catch((error) =>
            logger.error({ err: error }, "a Slack interaction could not be handled"),
          )
          .finally(() => unsettled.delete(acting));
        unsettled.add(acting);
        return reply.code(200).send();
      });
    });
  };

  return {
    name: SLACK_CHANNEL,
    settle: async () => {
      while (unsettled.size > 0) await Promise.all(unsettled);
    },
    post,
    update,
    notifyOwner: config.notifyOwner ? notifyOwner : undefined,
    schedule,
    routes,
  };
}

/** A failed Web API call as the outbox reads it: when to come back, or whether ever. */
function unavailable(what: string, error: unknown): ChannelUnavailable {
  const e = error as { code?: string; retryAfter?: number; data?: { error?: string } };
  if (e.code === "slack_webapi_rate_limited_error") {
    return new ChannelUnavailable(`Slack rate-limited ${what}`, {
      retryAfterMs: (e.retryAfter ?? 1) * 1000,
    });
  }
  const detail = e.data?.error ?? errorMessage(error);
  return new ChannelUnavailable(`Slack ${what} failed: ${detail}`, {
    permanent: e.data?.error !== undefined && REFUSED_FOR_GOOD.has(e.data.error),
  });
}

/** What users.info and users.lookupByEmail say of a user, as far as Airlock reads it. */
type SlackUser = NonNullable<UsersInfoResponse["user"]>;

/**
 * The user's e-mail and the allowed workspace they belong to, or undefined when the account
 * maps to nobody: deactivated users, bots, guests (restricted accounts, often from outside the
 * company), members of other workspaces (whose admins can give them any e-mail) and e-mails
 * Slack does not say it confirmed. Slack leaves `is_email_confirmed` out of some answers;
 * silence confirms nothing, so only `true` counts, unless an SSO provider sets the e-mails
 * (`ssoEmails`), which Slack then never marks confirmed. An e-mail that lowercases into
 * another (emailKey) is nobody's.
 */
function memberOf(
  profile: SlackUser | undefined,
  teams: readonly string[],
  ssoEmails: boolean,
): { email: string; team: string } | undefined {
  const team = [profile?.team_id, profile?.enterprise_user?.enterprise_id].find(
    (home) => home !== undefined && teams.includes(home),
  );
  const email =
    profile &&
    !profile.deleted &&
    !profile.is_bot &&
    !profile.is_restricted &&
    !profile.is_ultra_restricted &&
    (ssoEmails || profile.is_email_confirmed === true) &&
    team !== undefined &&
    profile.profile?.email
      ? emailKey(profile.profile.email)
      : undefined;
  return email && team ? { email, team } : undefined;
}

const signatureMessage: Record<SignatureProblem, string> = {
  missing: "the request is not signed by Slack (X-Slack-Signature and X-Slack-Request-Timestamp)",
  stale: "the request's timestamp is more than five minutes away from now",
  forged: "the request's signature does not match the signing secret",
  replayed: "this payload was already received",
};

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The parts of Slack's interaction payloads that Airlock reads. */
interface SlackPayload {
  type?: string;
  user?: { id?: string };
  team?: { id?: string };
  trigger_id?: string;
  channel?: { id?: string };
  container?: { channel_id?: string; message_ts?: string };
  message?: { ts?: string };
  actions?: { action_id?: string; value?: string }[];
  view?: {
    callback_id?: string;
    private_metadata?: string;
    state?: { values?: Record<string, Record<string, { value?: string | null }>> };
  };
}
