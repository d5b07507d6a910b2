import { describe, expect, it } from "vitest";
import type { Json } from "../common/canonical-json.js";
import {
  type ByteCodec,
  longValues,
  scrubApart,
  scrubBase64,
  scrubEncoded,
  scrubHex,
} from "./binary-fields.js";
import { scrubHidden } from "./input-mask.js";
import { createByteScrubber } from "./secret-redactor.js";

const CVV = "729";
/** A JPEG's first bytes, then three whose base64 starts with the CVV: none of them is it. */
const image = Buffer.from(`/9j/${CVV}AAAAAAAA`, "base64");
const base64 = (text: string) => Buffer.from(text).toString("base64");

describe("scrubEncoded", () => {
  /** Bytes as text of their own: hex digits in parentheses, counting each call. */
  const calls = { decode: 0, encode: 0 };
  const parens: ByteCodec = {
    decode: (text) => {
      calls.decode++;
      return Buffer.from(text.slice(1, -1), "hex");
    },
    encode: (bytes) => {
      calls.encode++;
      return `(${bytes.toString("hex")})`;
    },
  };
  const inParens = (text: string) => `(${Buffer.from(text).toString("hex")})`;

  it("scrubs the bytes the codec reads, masks them when they are text, and writes them back by it", () => {
    const scrubber = createByteScrubber(["s3cr3t-token"], [CVV]);
    expect(scrubEncoded(inParens(`cvv ${CVV}, token s3cr3t-token`), parens, scrubber)).toBe(
      inParens("cvv [masked], token [redacted]"),
    );
    expect(scrubEncoded(inParens("mail ann@example.com"), parens, scrubber, ["email"])).toBe(
      inParens("mail a***@example.com"),
    );
  });

  it("returns the very text, written anew by nobody, when the bytes hold nothing to scrub", () => {
    const scrubber = createByteScrubber([], [CVV]);
    // Upper-case digits: the codec would write them otherwise.
    const text = "(6E6F7468696E67)";
    calls.decode = calls.encode = 0;
    expect(scrubEncoded(text, parens, scrubber, ["card"])).toBe(text);
    expect(calls).toEqual({ decode: 1, encode: 0 });
    // Nothing to look for: not even read.
    expect(scrubEncoded(text, parens, createByteScrubber([]))).toBe(text);
    expect(calls).toEqual({ decode: 1, encode: 0 });
  });
});

describe("scrubBase64", () => {
  const scrubber = createByteScrubber(["s3cr3t-token"], [CVV]);

  it("scrubs the bytes base64 encodes, and leaves text whose bytes hold nothing alone", () => {
    expect(image.includes(CVV)).toBe(false);
    expect(image.toString("base64")).toContain(CVV);
    expect(scrubBase64(image.toString("base64"), scrubber)).toBe(image.toString("base64"));
    const echoed = scrubBase64(base64(`cvv ${CVV}, token s3cr3t-token`), scrubber);
    expect(Buffer.from(echoed, "base64").toString()).toBe("cvv [masked], token [redacted]");
  });

  it("masks what the detectors find in bytes that are UTF-8 text, and leaves other bytes alone", () => {
    const none = createByteScrubber([]);
    const csv = base64("Émile,4242 4242 4242 4242\n");
    expect(Buffer.from(scrubBase64(csv, none, ["card"]), "base64").toString()).toBe(
      "Émile,**** 4242\n",
    );
    // With credentials and masked values scrubbed first.
    const both = scrubBase64(base64(`cvv ${CVV}, card 4242424242424242`), scrubber, ["card"]);
    expect(Buffer.from(both, "base64").toString()).toBe("cvv [masked], card **** 4242");
    // No UTF-8: what looks like a card (or an e-mail) there is left, and the data intact.
    const binary = Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.from(" 4242424242424242")]);
    expect(scrubBase64(binary.toString("base64"), none, ["card"])).toBe(binary.toString("base64"));
    expect(scrubBase64(image.toString("base64"), none, ["card", "email"])).toBe(
      image.toString("base64"),
    );
  });

  it("returns the very text when there is nothing to scrub, unusual spelling included", () => {
    const unpadded = "/9j/729AAAAAAAA";
    expect(scrubBase64(unpadded, scrubber)).toBe(unpadded);
    expect(scrubBase64(unpadded, createByteScrubber([]))).toBe(unpadded);
  });
});

