/** The channels a config asks for, built once at start. */
import { createHash } from "node:crypto";
import type { ParsedConfig } from "../config/config-schema.js";
import type { Redactor } from "../masking/secret-redactor.js";
import type { Logger } from "../observability/logger.js";
import type { Channel, ChatChannelDeps, ClaimOnce } from "./channel.js";
import { createSlackChannel, SLACK_CHANNEL } from "./slack/slack-channel.js";
import { createTeamsChannel, TEAMS_CHANNEL } from "./teams/teams-channel.js";
import { createWebhookChannel } from "./webhook/webhook-channel.js";

export function configuredChannels(
  config: ParsedConfig,
  deps: {
    logger: Logger;
    redactor: Redactor;
    claimOnce: ClaimOnce;
    /** A configured reviewer, as the config is now (it may be reloaded). */
    reviewer: ChatChannelDeps["reviewer"];
    postedRef: ChatChannelDeps["postedRef"];
    clock?: () => number;
    storeTime?: () => number;
  },
): Channel[] {
  const names = webhookNames(config.channels.webhooks);
  const channels = config.channels.webhooks.map((webhook, index) =>
    createWebhookChannel(names[index]!, webhook, deps),
  );
  const chat: ChatChannelDeps = {
    logger: deps.logger,
    claimOnce: deps.claimOnce,
    reviewer: deps.reviewer,
    postedRef: deps.postedRef,
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.storeTime ? { storeTime: deps.storeTime } : {}),
  };
  const { slack, teams } = config.channels;
  if (slack) channels.push(createSlackChannel(slack, chat));
  if (teams) channels.push(createTeamsChannel(teams, chat));
  return channels;
}

/**
 * Each webhook's name, under which its outbox entries wait: the configured one, else one made
 * from its URL, so that reordering the list never hands a queued delivery to another receiver
 * (a name by position would). The same URL twice is told apart by order.
 */
export function webhookNames(webhooks: readonly { url: string; name?: string | undefined }[]) {
  const seen = new Map<string, number>();
  return webhooks.map((webhook) => {
    if (webhook.name !== undefined) return webhook.name;
    const base = `webhook-${createHash("sha256").update(webhook.url).digest("hex").slice(0, 8)}`;
    const count = (seen.get(base) ?? 0) + 1;
    seen.set(base, count);
    return count === 1 ? base : `${base}-${count}`;
  });
}

/** The configured channels that post requests for a decision (`review.channels` names them). */
export function approvalChannelNames(config: ParsedConfig): string[] {
  return [
    ...(config.channels.slack ? [SLACK_CHANNEL] : []),
    ...(config.channels.teams ? [TEAMS_CHANNEL] : []),
  ];
}

/** Credentials in the channels' config, to be scrubbed wherever they might surface. */
export function channelSecrets(config: ParsedConfig): string[] {
  const slack = config.channels.slack;
  return [
    ...config.channels.webhooks.map((webhook) => webhook.secret),
    ...(slack ? [slack.botToken, slack.signingSecret] : []),
    ...(config.channels.teams ? [config.channels.teams.appPassword] : []),
  ];
}
