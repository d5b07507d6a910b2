import { describe, expect, it } from "vitest";
import { canonicalJson, digest, sha256Hex } from "./canonical-json.js";

describe("canonicalJson", () => {
  it("sorts object keys", () => {
    expect(canonicalJson({ b: 1, a: 2, c: 3 })).toBe('{"a":2,"b":1,"c":3}');
  });

  it("sorts the keys of nested objects, including objects inside arrays", () => {
    const value = { z: { y: 1, x: [{ b: true, a: false }] }, a: null };
    expect(canonicalJson(value)).toBe('{"a":null,"z":{"x":[{"a":false,"b":true}],"y":1}}');
  });

  it("sorts unicode keys by UTF-16 code units, not by code points or locale", () => {
    // U+1F600 is the surrogate pair D83D DE00, so it sorts before U+FF46 by code unit.
    const value = { "\uff46": 1, "\u{1f600}": 2, é: 3, z: 4, Z: 5 };
    expect(canonicalJson(value)).toBe('{"Z":5,"z":4,"é":3,"\u{1f600}":2,"\uff46":1}');
  });

  it("orders the keys of objects of every size exactly as sort() does", () => {
    // Small objects are sorted by insertion, large ones by sort(): both must agree. Digits
    // make index-like keys ("9", "10"), which Object.keys lists first and in numeric order.
    const alphabet = ["a", "B", "é", "\u{1f600}", "\uff46", "0", "1", "9", "_", ""];
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    for (let size = 0; size <= 40; size++) {
      for (let trial = 0; trial < 20; trial++) {
        const keys = new Set<string>();
        while (keys.size < size) {
          keys.add(Array.from({ length: 1 + (next() % 3) }, () => alphabet[next() % 10]).join(""));
        }
        const value = Object.fromEntries([...keys].map((key, i) => [key, i]));
        const expected = `{${[...keys]
          .sort()
          .map((key) => `${JSON.stringify(key)}:${value[key]}`)
          .join(",")}}`;
        expect(canonicalJson(value)).toBe(expected);
      }
    }
  });

  it("writes no whitespace", () => {
    expect(canonicalJson({ a: [1, 2, { b: "c d" }], e: {} })).toBe(
      '{"a":[1,2,{"b":"c d"}],"e":{}}',
    );
  });

  it("keeps array order", () => {
    expect(canonicalJson([3, 1, 2, "b", "a"])).toBe('[3,1,2,"b","a"]');
  });

  it("drops properties whose value is undefined", () => {
    expect(canonicalJson({ a: 1, b: undefined, c: { d: undefined } })).toBe('{"a":1,"c":{}}');
  });

  it("writes undefined array items as null, like JSON.stringify", () => {
    expect(canonicalJson([1, undefined, 2])).toBe("[1,null,2]");
  });

  it("formats numbers exactly as JSON.stringify does", () => {
    for (const n of [0, -0, 1, -1.5, 0.1 + 0.2, 1e21, 1e-7, 123456789012345680000, 5e-324]) {
      expect(canonicalJson(n)).toBe(JSON.stringify(n));
    }
  });

  it("escapes strings as JSON.stringify does", () => {
    const text = 'quote " backslash \\ newline \n tab \t nul \u0000';
    expect(canonicalJson({ [text]: text })).toBe(
      `{${JSON.stringify(text)}:${JSON.stringify(text)}}`,
    );
  });

  it("encodes the scalars", () => {
    expect(canonicalJson(null)).toBe("null");
    expect(canonicalJson(true)).toBe("true");
    expect(canonicalJson(false)).toBe("false");
    expect(canonicalJson("x")).toBe('"x"');
  });

  it.each([
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["-Infinity", Number.NEGATIVE_INFINITY],
    ["a nested NaN", { a: [Number.NaN] }],
  ])("throws on %s", (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });

  it("throws on a function, even as a property value that JSON.stringify would drop", () => {
    expect(() => canonicalJson(() => 1)).toThrow(TypeError);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(TypeError);
  });

  it("throws on a bigint", () => {
    expect(() => canonicalJson(10n)).toThrow(TypeError);
    expect(() => canonicalJson({ n: [10n] })).toThrow(TypeError);
  });

  it("throws on a symbol and on a top-level undefined", () => {
    expect(() => canonicalJson(Symbol("s"))).toThrow(TypeError);
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });
});

describe("digest", () => {
  it("is the SHA-256 of the canonical encoding, in hex", () => {
    expect(digest({ b: 1, a: 2 })).toBe(sha256Hex('{"a":2,"b":1}'));
    expect(digest("")).toBe(sha256Hex('""'));
    expect(sha256Hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("is the same whatever the key order", () => {
    const one = { a: 1, b: { c: [1, 2], d: "x" } };
    const two = { b: { d: "x", c: [1, 2] }, a: 1 };
    expect(digest(one)).toBe(digest(two));
  });

  it("differs when a value, an array order or a key changes", () => {
    const base = digest({ a: 1, list: [1, 2] });
    expect(digest({ a: 2, list: [1, 2] })).not.toBe(base);
    expect(digest({ a: 1, list: [2, 1] })).not.toBe(base);
    expect(digest({ b: 1, list: [1, 2] })).not.toBe(base);
    expect(digest({ a: "1", list: [1, 2] })).not.toBe(base);
  });
});
