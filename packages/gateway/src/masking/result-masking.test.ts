import { describe, expect, it } from "vitest";
import type { Json } from "../common/canonical-json.js";
import { type DetectorName, detectorNames } from "./detector-names.js";
import { maskResult, maskText } from "./result-masking.js";

const all: readonly DetectorName[] = detectorNames;

/** Masks and checks that none of the raw values survives in the output. */
function masked(text: string, detectors: readonly DetectorName[], ...raw: string[]) {
  const result = maskText(text, detectors);
  for (const value of raw) expect(result.text).not.toContain(value);
  return result;
}

function unchanged(text: string, detectors: readonly DetectorName[] = all): void {
  expect(maskText(text, detectors)).toEqual({ text, counts: {} });
}

// Secrets are assembled at run time so that secret scanners do not flag this file.
const fake = {
  aws: `AKIA${"IOSFODNN7EXAMPLE"}`,
  awsSession: `ASIA${"Q3EGUWAZ5HDZJK4N"}`,
  github: `ghp_${"a1B2c3D4e5".repeat(3)}f6G7h8`,
  githubOauth: `gho_${"Z9y8X7w6V5".repeat(4)}`,
  githubPat: `github_pat_${"11ABCDEFG0".repeat(3)}_${"xYz123".repeat(8)}`,
  slack: `xoxb-${"123456789012"}-${"1234567890123"}-${"AbCdEfGhIjKlMnOpQrStUvWx"}`,
  stripe: `sk_live_${"4eC39HqLyjWDarjtT1zdp7dc"}`,
  stripeRestricted: `rk_live_${"51H8s2KLmNoPqRsTuVwXyZ"}`,
  openai: `sk-${"T3BlbkFJ".repeat(6)}`,
  openaiProject: `sk-proj-${"Ab1_Cd2-Ef3".repeat(8)}`,
  anthropic: `sk-ant-api03-${"AbCdEf123_-".repeat(8)}`,
  google: `AIza${"SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"}`,
  gitlab: `glpat-${"xXyY12zZ34_aAbB56cC7"}`,
  npm: `npm_${"aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hIj"}`,
  sendgrid: `SG.${"ngeVfQFYQlKU0ufo8x5d1A"}.${"TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr"}`,
  twilio: `SK${"0123456789abcdef".repeat(2)}`,
  jwt: `eyJ${"hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"}.${"eyJzdWIiOiIxMjM0NTY3ODkwIn0"}.${"dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}`,
  keyBody: `MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n${"BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj".repeat(3)}\nMgIDAQAB`,
};

describe("email", () => {
  it("masks an address inside text, keeping its first character and domain", () => {
    const { text, counts } = masked("contact a.smith@example.com today", ["email"], "a.smith");
    expect(text).toBe("contact a***@example.com today");
    expect(counts).toEqual({ email: 1 });
  });

  it("masks every address, subdomains and plus tags included", () => {
    const { text, counts } = masked(
      "<jo+news@mail.example.co.uk>, x_y@corp.io.",
      ["email"],
      "jo+news",
      "x_y@",
    );
    expect(text).toBe("<j***@mail.example.co.uk>, x***@corp.io.");
    expect(counts).toEqual({ email: 2 });
  });

  it("leaves handles, dotless domains and bare @ alone", () => {
    unchanged("ping @alice or root@localhost at 10 @ 12", ["email"]);
    unchanged("decorators like @Component({selector: 'a'})", ["email"]);
  });
});

