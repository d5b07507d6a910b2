import { describe, expect, it } from "vitest";
import { canonicalJson, type Json } from "./canonical-json.js";
import { clipDepth, MAX_JSON_DEPTH } from "./json-depth.js";

/** Arrays nested `n` deep around one object. */
function nested(n: number): Json {
  let value: Json = { leaf: true };
  for (let i = 1; i < n; i++) value = [value];
  return value;
}

describe("clipDepth", () => {
  it("returns a value within the bound as it is", () => {
    const value = { rows: [nested(MAX_JSON_DEPTH - 2)] };
    expect(clipDepth(value)).toBe(value);
    // One level more is clipped.
    expect(JSON.stringify(clipDepth({ rows: [nested(MAX_JSON_DEPTH - 1)] }))).toContain(
      "not shown",
    );
  });

  it("replaces what nests past the bound with a note, without overflowing the stack", () => {
    const value = { rows: nested(100_000), kept: "x" };
    const clipped = clipDepth(value) as { rows: Json; kept: string };
    expect(clipped.kept).toBe("x");
    // The note sits at the bound's depth, and the whole now encodes.
    let node: Json = clipped.rows;
    let depth = 2;
    while (Array.isArray(node)) {
      node = node[0] as Json;
      depth++;
    }
    expect(depth).toBe(MAX_JSON_DEPTH + 1);
    expect(node).toBe(`[nested deeper than ${MAX_JSON_DEPTH} levels: not shown]`);
    expect(() => JSON.stringify(clipped)).not.toThrow();
  });

  it("keeps a key named __proto__ as a key in what it copies", () => {
    const value = JSON.parse(
      `{"__proto__":{"role":"admin"},"rows":${JSON.stringify(nested(300))}}`,
    );
    const clipped = clipDepth(value) as Record<string, Json>;
    expect(Object.getPrototypeOf(clipped)).toBe(Object.prototype);
    expect(Object.keys(clipped)).toEqual(["__proto__", "rows"]);
    expect(JSON.stringify(clipped)).toContain('"__proto__":{"role":"admin"}');
  });

  it("turns numbers JSON cannot hold into text, which the digest can encode", () => {
    // What JSON.parse makes of an upstream's 1e999 and -1e999.
    const value = JSON.parse('{"amount":1e999,"rows":[{"low":-1e999,"n":1.5}]}') as Json;
    const clipped = clipDepth(value);
    expect(clipped).toEqual({ amount: "Infinity", rows: [{ low: "-Infinity", n: 1.5 }] });
    expect(() => canonicalJson(clipped)).not.toThrow();
  });
});
