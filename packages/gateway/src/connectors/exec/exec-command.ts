/**
 * An `exec` command compiled from config, and the checks an agent's arguments pass before
 * anything runs.
 */
import { AirlockError } from "../../errors.js";
import type { RiskLevel } from "../connector.js";
import {
  compileArgPattern,
  type ExecCommandConfig,
  type ExecConnectionConfig,
} from "./exec-config.js";
import { parseElement, type Segment } from "./exec-template.js";

/** Where a command finds its program when the config sets no PATH; never Airlock's own. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface ExecArg {
  name: string;
  enum: readonly string[] | undefined;
  pattern: string | undefined;
  regex: RegExp | undefined;
  maxLength: number;
  optional: boolean;
  default: string | undefined;
}

export interface ExecCommand {
  name: string;
  program: string;
  template: readonly (readonly Segment[])[];
  args: ReadonlyMap<string, ExecArg>;
  timeoutMs: number;
  cwd: string | undefined;
  /** The command's whole environment, PATH included. */
  env: Readonly<Record<string, string>>;
  risk: RiskLevel;
  description: string | undefined;
}

export function compileCommands(config: ExecConnectionConfig): Map<string, ExecCommand> {
  const commands = new Map<string, ExecCommand>();
  for (const [name, command] of Object.entries(config.commands)) {
    commands.set(name, compileCommand(name, command, config));
  }
  return commands;
}

function compileCommand(
  name: string,
  command: ExecCommandConfig,
  config: ExecConnectionConfig,
): ExecCommand {
  // The schema has already checked every element, so parsing cannot fail here.
  const template = command.argv.map((element) => {
    const parsed = parseElement(element);
    if ("problem" in parsed) throw new Error(`commands.${name}.argv: ${parsed.problem}`);
    return parsed.segments;
  });
  const program = (template[0] ?? []).map((s) => ("text" in s ? s.text : "")).join("");
  const args = new Map<string, ExecArg>();
  for (const [argName, arg] of Object.entries(command.args)) {
    args.set(argName, {
      name: argName,
      enum: arg.enum,
      pattern: arg.pattern,
      regex: arg.pattern === undefined ? undefined : compileArgPattern(arg.pattern),
      maxLength: arg.maxLength,
      optional: arg.optional || arg.default !== undefined,
      default: arg.default,
    });
  }
  const env: Record<string, string> = { ...config.env, ...command.env };
  env.PATH ??= DEFAULT_PATH;
  return {
    name,
    program,
    template,
    args,
    timeoutMs: command.timeout ?? config.timeout,
    cwd: command.cwd ?? config.cwd,
    env,
    risk: command.risk,
    description: command.description,
  };
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function refuse(field: string, message: string): AirlockError {
  return new AirlockError("invalid_request", `${field}: ${message}`, { field });
}

function listValues(values: readonly string[]): string {
  const shown = values.slice(0, 20).map((v) => JSON.stringify(v));
  return values.length > shown.length
    ? `${shown.join(", ")}, … (${values.length} in all)`
    : shown.join(", ");
}

/**
 * Checks the agent's input against the command's arguments and returns it normalised: every
 * value a string, defaults filled in, so what is approved is exactly what runs. Finite numbers
 * and booleans are taken as their JavaScript string form (3 is "3"); `null` counts as absent.
 */
export function parseCommandInput(command: ExecCommand, input: unknown): Record<string, string> {
  const takes =
    command.args.size === 0
      ? `command "${command.name}" takes no arguments`
      : `command "${command.name}" takes: ${[...command.args.keys()].join(", ")}`;
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw refuse("input", `must be an object of the command's arguments; ${takes}`);
  }
  const given = input as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!command.args.has(key)) throw refuse(`input.${key}`, `unknown argument; ${takes}`);
  }
  const values: Record<string, string> = {};
  for (const arg of command.args.values()) {
    const field = `input.${arg.name}`;
    const raw = Object.hasOwn(given, arg.name) ? given[arg.name] : undefined;
    if (raw === undefined || raw === null) {
      if (arg.default !== undefined) values[arg.name] = arg.default;
      else if (!arg.optional) throw refuse(field, "is required");
      continue;
    }
    let value: string;
    if (typeof raw === "string") value = raw;
    else if ((typeof raw === "number" && Number.isFinite(raw)) || typeof raw === "boolean")
      value = String(raw);
    else throw refuse(field, "must be a string");
    if (value.includes("\0")) throw refuse(field, "cannot contain a NUL character");
    if (loneSurrogate.test(value)) {
      throw refuse(field, "is not well-formed text (a lone surrogate)");
    }
    if (arg.enum !== undefined) {
      if (!arg.enum.includes(value)) throw refuse(field, `must be one of ${listValues(arg.enum)}`);
    } else {
      if (value.length > arg.maxLength) {
        throw refuse(field, `must be at most ${arg.maxLength} characters`);
      }
      if (arg.regex !== undefined && !arg.regex.test(value)) {
        throw refuse(field, `must match the pattern ${arg.pattern}`);
      }
    }
    values[arg.name] = value;
  }
  return values;
}

/** The argument values of a stored input, tolerant of masking ("[masked]") and of absent ones. */
export function valuesOf(input: unknown): Record<string, string> {
  if (input === null || typeof input !== "object" || Array.isArray(input)) return {};
  return Object.fromEntries(
    Object.entries(input).flatMap(([key, value]) =>
      value === undefined || value === null
        ? []
        : [[key, typeof value === "string" ? value : JSON.stringify(value)]],
    ),
  );
}