describe("scrubApart", () => {
  const text = (value: Json) => scrubHidden(value, [CVV]);
  const bytes = (data: string) => scrubBase64(data, createByteScrubber([], [CVV]));

  it("scrubs the base64 at the paths as bytes and everything else as text", () => {
    const result: Json = {
      content: [
        { type: "text", text: `cvv ${CVV}` },
        { type: "image", data: image.toString("base64") },
        { type: "audio", data: base64(`cvv ${CVV}`) },
        { type: "image", data: `cvv ${CVV}` },
      ],
      note: image.toString("base64"),
    };
    const out = scrubApart(
      result,
      {
        base64: [
          ["content", 1, "data"],
          ["content", 2, "data"],
          ["content", 3, "data"],
        ],
      },
      text,
      { base64: bytes },
    ) as { content: { text?: string; data?: string }[]; note: string };
    expect(out.content[0]?.text).toBe("cvv [masked]");
    expect(out.content[1]?.data).toBe(image.toString("base64"));
    expect(Buffer.from(String(out.content[2]?.data), "base64").toString()).toBe("cvv [masked]");
    // What is no base64 where base64 belongs is text, as is base64 nobody says is binary.
    expect(out.content[3]?.data).toBe("cvv [masked]");
    expect(out.note).not.toContain(CVV);
    // The result itself is left as it was.
    expect((result as { content: { data?: string }[] }).content[2]?.data).toBe(
      base64(`cvv ${CVV}`),
    );
  });

  it("ignores paths that lead nowhere or to no text, and keeps keys named __proto__", () => {
    const result = JSON.parse(
      `{"__proto__":{"data":"${image.toString("base64")}"},"n":5,"list":[1]}`,
    ) as Json;
    const out = scrubApart(
      result,
      { base64: [["__proto__", "data"], ["n"], ["list", 3], ["missing", "data"], ["list", "0"]] },
      text,
      { base64: bytes },
    );
    expect(JSON.stringify(out)).toBe(JSON.stringify(result));
    expect(Object.hasOwn(out as object, "__proto__")).toBe(true);
  });

  it("drops the data when text scrubbing renames a key on its way", () => {
    const result: Json = { [`file ${CVV}`]: { data: base64(`cvv ${CVV}`) } };
    const out = scrubApart(result, { base64: [[`file ${CVV}`, "data"]] }, text, { base64: bytes });
    expect(out).toEqual({ "file [masked]": { data: null } });
  });
});

describe("scrubHex", () => {
  const hex = (bytes: Buffer) => `\\x${bytes.toString("hex")}`;
  const scrubber = createByteScrubber(["s3cr3t-token"], ["250", "4929837150216347"]);

  it("scrubs the bytes bytea holds, and masks them as text when they are UTF-8 text", () => {
    const held = Buffer.from("token s3cr3t-token, card 4929837150216347, mail ann@example.com");
    expect(scrubHex(hex(held), scrubber, ["email"])).toBe(
      hex(Buffer.from("token [redacted], card [masked], mail a***@example.com")),
    );
  });

  it("returns the very text when the bytes hold nothing, whatever digits their hex has", () => {
    // 0x02 0x50: "250" in the hex, not in the bytes.
    const raw = hex(Buffer.from([0x02, 0x50, 0xff]));
    expect(raw).toContain("250");
    expect(scrubHex(raw, scrubber, ["card", "email"])).toBe(raw);
    expect(scrubHex("\\x", scrubber, ["card"])).toBe("\\x");
  });
});

describe("scrubApart with bytea", () => {
  it("scrubs hex at its paths as bytes, in one copy of rows however many, and the rest as text", () => {
    const scrubber = createByteScrubber([], ["250"]);
    const rows: Json[] = Array.from({ length: 3000 }, (_, i) => [
      i,
      `\\x${Buffer.from(`amount ${i % 2 ? 250 : 1}`).toString("hex")}`,
      "note 250",
    ]);
    const hexPaths = rows.map((_, i) => ["statements", 0, "rows", i, 1]);
    const result: Json = { statements: [{ rows }] };
    const out = scrubApart(
      result,
      { hex: [...hexPaths, ["statements", 0, "rows", 0, 2]] },
      (value) => scrubHidden(value, ["250"]),
      { hex: (data) => scrubHex(data, scrubber) },
    ) as { statements: { rows: [number, string, string][] }[] };
    const [even, odd] = out.statements[0]!.rows;
    expect(Buffer.from(even![1].slice(2), "hex").toString()).toBe("amount 1");
    expect(Buffer.from(odd![1].slice(2), "hex").toString()).toBe("amount [masked]");
    // What is no hex where hex is said to be is text.
    expect(even![2]).toBe("note [masked]");
    expect(out.statements[0]!.rows).toHaveLength(3000);
  });
});

describe("longValues", () => {
  it("keeps the values too long to turn up in base64 by chance", () => {
    expect(longValues([CVV, "12345", "4929837150216347", "abcdef"])).toEqual([
      "4929837150216347",
      "abcdef",
    ]);
  });
});
