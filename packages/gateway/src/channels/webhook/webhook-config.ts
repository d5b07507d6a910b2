import { z } from "zod";
import { duration, httpUrl } from "../../config/config-types.js";
import { requestStatuses } from "../../requests/request-types.js";
import type { StateEvent } from "../channel.js";

export const stateEvents: readonly StateEvent[] = [
  ...requestStatuses.map((status) => `request.${status}` as const),
  "request.reviewed",
];

/** Standard Webhooks secrets: `whsec_` and 24 to 64 random bytes in base64. */
const secretSchema = z
  .string()
  .max(200)
  .refine((secret) => {
    const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
    if (!match) return false;
    const bytes = Buffer.from(match[1]!, "base64").length;
    return bytes >= 24 && bytes <= 64;
  }, "must be whsec_ followed by 24 to 64 random bytes in base64; make one with: echo whsec_$(openssl rand -base64 32)");

export const webhookSchema = z.strictObject({
  url: httpUrl().refine(
    (url) => !new URL(url).username && !new URL(url).password,
    "must not hold credentials",
  ),
  secret: secretSchema,
  /**
   * A name for logs, metrics and its queued deliveries; when absent, `webhook-` and a hash of
   * the URL (never its position: reordering the list must not redirect queued deliveries).
   */
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and '-'")
    .optional(),
  /** The state events to send; every one when absent. */
  events: z
    .array(
      z.enum(stateEvents as [StateEvent, ...StateEvent[]], {
        error: `must be one of: ${stateEvents.join(", ")}`,
      }),
    )
    .min(1)
    .optional(),
  timeout: duration({ min: 100, max: 60_000 }).default(10_000),
});

export type WebhookConfig = z.output<typeof webhookSchema>;
