/**
 * A tool call's arguments checked against the input schema its MCP server gives the tool,
 * before anything is decided: a call the schema rules out is refused at once, naming the
 * argument, instead of waiting for a person's approval and then failing (even when the server
 * takes more than its schema says, as pydantic takes "5" for 5). The server still
 * checks them; this only ever refuses what the schema rules out, and a schema it cannot take
 * (an unknown dialect, a pattern RE2 cannot run, too large) is left to the server alone.
 *
 * The schemas come from the server at run time: patterns run in RE2 (linear time, whatever
 * the agent sends), formats are not checked (the server's idea of them may differ), nor is
 * `uniqueItems` (ajv compares items pairwise: 20,000 objects held the event loop 5 s), and a
 * schema is compiled only when its JSON is of bounded size, and only while one listing's
 * compiling has taken less than COMPILE_MS; a call's check that runs CHECK_MS refuses nothing.
 */
import { createContext, Script } from "node:vm";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import { RE2JS } from "re2js";
import { truncateText } from "../../common/storable-text.js";
import { AirlockError } from "../../errors.js";

const MAX_SCHEMA_CHARS = 256 * 1024;
/**
 * How long compiling one listing's schemas may hold the event loop, all told. Size alone does
 * not bound it: ajv took 2 s for one object of 2,000 properties, and ran out of memory after
 * 90 s on 110 KB that referred to such an object a thousand times.
 */
const COMPILE_MS = 1000;
/**
 * How long checking one call's arguments may hold the event loop. RE2 and the keywords left
 * out keep a check linear in the arguments, but not in the schema: a schema whose `$ref`s
 * fan out (allOf two refs to a schema of two refs, forty deep) is checked in 2^40 steps, and
 * an array of 150,000 items each matched against an enum of 30,000 values took 7 s.
 */
const CHECK_MS = 100;

const sandbox = createContext({});
const runTask = new Script("task()");
/** `task`'s result, or a throw once it has run `ms` (node:vm's watchdog ends it). */
function within<T>(ms: number, task: () => T): T {
  sandbox.task = task;
  try {
    return runTask.runInContext(sandbox, { timeout: Math.max(1, Math.ceil(ms)) }) as T;
  } finally {
    sandbox.task = undefined;
  }
}

const timedOut = (error: unknown) =>
  (error as { code?: unknown } | null)?.code === "ERR_SCRIPT_EXECUTION_TIMEOUT";

/**
 * ajv's pattern engine: RE2, searching as JSON Schema's `pattern` does. ajv tells compiled
 * patterns apart by their `toString()`, as it would RegExps: without one, every pattern would
 * be taken for the first ajv compiled (one of its meta-schema's).
 */
function linearRegExp(pattern: string): { test: (text: string) => boolean; toString(): string } {
  const re = RE2JS.compile(asEcmaScript(pattern));
  return { test: (text) => re.matcher(text).find(), toString: () => `re2:${pattern}` };
}
linearRegExp.code = 'require("re2js").RE2JS';

/** ECMAScript's white space and line terminators, as class ranges: RE2's `\s` is [\t\n\f\r ]. */
const SPACE =
  "\\x{9}-\\x{D}\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";
/** Every other character. */
const NOT_SPACE =
  "\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{FEFE}\\x{FF00}-\\x{10FFFF}";
/** ECMAScript's `.`: anything but a line terminator; RE2's takes all but \n. */
const DOT = "[^\\n\\r\\x{2028}\\x{2029}]";

/**
 * A pattern with `\s`, `\S` and `.` spelled out for RE2 as ECMAScript means them (JSON Schema's
 * patterns are ECMAScript's): with RE2's own `\s`, `^[a-z\s]+$` refused a no-break space
 * that the server's regular expressions take. What else differs, RE2 mostly refuses to compile
 * (lookaround, backreferences, `\u0041`), and the schema is left to the server.
 */