describe("phone", () => {
  it.each([
    ["+1 (415) 555-2671", "+***-***-**71"],
    ["+14155552671", "+***-***-**71"],
    ["+44 20 7946 0958", "+***-***-**58"],
    ["+49-30-1234567", "+***-***-**67"],
    ["(415) 555-2671", "***-***-**71"],
    ["(415)555-2671", "***-***-**71"],
    ["415-555-2671", "***-***-**71"],
    ["415.555.2671", "***-***-**71"],
    ["1-800-555-0199", "***-***-**99"],
  ])("masks %s", (phoneNumber, hint) => {
    const { text, counts } = masked(`call ${phoneNumber} now`, ["phone"], phoneNumber);
    expect(text).toBe(`call ${hint} now`);
    expect(counts).toEqual({ phone: 1 });
  });

  it.each([
    ["a date", "due 2026-11-22"],
    ["a date with slashes", "due 11/22/2026"],
    ["a timestamp with an offset", "at 2026-11-22T10:00:00+01:00"],
    ["a time", "at 10:30:45.123"],
    ["version numbers", "v415.555.2671 and 10.15.7 and 1.2.3.4"],
    ["an IP address", "host 192.168.100.200"],
    ["a plain id", "order 4155552671"],
    ["a signed decimal", "delta +3.14159265358"],
    ["an area code starting with 1", "123-456-7890"],
    ["mixed separators", "415-555.2671"],
    ["a longer dashed number", "415-555-2671-9"],
    ["a short local number", "555-2671"],
  ])("leaves %s alone", (_, text) => {
    unchanged(text, ["phone"]);
  });
});

describe("card", () => {
  it.each([
    ["4242424242424242", "**** 4242"],
    ["4242 4242 4242 4242", "**** 4242"],
    ["4242-4242-4242-4242", "**** 4242"],
    ["5555 5555 5555 4444", "**** 4444"],
    ["3782 822463 10005", "**** 0005"],
    ["4222222222222", "**** 2222"],
  ])("masks %s", (cardNumber, hint) => {
    const { text, counts } = masked(`paid with ${cardNumber}.`, ["card"], cardNumber);
    expect(text).toBe(`paid with ${hint}.`);
    expect(counts).toEqual({ card: 1 });
  });

  it("masks a card followed by its expiry, leaving the expiry", () => {
    const { text } = masked("4242 4242 4242 4242 12/27", ["card"], "4242 4242 4242 4242");
    expect(text).toBe("**** 4242 12/27");
  });

  it.each([
    ["a Luhn-failing 16-digit number", "4242424242424241"],
    ["a Luhn-failing grouped number", "4242 4242 4242 4241"],
    ["a Luhn-valid epoch-millisecond timestamp", "1763251200004"],
    ["a Luhn-valid number no network issues", "9000000000000001"],
    ["a decimal", "0.4242424242424242"],
    ["a 20-digit run", "42424242424242424242"],
    ["digits glued to letters", "id4242424242424242"],
    ["a grouping that is not a card's", "42 42424242 424242"],
    ["12 digits", "4242 4242 4242"],
  ])("leaves %s alone", (_, text) => {
    unchanged(text, ["card"]);
  });
});

describe("ssn", () => {
  it("masks a dashed SSN, keeping the serial", () => {
    const { text, counts } = masked("ssn 123-45-6789 on file", ["ssn"], "123-45-6789");
    expect(text).toBe("ssn ***-**-6789 on file");
    expect(counts).toEqual({ ssn: 1 });
  });

  it("masks an unformatted SSN after a label, keeping the label", () => {
    expect(masked("SSN: 123456789", ["ssn"], "123456789").text).toBe("SSN: ***-**-6789");
    expect(masked("Social Security Number 123 45 6789", ["ssn"], "123 45").text).toBe(
      "Social Security Number ***-**-6789",
    );
  });

  it.each([
    ["area 000", "000-12-3456"],
    ["area 666", "666-12-3456"],
    ["area 900-999", "912-34-5678"],
    ["group 00", "123-00-6789"],
    ["serial 0000", "123-45-0000"],
    ["an unlabelled 9-digit id", "id 123456789"],
    ["an unlabelled spaced number", "123 45 6789"],
    ["a longer dashed number", "123-45-6789-1"],
    ["a date", "2026-11-22"],
    ["a labelled invalid SSN", "SSN: 000-12-3456"],
  ])("leaves %s alone", (_, text) => {
    unchanged(text, ["ssn"]);
  });
});

