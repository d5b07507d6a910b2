/**
 * Signed webhooks: every state change of every request, POSTed to a configured URL and
 * signed per the Standard Webhooks spec, so any system can follow Airlock. Delivery rides
 * the outbox: retried with backoff, recorded as delivered or dead-lettered.
 */
import { Webhook } from "standardwebhooks";
import { request } from "undici";
import type { Redactor } from "../../masking/secret-redactor.js";
import type { Channel, ChannelNotice } from "../channel.js";
import type { WebhookConfig } from "./webhook-config.js";

/** The body of every delivery; `data` is the request as the change left it, masked. */
export interface WebhookPayload {
  type: ChannelNotice["event"];
  timestamp: string;
  data: ChannelNotice["request"] & { version: number };
}

export function createWebhookChannel(
  name: string,
  config: WebhookConfig,
  deps: { redactor: Redactor; clock?: () => number },
): Channel {
  const signer = new Webhook(config.secret);
  const clock = deps.clock ?? Date.now;

  const send = async (notice: ChannelNotice, stopping?: AbortSignal): Promise<void> => {
    // The same id on every retry of one change, so receivers can drop repeats.
    const id = `msg_${notice.request.id}_${notice.version}`;
    const at = new Date(clock());
    const payload: WebhookPayload = {
      type: notice.event,
      timestamp: at.toISOString(),
      data: { ...notice.request, version: notice.version },
    };
    const body = JSON.stringify(deps.redactor.redact(payload));
    const response = await request(config.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "Airlock-Webhooks",
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
        "webhook-signature": signer.sign(id, at, body),
      },
      body,
      headersTimeout: config.timeout,
      bodyTimeout: config.timeout,
      // Given up at a stop too: the same delivery, made again after it, has the same id.
      signal: stopping
        ? AbortSignal.any([AbortSignal.timeout(config.timeout), stopping])
        : AbortSignal.timeout(config.timeout),
    });
    await response.body.dump();
    if (response.statusCode < 200 || response.statusCode >= 300) {
      throw new Error(`webhook ${name} answered HTTP ${response.statusCode}`);
    }
  };

  return {
    name,
    follows: "all",
    ...(config.events ? { events: config.events } : {}),
    post: async (notice, stopping) => {
      await send(notice, stopping);
      return undefined;
    },
    update: (_ref, notice, stopping) => send(notice, stopping),
  };
}
