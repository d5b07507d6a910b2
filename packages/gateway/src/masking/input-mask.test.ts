import { describe, expect, it } from "vitest";
import type { Json } from "../common/canonical-json.js";
import {
  MASKED,
  maskInput,
  maskPathProblem,
  scrubHidden,
  withTopKeysHidden,
} from "./input-mask.js";

const refund = (): Json => ({
  method: "POST",
  path: "/refunds",
  body: {
    card_number: "4111111111111111",
    amount: 1250,
    items: [
      { sku: "A-1", iban: "DE89370400440532013000" },
      { sku: "B-2", iban: "GB29NWBK60161331926819" },
    ],
  },
});

describe("maskInput", () => {
  it("masks a nested key and reports its value as hidden", () => {
    const { masked, hidden } = maskInput(refund(), ["body.card_number"]);
    expect(masked).toEqual({
      method: "POST",
      path: "/refunds",
      body: {
        card_number: MASKED,
        amount: 1250,
        items: [
          { sku: "A-1", iban: "DE89370400440532013000" },
          { sku: "B-2", iban: "GB29NWBK60161331926819" },
        ],
      },
    });
    expect(hidden).toEqual(["4111111111111111"]);
  });

  it("hides a masked value the input repeats in its other values and keys, markers left whole", () => {
    const card = "4111111111111111";
    const { masked, hidden } = maskInput(
      {
        path: `/cards/${card}/refunds`,
        query: { ref: [`card ${card}`, 7] },
        body: { card_number: card, code: "ask", copy: Number(card.slice(0, 15)), [card]: true },
      },
      ["body.card_number", "body.code"],
    );
    expect(hidden).toEqual([card, "ask"]);
    expect(masked).toEqual({
      path: "/cards/[masked]/refunds",
      query: { ref: ["card [masked]", 7] },
      // "ask" is in "[masked]": the markers stay whole.
      body: { card_number: MASKED, code: MASKED, copy: 411111111111111, [MASKED]: true },
    });
    const number = maskInput({ amount: 1250, total: 1250, fee: 12 }, ["amount"]).masked;
    expect(number).toEqual({ amount: MASKED, total: MASKED, fee: 12 });
    // Values of one or two characters are never searched for.
    expect(maskInput({ pin: "42", note: "42 times" }, ["pin"]).masked).toEqual({
      pin: MASKED,
      note: "42 times",
    });
  });

  it("hides a masked value used as a key at any depth, keeping apart keys that read alike", () => {
    const key = "k3y-one";
    const { masked } = maskInput(
      {
        headers: { "x-api-key": key, [key]: "x", [`Bearer ${key}`]: "y" },
        body: { list: [{ [key]: 1, [MASKED]: 2 }] },
        [key]: "top",
      },
      ["headers.x-api-key"],
    );
    expect(masked).toEqual({
      headers: { "x-api-key": MASKED, [MASKED]: "x", [`Bearer ${MASKED}`]: "y" },
      body: { list: [{ [MASKED]: 1, [`${MASKED} (2)`]: 2 }] },
      [MASKED]: "top",
    });
    expect(JSON.stringify(masked)).not.toContain(key);
    // Connectors read the operation's own fields by their keys: a preview is built from the
    // input with those as sent, and scrubbed as text after.
    expect(
      maskInput({ body: { code: "body", body: 1 }, path: "/x" }, ["body.code"], { topKeys: false }),
    ).toEqual({ masked: { body: { code: MASKED, [MASKED]: 1 }, path: "/x" }, hidden: ["body"] });
  });

  it("masks a key in every array item with *", () => {
    const { masked, hidden } = maskInput(refund(), ["body.items.*.iban"]);
    expect(masked).toMatchObject({
      body: {
        card_number: "4111111111111111",
        items: [
          { sku: "A-1", iban: MASKED },
          { sku: "B-2", iban: MASKED },
        ],
      },
    });
    expect(hidden).toEqual(["DE89370400440532013000", "GB29NWBK60161331926819"]);
  });

  it("masks only the array item a numeric index names", () => {
    const { masked, hidden } = maskInput(refund(), ["body.items.1.iban"]);
    expect(masked).toMatchObject({
      body: {
        items: [
          { sku: "A-1", iban: "DE89370400440532013000" },
          { sku: "B-2", iban: MASKED },
        ],
      },
    });
    expect(hidden).toEqual(["GB29NWBK60161331926819"]);
  });

  it("applies a key to every item of a list it meets, however deep the lists nest", () => {
    const { masked, hidden } = maskInput(
      { body: [{ card_number: "4111111111111111", n: 1 }, [{ card_number: "5105105105105100" }]] },
      ["body.card_number"],
    );
    expect(masked).toEqual({ body: [{ card_number: MASKED, n: 1 }, [{ card_number: MASKED }]] });
    expect(hidden).toEqual(["4111111111111111", "5105105105105100"]);
    // An index still names one item only.
    expect(maskInput({ list: ["a1", "b2"] }, ["list.1"]).masked).toEqual({ list: ["a1", MASKED] });
  });

  it("matches keys whatever their case, in the path or in the input", () => {
    const input = { headers: { "x-api-key": "k3y-one", "X-API-KEY": "k3y-two", other: "o" } };
    const { masked, hidden } = maskInput(input, ["headers.X-Api-Key"]);
    expect(masked).toEqual({ headers: { "x-api-key": MASKED, "X-API-KEY": MASKED, other: "o" } });
    expect(hidden).toEqual(["k3y-one", "k3y-two"]);
  });

  it("matches * against any object key", () => {
    const { masked, hidden } = maskInput({ headers: { a: "secret-a", b: "secret-b" } }, [
      "headers.*",
    ]);
    expect(masked).toEqual({ headers: { a: MASKED, b: MASKED } });
    expect(hidden).toEqual(["secret-a", "secret-b"]);
  });

  it("applies several paths", () => {
    const { masked, hidden } = maskInput(refund(), ["body.card_number", "body.amount"]);
    expect(masked).toMatchObject({ body: { card_number: MASKED, amount: MASKED } });
    expect(hidden).toEqual(["4111111111111111", "1250"]);
  });

  it("leaves the input as it is when a path names nothing", () => {
    const input = refund();
    for (const path of ["body.cvv", "nothing.here", "body.items.5.iban"]) {
      const { masked, hidden } = maskInput(input, [path]);
      expect(masked).toEqual(refund());
      expect(hidden).toEqual([]);
    }
  });

  it("returns the input and nothing hidden when there are no paths", () => {
    const input = refund();
    expect(maskInput(input, [])).toEqual({ masked: refund(), hidden: [] });
  });

  it("never mutates the input", () => {
    const input = refund();
    maskInput(input, ["body.card_number", "body.items.*.iban", "body", "method"]);
    expect(input).toEqual(refund());
  });

  it("hides a whole object and collects the string forms of its leaves, numbers included", () => {
    const input: Json = {
      body: {
        owner: { name: "Ada Lovelace", pin: 4321, tags: ["vip", 7], active: true, note: null },
      },
    };
    const { masked, hidden } = maskInput(input, ["body.owner"]);
    expect(masked).toEqual({ body: { owner: MASKED } });
    expect(hidden).toEqual(["Ada Lovelace", "4321", "vip", "7"]);
  });

  it("masks a top-level key holding a number", () => {
    expect(maskInput({ token: 12345 }, ["token"])).toEqual({
      masked: { token: MASKED },
      hidden: ["12345"],
    });
  });
});

