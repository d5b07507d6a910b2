import { describe, expect, it, vi } from "vitest";
import { MASKED, MIN_MASKED_LENGTH } from "./input-mask.js";
import {
  createByteScrubber,
  createRedactor,
  MIN_SECRET_LENGTH,
  REDACTED,
} from "./secret-redactor.js";

describe("createRedactor", () => {
  it("scrubs every occurrence of each secret from text", () => {
    const redactor = createRedactor(["s3cr3t-token", "hunter2-password"]);
    expect(
      redactor.redactText("Bearer s3cr3t-token; again s3cr3t-token; pw=hunter2-password"),
    ).toBe(`Bearer ${REDACTED}; again ${REDACTED}; pw=${REDACTED}`);
  });

  it("is active only when it has a secret long enough to redact", () => {
    expect(createRedactor([]).active).toBe(false);
    expect(createRedactor(["short"]).active).toBe(false);
    expect(createRedactor(["long-enough"]).active).toBe(true);
  });

  it("ignores secrets shorter than MIN_SECRET_LENGTH", () => {
    const short = "x".repeat(MIN_SECRET_LENGTH - 1);
    const exact = "y".repeat(MIN_SECRET_LENGTH);
    const redactor = createRedactor([short, exact]);
    expect(redactor.redactText(`${short} ${exact}`)).toBe(`${short} ${REDACTED}`);
  });

  it("replaces a longer secret whole when it contains a shorter one", () => {
    const redactor = createRedactor(["abcdef", "abcdef-ghijkl"]);
    expect(redactor.redactText("a=abcdef-ghijkl b=abcdef")).toBe(`a=${REDACTED} b=${REDACTED}`);
    // Order of the secrets does not matter.
    const reversed = createRedactor(["abcdef-ghijkl", "abcdef"]);
    expect(reversed.redactText("a=abcdef-ghijkl")).toBe(`a=${REDACTED}`);
  });

  it("scrubs strings in nested values, object keys included", () => {
    const redactor = createRedactor(["s3cr3t-token"]);
    const value = {
      headers: { authorization: "Bearer s3cr3t-token" },
      list: ["s3cr3t-token", 42, true, null, { deep: "x s3cr3t-token y" }],
      "s3cr3t-token": "key",
    };
    expect(redactor.redact(value)).toEqual({
      headers: { authorization: `Bearer ${REDACTED}` },
      list: [REDACTED, 42, true, null, { deep: `x ${REDACTED} y` }],
      [REDACTED]: "key",
    });
  });

  it("keeps apart keys that read alike once redacted, so no entry is lost", () => {
    const redactor = createRedactor(["s3cr3t-token", "hunter2-password"]);
    const value = {
      "user s3cr3t-token": 1,
      "user hunter2-password": 2,
      [`user ${REDACTED}`]: 3,
    };
    expect(redactor.redact(value)).toEqual({
      [`user ${REDACTED}`]: 1,
      [`user ${REDACTED} (2)`]: 2,
      [`user ${REDACTED} (3)`]: 3,
    });
  });

  it("does not mutate what it redacts", () => {
    const redactor = createRedactor(["s3cr3t-token"]);
    const value = { a: "s3cr3t-token", b: ["s3cr3t-token"] };
    redactor.redact(value);
    expect(value).toEqual({ a: "s3cr3t-token", b: ["s3cr3t-token"] });
  });

  it("scrubs the JSON-escaped form of a secret holding quotes", () => {
    const secret = 'pa"ss"word';
    const redactor = createRedactor([secret]);
    const logLine = JSON.stringify({ msg: `connecting with ${secret}` });
    const scrubbed = redactor.redactText(logLine);
    expect(scrubbed).toBe(JSON.stringify({ msg: `connecting with ${REDACTED}` }));
    expect(scrubbed).not.toContain("ss");
  });

  it("scrubs the JSON-escaped form of a secret holding backslashes", () => {
    const secret = "C:\\keys\\prod";
    const redactor = createRedactor([secret]);
    const logLine = JSON.stringify({ err: `cannot read ${secret}` });
    expect(logLine).toContain("C:\\\\keys\\\\prod");
    expect(redactor.redactText(logLine)).toBe(JSON.stringify({ err: `cannot read ${REDACTED}` }));
    // The raw form is still scrubbed too.
    expect(redactor.redactText(`raw ${secret}`)).toBe(`raw ${REDACTED}`);
  });

  it("scrubs the JSON-escaped form of a secret holding a newline", () => {
    const secret = "line-one\nline-two";
    const redactor = createRedactor([secret]);
    expect(redactor.redactText(JSON.stringify(secret))).toBe(`"${REDACTED}"`);
  });

  it("scrubs a secret as other JSON encoders escape it (PHP, Go, Python, Java, .NET)", () => {
    const secret = "sk/LIVE+a<b>&c/pässwörd==";
    const redactor = createRedactor([secret]);
    const echoes = [
      // PHP's json_encode with JSON_UNESCAPED_UNICODE
      String.raw`{"authorization":"sk\/LIVE+a<b>&c\/pässwörd=="}`,
      // PHP's json_encode by default
      String.raw`{"authorization":"sk\/LIVE+a<b>&c\/p\u00e4ssw\u00f6rd=="}`,
      // Java's Gson, HTML-safe by default
      String.raw`{"authorization":"sk/LIVE+a\u003cb\u003e\u0026c/pässwörd\u003d\u003d"}`,
      // .NET's System.Text.Json with its default encoder
      String.raw`{"authorization":"sk/LIVE\u002Ba\u003Cb\u003E\u0026c/p\u00E4ssw\u00F6rd=="}`,
      // Go's encoding/json
      String.raw`{"authorization":"sk/LIVE+a\u003cb\u003e\u0026c/pässwörd=="}`,
      // Python's json.dumps
      String.raw`{"authorization": "sk/LIVE+a<b>&c/p\u00e4ssw\u00f6rd=="}`,
    ];
    for (const echo of echoes) {
      expect(JSON.parse(echo).authorization, echo).toBe(secret);
      const scrubbed = redactor.redactText(echo);
      expect(scrubbed, echo).toContain(REDACTED);
      expect(scrubbed, echo).not.toContain("LIVE");
    }
    // .NET writes a quote as \u0022, not \"
    expect(createRedactor(['pa"ss-word']).redactText(String.raw`{"p":"pa\u0022ss-word"}`)).toBe(
      `{"p":"${REDACTED}"}`,
    );
  });

  it("leaves text without secrets and non-string values as they are", () => {
    const redactor = createRedactor(["s3cr3t-token"]);
    expect(redactor.redactText("nothing here")).toBe("nothing here");
    expect(redactor.redact(12345)).toBe(12345);
    expect(redactor.redact(null)).toBeNull();
  });

  it("with no secrets, returns text unchanged", () => {
    const redactor = createRedactor([]);
    expect(redactor.redactText("anything [redacted] at all")).toBe("anything [redacted] at all");
  });
});

