import { describe, expect, it } from "vitest";
import { MASKED, scrubHidden } from "./input-mask.js";
import { createByteScrubber, createRedactor, REDACTED } from "./secret-redactor.js";

describe("scrubbing several values", () => {
  it("leaves no part of either of two values that overlap in the text", () => {
    expect(scrubHidden("ref abcd1234wxyz.", ["abcd1234", "1234wxyz"])).toBe(`ref ${MASKED}.`);
    expect(scrubHidden("41111 and 1111", ["4111", "1111"])).toBe(`${MASKED} and ${MASKED}`);
    const redactor = createRedactor(["token-abc123", "abc123-more"]);
    expect(redactor.redactText("x token-abc123-more y")).toBe(`x ${REDACTED} y`);
  });

  it("does not take a marker it wrote, or one already there, for a value it holds", () => {
    // "ask" is in "[masked]": the card's marker stays whole.
    expect(scrubHidden("card 4111111111111111, code ask", ["4111111111111111", "ask"])).toBe(
      `card ${MASKED}, code ${MASKED}`,
    );
    // Text scrubbed once (by a connector) and again (by the executor) reads the same.
    const once = scrubHidden("code ask", ["ask"]);
    expect(scrubHidden(once, ["ask"])).toBe(once);
    expect(createRedactor(["redacted"]).redactText(`a ${REDACTED}`)).toBe(`a ${REDACTED}`);
    // A value reaching past a marker is replaced, with the marker.
    expect(scrubHidden(`${MASKED}]x`, ["ed]]x"])).toBe(`[mask${MASKED}`);
  });

  it("does the same on bytes, each range marked as the strongest value in it", () => {
    const scrubber = createByteScrubber(["token-abc123"], ["abc123-card", "ask"]);
    const scrub = (text: string) => scrubber.scrub(Buffer.from(text)).toString();
    expect(scrub("x token-abc123-card y")).toBe(`x ${REDACTED} y`);
    expect(scrub("card abc123-card, code ask")).toBe(`card ${MASKED}, code ${MASKED}`);
    expect(scrub(`${MASKED} ask`)).toBe(`${MASKED} ${MASKED}`);
  });
});