describe("withTopKeysHidden", () => {
  const card = "4111111111111111";
  const cases: [string, Json, string[]][] = [
    ["a refund", refund(), ["body.card_number"]],
    [
      "hidden values as top keys, one already reading as the marker, one as its second",
      { [card]: 1, [MASKED]: 2, [`${MASKED} (2)`]: 3, card, note: `for ${card}`, n: 12 },
      ["card"],
    ],
    ["a top key spelling a hidden number", { amount: 1250, 1250: "x", total: 1250 }, ["amount"]],
    [
      "keys named __proto__",
      JSON.parse(`{"__proto__": {"a": "${card}"}, "${card}": 1, "card": "${card}"}`),
      ["card"],
    ],
    ["a list at the top", [{ card, [card]: 1 }, card], ["*.card"]],
    ["text at the top", `card ${card}`, ["*"]],
    ["values too short to search for", { pin: "42", 42: "x", "42 times": 1 }, ["pin"]],
    ["a path naming nothing", { a: 1, b: { c: "d" } }, ["x.y"]],
    ["no paths", { [card]: card }, []],
    ["a whole object hidden", { body: { a: "secret-1", b: 7 }, "secret-1": "x" }, ["body"]],
  ];

  it.each(cases)("makes what masking with the top keys hidden makes: %s", (_name, input, paths) => {
    const once = maskInput(input, paths, { topKeys: false });
    const hidden = withTopKeysHidden(once);
    const again = maskInput(input, paths).masked;
    expect(hidden).toEqual(again);
    // In the same order, and as own keys (`__proto__` included), which toEqual does not check.
    expect(JSON.stringify(hidden)).toBe(JSON.stringify(again));
  });

  it("leaves what it is given alone", () => {
    const once = maskInput({ [card]: 1, card }, ["card"], { topKeys: false });
    const before = JSON.stringify(once.masked);
    expect(withTopKeysHidden(once)).toEqual({ [MASKED]: 1, card: MASKED });
    expect(JSON.stringify(once.masked)).toBe(before);
  });
});

