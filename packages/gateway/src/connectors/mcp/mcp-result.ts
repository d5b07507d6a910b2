/** A tool's result as Airlock keeps and returns it, cut to the connection's size cap. */
import type { Json } from "../../common/canonical-json.js";
import type { FieldPath } from "../../masking/binary-fields.js";
import type { DetectorName } from "../../masking/detector-names.js";
import { cutText } from "../../masking/text-cut.js";

/** What `tools/call` returns (MCP's CallToolResult), as far as Airlock reads it. */
export interface ToolResult {
  content?: unknown[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/**
 * Where an answer holds base64 (an image's or audio's `data`, a resource's `blob`), for it to
 * be scrubbed as the bytes it encodes: scrubbed as text, it would hide what they hold and be
 * corrupted by what it holds by chance.
 */
export function binaryPaths(answer: { content?: unknown }): FieldPath[] {
  if (!Array.isArray(answer.content)) return [];
  return answer.content.flatMap((item, index): FieldPath[] => {
    if (item === null || typeof item !== "object") return [];
    const { type, data, resource } = item as { type?: unknown; data?: unknown; resource?: unknown };
    if ((type === "image" || type === "audio") && typeof data === "string") {
      return [["content", index, "data"]];
    }
    const blob = (resource as { blob?: unknown } | null | undefined)?.blob;
    if (type === "resource" && typeof blob === "string") {
      return [["content", index, "resource", "blob"]];
    }
    return [];
  });
}

/**
 * The content, structured content and error flag; `_meta` and anything else the server
 * added are left out. Over `cap` bytes (as JSON), whole content items are kept while they
 * fit and the next text is cut; structured content is dropped, since a cut one would
 * mislead, and the result says what was cut.
 */
export function capContent(
  answer: ToolResult,
  cap: number,
  detectors: readonly DetectorName[] = [],
): { result: Json; bytes: number; truncated: boolean } {
  const content = Array.isArray(answer.content) ? (answer.content as Json[]) : [];
  const result: Record<string, Json> = { content };
  if (answer.structuredContent !== undefined) {
    result.structuredContent = answer.structuredContent as Json;
  }
  if (answer.isError === true) result.isError = true;
  const bytes = Buffer.byteLength(JSON.stringify(result));
  if (bytes <= cap) return { result, bytes, truncated: false };

  const note = `the result was cut at ${cap} of ${bytes} bytes`;
  // What the wrapper around the items takes: {"content":[…],"truncated":"…","isError":true}.
  let budget = cap - Buffer.byteLength(JSON.stringify({ content: [], truncated: note })) - 16;
  const kept: Json[] = [];
  for (const item of content) {
    const size = Buffer.byteLength(JSON.stringify(item)) + 1;
    if (size <= budget) {
      kept.push(item);
      budget -= size;
      continue;
    }
    const text = (item as { type?: unknown; text?: unknown } | null) ?? {};
    if (text.type === "text" && typeof text.text === "string" && budget > 64) {
      kept.push({ type: "text", text: cutJsonText(text.text, budget - 32, detectors) });
    }
    break;
  }
  const cut: Record<string, Json> = { content: kept, truncated: note };
  if (answer.isError === true) cut.isError = true;
  return { result: cut, bytes, truncated: true };
}

/**
 * The longest start of `text` whose JSON string (quotes and escapes included: `"` takes two
 * bytes, a control character six) takes at most `limit` bytes, whole characters only. What
 * the detectors find is masked first and never cut in two, nor is a marker (text-cut.ts).
 */
export function cutJsonText(
  text: string,
  limit: number,
  detectors: readonly DetectorName[] = [],
): string {
  // Less the quotes.
  return cutText(text, limit - 2, detectors, jsonBytes);
}

/** The bytes a character takes in a JSON string. */
function jsonBytes(char: string): number {
  const code = char.charCodeAt(0);
  const plain = code >= 0x20 && code < 0x7f && char !== '"' && char !== "\\";
  return plain ? 1 : Buffer.byteLength(JSON.stringify(char)) - 2;
}
