import { describe, expect, it } from "vitest";
import type { Json } from "../common/canonical-json.js";
import { longValues, scrubApart, scrubBase64 } from "./binary-fields.js";
import { scrubHidden } from "./input-mask.js";
import { createByteScrubber } from "./secret-redactor.js";

const CVV = "729";
/** A JPEG's first bytes, then three whose base64 starts with the CVV: none of them is it. */
const image = Buffer.from(`/9j/${CVV}AAAAAAAA`, "base64");
const base64 = (text: string) => Buffer.from(text).toString("base64");

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
      [
        ["content", 1, "data"],
        ["content", 2, "data"],
        ["content", 3, "data"],
      ],
      text,
      bytes,
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
      [["__proto__", "data"], ["n"], ["list", 3], ["missing", "data"], ["list", "0"]],
      text,
      bytes,
    );
    expect(JSON.stringify(out)).toBe(JSON.stringify(result));
    expect(Object.hasOwn(out as object, "__proto__")).toBe(true);
  });

  it("drops the data when text scrubbing renames a key on its way", () => {
    const result: Json = { [`file ${CVV}`]: { data: base64(`cvv ${CVV}`) } };
    const out = scrubApart(result, [[`file ${CVV}`, "data"]], text, bytes);
    expect(out).toEqual({ "file [masked]": { data: null } });
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