describe("maskPathProblem", () => {
  it.each(["body.card_number", "body.items.*.iban", "body.items.0.iban", "token", "*"])(
    "accepts %j",
    (path) => {
      expect(maskPathProblem(path)).toBeUndefined();
    },
  );

  it.each(["", ".body", "body.", "body..card", "*."])("refuses the empty segment in %j", (path) => {
    expect(maskPathProblem(path)).toMatch(/empty segment/);
  });

  it("refuses a path that starts with input.", () => {
    expect(maskPathProblem("input.body.card_number")).toMatch(/drop the leading "input\."/);
  });
});

describe("scrubHidden", () => {
  it("replaces every occurrence of a hidden value in text", () => {
    const text = "charge 4111111111111111 then refund 4111111111111111";
    expect(scrubHidden(text, ["4111111111111111"])).toBe(`charge ${MASKED} then refund ${MASKED}`);
  });

  it("scrubs strings inside nested objects and arrays", () => {
    const description = {
      preview: "POST /cards/4111111111111111",
      facts: {
        http: { method: "POST", path: "/cards/4111111111111111" },
        list: ["x 4111111111111111 y"],
      },
    };
    expect(scrubHidden(description, ["4111111111111111"])).toEqual({
      preview: `POST /cards/${MASKED}`,
      facts: { http: { method: "POST", path: `/cards/${MASKED}` }, list: [`x ${MASKED} y`] },
    });
  });

  it("replaces a number equal to a hidden value", () => {
    expect(scrubHidden({ amount: 1250, other: 12500 }, ["1250"])).toEqual({
      amount: MASKED,
      other: 12500,
    });
  });

  it("leaves values shorter than three characters alone", () => {
    const value = { text: "id 42 in a b c", n: 42 };
    expect(scrubHidden(value, ["42", "a", ""])).toEqual({ text: "id 42 in a b c", n: 42 });
  });

  it("still scrubs three-character values", () => {
    expect(scrubHidden("pin 123 ok", ["123"])).toBe(`pin ${MASKED} ok`);
  });

  it("replaces the longer of two overlapping values whole", () => {
    expect(scrubHidden("id abc-secret-long", ["abc-secret", "abc-secret-long"])).toBe(
      `id ${MASKED}`,
    );
  });

  it("leaves booleans, null and unrelated values untouched and does not mutate the input", () => {
    const value = { ok: true, none: null, text: "nothing to hide" };
    expect(scrubHidden(value, ["secret-value"])).toEqual({
      ok: true,
      none: null,
      text: "nothing to hide",
    });
    const nested = { preview: "secret-value" };
    scrubHidden(nested, ["secret-value"]);
    expect(nested).toEqual({ preview: "secret-value" });
  });

  it("scrubs what maskInput hid from a preview built from the same input", () => {
    const input = refund();
    const { hidden } = maskInput(input, ["body.card_number", "body.items.*.iban"]);
    const preview = `POST /refunds\n${JSON.stringify(input)}`;
    const scrubbed = scrubHidden(preview, hidden);
    expect(scrubbed).not.toContain("4111111111111111");
    expect(scrubbed).not.toContain("DE89370400440532013000");
    expect(scrubbed).not.toContain("GB29NWBK60161331926819");
    expect(scrubbed).toContain('"sku":"A-1"');
  });
});

