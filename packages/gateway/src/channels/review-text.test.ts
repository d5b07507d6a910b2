import { describe, expect, it } from "vitest";
import { wellFormed } from "../common/storable-text.js";
import type { ChannelView } from "./channel.js";
import { approvalsLine, factLines } from "./review-text.js";

describe("factLines", () => {
  it("cuts a long fact at 300 characters, never through a character", () => {
    // An agent's path: the emoji's two halves straddle the cut.
    const path = `/${"a".repeat(286)}😀/rest`;
    const text = factLines({ http: { method: "GET", path } });
    const [method, line] = text.split("\n");
    expect(method).toBe("http.method: GET");
    expect(line!.length).toBeLessThanOrEqual(300);
    expect(line!.endsWith("…")).toBe(true);
    expect(wellFormed(text)).toBe(true);
  });
});

describe("approvalsLine", () => {
  const line = (review: Partial<NonNullable<ChannelView["review"]>>) =>
    approvalsLine(
      {
        review: { approvers: ["finance", "security"], quorum: 2, approvals: 0, ...review },
      } as ChannelView,
      (text) => text,
    );

  it("says how many approvals are still needed, and from whom", () => {
    expect(line({ approvals: 1 })).toBe(
      "1 of 2 approvals; 1 more approval needed from finance and security",
    );
    expect(line({ approvals: 2 })).toBe("2 of 2 approvals");
    expect(line({ approvers: [], quorum: 1 })).toBe(
      "0 of 1 approvals; 1 more approval needed from any reviewer",
    );
  });

  it("names the groups a rule requires approvals from while they still need any", () => {
    const require = { security: 1 };
    // The count is made; security is not.
    expect(line({ approvals: 2, require, needed: { security: 1 } })).toBe(
      "2 of 2 approvals; 1 more approval needed from security",
    );
    expect(line({ approvals: 0, quorum: 3, require, needed: { security: 1 } })).toBe(
      "0 of 3 approvals; 3 more approvals needed from finance and security: 1 from security among them",
    );
    expect(line({ approvals: 3, quorum: 3, require, needed: {} })).toBe("3 of 3 approvals");
  });
});
