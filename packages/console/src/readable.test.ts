import { describe, expect, it } from "vitest";
import { BIDI_CONTROLS as gatewayControls } from "../../gateway/src/common/storable-text.js";
import { BIDI_CONTROLS, readable, readableText } from "./readable.js";

describe("readable text", () => {
  it("lists the same bidirectional controls as the gateway", () => {
    expect(BIDI_CONTROLS).toBe(gatewayControls);
  });

  it("shows every bidirectional control as its code point, and leaves other text alone", () => {
    const controls = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d"]
      .concat(["\u202e", "\u2066", "\u2067", "\u2068", "\u2069"])
      .join("");
    expect(readableText(controls)).toBe(
      "[U+061C][U+200E][U+200F][U+202A][U+202B][U+202C][U+202D][U+202E][U+2066][U+2067][U+2068][U+2069]",
    );
    // Right-to-left script itself is text, not a control; so are emoji and zero-width joiners.
    const plain = "refund €18.00 to שלום 👩‍💻 for inv_2002";
    expect(readableText(plain)).toBe(plain);
  });

  it("keeps both of two keys that read the same once shown, and __proto__ as a plain key", () => {
    const body = JSON.parse(
      '{"iban\\u202e": "DE00 ATTACKER", "iban[U+202E]": "DE89 3704", "__proto__": {"x": 1}}',
    );
    const shown = readable(body) as Record<string, unknown>;
    expect(Object.entries(shown)).toEqual([
      ["iban[U+202E]", "DE00 ATTACKER"],
      ["iban[U+202E] (another key that reads the same)", "DE89 3704"],
      ["__proto__", { x: 1 }],
    ]);
    expect(Object.getPrototypeOf(shown)).toBe(Object.prototype);
    expect(JSON.stringify(shown)).toContain('"__proto__":{"x":1}');
  });

  it("reaches every string of a response, keys included, and keeps its shape", () => {
    const view = {
      id: "req_1",
      justification: "pay \u202e00.1$",
      context: { "ticket\u2066": ["a\u2067b", 3, null, true] },
      reviews: [{ comment: "ok\u200f" }],
    };
    expect(readable(view)).toEqual({
      id: "req_1",
      justification: "pay [U+202E]00.1$",
      context: { "ticket[U+2066]": ["a[U+2067]b", 3, null, true] },
      reviews: [{ comment: "ok[U+200F]" }],
    });
  });
});
