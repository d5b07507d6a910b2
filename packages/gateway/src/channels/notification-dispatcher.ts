/**
 * Delivers outbox entries to channels. The entries were written in the same transaction as
 * the change they announce, so a crash never loses one and none exists for a change that
 * did not commit. Failures are retried with backoff, then kept as dead letters.
 */

import { AirlockError, errorMessage } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { ActionRequest, Change } from "../requests/request-types.js";
import type { OutboxEntry, OutboxItem, Store } from "../store/store.js";
import {
  type Channel,
  type ChannelNotice,
  ChannelUnavailable,
  type ChannelView,
  isApprovalChannel,
  type OwnerEvent,
  type StateEvent,
} from "./channel.js";

const TOPIC_PREFIX = "channel:";

/** The outbox topic of a channel's deliveries. */
export const channelTopic = (channel: string): string => TOPIC_PREFIX + channel;
/** The channel an outbox topic delivers to (the topic itself when it is no channel's). */
export const topicChannel = (topic: string): string =>
  topic.startsWith(TOPIC_PREFIX) ? topic.slice(TOPIC_PREFIX.length) : topic;
/**
 * How long a claimed entry is this replica's. Longer than any delivery can take (a webhook
 * may wait a minute; a Slack resolution makes several calls): another replica takes it over
 * only after this, so a replica that died holds its requests' deliveries up for as long.
 */
const LEASE_MS = 5 * 60_000;

/**
 * How long an entry for a channel this process lacks may wait, untouched, for a replica that
 * has it (during a rolling config change, say) before it is given up as a dead letter.
 */
const UNCLAIMED_MS = 24 * 3_600_000;

export interface DispatcherOptions {
  store: Store;
  channels: readonly Channel[];
  /** The masked view of a request that channels may show. */
  view: (requestId: string) => Promise<ChannelView | undefined>;
  /** The same view of a request in hand: what channels that follow all are sent, as of the change. */
  snapshot: (request: ActionRequest) => ChannelView;
  logger: Logger;
  metrics: Metrics;
  clock: () => number;
  maxAttempts?: number;
  /** Delay before attempt n+1, in ms. */
  backoff?: (attempt: number) => number;
  pollInterval?: number;
}