describe("iban", () => {
  it.each([
    ["DE89370400440532013000", "DE** **** 3000"],
    ["DE89 3704 0044 0532 0130 00", "DE** **** 3000"],
    ["GB29 NWBK 6016 1331 9268 19", "GB** **** 6819"],
    ["FR1420041010050500013M02606", "FR** **** 2606"],
    ["NL91ABNA0417164300", "NL** **** 4300"],
  ])("masks %s", (account, hint) => {
    const { text, counts } = masked(`pay to ${account}, thanks`, ["iban"], account);
    expect(text).toBe(`pay to ${hint}, thanks`);
    expect(counts).toEqual({ iban: 1 });
  });

  it("masks a grouped IBAN followed by a four-letter word, leaving the word", () => {
    const { text } = masked("BE68 5390 0754 7034 EURO", ["iban"], "5390 0754");
    expect(text).toBe("BE** **** 7034 EURO");
  });

  it.each([
    ["a bad checksum", "DE89370400440532013001"],
    ["a wrong length for its country", "DE5137040044053201300"],
    ["lower case", "de89370400440532013000"],
    ["other groupings", "DE89 37040044 0532013000"],
    ["letters glued on", "XDE89370400440532013000"],
  ])("leaves %s alone", (_, text) => {
    unchanged(text, ["iban"]);
  });
});

