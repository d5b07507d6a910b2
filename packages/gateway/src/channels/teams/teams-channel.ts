/**
 * Microsoft Teams as a place to decide: one Adaptive Card per request, posted through the Bot
 * Connector and updated in place after every vote and at the end; clicks on its buttons
 * (Universal Actions) arrive at `POST /integrations/teams/messages`, are verified as the
 * Bot Framework's, and are decided under the same rules as the API.
 */
import type { ConnectorClient } from "botframework-connector";
import type { Activity, ConversationParameters } from "botframework-schema";
import type { FastifyInstance } from "fastify";
import { createLruCache } from "../../common/lru-cache.js";
import { truncateText } from "../../common/storable-text.js";
import { AirlockError, callerMessage } from "../../errors.js";
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
import { acceptedUntil, createTeamsBot, type TeamsBot } from "./teams-bot.js";
import {
  confirmedRisks,
  refusalText,
  reminderText,
  requestCard,
  statusLine,
  verbs,
} from "./teams-cards.js";
import type { TeamsConfig } from "./teams-config.js";

export interface TeamsDeps extends ChatChannelDeps {
  /** The Bot Framework client; made from the config when absent. */
  bot?: TeamsBot;
}

/** Teams members whose look-up is remembered at most: those who clicked last. */
const MEMBERS_KEPT = 10_000;

/**
 * How long, and for how many clicks, an answer is kept for Teams' resend of the click: Teams
 * sends an invoke again within seconds (about 15) when no answer came.
 */
const ANSWER_KEPT_MS = 10 * 60_000;
const ANSWERS_KEPT = 1_000;

/** The Teams channel's name, as a rule's `review.channels` names it. */
export const TEAMS_CHANNEL = "teams";

/** How long a Bot Connector call may take, the bot's token included. */
const CALL_DEADLINE_MS = 10_000;
/** Teams waits about five seconds for an invoke's answer: who clicked must be known sooner. */
const LOOKUP_DEADLINE_MS = 4_000;
/**
 * When a click must be answered by, counted from its arrival: checking its token (up to 3 s
 * while the Bot Framework's keys are fetched) comes out of the look-up's time, which gets
 * what is left of this, and never less than a second.
 */
const ANSWER_WITHIN_MS = 4_000;
const MIN_LOOKUP_MS = 1_000;
/** Teams' largest page of members, and how many pages an owner is looked for in (10,000). */
const MEMBERS_PAGE_SIZE = 500;
const OWNER_SEARCH_PAGES = 20;

function lookupDeadline(arrived: number): number {
  const left = ANSWER_WITHIN_MS - (performance.now() - arrived);
  return Math.max(MIN_LOOKUP_MS, Math.min(LOOKUP_DEADLINE_MS, left));
}

const CARD = "application/vnd.microsoft.card.adaptive";

/** The parts of a Teams member (TeamsChannelAccount) that identify a reviewer. */
interface Member {
  email?: string;
  tenantId?: string;
  userRole?: string;
  aadObjectId?: string;
}

type Vote = {
  user: string;
  aadObjectId: string | undefined;
  /** Where members are looked up: the team, for a click in a team's channel. */
  conversation: string;
  /** The conversation the click came from, as a card is posted to it (no `;messageid=`). */
  postedIn: string;
  requestId: string;
  decision: "approve" | "deny";
  comment: string;
  confirmed: boolean;
};

