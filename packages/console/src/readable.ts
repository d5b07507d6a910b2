/**
 * What the gateway sends is shown as it is, with one exception: bidirectional controls
 * (U+202E and kin) reorder the text after them on screen, so a justification or a path could
 * read one way and be another (the "Trojan Source" trick). Everything the console receives
 * passes through here once, so every page shows them as `[U+202E]`, as Slack and the CLI do.
 */

/** The same class as the gateway's BIDI_CONTROLS (common/storable-text.ts); a test keeps them equal. */
export const BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";

const bidi = new RegExp(`[${BIDI_CONTROLS}]`, "g");

function codePoint(char: string): string {
  return `[U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`;
}

export function readableText(text: string): string {
  return text.replace(bidi, codePoint);
}

/**
 * A parsed JSON value with every string, object keys included, made readable. Two keys that
 * read the same once shown (`iban` + U+202E, and a literal `iban[U+202E]`) both stay, the
 * later one marked, so that neither value can hide the other; `__proto__` is a key like any.
 */
export function readable<T>(value: T): T {
  if (typeof value === "string") return readableText(value) as T;
  if (Array.isArray(value)) return value.map(readable) as T;
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      let shown = readableText(key);
      while (Object.hasOwn(out, shown)) shown = `${shown} (another key that reads the same)`;
      Object.defineProperty(out, shown, {
        value: readable(item),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out as T;
  }
  return value;
}