describe("secret", () => {
  it.each([
    [fake.aws, "AKIA***"],
    [fake.awsSession, "ASIA***"],
    [fake.github, "ghp_***"],
    [fake.githubOauth, "gho_***"],
    [fake.githubPat, "github_pat_***"],
    [fake.slack, "xoxb-***"],
    [fake.stripe, "sk_live_***"],
    [fake.stripeRestricted, "rk_live_***"],
    [fake.openai, "sk-***"],
    [fake.openaiProject, "sk-proj-***"],
    [fake.anthropic, "sk-ant-***"],
    [fake.google, "AIza***"],
    [fake.gitlab, "glpat-***"],
    [fake.npm, "npm_***"],
    [fake.sendgrid, "SG.***"],
    [fake.twilio, "SK***"],
    [fake.jwt, "eyJ***(jwt)"],
  ])("masks %s", (key, hint) => {
    const { text, counts } = masked(`key=${key} ok`, ["secret"], key, key.slice(-12));
    expect(text).toBe(`key=${hint} ok`);
    expect(counts).toEqual({ secret: 1 });
  });

  it("masks a multi-line private key, keeping its BEGIN and END lines", () => {
    const pem = `-----BEGIN RSA PRIVATE KEY-----\n${fake.keyBody}\n-----END RSA PRIVATE KEY-----`;
    const { text, counts } = masked(`key:\n${pem}\ndone`, ["secret"], "MIIEvQIBADANBgkq");
    expect(text).toBe(
      "key:\n-----BEGIN RSA PRIVATE KEY----- [masked] -----END RSA PRIVATE KEY-----\ndone",
    );
    expect(counts).toEqual({ secret: 1 });
  });

  it("masks a private key cut before its END line", () => {
    const { text } = masked(
      `-----BEGIN PRIVATE KEY-----\n${fake.keyBody}`,
      ["secret"],
      "MIIEvQIBADANBgkq",
    );
    expect(text).toBe("-----BEGIN PRIVATE KEY----- [masked]");
  });

  it("masks a bearer token, keeping the word Bearer", () => {
    const { text } = masked(
      "Authorization: Bearer abc123.def_456-ghi",
      ["secret"],
      "abc123.def_456-ghi",
    );
    expect(text).toBe("Authorization: Bearer ***");
    expect(masked(`bearer ${fake.jwt}`, ["secret"], fake.jwt).text).toBe("bearer ***");
  });

  it.each([
    ["prose about bearer tokens", "Bearer tokens go in the Authorization header"],
    ["a WWW-Authenticate challenge", 'Bearer realm="api"'],
    ["a publishable key", `pk_live_${"4eC39HqLyjWDarjtT1zdp7dc"}`],
    ["an sk- word without digits", "sk-learn-is-a-python-library-name"],
    ["a short AWS-like id", "AKIA1234"],
    ["a short GitHub-like token", "ghp_short"],
    ["a prefix glued to letters", `x${fake.aws}`],
    [
      "a BEGIN line of a public key",
      "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    ],
  ])("leaves %s alone", (_, text) => {
    unchanged(text, ["secret"]);
  });
});

describe("overlapping detectors", () => {
  it("lets the longest match win so nothing is left half-masked", () => {
    const address = "4242424242424242@example.com";
    const { text, counts } = masked(`mail ${address}`, all, "4242424242424242");
    expect(text).toBe("mail 4***@example.com");
    expect(counts).toEqual({ email: 1 });
  });

  it("masks an IBAN whole even when its digits look like a card", () => {
    const { text, counts } = masked(
      "DE89 3704 0044 0532 0130 00",
      all,
      "3704",
      "0044",
      "0532",
      "0130",
    );
    expect(text).toBe("DE** **** 3000");
    expect(counts).toEqual({ iban: 1 });
  });

  it("masks a bearer JWT once, as one secret", () => {
    const { text, counts } = masked(`Authorization: Bearer ${fake.jwt}`, all, "eyJzdWIi");
    expect(text).toBe("Authorization: Bearer ***");
    expect(counts).toEqual({ secret: 1 });
  });

  it("masks the union of partly overlapping matches", () => {
    // The phone's last digits are also the start of the email's local part.
    const { text, counts } = masked("+1 415 555 2671.x@example.com", all, "2671", "x@example");
    expect(text).toBe("2***@example.com");
    expect(counts).toEqual({ email: 1 });
  });

  it("masks past the winner's end when a shorter overlapping match sticks out", () => {
    // The phone wins (longer), but the email's tail lies beyond it and must go too.
    const { text, counts } = masked("+1 415 555 2671.x@e.io ok", all, "2671", "x@e.io");
    expect(text).toBe("+***-***-**71 ok");
    expect(counts).toEqual({ phone: 1 });
  });

  it("applies only the named detectors", () => {
    const text = "a.smith@example.com 4242424242424242 123-45-6789";
    expect(maskText(text, ["email"])).toEqual({
      text: "a***@example.com 4242424242424242 123-45-6789",
      counts: { email: 1 },
    });
    expect(maskText(text, ["card", "ssn"])).toEqual({
      text: "a.smith@example.com **** 4242 ***-**-6789",
      counts: { card: 1, ssn: 1 },
    });
  });

  it("gives the same result whatever the order of the detectors", () => {
    const text = "a.smith@example.com 4242424242424242 +44 20 7946 0958";
    expect(maskText(text, ["phone", "email", "card"])).toEqual(
      maskText(text, ["card", "phone", "email", "card"]),
    );
  });
});

describe("maskResult", () => {
  const result = (): Json => ({
    customer: { email: "a.smith@example.com", phone: "+1 (415) 555-2671" },
    "owner@example.org": "a result indexed by e-mail",
    payments: [
      { card: 4242424242424242, amount: 1250, note: "card 4242 4242 4242 4242" },
      { card: 4242424242424241, amount: 99.5, iban: "DE89370400440532013000" },
    ],
    tags: ["vip", null, true, 1763251200004],
    ssn: "123-45-6789",
  });

  it("masks strings, keys and card numbers at every depth, leaving other values", () => {
    const { value, counts } = maskResult(result(), all);
    expect(value).toEqual({
      customer: { email: "a***@example.com", phone: "+***-***-**71" },
      "o***@example.org": "a result indexed by e-mail",
      payments: [
        { card: "**** 4242", amount: 1250, note: "card **** 4242" },
        { card: 4242424242424241, amount: 99.5, iban: "DE** **** 3000" },
      ],
      tags: ["vip", null, true, 1763251200004],
      ssn: "***-**-6789",
    });
    expect(counts).toEqual({ email: 2, phone: 1, card: 2, iban: 1, ssn: 1 });
    const encoded = JSON.stringify(value);
    for (const raw of [
      "a.smith@",
      "owner@",
      "555-2671",
      "4242424242424242",
      "4242 4242 4242 4242",
    ]) {
      expect(encoded).not.toContain(raw);
    }
  });

  it("does not mutate its input", () => {
    const input = result();
    const before = structuredClone(input);
    maskResult(input, all);
    expect(input).toEqual(before);
  });

  it("returns the input itself when there are no detectors", () => {
    const input = result();
    const masked = maskResult(input, []);
    expect(masked.value).toBe(input);
    expect(masked.counts).toEqual({});
    expect(maskText("a.smith@example.com", [])).toEqual({
      text: "a.smith@example.com",
      counts: {},
    });
  });

  it("shares subtrees that have nothing to mask", () => {
    const input = { clean: { list: ["a", 1] }, dirty: "a.smith@example.com" };
    const { value } = maskResult(input, ["email"]);
    expect(value).not.toBe(input);
    expect((value as typeof input).clean).toBe(input.clean);
    expect(maskResult(input, ["card"]).value).toBe(input);
  });

  it("keeps every entry when masked keys come out the same", () => {
    const input = { "ann@example.com": 1, "al@example.com": 2, "a***@example.com": 3 };
    const { value } = maskResult(input, ["email"]);
    expect(value).toEqual({
      "a***@example.com": 1,
      "a***@example.com (2)": 2,
      "a***@example.com (3)": 3,
    });
  });

  it("stays linear when a great many keys mask alike", () => {
    // Looking for a free suffix from 2 each time made this quadratic: minutes of a frozen loop.
    const input: Record<string, Json> = {};
    for (let i = 0; i < 60_000; i++) input[`a${i}@x.io`] = i;
    const { value } = maskResult(input, ["email"]);
    const keys = Object.keys(value as object);
    expect(keys).toHaveLength(60_000);
    expect(keys.slice(0, 3)).toEqual(["a***@x.io", "a***@x.io (2)", "a***@x.io (3)"]);
    expect((value as Record<string, Json>)["a***@x.io (60000)"]).toBe(59_999);
  });

  it("keeps a key named __proto__ as a key", () => {
    const input = JSON.parse('{"__proto__": "a.smith@example.com", "x": 1}') as Json;
    const { value } = maskResult(input, ["email"]);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value as object)).toEqual(["__proto__", "x"]);
    expect(JSON.stringify(value)).toBe('{"__proto__":"a***@example.com","x":1}');
  });

  it("masks scalars at the top level", () => {
    expect(maskResult("call 415-555-2671", all).value).toBe("call ***-***-**71");
    expect(maskResult(5555555555554444, all).value).toBe("**** 4444");
    expect(maskResult(5555555555554444, ["email"]).value).toBe(5555555555554444);
    expect(maskResult(null, all).value).toBe(null);
  });
});

