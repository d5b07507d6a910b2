/**
 * Slack's request signing (v0): an HMAC-SHA256 over `v0:<timestamp>:<raw body>` with the
 * app's signing secret, a timestamp within five minutes, and no payload accepted twice. What
 * was accepted is recorded by the caller's `claimOnce` (the store), so a payload replayed to
 * another replica, or after a restart, is refused too.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { ClaimOnce } from "../channel.js";

export const SIGNATURE_WINDOW_S = 300;

export type SignatureProblem = "missing" | "stale" | "forged" | "replayed";

export interface SlackVerifier {
  /**
   * Undefined when the request is Slack's and new; otherwise why it is refused. The body is
   * the bytes received: text decoded from them first could match a signature over other bytes.
   */
  verify(
    headers: { timestamp?: string; signature?: string },
    rawBody: string | Uint8Array,
  ): Promise<SignatureProblem | undefined>;
}

export function slackSignature(
  secret: string,
  timestamp: string,
  rawBody: string | Uint8Array,
): string {
  const hmac = createHmac("sha256", secret).update(`v0:${timestamp}:`).update(rawBody);
  return `v0=${hmac.digest("hex")}`;
}

export function createSlackVerifier(
  secret: string,
  claimOnce: ClaimOnce,
  clock: () => number = Date.now,
): SlackVerifier {
  return {
    async verify({ timestamp, signature }, rawBody) {
      if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return "missing";
      const nowS = Math.floor(clock() / 1000);
      const at = Number(timestamp);
      if (Math.abs(nowS - at) > SIGNATURE_WINDOW_S) return "stale";
      const expected = Buffer.from(slackSignature(secret, timestamp, rawBody));
      const given = Buffer.from(signature);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "forged";
      // Remembered until the timestamp falls out of the window; after that it is stale anyway.
      const until = (at + SIGNATURE_WINDOW_S + 1) * 1000;
      return (await claimOnce(`slack:${signature}`, until, clock())) ? undefined : "replayed";
    },
  };
}
