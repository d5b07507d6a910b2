import { describe, expect, it } from "vitest";
import { wellFormed } from "../common/storable-text.js";
import { factLines } from "./review-text.js";

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