describe("encoded and numeric secrets", () => {
  it("redacts a secret percent-encoded in an echoed URL and a numeric secret held as a number", () => {
    const redactor = createRedactor(["tok+en/123==", "98765432"]);
    const out = redactor.redact({
      url: `/cb?t=${encodeURIComponent("tok+en/123==")}`,
      pin: 98765432,
      other: 98765433,
    });
    expect(out).toEqual({ url: "/cb?t=[redacted]", pin: "[redacted]", other: 98765433 });
  });
});

describe("values that hold no secret are shown as they are, and the rest are still found", () => {
  it("returns a value without any secret untouched, the same object", () => {
    const redactor = createRedactor(["s3cr3t-token"]);
    const value = { status: 200, body: { items: ["a", "b"], note: "s3cr3t-toke" } };
    expect(redactor.redact(value)).toBe(value);
  });

  it("finds secrets whose characters JSON escapes, wherever they sit in a value", () => {
    const secrets = ['pa"ss\\word', "tab\there-secret", "ctrl\u0001-secret"];
    const redactor = createRedactor(secrets);
    for (const secret of secrets) {
      const escaped = JSON.stringify(secret).slice(1, -1);
      for (const value of [
        { deep: [{ text: `before ${secret} after` }] },
        { [`key-${secret}`]: 1 },
        // Text that holds the secret already escaped once (a JSON body kept as text).
        { body: `{"token":"${escaped}"}` },
      ]) {
        expect(JSON.stringify(redactor.redact(value))).not.toContain(escaped);
        expect(JSON.stringify(redactor.redact(value))).toContain(REDACTED);
      }
    }
  });

  it("finds a secret holding a surrogate pair, and one ending in half of a pair", () => {
    const pair = "key-\u{1F511}-secret";
    const half = "key-secret-\ud83d";
    const redactor = createRedactor([pair, half]);
    expect(redactor.redact({ a: `x ${pair} y` })).toEqual({ a: `x ${REDACTED} y` });
    // In the value the half is completed by the next character, so JSON leaves it unescaped.
    expect(redactor.redact({ a: `x ${half}\udd11 y` })).toEqual({ a: `x ${REDACTED}\udd11 y` });
  });

  it("finds a numeric secret held as a number deep in a value", () => {
    const redactor = createRedactor(["12345678901"]);
    expect(redactor.redact({ list: [{ pin: 12345678901 }] })).toEqual({
      list: [{ pin: REDACTED }],
    });
  });
});

