/** The channels a config asks for, built once at start. */
import type { ParsedConfig } from "../config/config-schema.js";
import type { Redactor } from "../masking/secret-redactor.js";
import type { Logger } from "../observability/logger.js";
import type { Channel } from "./channel.js";
import { createWebhookChannel } from "./webhook/webhook-channel.js";

export function configuredChannels(
  config: ParsedConfig,
  deps: { logger: Logger; redactor: Redactor },
): Channel[] {
  return config.channels.webhooks.map((webhook, index) =>
    createWebhookChannel(webhook.name ?? `webhook-${index + 1}`, webhook, deps),
  );
}

/** Credentials in the channels' config, to be scrubbed wherever they might surface. */
export function channelSecrets(config: ParsedConfig): string[] {
  return config.channels.webhooks.map((webhook) => webhook.secret);
}
