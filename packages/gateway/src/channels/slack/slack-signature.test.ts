import { describe, expect, it } from "vitest";
import type { ClaimOnce } from "../channel.js";
import { createSlackVerifier, slackSignature } from "./slack-signature.js";

const secret = "8f742231b10e8888abcd99yyyzzz85a5";
const body = "payload=%7B%22type%22%3A%22block_actions%22%7D";

/** The store's replay guard, in memory: what was claimed, and until when. */
function claims(): ClaimOnce & { keys: Map<string, number> } {
  const keys = new Map<string, number>();
  const claim = async (key: string, expiresAt: number, now: number) => {
    const until = keys.get(key);
    if (until !== undefined && until > now) return false;
    keys.set(key, expiresAt);
    return true;
  };
  return Object.assign(claim, { keys });
}

describe("Slack request signatures", () => {
  it("accepts Slack's own example signature", () => {
    // From Slack's "Verifying requests from Slack" guide.
    const example =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    expect(slackSignature(secret, "1531420618", example)).toBe(
      "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    );
  });

  it("accepts a fresh, correctly signed request once, remembering it while it is fresh", async () => {
    const now = 1_800_000_000_000;
    const claimed = claims();
    const verifier = createSlackVerifier(secret, claimed, () => now);
    const timestamp = String(now / 1000);
    const signature = slackSignature(secret, timestamp, body);
    expect(await verifier.verify({ timestamp, signature }, body)).toBeUndefined();
    expect(await verifier.verify({ timestamp, signature }, body)).toBe("replayed");
    // Kept past the moment the timestamp turns stale, so no gap lets a replay through.
    expect(claimed.keys.get(`slack:${signature}`)).toBeGreaterThan(now + 300_000);
  });

  it("refuses forged, edited, stale and unsigned requests, remembering none of them", async () => {
    const now = 1_800_000_000_000;
    const claimed = claims();
    const verifier = createSlackVerifier(secret, claimed, () => now);
    const timestamp = String(now / 1000);
    const forged = slackSignature("another-secret", timestamp, body);
    expect(await verifier.verify({ timestamp, signature: forged }, body)).toBe("forged");
    const signature = slackSignature(secret, timestamp, body);
    expect(await verifier.verify({ timestamp, signature }, `${body}x`)).toBe("forged");
    const old = String(now / 1000 - 301);
    expect(
      await verifier.verify({ timestamp: old, signature: slackSignature(secret, old, body) }, body),
    ).toBe("stale");
    // A signature over the text a body decodes to (0xff read as U+FFFD) is not one over it.
    const bytes = Buffer.concat([Buffer.from(body), Buffer.from([0xff])]);
    const overText = slackSignature(secret, timestamp, bytes.toString("utf8"));
    expect(await verifier.verify({ timestamp, signature: overText }, bytes)).toBe("forged");
    expect(await verifier.verify({ timestamp }, body)).toBe("missing");
    expect(await verifier.verify({ timestamp: "soon", signature }, body)).toBe("missing");
    expect(claimed.keys.size).toBe(0);
  });
});