export function createTeamsChannel(config: TeamsConfig, deps: TeamsDeps): Channel {
  const clock = deps.clock ?? Date.now;
  const storeTime = deps.storeTime ?? clock;
  const logger = deps.logger;
  const bot = deps.bot ?? createTeamsBot(config);
  /** The answers to the clicks this replica took lately, for Teams' resends of them. */
  const answered = createLruCache<Promise<string>>(ANSWERS_KEPT);
  const members = createLruCache<{ email: string; aadObjectId: string | undefined }>(MEMBERS_KEPT);

  /**
   * A full member of the configured tenant: guests, anonymous users, members of another
   * tenant (a shared channel) and any role Teams may add later are nobody.
   */
  const fullMember = (member: Member) =>
    member.tenantId === config.tenantId && member.userRole === "user";

  /**
   * One Bot Connector call, given up after `ms` (the SDK sets no deadline of its own, and a
   * call that never ends would hold the outbox's delivery, and every channel's after it).
   */
  const call = async <T>(
    what: string,
    fn: (client: ConnectorClient, options: { abortSignal: AbortSignal }) => Promise<T>,
    ms = CALL_DEADLINE_MS,
  ): Promise<T> => {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new ChannelUnavailable(`Teams ${what} did not answer within ${ms / 1000} s`));
      }, ms);
    });
    try {
      return await Promise.race([
        (async () => fn(await bot.connector(), { abortSignal: controller.signal }))(),
        late,
      ]);
    } catch (error) {
      if (error instanceof ChannelUnavailable) throw error;
      const e = error as {
        statusCode?: number;
        message?: string;
        response?: { headers?: { get?: (name: string) => string | undefined } };
      };
      const after = Number(e.response?.headers?.get?.("retry-after"));
      const status = e.statusCode ? `HTTP ${e.statusCode}` : (e.message ?? String(error));
      throw new ChannelUnavailable(`Teams ${what} failed: ${status}`, {
        // Teams says when to come back; a wait past ten minutes is taken as ten.
        retryAfterMs:
          (e.statusCode === 429 || e.statusCode === 503) && Number.isFinite(after)
            ? Math.min(after * 1000, 600_000)
            : undefined,
        ...(e.statusCode === undefined ? {} : { status: e.statusCode }),
        // A card too large for Teams is refused again on every try. (A 400 is not taken as
        // final: a mistyped conversation id gives one too, and an admin can fix that.)
        permanent: e.statusCode === 413,
      });
    } finally {
      clearTimeout(timer);
    }
  };

  /** Where a card went: the conversation and the activity id, which Teams forms freely. */
  const parseRef = (ref: string): { conversation: string; id: string } => {
    const [conversation, id] = JSON.parse(ref) as [string, string];
    return { conversation, id };
  };

  const message = (notice: ChannelNotice): Partial<Activity> => {
    const { card, summary } = requestCard(notice.request);
    return { type: "message", summary, attachments: [{ contentType: CARD, content: card }] };
  };

  /**
   * Posts the card. A post whose answer was lost (no answer in time, a dropped connection, a
   * 408 or 5xx) may have gone through: the Bot Connector takes no idempotency key and cannot
   * list a conversation's messages, so the next try cannot look for it, and posts again. The
   * failure says so, for the operator who then finds the card there twice.
   */
  const post = async (notice: ChannelNotice): Promise<string> => {
    const conversation = notice.request.review?.teamsConversation ?? config.conversation;
    // Whether Teams may have carried the post out though it failed: once the card is handed to
    // the HTTP client, until it fails in a way that says otherwise, since Airlock's deadline
    // ends it with no answer at all. Not before: the bot's token from Entra ID comes first,
    // and the deadline may come while it is still awaited, when nothing was sent (the abort
    // then keeps the post from going out after it). The SDK reports the body's upload only
    // once the request is signed, just before it is sent.
    let mayHavePosted = false;
    const card = message(notice) as Activity;
    const sent = await call("sendToConversation", (client, options) =>
      client.conversations
        .sendToConversation(conversation, card, {
          ...options,
          onUploadProgress: () => {
            mayHavePosted = true;
          },
        })
        .catch((error: unknown) => {
          // The Bot Connector's own failures (not MSAL's, for the bot's token, nor one made
          // here): no answer (a dropped connection), a timeout or a server error on the way.
          const { name, statusCode } = error as { name?: unknown; statusCode?: unknown };
          mayHavePosted &&=
            name === "RestError" &&
            (statusCode === undefined ||
              statusCode === 408 ||
              (typeof statusCode === "number" && statusCode >= 500));
          throw error;
        }),
    ).catch((error: unknown) => {
      if (!(error instanceof ChannelUnavailable) || !mayHavePosted) throw error;
      throw new ChannelUnavailable(
        `${error.message}; Teams may have posted the card all the same, and then the next try shows it twice in ${conversation} (the one not updated after votes is the extra, and its buttons still work)`,
        {
          retryAfterMs: error.retryAfterMs,
          ...(error.status === undefined ? {} : { status: error.status }),
          permanent: error.permanent,
        },
      );
    });
    if (!sent.id) throw new ChannelUnavailable("Teams returned no activity id for the card");
    return JSON.stringify([conversation, sent.id]);
  };

  /**
   * The owner's account in a conversation: a full member of the tenant whose e-mail is the
   * owner's, the account that would count as the owner's were it a reviewer's. Asked first by
   * the e-mail as user principal name (one call, right wherever UPNs are e-mails); else the
   * conversation's members are read, page by page, for one with that e-mail, since many
   * tenants give people a UPN of their own (`alice@corp.onmicrosoft.com`). A UPN alone is no
   * proof: one given up in a rename can be given to someone else.
   */
  const findOwner = async (
    conversation: string,
    owner: string,
    stopping?: AbortSignal,
  ): Promise<(Member & { id: string }) | undefined> => {
    const isOwner = (member: Member & { id?: string }): member is Member & { id: string } =>
      !!member.id &&
      fullMember(member) &&
      member.email !== undefined &&
      emailKey(member.email) === owner.toLowerCase();
    try {
      const member = await call("getConversationMember", (client, options) =>
        client.conversations.getConversationMember(conversation, owner, options),
      );
      if (isOwner(member)) return member;
    } catch (error) {
      if (!(error instanceof ChannelUnavailable && error.status === 404)) throw error;
    }
    let continuationToken: string | undefined;
    for (let page = 0; page < OWNER_SEARCH_PAGES; page++) {
      // Up to twenty calls of ten seconds each: a stop does not wait for the rest (the notice
      // is made again after it).
      if (stopping?.aborted)
        throw new ChannelUnavailable("the gateway stopped while looking for the owner");
      let result: { members?: unknown[]; continuationToken?: string };
      try {
        result = await call("getConversationPagedMembers", (client, options) =>
          client.conversations.getConversationPagedMembers(conversation, {
            ...options,
            pageSize: MEMBERS_PAGE_SIZE,
            // Typed as required, yet the first page has none: the SDK leaves it out then.
            continuationToken: continuationToken as string,
          }),
        );
      } catch (error) {
        // The bot is not in that conversation (any more): nobody there to tell.
        if (error instanceof ChannelUnavailable && error.status === 404) return undefined;
        throw error;
      }
      const found = (result.members as (Member & { id?: string })[] | undefined)?.find(isOwner);
      if (found) return found;
      continuationToken = result.continuationToken;
      if (!continuationToken) return undefined;
    }
    logger.info(
      { pages: OWNER_SEARCH_PAGES },
      "stopped looking for the agent's owner among the conversation's members",
    );
    return undefined;
  };

  /** The outcome, to the agent's owner in a one-to-one chat (an owner not found is not told). */
  const notifyOwner = async (
    { request: view }: ChannelNotice,
    stopping?: AbortSignal,
  ): Promise<void> => {
    const conversation = view.review?.teamsConversation ?? config.conversation;
    const member = await findOwner(conversation, view.agent.owner, stopping);
    if (!member) {
      logger.info({ requestId: view.id }, "the agent's owner is not a member Teams could tell");
      return;
    }
    const chat = await call("createConversation", (client, options) =>
      client.conversations.createConversation(
        {
          isGroup: false,
          bot: { id: `28:${config.appId}`, name: "Airlock" },
          members: [{ id: member.id, name: "" }],
          tenantId: config.tenantId,
          channelData: { tenant: { id: config.tenantId } },
        } as ConversationParameters,
        options,
      ),
    );
    await call("sendToConversation", (client, options) =>
      client.conversations.sendToConversation(
        chat.id,
        {
          type: "message",
          textFormat: "plain",
          text: `Your agent ${view.agent.name}'s request ${view.id}: ${statusLine(view)}`,
        } as Activity,
        options,
      ),
    );
  };

  /** A plain-text reply in the card's thread, never read as markdown. */
  const reply = (conversation: string, id: string, text: string) =>
    call("replyToActivity", (client, options) =>
      client.conversations.replyToActivity(
        conversation,
        id,
        { type: "message", textFormat: "plain", text } as Activity,
        options,
      ),
    );

  /** A 404 on the card: it was deleted, and every later call on it would find it gone too. */
  const gone = (error: unknown): unknown =>
    error instanceof ChannelUnavailable && error.status === 404
      ? new ChannelUnavailable(`${error.message} (the card is gone)`, {
          status: 404,
          permanent: true,
        })
      : error;

  const update = async (ref: string, notice: ChannelNotice): Promise<void> => {
    const { conversation, id } = parseRef(ref);
    if (notice.event === "remind") {
      if (notice.request.status === "pending") {
        await reply(conversation, id, reminderText(notice.request, storeTime())).catch(
          (error: unknown) => {
            throw gone(error);
          },
        );
      }
      return;
    }
    if (notice.event === "escalate") return;
    await call("updateActivity", (client, options) =>
      client.conversations.updateActivity(
        conversation,
        id,
        { ...message(notice), id } as Activity,
        options,
      ),
    ).catch((error: unknown) => {
      throw gone(error);
    });
    // A reply in the card's thread tells its followers.
    if (notice.event === "resolved") {
      await reply(conversation, id, `${notice.request.id}: ${statusLine(notice.request)}`);
    }
  };

  /**
   * The member's e-mail and Entra account, as Teams looked them up (cached for
   * `userCacheTtl`). Only a full member with an e-mail, and the Entra account the click named,
   * maps to anyone, and not by an e-mail that only lowercasing makes a reviewer's (emailKey);
   * a refusal is not cached, so a fixed account works at its next click.
   */
  const emailOf = async (
    vote: Vote,
    fresh: boolean,
    deadlineMs: number,
  ): Promise<{ email: string; aadObjectId: string | undefined } | undefined> => {
    const cached = fresh ? undefined : members.get(vote.user, clock());
    // Remembered for the Entra account that was checked, not for any the click may name.
    if (cached && (vote.aadObjectId === undefined || cached.aadObjectId === vote.aadObjectId)) {
      return cached;
    }
    const member = (await call(
      "getConversationMember",
      (client, options) =>
        client.conversations.getConversationMember(vote.conversation, vote.user, options),
      deadlineMs,
    )) as Member;
    const email =
      fullMember(member) &&
      (vote.aadObjectId === undefined || member.aadObjectId === vote.aadObjectId) &&
      typeof member.email === "string" &&
      member.email.includes("@")
        ? emailKey(member.email)
        : undefined;
    if (!email) {
      members.delete(vote.user);
      return undefined;
    }
    const found = { email, aadObjectId: member.aadObjectId };
    members.set(vote.user, found, clock() + config.userCacheTtl);
    return found;
  };

  const postedHere = postedPlaceCheck({
    channel: TEAMS_CHANNEL,
    postedRef: deps.postedRef,
    // A card posted to a thread (a conversation id with `;messageid=`, as a rule may name one)
    // is clicked in its channel's conversation too.
    placeOf: (ref) => channelOf(parseRef(ref).conversation),
    logger,
    refused: "refused a Teams click from a conversation the request's card was not posted in",
  });

  /**
   * Why Teams may not judge the request at all, whoever clicked (told only to a reviewer), or
   * undefined. A request its rule keeps out of Teams is not Teams' to judge in any way: a
   * reviewer is told where it is decided before its box or its card is looked at.
   */
  const requestRefusal = (view: ChannelView | undefined): string | undefined => {
    const elsewhere = channelRefusal(view?.review, TEAMS_CHANNEL);
    return elsewhere ? refusalText(elsewhere.code, elsewhere.message) : undefined;
  };

  /**
   * Why a click from where the request's card was posted would still be refused, or undefined.
   * What the card offered is checked against the request itself: a click's data is the
   * client's to write, not the card's. A request out of review is refused by the vote itself
   * ("no longer waiting"); step-up approvals by the review rules, in their own words (their
   * card has no box to tick either).
   */
  const offerRefusal = (vote: Vote, view: ChannelView | undefined): string | undefined => {
    if (vote.decision === "approve" && view?.status === "pending" && !view.review?.stepUp) {
      if (!requestCard(view).approvable) return refusalText("not_shown_whole", "");
      if (confirmedRisks.has(view.risk.level) && !vote.confirmed) {
        return refusalText("unconfirmed", "");
      }
    }
    return undefined;
  };

  /** Decides a click; returns what the person who clicked is told. */
  const decideVote = async (
    vote: Vote,
    decide: DecisionSink,
    read: ViewReader,
    /** When the click arrived (performance.now()). */
    arrived: number,
  ): Promise<string> => {
    const view = await read(vote.requestId);
    const outOfTeams = requestRefusal(view);
    const notOffered = offerRefusal(vote, view);
    // Who clicked comes first: someone who maps to no reviewer (a guest, another tenant's
    // member) is told only that, whatever the click names, and so learns nothing of the
    // request (that it exists, where it is decided, its risk). A click that may cast a vote
    // asks Teams again, whatever the cache holds: a removed account must neither approve nor
    // deny (a deny ends the request for good, and its evidence says that Teams vouched for
    // the account at the click). The words of a refusal take the cache.
    let account: { email: string; aadObjectId: string | undefined } | undefined;
    try {
      account = await emailOf(vote, !outOfTeams && !notOffered, lookupDeadline(arrived));
    } catch (error) {
      // Not a member of the conversation: nobody Airlock knows, not a passing failure.
      if (error instanceof ChannelUnavailable && error.status === 404) {
        return refusalText("not_mapped", "");
      }
      logger.warn({ err: error }, "could not look up a Teams member");
      return refusalText("lookup_failed", "");
    }
    const reviewer = account === undefined ? undefined : deps.reviewer(account.email);
    if (!account || !reviewer) return refusalText("not_mapped", "");
    if (outOfTeams) return outOfTeams;
    // A click counts only from the conversation the request's card was posted to. Where the
    // card went is read only now that a reviewer clicked: a stranger's click costs no read of
    // it (a reviewer's vote from elsewhere so asks Teams again, the place not yet known).
    if (view && !(await postedHere(vote.requestId, vote.postedIn, { teamsUser: vote.user }))) {
      return refusalText("not_posted_here", "");
    }
    if (notOffered) return notOffered;
    try {
      await decide({
        requestId: vote.requestId,
        reviewer: {
          email: reviewer.email,
          groups: reviewer.groups,
          evidence: {
            method: "teams",
            teamsUser: vote.user,
            // As Teams looked the member up: a click need not name it, and each person counts
            // once by it, whatever address they vote under.
            aadObjectId: account.aadObjectId ?? null,
            tenantId: config.tenantId,
            verifiedEmail: account.email,
            token: "bot-framework-jwt",
          },
        },
        decision: vote.decision,
        comment: vote.comment,
      });
    } catch (error) {
      if (!(error instanceof AirlockError)) throw error;
      // A fault's details are in its cause, and what the store said in its message: for the
      // log, not the person who clicked.
      if (error.code === "internal" || error.code === "store_unavailable")
        logger.error({ err: error }, "a Teams vote was not recorded");
      return refusalText(error.code, callerMessage(error));
    }
    return vote.decision === "approve"
      ? `Approved, recorded as ${reviewer.email}.`
      : `Denied, recorded as ${reviewer.email}. A deny is final: the request will not run.`;
  };

  const routes = (app: FastifyInstance, decide: DecisionSink, read: ViewReader): void => {
    app.post("/integrations/teams/messages", async (request, reply) => {
      const arrived = performance.now();
      const activity = (request.body ?? {}) as Partial<Activity>;
      if (typeof activity !== "object" || Array.isArray(activity)) {
        throw new AirlockError("invalid_request", "body: not a Bot Framework activity", {
          field: "body",
        });
      }
      const authorization = request.headers.authorization ?? "";
      const problem = await bot.verify(activity, authorization);
      if (problem) {
        logger.warn({ problem }, "refused a Teams activity");
        throw new AirlockError("unauthenticated", problem);
      }
      if (activity.type === "conversationUpdate") {
        // How an operator learns the conversation id to configure: Teams says it here.
        logger.info(
          { conversation: activity.conversation?.id, serviceUrl: activity.serviceUrl },
          "the Teams bot was added to or changed in a conversation",
        );
      }
      if (activity.type !== "invoke" || activity.name !== "adaptiveCard/action") {
        return reply.code(200).send({});
      }
      const answer = (text: string) =>
        reply.code(200).send({
          statusCode: 200,
          type: "application/vnd.microsoft.activity.message",
          value: text,
        });
      const tenant = activity.conversation?.tenantId ?? activity.channelData?.tenant?.id;
      if (tenant !== config.tenantId) return answer(refusalText("not_mapped", ""));
      const vote = readVote(activity);
      if (!vote) return answer("Airlock does not know this button; nothing was recorded.");
      if (!activity.id) {
        throw new AirlockError(
          "invalid_request",
          "id: the activity has none, so a resend of it could not be told from the click",
          { field: "id" },
        );
      }
      const claimed = await deps.claimOnce(
        `teams:${activity.id}`,
        acceptedUntil(authorization, clock()),
        clock(),
      );
      if (!claimed) {
        // Teams sends an invoke again (the same activity id) when its answer was late or lost.
        // The click counted once; the resend gets the answer the click got, when this replica
        // gave it, else word that it is in: an error would show the person a failure, and
        // Teams might send it once more.
        logger.info({ activityId: activity.id }, "Teams sent a click again; it counts once");
        return answer(
          (await answered.get(activity.id, clock())) ?? refusalText("already_received", ""),
        );
      }
      const answering = decideVote(vote, decide, read, arrived);
      // A resend waits for the click's own answer, which may fail: it then gets the word.
      answered.set(
        activity.id,
        answering.catch(() => refusalText("already_received", "")),
        clock() + ANSWER_KEPT_MS,
      );
      return answer(await answering);
    });
  };

  const schedule = (request: ActionRequest) => {
    if (config.remindBefore === undefined || request.expiresAt === null) return [];
    const at = request.expiresAt - config.remindBefore;
    return at > request.createdAt ? [{ event: "remind" as const, at }] : [];
  };

  return {
    name: TEAMS_CHANNEL,
    post,
    update,
    notifyOwner: config.notifyOwner ? notifyOwner : undefined,
    schedule,
    routes,
  };
}