describe("scrubHidden with encoded forms", () => {
  it("hides values that derived text escaped as JSON or percent-encoded in a URL", () => {
    const hidden = ['ab"cd\\ef', "abc+def/ghi=", "line1\nline2"];
    const preview = `POST /charges?api_key=${encodeURIComponent("abc+def/ghi=")}&k=${new URLSearchParams({ v: "abc+def/ghi=" }).toString().slice(2)}\n${JSON.stringify({ card: 'ab"cd\\ef', note: "line1\nline2" }, null, 2)}`;
    const scrubbed = scrubHidden(preview, hidden);
    expect(scrubbed).not.toContain("abc%2Bdef");
    expect(scrubbed).not.toContain('ab\\"cd');
    expect(scrubbed).not.toContain("line1\\nline2");
    expect(scrubbed.match(/\[masked\]/g)).toHaveLength(4);
  });
});

describe("a mask path that goes on into text", () => {
  it("hides that text, since nothing shows what the upstream will read in it", () => {
    const { masked, hidden } = maskInput(refund(), ["body.card_number.deeper", "path.x"]);
    expect(masked).toMatchObject({ path: "[masked]", body: { card_number: "[masked]" } });
    expect(hidden).toHaveLength(2);
  });

  it("keeps a key named __proto__ beside a masked one, for reviewers to see what is sent", () => {
    const input = JSON.parse(
      '{"body": {"__proto__": {"refund_to": "x"}, "card": "4242424242424242"}}',
    ) as Json;
    const { masked } = maskInput(input, ["body.card"]);
    const body = (masked as Record<string, Record<string, Json>>).body!;
    expect(Object.keys(body)).toEqual(["__proto__", "card"]);
    expect(Object.getOwnPropertyDescriptor(body, "__proto__")?.value).toEqual({ refund_to: "x" });
    expect(body.card).toBe("[masked]");
  });

  it("hides the whole text, whatever it holds, and leaves other fields alone", () => {
    const cases = [
      ' {"card_number": "4242424242424242", "amount": 5}',
      '\ufeff{"card_number": "4242424242424242"}',
      '{"amount": 5, "amount": 5000, "card_number": "4242424242424242"}',
      '{"__proto__": {"refund_to": "x"}, "card_number": "4242424242424242"}',
      "card_number=4242424242424242&amount=5",
    ];
    for (const body of cases) {
      const input = { body, other: "kept" };
      const { masked, hidden } = maskInput(input, ["body.card_number"]);
      expect(masked).toEqual({ body: "[masked]", other: "kept" });
      expect(hidden[0]).toBe(body);
      // Read as it most likely is, the field's value is hidden where the agent repeats it.
      expect(scrubHidden("refund to 4242424242424242", hidden)).toBe(`refund to ${MASKED}`);
      // The real input is untouched: the connector sends the text exactly as given.
      expect(input.body).toBe(body);
    }
    const items = { items: ["IBAN1", { iban: "IBAN2" }, 7] };
    expect(maskInput(items, ["items.*.iban"]).masked).toEqual({
      items: ["[masked]", { iban: "[masked]" }, 7],
    });
  });
});