describe("scrubbing bytes", () => {
  it("finds a secret in the bytes of its Latin-1 letters, as a header carries it", () => {
    const secret = "Basic s\u00e9cr\u00e8t-p\u00e4ss";
    const scrubber = createByteScrubber([secret]);
    for (const encoding of ["utf8", "latin1"] as const) {
      const echoed = Buffer.from(`you sent ${secret}`, encoding);
      expect(scrubber.scrub(echoed).toString(encoding), encoding).toBe(`you sent ${REDACTED}`);
    }
  });

  it("searches small bytes for no value when no two bytes in a row start one", () => {
    // A result's bytea cells are scrubbed one at a time: thousands of 16-byte ids, each
    // searched for every form of every credential, took longer than the rest of the result.
    const scrubber = createByteScrubber(["s3cr3t-token", "hunter2-password"], ["4929837150216347"]);
    const cells = Array.from({ length: 1000 }, (_, i) =>
      Buffer.from([i & 0xff, 0x00, 0xfe, i >> 8, 0x7f]),
    );
    const search = vi.spyOn(Buffer.prototype, "indexOf");
    try {
      for (const cell of cells) expect(scrubber.scrub(cell)).toBe(cell);
      expect(search.mock.calls.length).toBeLessThan(cells.length);
    } finally {
      search.mockRestore();
    }
    // Bytes that hold one still have it found, wherever it sits, in any of its forms.
    for (const [value, marker] of [
      ["s3cr3t-token", REDACTED],
      ["4929837150216347", MASKED],
      ['"4929837150216347"', `"${MASKED}"`],
    ] as const) {
      for (let at = 0; at <= 4; at++) {
        const held = Buffer.concat([
          Buffer.alloc(at, 0xfe),
          Buffer.from(value),
          Buffer.alloc(4 - at),
        ]);
        expect(scrubber.scrub(held)).toEqual(
          Buffer.concat([Buffer.alloc(at, 0xfe), Buffer.from(marker), Buffer.alloc(4 - at)]),
        );
      }
    }
    expect(scrubber.scrub(Buffer.from("s3"))).toEqual(Buffer.from("s3"));
    expect(scrubber.scrub(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
  });
});

describe("cutting scrubbed bytes", () => {
  const secret = "s3cr3t-credential-7f1c2a9e";
  const scrubber = createByteScrubber([secret]);
  /** What the agent is shown of a reflected answer of `size` raw bytes ending in `tail`. */
  const shown = (tail: string, size: number, cap: number) => {
    const raw = Buffer.from(`${"z".repeat(size - tail.length)}${tail}`);
    const window = raw.subarray(0, cap + scrubber.overlap);
    return scrubber.clip(window, cap, window.length === raw.length, true).bytes.toString();
  };

  it("shows the same, whether or not the bytes at the cut begin a secret", () => {
    const cap = 200;
    for (let length = 1; length < secret.length; length++) {
      // Past the window too, where the guess is cut off unread.
      for (let at = cap - length - 3; at <= cap + scrubber.overlap + 3; at++) {
        const guess = secret.slice(0, length);
        const wrong = `${guess.slice(0, -1)}#`;
        const right = shown(guess, at + length, cap);
        // The guess may show, as the agent wrote it; a guess one byte off must otherwise
        // look exactly like a right one, or the cut is an oracle.
        const last = at + length - 1;
        const asWrong =
          right.length > last ? `${right.slice(0, last)}#${right.slice(last + 1)}` : right;
        expect(asWrong, `${length} at ${at}`).toBe(shown(wrong, at + length, cap));
      }
    }
  });

  it("keeps the whole cap when the window past it was read and nothing was scrubbed", () => {
    const raw = Buffer.from("a".repeat(1000));
    const cut = scrubber.clip(raw.subarray(0, 100 + scrubber.overlap), 100, false, true);
    expect(cut.bytes.toString()).toBe("a".repeat(100));
  });

  it("keeps the whole cap of bytes read to their end, however long the longest value", () => {
    const long = createByteScrubber([secret], ["é".repeat(1000)]);
    expect(long.overlap).toBe(6000);
    const raw = Buffer.from(`${"a".repeat(150)}${secret}${"a".repeat(200)}`);
    const clipped = (cap: number, whole: boolean) =>
      long.clip(raw, cap, whole, true).bytes.toString();
    expect(clipped(100, true)).toBe("a".repeat(100));
    expect(clipped(160, true)).toBe(`${"a".repeat(150)}${REDACTED}`);
    // Read in part, it keeps nothing: any of it could begin a value.
    expect(clipped(100, false)).toBe("");
  });

  it("leaves no piece of a secret whose end was past the window", () => {
    // Whole secrets earlier shrink the window, pulling the start of one cut off at the
    // window's end back before the cap.
    const raw = Buffer.from(`${secret.repeat(2)}${"b".repeat(20)}${secret}`);
    const cap = 60;
    const window = raw.subarray(0, cap + scrubber.overlap);
    expect(scrubber.scrub(window).subarray(0, cap).toString()).toContain("s3cr3t");
    const cut = scrubber.clip(window, cap, false, true).bytes.toString();
    expect(cut.startsWith("[redacted][redacted]bbb")).toBe(true);
    expect(cut).not.toContain("s3");
  });
});

describe("scrubbing masked values with the credentials", () => {
  const secret = "s3cr3t-credential-7f1c2a9e";

  it("replaces masked values with [masked] and credentials with [redacted], in their encoded forms too", () => {
    const card = "4929 8371/5021";
    const scrubber = createByteScrubber([secret], [card]);
    const echoed = Buffer.from(
      `${secret} ${card} ${JSON.stringify(card)} ${encodeURIComponent(card)} ${card.replaceAll("/", "\\/")}`,
    );
    expect(scrubber.scrub(echoed).toString()).toBe(
      `${REDACTED} ${MASKED} "${MASKED}" ${MASKED} ${MASKED}`,
    );
  });

  it("reads past the cut by the longest value of either kind", () => {
    const long = "a-masked-value-longer-than-the-credential";
    expect(createByteScrubber([secret], [long]).overlap).toBe(long.length);
    expect(createByteScrubber([secret], ["short"]).overlap).toBe(secret.length);
    expect(createByteScrubber([], [long]).overlap).toBe(long.length);
  });

  it("leaves no start of a masked value at the cut, wherever it falls", () => {
    const card = "4929837150216347";
    const scrubber = createByteScrubber([secret], [card]);
    const cap = 100;
    const shown: string[] = [];
    for (let at = cap - 2 * scrubber.overlap; at <= cap + 2; at++) {
      const raw = Buffer.from(`${"z".repeat(at)}${card}${"z".repeat(200)}`);
      shown.push(
        scrubber.clip(raw.subarray(0, cap + scrubber.overlap), cap, false, true).bytes.toString(),
      );
    }
    // The card is all digits: not one of them may show.
    for (const text of shown) expect(text).not.toMatch(/\d/);
    expect(shown.some((text) => text.includes(MASKED))).toBe(true);
  });

  it(`scrubs no value shorter than ${MIN_MASKED_LENGTH} characters, which would blank out ordinary text`, () => {
    const scrubber = createByteScrubber([], ["42"]);
    expect(scrubber.overlap).toBe(0);
    expect(scrubber.scrub(Buffer.from("page 42 of 420")).toString()).toBe("page 42 of 420");
  });
});

describe("clipping what was read to a cap", () => {
  // Assembled at run time so that secret scanners do not flag this file.
  const token = `ghp_${"a1B2c3D4e5".repeat(3)}f6G7h8`;
  const card = "4242 4242 4242 4242";

  it("masks what the detectors find in text before the cut, so that no piece of it is left", () => {
    const scrubber = createByteScrubber([], [], ["secret", "card"]);
    expect(scrubber.active).toBe(false);
    expect(scrubber.overlap).toBeGreaterThanOrEqual(token.length);
    const cap = 100;
    const shown = new Set<string>();
    for (const value of [token, card]) {
      for (let at = cap - value.length - 2; at <= cap + 2; at++) {
        const raw = Buffer.from(`${"z".repeat(at)} ${value} ${"z".repeat(2000)}`);
        for (const whole of [true, false]) {
          const read = whole ? raw : raw.subarray(0, cap + scrubber.overlap);
          const { bytes, truncated } = scrubber.clip(read, cap, whole, true);
          const text = bytes.toString();
          expect(truncated).toBe(true);
          expect(bytes.length).toBeLessThanOrEqual(cap);
          // Not a piece of either, nor a piece of a hint.
          const rest = text.replace(/^z* ?/, "");
          expect(rest, `${value} at ${at}`).toMatch(/^(?:(?:ghp_\*\*\*|\*\*\*\* 4242) ?z*)?$/);
          shown.add(rest.trim());
        }
      }
    }
    expect(shown).toContain("ghp_***");
    expect(shown).toContain("**** 4242");
  });

  it("leaves what it does not cut to the detectors after, with the rest of the result", () => {
    const scrubber = createByteScrubber(["s3cr3t-credential"], [], ["card"]);
    const read = Buffer.from(`${card} s3cr3t-credential`);
    const { bytes, truncated } = scrubber.clip(read, 100, true, true);
    expect(bytes.toString()).toBe(`${card} ${REDACTED}`);
    expect(truncated).toBe(false);
    // Masked, the hints made it short enough: nothing was cut after all.
    const long = Buffer.from(`${card} ${card} ${card}`);
    const fits = scrubber.clip(long, long.length - 10, true, true);
    expect(fits.bytes.toString()).toBe("**** 4242 **** 4242 **** 4242");
    expect(fits.truncated).toBe(false);
  });

  it("never cuts a marker in two, nor a character of text", () => {
    const secret = "s3cr3t-credential-7f1c2a9e";
    const scrubber = createByteScrubber([secret], ["4929837150216347"]);
    for (const value of [secret, "4929837150216347"]) {
      for (let at = 80; at <= 100; at++) {
        const raw = Buffer.from(`${"é".repeat(at / 2)}${"z".repeat(at % 2)}${value}zz`);
        for (const text of [true, false]) {
          const out = scrubber.clip(raw, 100, true, text).bytes.toString("latin1");
          expect(out).not.toMatch(/\[[a-z]*$/);
          if (text) expect(Buffer.from(out, "latin1").toString()).not.toContain("\ufffd");
        }
      }
    }
  });

  it("takes detectors on a scrubber made already, scrubbing what it did", () => {
    const read = Buffer.from(`s3cr3t-credential ${card} ${"z".repeat(1000)}`);
    const made = createByteScrubber(["s3cr3t-credential"]).detecting(["card"]);
    const fresh = createByteScrubber(["s3cr3t-credential"], [], ["card"]);
    expect(made.overlap).toBe(fresh.overlap);
    expect(made.clip(read, 100, false, true)).toEqual(fresh.clip(read, 100, false, true));
    expect(made.clip(read, 100, false, true).bytes.toString()).toMatch(
      /^\[redacted\] \*{4} 4242 z+$/,
    );
  });

  it("reads the detectors' reach past the cut only when there are detectors", () => {
    expect(createByteScrubber(["s3cr3t-credential"]).overlap).toBe(17);
    expect(createByteScrubber(["s3cr3t-credential"], [], ["email"]).overlap).toBe(512);
  });
});
