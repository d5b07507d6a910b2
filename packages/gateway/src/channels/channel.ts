/**
 * The seam to the places people decide (Slack, Teams, webhooks). A channel is told about
 * committed changes through the outbox, posts one message per request, updates it in place
 * after each vote and at the end, and may receive decisions through its own routes.
 */
import type { FastifyInstance } from "fastify";
import type { Logger } from "../observability/logger.js";
import type { Reviewer } from "../requests/request-transitions.js";
import type { ActionRequest, NotificationEvent, RequestStatus } from "../requests/request-types.js";
import type { ReviewerView } from "../requests/request-views.js";

/** The request as a channel may show it: the reviewer view, masked, without a viewer. */
export type ChannelView = Omit<ReviewerView, "you">;

/**
 * What a channel is told. Approval channels hear `requested`, `reviewed` and `resolved`;
 * channels that follow every change hear the state each change left (`request.pending`,
 * `request.approved`, …, and `request.reviewed` for a vote that did not end the review).
 */
export type ChannelEvent = NotificationEvent | StateEvent | ScheduledEvent | OwnerEvent;
/** Written ahead at the request's start, delivered at their time: reminders, escalations. */
export type ScheduledEvent = "remind" | "escalate";
export type StateEvent = `request.${RequestStatus}` | "request.reviewed";
/** The outcome, for the agent's owner in a message of their own (`Channel.notifyOwner`). */
export type OwnerEvent = "owner";

export interface ChannelNotice {
  event: ChannelEvent;
  /** The request as it is now; for a state event, as that change left it. */
  request: ChannelView;
  /** The request's version after the change announced (for receivers to order and dedupe). */
  version: number;
}

/** Records a decision that arrived through a channel, under the same rules as the API. */
export type DecisionSink = (args: {
  requestId: string;
  reviewer: Reviewer;
  decision: "approve" | "deny";
  comment: string;
}) => Promise<unknown>;

/** True the first time `key` is offered, false while an earlier offer has not expired. */
export type ClaimOnce = (key: string, expiresAt: number, now: number) => Promise<boolean>;

/** What a chat channel (Slack, Teams) that receives clicks needs from the gateway. */
export interface ChatChannelDeps {
  logger: Logger;
  /** Records an accepted click, so that a replay is refused on any replica. */
  claimOnce: ClaimOnce;
  /** The configured reviewer with this e-mail, if any. */
  reviewer: (email: string) => { email: string; groups: readonly string[] } | undefined;
  /**
   * Where `channel` posted the request's message (what its `post` returned), once it has: a
   * chat that can tell where a click came from takes it only from there. A post this process
   * has under way is waited for (a click can come before where it went is recorded).
   */
  postedRef: (requestId: string, channel: string) => Promise<string | undefined>;
  /**
   * This process's clock (default Date.now): what a message's signed time and the channel's
   * own caches are judged by, between it and the chat service.
   */
  clock?: () => number;
  /**
   * The store's time (Store.now; default `clock`), which stamped the requests' times: what
   * a reminder counts the time left until a request's expiry from.
   */
  storeTime?: () => number;
}

/**
 * The request as channels show it, for a channel that must check what its message offered
 * (and, first, whether its rule's `review.channels` lets that channel judge it at all).
 */
export type ViewReader = (requestId: string) => Promise<ChannelView | undefined>;

export interface Channel {
  readonly name: string;
  /**
   * Which requests it follows: "reviews" (the default) only those a rule sent to review,
   * as approval channels do; "all" every change of every request, as webhooks do, each
   * with the request as that change left it.
   */
  readonly follows?: "reviews" | "all";
  /** For channels that follow all: the state events wanted (all when absent). */
  readonly events?: readonly StateEvent[];
  /** Events to deliver later for a new pending request, e.g. a reminder before it expires. */
  schedule?(request: ActionRequest): { event: ScheduledEvent; at: number }[];
  /** Whether this channel wants to hear about a request (a rule may name its channels). */
  accepts?(view: ChannelView): boolean;
  /**
   * Posts the first message for a request; returns where it went, for later updates.
   * `stopping` aborts when the gateway stops: a channel whose delivery is safe to make again
   * (a webhook's, which receivers drop as a repeat) gives up on it then, and the outbox makes
   * it again after the restart; one that would post twice lets its own timeout run.
   */
  post(notice: ChannelNotice, stopping?: AbortSignal): Promise<string | undefined>;
  /** Updates the message at `ref` after a vote or at the end (`stopping`: as for `post`). */
  update(ref: string, notice: ChannelNotice, stopping?: AbortSignal): Promise<void>;
  /**
   * Tells the agent's owner the outcome, when the channel is set to. It is an outbox entry of
   * its own, after the one that updates the card: retried on its own, it is neither lost when
   * the card is gone nor sent twice when the card's update is retried.
   */
  notifyOwner?(notice: ChannelNotice, stopping?: AbortSignal): Promise<void>;
  /**
   * Waits for the decisions it acknowledged but has not recorded yet (a Slack click is
   * answered at once and recorded right after): a stop calls it once no more arrive.
   */
  settle?(): Promise<void>;
  /** Mounts the routes that receive decisions from this channel. */
  routes?(app: FastifyInstance, decide: DecisionSink, read: ViewReader): void;
  close?(): Promise<void>;
}

/** A channel that posts requests for a decision (the ones a rule's `review.channels` names). */
export function isApprovalChannel(channel: Pick<Channel, "follows">): boolean {
  return channel.follows !== "all";
}

/** A delivery that failed; the outbox tries it again later unless it is `permanent`. */
export class ChannelUnavailable extends Error {
  /** When the service said to come back, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The HTTP status the service answered, when it answered. */
  readonly status: number | undefined;
  /**
   * Refused for good (the message is gone, or the service cannot take it): trying the same
   * delivery again would only fail again, and hold up the request's later messages.
   */
  readonly permanent: boolean;

  constructor(
    message: string,
    options: { retryAfterMs?: number | undefined; status?: number; permanent?: boolean } = {},
  ) {
    super(message);
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
    this.permanent = options.permanent ?? false;
  }
}
