/** The argv template language and the shell quoting that previews use. */
import { describe, expect, it } from "vitest";
import { parseElement, renderArgv, type Segment, shellQuote } from "./exec-template.js";

function segments(element: string): Segment[] {
  const parsed = parseElement(element);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed.segments;
}

describe("parseElement", () => {
  it("splits text from placeholders and unescapes doubled braces", () => {
    expect(segments("--service={service}")).toEqual([{ text: "--service=" }, { arg: "service" }]);
    expect(segments("{a}{b}")).toEqual([{ arg: "a" }, { arg: "b" }]);
    expect(segments("{{a}} }}{{")).toEqual([{ text: "{a} }{" }]);
    expect(segments("{{{a}}}")).toEqual([{ text: "{" }, { arg: "a" }, { text: "}" }]);
    expect(segments("")).toEqual([{ text: "" }]);
    for (const bad of ["{", "}", "{a", "{}", "{1a}", "{a b}", "a}b"]) {
      expect("problem" in parseElement(bad), bad).toBe(true);
    }
  });
});

describe("renderArgv", () => {
  it("drops an element whose argument is absent, without reading inherited properties", () => {
    const template = ["ls", "--x={constructor}", "{a}"].map(segments);
    expect(renderArgv(template, { a: "" })).toEqual(["ls", ""]);
    expect(renderArgv(template, { a: "1", constructor: "c" })).toEqual(["ls", "--x=c", "1"]);
  });
});

describe("shellQuote", () => {
  it("quotes only what a POSIX shell would read differently", () => {
    const cases: [string, string][] = [
      ["restart", "restart"],
      ["/usr/bin/x.y-z_1,a=b:c@d%e+f", "/usr/bin/x.y-z_1,a=b:c@d%e+f"],
      ["", "''"],
      ["a b", "'a b'"],
      ["$HOME", "'$HOME'"],
      ["*", "'*'"],
      ["[masked]", "'[masked]'"],
      ["it's", "'it'\\''s'"],
      ["a\tb", "$'a\\tb'"],
      ["a\r\n'\\", "$'a\\r\\n\\'\\\\'"],
      ["\x1b[31m", "$'\\x1b[31m'"],
      ["zero\u200bwidth", "$'zero\\u200bwidth'"],
      ["é ü", "'é ü'"],
    ];
    for (const [value, quoted] of cases) expect(shellQuote(value), value).toBe(quoted);
  });
});
