/**
 * The gateway's one JSON body parser: native JSON.parse, with errors that say where and why,
 * refusing keys that reach an object's prototype when a value is copied carelessly.
 */
import { isUtf8 } from "node:buffer";
import { AirlockError } from "../errors.js";

/**
 * The body's text. JSON is UTF-8 (RFC 8259): bytes in another encoding, read as UTF-8, would
 * change without a word ("/café" in Latin-1 becomes "/caf\uFFFD"), and that is what would be
 * reviewed and run. Refused instead, as is a charset that says so.
 */
export function jsonText(body: Buffer, contentType: string | undefined): string {
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(contentType ?? "")?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new AirlockError(
      "invalid_request",
      "content-type: JSON is UTF-8; send the body as UTF-8, with charset=utf-8 or no charset",
      { field: "content-type", status: 415 },
    );
  }
  if (!isUtf8(body)) {
    throw new AirlockError(
      "invalid_request",
      "body: is not valid UTF-8, which JSON must be; send the text encoded as UTF-8",
      { field: "body" },
    );
  }
  return body.toString("utf8");
}

export function parseJsonBody(body: string): unknown {
  // A byte-order mark is not JSON, but some clients send one.
  const text = body.charCodeAt(0) === 0xfeff ? body.slice(1) : body;
  if (text.trim() === "") {
    throw new AirlockError("invalid_request", "body: is empty; send a JSON object", {
      field: "body",
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AirlockError(
      "invalid_request",
      `body: is not valid JSON (${(error as Error).message})`,
      { field: "body" },
    );
  }
  // Only a body that could spell such a key (escapes included) is walked.
  if (text.includes("__proto__") || text.includes("constructor") || text.includes("\\u")) {
    const path = prototypeKey(value);
    if (path !== undefined) {
      throw new AirlockError(
        "invalid_request",
        `${path}: keys named __proto__, and constructor holding prototype, are not accepted; rename the key`,
        { field: path },
      );
    }
  }
  return value;
}

interface Visit {
  value: unknown;
  key: string;
  parent: Visit | undefined;
}

/**
 * The path of such a key, if any. Iterative, as a body may nest deeper than the stack, and
 * linear: each visit knows its parent, and a path is spelled out only for a key found.
 */
function prototypeKey(root: unknown): string | undefined {
  const pathOf = (visit: Visit, ...more: string[]): string => {
    const keys: string[] = [];
    for (let at: Visit | undefined = visit; at?.parent !== undefined; at = at.parent) {
      keys.push(at.key);
    }
    return [...keys.reverse(), ...more].join(".");
  };
  const stack: Visit[] = [{ value: root, key: "", parent: undefined }];
  for (let visit = stack.pop(); visit !== undefined; visit = stack.pop()) {
    const { value } = visit;
    if (value === null || typeof value !== "object") continue;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        stack.push({ value: value[i], key: String(i), parent: visit });
      }
      continue;
    }
    for (const [key, child] of Object.entries(value)) {
      if (key === "__proto__") return pathOf(visit, key);
      if (
        key === "constructor" &&
        child !== null &&
        typeof child === "object" &&
        Object.hasOwn(child, "prototype")
      ) {
        return pathOf(visit, key, "prototype");
      }
      stack.push({ value: child, key, parent: visit });
    }
  }
  return undefined;
}
