import { describe, expect, it } from "vitest";
import { createHeldCalls } from "./mcp-held-calls.js";

describe("held MCP tool calls", () => {
  it("cancels the call its caller names, and no other", () => {
    const held = createHeldCalls();
    const mine = held.hold("a", 1);
    const theirs = held.hold("b", 1);
    const named = held.hold("a", "1");
    expect(held.cancel("a", 1, "the user stopped it")).toBe("held");
    expect(mine.signal.aborted).toBe(true);
    expect(mine.signal.reason).toBe("the user stopped it");
    expect(theirs.signal.aborted).toBe(false);
    // "1" and 1 are two ids.
    expect(named.signal.aborted).toBe(false);
  });

  it("ignores a cancel for a call already answered, or for one of two calls under one id", () => {
    const held = createHeldCalls();
    held.hold("a", 1).release();
    expect(held.cancel("a", 1, "")).toBe("none");
    const first = held.hold("a", 2);
    const second = held.hold("a", 2);
    expect(held.cancel("a", 2, "")).toBe("two");
    expect(first.signal.aborted || second.signal.aborted).toBe(false);
    // Once one is answered, the other is the only one the id can name.
    first.release();
    expect(held.cancel("a", 2, "")).toBe("held");
    expect(second.signal.aborted).toBe(true);
  });
});