describe("adversarial input", () => {
  const size = 100_000;

  it.each([
    ["'a@' repeated", "a@".repeat(size / 2)],
    ["a long digit run", "7".repeat(size)],
    ["'-----BEGIN' without an end", "-----BEGIN ".repeat(size / 11)],
    ["BEGIN lines without keys", "-----BEGIN PRIVATE KEY\n".repeat(size / 23)],
    ["'sk-' without digits", "sk-".repeat(size / 3)],
    ["'+1 ' repeated", "+1 ".repeat(size / 3)],
    ["single digits with spaces", "1 ".repeat(size / 2)],
    ["IBAN-like groups", "AB12 ".repeat(size / 5)],
    ["a long dotted domain", `x@${"a.".repeat(size / 2)}`],
    ["a JWT start without dots", `eyJ${"a".repeat(size)}`],
    ["Bearer repeated", "Bearer ".repeat(size / 7)],
    ["JWT starts inside one long token", "eyJ_".repeat(size / 4)],
  ])("scans %s to the end", (_, text) => {
    expect(maskText(text, all).text).toBe(text);
  });

  it("masks only the token-shaped tail of a long run of GitHub PAT prefixes", () => {
    const { text, counts } = maskText("github_pat_".repeat(size / 11), all);
    expect(text.endsWith("_github_pat_***")).toBe(true);
    expect(text.length).toBeLessThan(size - 200);
    expect(counts).toEqual({ secret: 1 });
  });

  it("masks a private key with a huge body and no end", () => {
    const text = `-----BEGIN PRIVATE KEY-----\n${"QUJD".repeat(size / 4)}`;
    const { text: out, counts } = maskText(text, all);
    expect(out).toBe("-----BEGIN PRIVATE KEY----- [masked]");
    expect(counts).toEqual({ secret: 1 });
  });

  it("masks every card in a long run of them", () => {
    const text = "4242 4242 4242 4242, ".repeat(size / 21);
    const { text: out, counts } = maskText(text, ["card"]);
    expect(out).toBe("**** 4242, ".repeat(size / 21));
    expect(counts).toEqual({ card: Math.floor(size / 21) });
  });
});
