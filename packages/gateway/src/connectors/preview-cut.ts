/**
 * The cut of the long part of a connector's preview (an HTTP body, a statement, a tool's
 * arguments), one for all connectors so that reviewers read the same mark wherever it is.
 */
import { cutText } from "../masking/text-cut.js";

/** How much of the long part a preview shows, in UTF-16 units. */
export const PREVIEW_CHARS = 4000;

/**
 * `text` as a preview shows it: whole when it fits in `PREVIEW_CHARS`, else cut to them, and
 * said how long it was. `cut` makes the cut; the default falls short of a `[masked]` it would
 * split, which would read as the text it hides (a connector may also keep other things whole).
 */
export function cutPreview(
  text: string,
  cut: (text: string, limit: number) => string = (whole, limit) => cutText(whole, limit, []),
): string {
  return text.length > PREVIEW_CHARS
    ? `${cut(text, PREVIEW_CHARS)}\n… (${text.length} characters)`
    : text;
}
