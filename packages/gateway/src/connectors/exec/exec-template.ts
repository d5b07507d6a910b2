/**
 * The argv template language of `exec` commands ("--service={service}", "{{" for a literal
 * brace), and how a rendered argv is shown to reviewers.
 */

/** A piece of one argv element: literal text, or the value of a named argument. */
export type Segment = { text: string } | { arg: string };

/** Argument names are identifiers, so `input.<name>` is an unambiguous field path. */
export const argNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Splits one argv element into literal text and placeholders, or says why it cannot. */
export function parseElement(element: string): { segments: Segment[] } | { problem: string } {
  const segments: Segment[] = [];
  let text = "";
  let i = 0;
  while (i < element.length) {
    const char = element[i];
    if (char === "{") {
      if (element[i + 1] === "{") {
        text += "{";
        i += 2;
        continue;
      }
      const close = element.indexOf("}", i + 1);
      if (close < 0) return { problem: 'has an unclosed "{"; write "{{" for a literal brace' };
      const name = element.slice(i + 1, close);
      if (!argNamePattern.test(name)) {
        return {
          problem: `"{${name}}" is not a placeholder: an argument name has letters, digits and _, and a literal brace is written "{{"`,
        };
      }
      if (text) segments.push({ text });
      text = "";
      segments.push({ arg: name });
      i = close + 1;
    } else if (char === "}") {
      if (element[i + 1] !== "}")
        return { problem: 'has a lone "}"; write "}}" for a literal brace' };
      text += "}";
      i += 2;
    } else {
      text += char;
      i += 1;
    }
  }
  if (text || segments.length === 0) segments.push({ text });
  return { segments };
}

export function placeholders(segments: readonly Segment[]): string[] {
  return segments.flatMap((segment) => ("arg" in segment ? [segment.arg] : []));
}

/**
 * The argv that runs. An element that names an optional argument the input leaves out is
 * dropped whole, so `--limit={limit}` disappears rather than running as `--limit=`.
 */
export function renderArgv(
  template: readonly (readonly Segment[])[],
  values: Readonly<Record<string, string>>,
): string[] {
  const argv: string[] = [];
  for (const segments of template) {
    let element = "";
    let complete = true;
    for (const segment of segments) {
      if ("text" in segment) {
        element += segment.text;
      } else {
        const value = Object.hasOwn(values, segment.arg) ? values[segment.arg] : undefined;
        if (value === undefined) {
          complete = false;
          break;
        }
        element += value;
      }
    }
    if (complete) argv.push(element);
  }
  return argv;
}

const plain = /^[A-Za-z0-9_@%+=:,./-]+$/;
// Line breaks, other control characters and invisible or reordering ones (bidi overrides,
// zero-width) would let a value make the preview look like something else.
const deceptive = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * One argv element as a POSIX shell would need it, for reviewers to read: bare when that
 * is unambiguous, else in single quotes, else (when it holds characters a reader could not
 * see) in $'…' with every such character escaped.
 */
export function shellQuote(value: string): string {
  if (plain.test(value)) return value;
  if (!deceptive.test(value)) return `'${value.replaceAll("'", `'\\''`)}'`;
  let out = "";
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (char === "\\" || char === "'") out += `\\${char}`;
    else if (char === "\n") out += "\\n";
    else if (char === "\t") out += "\\t";
    else if (char === "\r") out += "\\r";
    else if (deceptive.test(char))
      out +=
        code < 0x80
          ? `\\x${code.toString(16).padStart(2, "0")}`
          : `\\u${code.toString(16).padStart(4, "0")}`;
    else out += char;
  }
  return `$'${out}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
