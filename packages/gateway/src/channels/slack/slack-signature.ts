/**
 * Slack's request signing (v0): an HMAC-SHA256 over `v0:<timestamp>:<raw body>` with the
 * app's signing secret, a timestamp within five minutes, and no payload accepted twice.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_WINDOW_S = 300;

export type SignatureProblem = "missing" | "stale" | "forged" | "replayed";

export interface SlackVerifier {
  /** Undefined when the request is Slack's and new; otherwise why it is refused. */
  verify(
    headers: { timestamp?: string; signature?: string },
    rawBody: string,
  ): SignatureProblem | undefined;
}

export function slackSignature(secret: string, timestamp: string, rawBody: string): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${rawBody}`).digest("hex")}`;
}

export function createSlackVerifier(secret: string, clock: () => number = Date.now): SlackVerifier {
  // Signatures seen within the window; older ones are refused as stale anyway.
  const seen = new Map<string, number>();
  const forget = (nowS: number) => {
    for (const [signature, at] of seen) {
      if (at >= nowS - SIGNATURE_WINDOW_S) break;
      seen.delete(signature);
    }
  };
  return {
    verify({ timestamp, signature }, rawBody) {
      if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return "missing";
      const nowS = Math.floor(clock() / 1000);
      const at = Number(timestamp);
      if (Math.abs(nowS - at) > SIGNATURE_WINDOW_S) return "stale";
      const expected = Buffer.from(slackSignature(secret, timestamp, rawBody));
      const given = Buffer.from(signature);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "forged";
      forget(nowS);
      if (seen.has(signature)) return "replayed";
      seen.set(signature, nowS);
      return undefined;
    },
  };
}
