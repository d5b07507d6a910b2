/**
 * Text that is stored as it is (a justification, a reviewer's comment) must survive both
 * stores unchanged: no lone surrogates (they cannot be encoded as UTF-8, so the stored text
 * would differ from the hashed text) and no NUL (PostgreSQL refuses it in TEXT).
 */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** String.prototype.isWellFormed, which the ES2023 library does not declare. */
export function wellFormed(text: string): boolean {
  return !loneSurrogate.test(text);
}

/** Why `text` cannot be stored as it is, or undefined when it can. */
export function textProblem(text: string): string | undefined {
  if (!wellFormed(text)) return "is not well-formed text (a lone surrogate)";
  if (text.includes("\u0000")) return "contains a NUL character (U+0000), which cannot be stored";
  return undefined;
}

/**
 * Bidirectional controls (a regular expression's character class): they reorder what follows
 * them on screen, so text shown to people (an amount, a path) could read one way and be
 * another. Places that show an agent's text show these as what they are instead.
 */
export const BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";

/** How text shown to people writes a character it must not show as itself: `[U+202E]`. */
export function codePointText(char: string): string {
  return `[U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`;
}

/** At most `max` UTF-16 units, never cutting a surrogate pair in two. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}
