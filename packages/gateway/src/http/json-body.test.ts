import { expect, it } from "vitest";
import type { AirlockError } from "../errors.js";
import { parseJsonBody } from "./json-body.js";

const refusal = (text: string) => {
  try {
    parseJsonBody(text);
  } catch (error) {
    return error as AirlockError;
  }
  throw new Error("expected a refusal");
};

it("names a prototype key by its path, however deep and however spelled", () => {
  expect(refusal('{"a":[{"b":{"__proto__":{}}}]}').field).toBe("a.0.b.__proto__");
  expect(refusal('{"a":{"\\u005f_proto__":1}}').field).toBe("a.__proto__");
  expect(refusal('{"constructor":{"prototype":{}}}').field).toBe("constructor.prototype");
  expect(parseJsonBody('{"constructor":"a name","note":"__proto__"}')).toEqual({
    constructor: "a name",
    note: "__proto__",
  });
});

it("walks a deeply nested body in linear time", () => {
  // Copying the path at every level made this quadratic: minutes of a frozen event loop.
  const depth = 200_000;
  const text = `${"[".repeat(depth)}"\\u0041"${"]".repeat(depth)}`;
  let value = parseJsonBody(text);
  for (let i = 0; i < depth; i++) value = (value as unknown[])[0];
  expect(value).toBe("A");
  const key = `${"[".repeat(depth)}{"__proto__":1}${"]".repeat(depth)}`;
  expect(refusal(key).field).toBe(`${"0.".repeat(depth)}__proto__`);
});

it("takes a body that starts with a byte-order mark, and says what is wrong with others", () => {
  expect(parseJsonBody('\ufeff{"a":1}')).toEqual({ a: 1 });
  expect(refusal("").message).toBe("body: is empty; send a JSON object");
  expect(refusal('{"a":').message).toMatch(/^body: is not valid JSON \(/);
});
