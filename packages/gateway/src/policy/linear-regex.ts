/**
 * CEL's `matches` as CEL specifies it: RE2's syntax, in time linear in the text. cel-js runs
 * `new RegExp(pattern).test(text)`, JavaScript's backtracking engine, on text an agent wrote: a
 * rule as plain as `matches("(drop|delete).*table")` over a 1 MB body held the event loop for
 * minutes, and `(a+)+$` blows up on 30 characters. cel-js offers no way to replace one of its
 * standard functions, and `RegExp` is the one thing it constructs by name, so while a condition
 * that calls `matches` runs, that name is RE2's (re2js) instead. Evaluation is synchronous:
 * nothing else runs, and sees it, meanwhile.
 */
import { RE2JS } from "re2js";
import { errorMessage } from "../errors.js";

/** Compiled patterns by source: a policy's are few and fixed; an agent's are not kept long. */
const compiled = new Map<string, RE2JS>();
const MAX_COMPILED = 256;

function compile(pattern: string): RE2JS {
  let re = compiled.get(pattern);
  if (!re) {
    re = RE2JS.compile(pattern);
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

/** What cel-js's `new RegExp(pattern).test(text)` gets: a search, as `matches` is. */
function LinearRegExp(pattern: unknown): { test(text: unknown): boolean } {
  const re = compile(String(pattern));
  return { test: (text) => re.matcher(String(text)).find() };
}

const NativeRegExp = globalThis.RegExp;

/** Runs `evaluate` with `matches` in RE2, then puts JavaScript's RegExp back. */
export function withLinearRegex<T>(evaluate: () => T): T {
  globalThis.RegExp = LinearRegExp as unknown as RegExpConstructor;
  try {
    return evaluate();
  } finally {
    globalThis.RegExp = NativeRegExp;
  }
}

/** Why `pattern` is not an RE2 pattern (a lookahead, a backreference…), or undefined. */
export function patternProblem(pattern: string): string | undefined {
  try {
    compile(pattern);
    return undefined;
  } catch (error) {
    return errorMessage(error);
  }
}
