/** What every command shares: loading the config with readable errors, and exiting cleanly. */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { parseDuration } from "../common/durations.js";
import { INSTANT_HINT, parseInstant } from "../common/instants.js";
import { ConfigError, formatIssue } from "../config/config-errors.js";
import { configPath, type LoadedConfig, loadConfigFile } from "../config/config-load.js";
import { isAirlockError } from "../errors.js";

/** A failure to report in one line and exit with `code`, without a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

export const configOption = { config: { type: "string", short: "c" } } as const;

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parses a command's flags; --help prints its usage and exits. */
export function parse<T extends Options>(
  args: string[],
  options: T,
  usage: string,
  positionals = 0,
): {
  values: { [K in keyof T]?: T[K]["type"] extends "boolean" ? boolean : string };
  positionals: string[];
} {
  let parsed: Parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    }) as Parsed;
  } catch (error) {
    throw new CliError(`${(error as Error).message}\n\n${usage}`, 2);
  }
  if (parsed.values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  if (parsed.positionals.length > positionals) {
    throw new CliError(`unexpected argument ${parsed.positionals[positionals]}\n\n${usage}`, 2);
  }
  return parsed as never;
}

/**
 * Splits `<sub> [args]` for `airlock COMMAND`, whose subcommands are `known`; a bare --help
 * prints the command's usage. A missing, misplaced or unknown subcommand is said as such.
 */
export function subcommand<const S extends string>(
  args: string[],
  usage: string,
  command: string,
  known: readonly S[],
): [S, string[]] {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const names =
    known.length === 1 ? known[0]! : `${known.slice(0, -1).join(", ")} or ${known.at(-1)!}`;
  if (sub === undefined) {
    throw new CliError(`say what to do: airlock ${command} ${names}\n\n${usage}`, 2);
  }
  if (sub.startsWith("-")) {
    throw new CliError(
      `options come after the subcommand: airlock ${command} ${known.join("|")} ${args.join(" ")}\n\n${usage}`,
      2,
    );
  }
  if (!(known as readonly string[]).includes(sub)) {
    throw new CliError(
      `unknown subcommand "${sub}": airlock ${command} takes ${names}\n\n${usage}`,
      2,
    );
  }
  return [sub as S, rest];
}

/**
 * A listening socket refused because something else holds the address, said with `fix`;
 * undefined for any other error.
 */
export function addressInUse(error: unknown, address: string, fix: string): CliError | undefined {
  return (error as NodeJS.ErrnoException | null)?.code === "EADDRINUSE"
    ? new CliError(`${address} is in use; ${fix}`)
    : undefined;
}

/**
 * A `--since` as a time ago (`12h`, `7d`) or as a date or instant: the instant it means, given
 * the time now. Counted back from the store's time (`Store.now`), which stamped what it picks,
 * not from this host's clock; read before the store is opened, so that a bad one opens nothing.
 */
export function parseSince(text: string): (now: number) => number {
  const ago = parseDuration(text);
  if (ago !== undefined) return (now) => now - ago;
  const at = parseInstant(text);
  if (at === undefined) {
    throw new CliError(`--since must be a duration like 7d or 12h, or it ${INSTANT_HINT}`, 2);
  }
  return () => at;
}

export function loadConfigOrExit(explicit: string | undefined): LoadedConfig {
  const path = configPath(explicit);
  try {
    const loaded = loadConfigFile(path);
    for (const warning of loaded.warnings)
      process.stderr.write(`warning: ${formatIssue(warning)}\n`);
    return loaded;
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/** Runs a command, printing known failures as one line and unknown ones with their stack. */
export async function runCommand(fn: () => Promise<number | undefined>): Promise<never> {
  // A reader that stops early (`airlock audit export | head -1`) closes the pipe: a quiet end,
  // with the status of a program the closed pipe stopped (128 + SIGPIPE), not success: under
  // `set -o pipefail` an `audit verify` whose verdict went unread must not pass for a good chain.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(141);
    process.stderr.write(`airlock: cannot write to standard output: ${error.message}\n`);
    process.exit(1);
  });
  try {
    const code = await fn();
    process.exit(code ?? 0);
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`airlock: ${error.message}\n`);
      process.exit(error.code);
    }
    // A ConfigError is raised past loading too, by checks that need more than the file.
    if (error instanceof ConfigError || isAirlockError(error)) {
      process.stderr.write(`airlock: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(
      `airlock: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  }
}
