/**
 * The gateway's one JSON body parser: native JSON.parse, with errors that say where and why,
 * refusing keys that reach an object's prototype when a value is copied carelessly.
 */
import { AirlockError } from "../errors.js";

export function parseJsonBody(text: string): unknown {
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

/** The path of such a key, if any; iterative, as a body may nest deeper than the stack. */
function prototypeKey(root: unknown): string | undefined {
  const stack: { value: unknown; path: string[] }[] = [{ value: root, path: [] }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { value, path } = item;
    if (value === null || typeof value !== "object") continue;
    const entries = Array.isArray(value)
      ? value.map((child, i) => [String(i), child] as const)
      : Object.entries(value);
    for (const [key, child] of entries) {
      const here = [...path, key];
      if (!Array.isArray(value) && key === "__proto__") return here.join(".");
      if (
        !Array.isArray(value) &&
        key === "constructor" &&
        child !== null &&
        typeof child === "object" &&
        Object.hasOwn(child, "prototype")
      ) {
        return [...here, "prototype"].join(".");
      }
      stack.push({ value: child, path: here });
    }
  }
  return undefined;
}