function asEcmaScript(pattern: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === "\\") {
      const next = pattern[++i] ?? "";
      if (next === "s") out += inClass ? SPACE : `[${SPACE}]`;
      else if (next === "S") out += inClass ? NOT_SPACE : `[${NOT_SPACE}]`;
      else out += char + next;
    } else if (char === "." && !inClass) {
      out += DOT;
    } else {
      if (char === "[") inClass = true;
      else if (char === "]") inClass = false;
      out += char;
    }
  }
  return out;
}

const options = {
  strict: false,
  validateFormats: false,
  allErrors: false,
  // A referred-to schema is compiled once and called, not copied into every place that
  // refers to it: copies multiply, a thousand references to one large object ran out of memory.
  inlineRefs: false,
  // ajv would print the code of a schema it failed to compile to the console (megabytes).
  logger: false,
  // Decimal steps in binary floating point: 0.07 / 0.01 is 7.000000000000001, and without a
  // tolerance ajv refused 0.07 as no multiple of 0.01 (servers' zod and pydantic take it).
  multipleOfPrecision: 9,
  // Arguments the agent sent, not what objects inherit: an argument named `constructor` or
  // `toString` left out was checked as the inherited function ("must be string").
  ownProperties: true,
  // The dialect is chosen below from `$schema`; ajv would also look the URI up among the
  // meta-schemas it holds, and fail on spellings servers use (https, a trailing #, draft-06).
  validateSchema: false,
  code: { regExp: linearRegExp },
} as const;
export type ArgumentCheck = (args: Record<string, unknown>) => void;

/** An engine without the keywords whose checks take more than linear time in the input. */
function linearOnly<T extends Ajv | Ajv2020>(engine: T): T {
  engine.removeKeyword("uniqueItems");
  return engine;
}

/**
 * Compiles the checks of one listing of a server's tools. Each listing gets engines of its
 * own, dropped with its checks: ajv keeps every schema it compiled (and every `$id` in one)
 * for the life of its instance, and a server's schemas are asked for again every few minutes.
 */
export function argumentChecker() {
  let draft7: Ajv | undefined;
  let draft2020: Ajv2020 | undefined;
  let spent = 0;
  /** The engine for a schema's dialect: 2020-12 unless it names draft-07 or -06 (MCP's rule). */
  const engineFor = (schema: Record<string, unknown>): Ajv | Ajv2020 | undefined => {
    const dialect = String(schema.$schema ?? "");
    if (dialect === "" || /json-schema\.org\/draft\/2020-12\/schema/.test(dialect)) {
      draft2020 ??= linearOnly(new Ajv2020(options));
      return draft2020;
    }
    if (/json-schema\.org\/draft-0[67]\/schema/.test(dialect)) {
      draft7 ??= linearOnly(new Ajv(options));
      return draft7;
    }
    return undefined;
  };
  /** A schema compiled within what is left of the listing's time, or why it was not. */
  const compile = (schema: Record<string, unknown>): ValidateFunction | string => {
    const engine = engineFor(schema);
    if (!engine) {
      return `its input schema's dialect ${String(schema.$schema)} is not draft-07 or 2020-12`;
    }
    if (spent >= COMPILE_MS) {
      return `the schemas listed before it took the ${COMPILE_MS} ms that compiling may take`;
    }
    const started = performance.now();
    try {
      return within(COMPILE_MS - spent, () => engine.compile(schema));
    } catch (error) {
      // Ended halfway, the engine may hold part of the schema; it compiles nothing more, as
      // the time is spent.
      return timedOut(error)
        ? `compiling its input schema took the rest of the ${COMPILE_MS} ms that compiling may take`
        : `its input schema cannot be compiled: ${(error as Error).message}`;
    } finally {
      spent += performance.now() - started;
    }
  };
  return (tool: string, schema: unknown, why: (reason: string) => void = () => {}) =>
    argumentCheck(tool, schema, compile, why);
}

/**
 * A check of one tool's arguments, or undefined when this schema is left to the server;
 * `why` hears the reason then.
 */
