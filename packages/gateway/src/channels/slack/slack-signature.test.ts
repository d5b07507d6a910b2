import { describe, expect, it } from "vitest";
import { createSlackVerifier, slackSignature } from "./slack-signature.js";

const secret = "8f742231b10e8888abcd99yyyzzz85a5";
const body = "payload=%7B%22type%22%3A%22block_actions%22%7D";

describe("Slack request signatures", () => {
  it("accepts Slack's own example signature", () => {
    // From Slack's "Verifying requests from Slack" guide.
    const example =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    expect(slackSignature(secret, "1531420618", example)).toBe(
      "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    );
  });

  it("accepts a fresh, correctly signed request once", () => {
    const now = 1_800_000_000_000;
    const verifier = createSlackVerifier(secret, () => now);
    const timestamp = String(now / 1000);
    const signature = slackSignature(secret, timestamp, body);
    expect(verifier.verify({ timestamp, signature }, body)).toBeUndefined();
    expect(verifier.verify({ timestamp, signature }, body)).toBe("replayed");
  });

  it("refuses forged, edited, stale and unsigned requests", () => {
    const now = 1_800_000_000_000;
    const verifier = createSlackVerifier(secret, () => now);
    const timestamp = String(now / 1000);
    const forged = slackSignature("another-secret", timestamp, body);
    expect(verifier.verify({ timestamp, signature: forged }, body)).toBe("forged");
    const signature = slackSignature(secret, timestamp, body);
    expect(verifier.verify({ timestamp, signature }, `${body}x`)).toBe("forged");
    const old = String(now / 1000 - 301);
    expect(
      verifier.verify({ timestamp: old, signature: slackSignature(secret, old, body) }, body),
    ).toBe("stale");
    expect(verifier.verify({ timestamp }, body)).toBe("missing");
    expect(verifier.verify({ timestamp: "soon", signature }, body)).toBe("missing");
  });
});
