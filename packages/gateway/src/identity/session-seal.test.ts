import { describe, expect, it } from "vitest";
import { openForSession, sealForSession } from "./session-seal.js";

describe("a refresh token sealed for a session", () => {
  const id = "a".repeat(64);
  const token = "rt_9f2c4e7b1d3a5c8e0f6b2d4a7c9e1f3b";

  it("opens with its session's id, and shows nothing of the token", () => {
    const sealed = sealForSession(id, token);
    expect(sealed).not.toContain(token);
    expect(Buffer.from(sealed, "base64url").toString("latin1")).not.toContain(token.slice(3, 12));
    expect(openForSession(id, sealed)).toBe(token);
    // A fresh nonce each time: two seals of one token differ.
    expect(sealForSession(id, token)).not.toBe(sealed);
  });

  it("does not open with another session's id, or once changed", () => {
    const sealed = sealForSession(id, token);
    expect(openForSession("b".repeat(64), sealed)).toBeUndefined();
    const bytes = Buffer.from(sealed, "base64url");
    bytes[14] = (bytes[14] ?? 0) ^ 1;
    expect(openForSession(id, bytes.toString("base64url"))).toBeUndefined();
    expect(openForSession(id, "short")).toBeUndefined();
    expect(openForSession(id, "")).toBeUndefined();
  });
});