/** A channel's thread is named by the channel's conversation id and `;messageid=<root>`. */
function channelOf(conversation: string): string {
  return conversation.split(";")[0]!;
}

/** An Action.Execute click on one of Airlock's cards, with the card's inputs merged into its data. */
function readVote(activity: Partial<Activity>): Vote | undefined {
  const action = (activity.value as { action?: { type?: unknown; verb?: unknown; data?: unknown } })
    ?.action;
  if (action?.type !== "Action.Execute") return undefined;
  const decision =
    action.verb === verbs.approve ? "approve" : action.verb === verbs.deny ? "deny" : undefined;
  const data = (action.data ?? {}) as Record<string, unknown>;
  // Signed by Microsoft, yet read as any client's JSON: a field of another type is no click.
  const text = (value: unknown) => (typeof value === "string" && value ? value : undefined);
  const user = text(activity.from?.id);
  const id = text(activity.conversation?.id);
  // In a team's channel, members are looked up in the team (as the SDK's TeamsInfo does): the
  // conversation id there names one thread.
  const team = (activity.channelData as { team?: { id?: unknown } } | undefined)?.team?.id;
  const conversation = text(team) ?? id;
  // A card posted to a channel starts a thread, whose conversation id names its first message.
  const postedIn = id && channelOf(id);
  if (!decision || !user || !conversation || !postedIn || typeof data.requestId !== "string") {
    return undefined;
  }
  return {
    user,
    aadObjectId: activity.from?.aadObjectId,
    conversation,
    postedIn,
    requestId: data.requestId,
    decision,
    comment: typeof data.comment === "string" ? truncateText(data.comment, 2000) : "",
    confirmed: data.confirm === "yes",
  };
}