function argumentCheck(
  tool: string,
  schema: unknown,
  compile: (schema: Record<string, unknown>) => ValidateFunction | string,
  why: (reason: string) => void,
): ArgumentCheck | undefined {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return undefined;
  let size: number;
  try {
    size = JSON.stringify(schema).length;
  } catch {
    // Nested past what JSON.stringify can walk: thrown, it failed every tool of the server.
    why("its input schema nests too deep to be read");
    return undefined;
  }
  if (size > MAX_SCHEMA_CHARS) {
    why(`its input schema is ${size} characters, more than ${MAX_SCHEMA_CHARS}`);
    return undefined;
  }
  const validate = compile(schema as Record<string, unknown>);
  if (typeof validate === "string") {
    why(validate);
    return undefined;
  }
  // ajv makes an `$async` schema's check answer with a promise and refuse by rejecting it:
  // the refusal would reach no one, and the rejection, unhandled, would end the process.
  if ((validate as { $async?: unknown }).$async === true) {
    why("its input schema is $async, which ajv checks in a promise");
    return undefined;
  }
  return (args) => {
    let valid: boolean;
    try {
      valid = within(CHECK_MS, () => validate(args) as boolean);
    } catch (error) {
      // A check that cannot run, or runs too long, refuses nothing: the server decides.
      why(
        timedOut(error)
          ? `checking a call's arguments took over ${CHECK_MS} ms; this call is left to the server`
          : `checking a call's arguments failed (${(error as Error).message}); this call is left to the server`,
      );
      return;
    }
    const errors = validate.errors ?? [];
    if (valid || errors.length === 0) return;
    const { field, message } = explain(errors);
    throw new AirlockError(
      "invalid_request",
      `${field}: ${message} (the input schema of tool ${tool}, from its MCP server)`,
      { field },
    );
  };
}

/**
 * A refusal as the field it is about (`input.filters.limit`) and why. ajv stops at the first
 * keyword that fails; when that is an `anyOf` or `oneOf`, its own error comes last, after each
 * alternative's, and is the one to explain: the first alternative's alone would tell an agent
 * to send what another alternative would have taken just as well.
 */
function explain(errors: readonly ErrorObject[]): { field: string; message: string } {
  const error = errors[errors.length - 1]!;
  if (error.keyword === "anyOf" || error.keyword === "oneOf") {
    const { field } = about(error);
    const passing = (error.params as { passingSchemas?: unknown }).passingSchemas;
    if (Array.isArray(passing)) {
      return { field, message: "matches more than one of the forms it may take (oneOf)" };
    }
    // Each alternative's first failure: `…/anyOf/1/type` is alternative 1's.
    const prefix = `${error.schemaPath}/`;
    const reasons = new Map<string, string>();
    for (const e of errors) {
      if (!e.schemaPath.startsWith(prefix)) continue;
      const alternative = e.schemaPath.slice(prefix.length).split("/")[0]!;
      if (!reasons.has(alternative)) {
        const { field: where, message } = about(e);
        reasons.set(alternative, where === field ? message : `${where}: ${message}`);
      }
    }
    return {
      field,
      message: clip(
        `matches none of the forms it may take (${[...reasons.values()].join("; or ")})`,
      ),
    };
  }
  return about(errors[0]!);
}

/** One ajv error as the field it is about and why. */
function about(error: ErrorObject): { field: string; message: string } {
  const path = error.instancePath
    .split("/")
    .slice(1)
    .map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"));
  const params = error.params as Record<string, unknown>;
  if (error.keyword === "required") {
    path.push(String(params.missingProperty));
    return { field: fieldOf(path), message: "required" };
  }
  if (error.keyword === "additionalProperties") {
    path.push(String(params.additionalProperty));
    return { field: fieldOf(path), message: "not an argument the tool takes" };
  }
  if (error.keyword === "enum" && Array.isArray(params.allowedValues)) {
    const allowed = params.allowedValues.map((value) => JSON.stringify(value)).join(", ");
    return { field: fieldOf(path), message: `must be one of ${clip(allowed)}` };
  }
  return { field: fieldOf(path), message: clip(error.message ?? `fails ${error.keyword}`) };
}

function fieldOf(path: string[]): string {
  return ["input", ...path].join(".");
}

function clip(text: string): string {
  return text.length > 300 ? `${truncateText(text, 299)}…` : text;
}