export interface Dispatcher {
  /** The outbox entries a committed change needs: one per interested channel and event. */
  plan(change: Change): OutboxEntry[];
  /** Delivers what is due now; called after commits and on a timer. */
  kick(): void;
  start(): void;
  /** Resolves when nothing is being delivered. */
  idle(): Promise<void>;
  /**
   * While this process posts a request's first message to `channel`: settles once where it
   * went is recorded, or the post failed (it never rejects). Undefined when no such post is
   * under way here.
   */
  posting(requestId: string, channel: string): Promise<void> | undefined;
  stop(): Promise<void>;
}

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { store, channels, logger, metrics, clock } = options;
  const maxAttempts = options.maxAttempts ?? 12;
  const backoff = options.backoff ?? ((attempt) => Math.min(300_000, 1000 * 2 ** (attempt - 1)));
  const byName = new Map(channels.map((c) => [c.name, c]));
  const topics = channels.map((c) => channelTopic(c.name));
  let running: Promise<void> | undefined;
  let again = false;
  /** The topics with deliveries under way, and those deliveries. */
  const busy = new Set<string>();
  const sending = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let unclaimedTimer: NodeJS.Timeout | undefined;
  let abandoning: Promise<void> | undefined;
  let stopped = false;
  /** The first posts under way, by request and channel, until where they went is recorded. */
  const firstPosts = new Map<string, Promise<void>>();
  const postKey = (requestId: string, channel: string) => JSON.stringify([requestId, channel]);
  // Aborted at the stop: a delivery that can be made again gives up (see Channel.post).
  const stopping = new AbortController();

  const approvalChannels = channels.filter(isApprovalChannel);
  const followers = channels.filter((c) => !isApprovalChannel(c));

  const plan = (change: Change): OutboxEntry[] => {
    if (channels.length === 0) return [];
    const request = change.request;
    const entries: OutboxEntry[] = [];
    const wanted = request.decision.review?.channels;
    if (request.decision.decision === "review") {
      for (const notification of change.notifications) {
        for (const channel of approvalChannels) {
          if (wanted && !wanted.includes(channel.name)) continue;
          entries.push({
            topic: channelTopic(channel.name),
            requestId: notification.requestId,
            payload: { event: notification.event, version: request.version },
          });
          if (notification.event === "resolved" && channel.notifyOwner) {
            entries.push({
              topic: channelTopic(channel.name),
              requestId: notification.requestId,
              payload: { event: "owner" satisfies OwnerEvent, version: request.version },
            });
          }
          if (notification.event !== "requested" || !channel.schedule) continue;
          for (const { event, at } of channel.schedule(request)) {
            entries.push({
              topic: channelTopic(channel.name),
              requestId: request.id,
              payload: { event, version: request.version },
              availableAt: at,
            });
          }
        }
      }
    }
    if (followers.length > 0) {
      const event = stateEvent(change);
      let view: ChannelView | undefined;
      for (const channel of followers) {
        if (channel.events && !channel.events.includes(event)) continue;
        view ??= options.snapshot(request);
        entries.push({
          topic: channelTopic(channel.name),
          requestId: request.id,
          payload: { event, version: request.version, view },
        });
      }
    }
    return entries;
  };

  /**
   * A claimed entry the stop left undelivered, due again at once: another replica, or this
   * one once it is back, delivers it, rather than after the claim's lease (minutes). Nothing
   * was given up: one whose reason the store refuses is handed back all the same.
   */
  const release = (item: OutboxItem, why: string): Promise<void> =>
    recordFailure(item, why, 0, {
      error:
        "cut short by a stop of the gateway; the store refused to record why, and the gateway's log has it",
      retryInMs: 0,
      logged:
        "the store refused to record why a delivery was handed back at the stop; handing it back without it",
    });

  const deliver = async (item: OutboxItem): Promise<void> => {
    const channel = byName.get(item.topic.slice(TOPIC_PREFIX.length));
    if (!channel || !item.topic.startsWith(TOPIC_PREFIX) || item.requestId === null) {
      await store.failOutbox(clock(), item.id, `no channel handles topic ${item.topic}`, null);
      return;
    }
    try {
      // A change's own snapshot when the entry carries one, else the request as it is now.
      const view =
        (item.payload.view as ChannelView | undefined) ?? (await options.view(item.requestId));
      if (!view) throw new Error(`request ${item.requestId} is gone`);
      if (channel.accepts && !channel.accepts(view)) {
        await store.completeOutbox(item.id);
        return;
      }
      const notice: ChannelNotice = {
        event: item.payload.event as ChannelNotice["event"],
        request: view,
        version: item.payload.version as number,
      };
      if (notice.event === "owner") {
        // Needs no card: the owner is written to apart from it.
        await channel.notifyOwner?.(notice, stopping.signal);
        await store.completeOutbox(item.id);
        return;
      }
      const ref = await store.getChannelRef(item.requestId, channel.name);
      if (ref === undefined) {
        const requestId = item.requestId;
        const posting = (async () => {
          const posted = await channel.post(notice, stopping.signal);
          if (posted !== undefined) await store.setChannelRef(requestId, channel.name, posted);
          return posted;
        })();
        // A click on the message can come as soon as the chat has it, before where it went
        // is recorded: the chat's click handler waits for this (see `posting`).
        const key = postKey(requestId, channel.name);
        firstPosts.set(
          key,
          posting.then(
            () => undefined,
            () => undefined,
          ),
        );
        let posted: string | undefined;
        try {
          posted = await posting;
        } finally {
          firstPosts.delete(key);
        }
        // The first message went out with a later event (the one for `requested` failed for
        // good): what the event itself does (an outcome in the thread) still happens.
        if (posted !== undefined && notice.event !== "requested") {
          await channel.update(posted, notice, stopping.signal);
        }
      } else {
        await channel.update(ref, notice, stopping.signal);
      }
      await store.completeOutbox(item.id);
    } catch (error) {
      const message = errorMessage(error);
      if (stopping.signal.aborted) {
        logger.info(
          { topic: item.topic, requestId: item.requestId, err: message },
          "delivery cut short by the stop; it is made again after it",
        );
        await release(item, `cut short by a stop of the gateway: ${message}`);
        return;
      }
      metrics.outboxFailures.inc({ topic: item.topic });
      // The store refusing what the delivery records (not being down) refuses it again.
      const fault = error instanceof AirlockError && error.code === "internal";
      const refused = (error instanceof ChannelUnavailable && error.permanent) || fault;
      const dead = refused || item.attempts >= maxAttempts;
      // A channel that was told when to come back (Slack's Retry-After) is not asked sooner.
      const after = (error as { retryAfterMs?: unknown } | null)?.retryAfterMs;
      const wait = Math.max(backoff(item.attempts), typeof after === "number" ? after : 0);
      logger.warn(
        {
          topic: item.topic,
          requestId: item.requestId,
          attempt: item.attempts,
          // A fault's details are in its cause, which only the log gets.
          err: fault ? error : message,
        },
        refused
          ? "delivery refused for good; kept as a dead letter"
          : dead
            ? "delivery failed for good; kept as a dead letter"
            : "delivery failed; will retry",
      );
      await recordFailure(item, message, dead ? null : wait);
    }
  };

  /**
   * Records a failed delivery. One the store refuses to record (not for being down: the
   * failure's text, say, which may quote anything a receiver answered and holds a NUL that
   * PostgreSQL refuses) would stay claimed, come round again when its lease ends, be delivered
   * and refused alike, every 5 minutes for good: it is recorded `instead` (by default kept as
   * a dead letter, for an operator to look at and redeliver), with a text of ours. The log
   * has the failure's own.
   */
  const recordFailure = async (
    item: OutboxItem,
    message: string,
    retryInMs: number | null,
    instead: { error: string; retryInMs: number | null; logged: string } = {
      error:
        "the delivery failed, and the store refused to record the failure; the gateway's log has it",
      retryInMs: null,
      logged:
        "the store refused to record a failed delivery; keeping it as a dead letter without its error",
    },
  ): Promise<void> => {
    try {
      await store.failOutbox(clock(), item.id, message, retryInMs);
      return;
    } catch (error) {
      if (!(error instanceof AirlockError && error.code === "internal")) {
        logger.error({ err: error }, "could not record a failed delivery");
        return;
      }
      logger.error({ topic: item.topic, requestId: item.requestId, err: error }, instead.logged);
    }
    await store
      .failOutbox(clock(), item.id, instead.error, instead.retryInMs)
      .catch((e) =>
        logger.error(
          { topic: item.topic, requestId: item.requestId, err: e },
          "could not record it with a text of ours either; it is tried again when its claim runs out",
        ),
      );
  };

  /** One channel's claimed entries: one request's in order, requests side by side. */
  const deliverAll = async (items: readonly OutboxItem[]): Promise<void> => {
    const byRequest = new Map<string, OutboxItem[]>();
    for (const item of items) {
      const key = item.requestId ?? `#${item.id}`;
      byRequest.set(key, [...(byRequest.get(key) ?? []), item]);
    }
    await Promise.all(
      [...byRequest.values()].map(async (group) => {
        // A group's failure is its own: thrown on, it would end the wait for the others still
        // under way, and the channel would count as free, and a stop as done, before them.
        try {
          // None begun once stopping: each would hold the stop for as long as it can take.
          for (const item of group) {
            if (stopped) await release(item, "not delivered: the gateway stopped first");
            else await deliver(item);
          }
        } catch (error) {
          logger.error({ err: error }, "could not deliver from the outbox");
        }
      }),
    );
  };

  const drain = async (): Promise<void> => {
    do {
      again = false;
      // A channel still busy with its last entries is not given more: the rest are claimed
      // without it, so that a slow channel (a webhook receiver holding the connection until
      // its timeout, a Bot Connector slow to answer) holds up only its own messages.
      const free = topics.filter((topic) => !busy.has(topic));
      if (free.length === 0) return;
      let items: OutboxItem[];
      try {
        items = await store.claimOutbox(clock(), LEASE_MS, 50, free);
      } catch (error) {
        logger.warn({ err: error }, "could not read the outbox; will retry");
        return;
      }
      // One request's messages for a channel go in order (the store hands out one at a time
      // per request and channel); channels and requests run side by side.
      const byTopic = new Map<string, OutboxItem[]>();
      for (const item of items) byTopic.set(item.topic, [...(byTopic.get(item.topic) ?? []), item]);
      for (const [topic, batch] of byTopic) {
        busy.add(topic);
        const delivering: Promise<void> = deliverAll(batch)
          .catch((error) => logger.error({ err: error }, "could not deliver from the outbox"))
          .finally(() => {
            busy.delete(topic);
            sending.delete(delivering);
            // What waited behind the entries just delivered may go now.
            kick();
          });
        sending.add(delivering);
      }
      // Other channels may have more waiting.
      if (items.length > 0) again = true;
    } while (again && !stopped);
  };

  /** Resolves once nothing is being claimed or delivered. */
  const settled = async (): Promise<void> => {
    while (running || sending.size > 0) await Promise.all([running, ...sending]);
  };

  /** Entries for channels no process has: given up once they have waited long enough. */
  const abandon = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    abandoning ??= giveUp().finally(() => {
      abandoning = undefined;
    });
    return abandoning;
  };
  const giveUp = async (): Promise<void> => {
    try {
      const given = await store.abandonOutbox(
        clock(),
        UNCLAIMED_MS,
        topics,
        `no gateway delivered it within ${UNCLAIMED_MS / 3_600_000} h: none has this channel configured`,
      );
      if (given > 0) {
        logger.warn(
          { entries: given },
          "gave up on notifications for channels no gateway has configured; kept as dead letters",
        );
      }
    } catch (error) {
      logger.warn({ err: error }, "could not look for notifications nobody can deliver");
    }
  };

  const kick = () => {
    if (stopped || channels.length === 0) return;
    if (running) {
      again = true;
      return;
    }
    running = drain().finally(() => {
      running = undefined;
      if (again && !stopped) kick();
    });
  };

  return {
    plan,
    kick,
    posting: (requestId, channel) => firstPosts.get(postKey(requestId, channel)),
    start() {
      if (stopped) return;
      // Also without channels: entries left by channels since removed are given up.
      unclaimedTimer = setInterval(() => void abandon(), 3_600_000);
      unclaimedTimer.unref();
      void abandon();
      if (channels.length === 0) return;
      timer = setInterval(kick, options.pollInterval ?? 1000);
      timer.unref();
      kick();
    },
    async idle() {
      await settled();
      await abandoning;
    },
    async stop() {
      stopped = true;
      stopping.abort();
      if (timer) clearInterval(timer);
      if (unclaimedTimer) clearInterval(unclaimedTimer);
      await abandoning;
      await settled();
    },
  };
}

/** The state a change left the request in; a vote that did not end the review is `reviewed`. */
export function stateEvent(change: Change): StateEvent {
  if (change.review && change.request.status === "pending") return "request.reviewed";
  return `request.${change.request.status}`;
}
