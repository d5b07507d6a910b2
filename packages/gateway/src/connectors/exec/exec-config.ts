/**
 * The `exec` connection's config: named argv templates, each argument pinned by an enum or
 * by a pattern the whole value must match.
 */
import { z } from "zod";
import {
  connectionMaskSchema,
  duration,
  nameSchema,
  resultByteCap,
} from "../../config/config-types.js";
import { errorMessage } from "../../errors.js";
import { argNamePattern, parseElement, placeholders } from "./exec-template.js";

/** Linux refuses any single argument longer than this (MAX_ARG_STRLEN). */
export const MAX_ARG_BYTES = 131_072;
export const DEFAULT_MAX_LENGTH = 4096;

const noNul = (text: string) => !text.includes("\0");

const absolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((path) => path.startsWith("/"), "must be an absolute path")
  .refine(noNul, "cannot contain a NUL character");

/** Values are treated as credentials: passed to the command, scrubbed from what it prints. */
const envSchema = z
  .record(
    z
      .string()
      .max(256)
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name has letters, digits and _"),
    z.string().max(32_768).refine(noNul, "cannot contain a NUL character"),
  )
  .refine((env) => Object.keys(env).length <= 256, "at most 256 variables");

const timeoutSchema = duration({ min: 100, max: 86_400_000 });

/**
 * The whole value must match; the pattern is compiled on its own first, so one like
 * `a)|(.*` cannot escape the anchors it gets wrapped in.
 */
export function compileArgPattern(pattern: string): RegExp {
  new RegExp(pattern, "u");
  return new RegExp(`^(?:${pattern})$`, "u");
}

const argSchema = z
  .strictObject({
    /** The allowed values, exactly. */
    enum: z
      .array(z.string().max(DEFAULT_MAX_LENGTH).refine(noNul, "cannot contain a NUL character"))
      .min(1)
      .max(1000)
      .optional(),
    /** A JavaScript regular expression (`u` flag) that the whole value must match. */
    pattern: z.string().min(1).max(1024).optional(),
    /** The longest value a pattern accepts, in characters (enum values are checked as they are). */
    maxLength: z.number().int().min(1).max(MAX_ARG_BYTES).default(DEFAULT_MAX_LENGTH),
    /** Whether the input may leave it out; argv elements that use it are then dropped. */
    optional: z.boolean().default(false),
    /** Used when the input leaves it out (so implies `optional`); it is what gets approved. */
    default: z.string().max(MAX_ARG_BYTES).optional(),
    /** What the argument is for, for whoever reads the config. */
    description: z.string().max(1000).optional(),
  })
  .superRefine((arg, ctx) => {
    if (arg.enum !== undefined && arg.pattern !== undefined) {
      ctx.addIssue({ code: "custom", message: "give either enum or pattern, not both" });
      return;
    }
    if (arg.enum === undefined && arg.pattern === undefined) {
      ctx.addIssue({
        code: "custom",
        message:
          "give enum (the allowed values) or pattern (a regular expression the whole value must match)",
      });
      return;
    }
    let regex: RegExp | undefined;
    if (arg.pattern !== undefined) {
      try {
        regex = compileArgPattern(arg.pattern);
      } catch (error) {
        ctx.addIssue({
          code: "custom",
          path: ["pattern"],
          message: `is not a valid regular expression: ${errorMessage(error)}`,
        });
        return;
      }
    }
    if (arg.default !== undefined) {
      const problem = !noNul(arg.default)
        ? "cannot contain a NUL character"
        : arg.enum !== undefined
          ? arg.enum.includes(arg.default)
            ? undefined
            : "is not one of the enum values"
          : arg.default.length > arg.maxLength
            ? `is longer than maxLength (${arg.maxLength})`
            : regex !== undefined && !regex.test(arg.default)
              ? "does not match the pattern"
              : undefined;
      if (problem) ctx.addIssue({ code: "custom", path: ["default"], message: problem });
    }
  });

const commandSchema = z
  .strictObject({
    /** The program and its arguments, run directly (never through a shell). */
    argv: z.array(z.string().max(16_384)).min(1, "needs at least the program").max(256),
    args: z
      .record(
        z
          .string()
          .max(64)
          .regex(
            argNamePattern,
            "an argument name has letters, digits and _, not starting with a digit",
          )
          .refine((name) => name !== "__proto__", "__proto__ cannot name an argument"),
        argSchema,
      )
      .default({})
      .refine((args) => Object.keys(args).length <= 64, "at most 64 arguments"),
    /** Overrides the connection's timeout. */
    timeout: timeoutSchema.optional(),
    /** Overrides the connection's working directory. */
    cwd: absolutePath.optional(),
    /** Added to the connection's variables, winning over them. */
    env: envSchema.optional(),
    /** The risk hint reviewers and rules see. */
    risk: z.enum(["low", "medium", "high", "critical"]).default("medium"),
    /** Shown to reviewers above the preview. */
    description: z.string().max(1000).optional(),
  })
  .superRefine((command, ctx) => {
    const used = new Set<string>();
    command.argv.forEach((element, index) => {
      if (!noNul(element)) {
        ctx.addIssue({
          code: "custom",
          path: ["argv", index],
          message: "cannot contain a NUL character",
        });
        return;
      }
      const parsed = parseElement(element);
      if ("problem" in parsed) {
        ctx.addIssue({ code: "custom", path: ["argv", index], message: parsed.problem });
        return;
      }
      const names = placeholders(parsed.segments);
      if (index === 0) {
        // Counted as used, so the one error says what is wrong.
        for (const name of names) used.add(name);
        if (names.length > 0) {
          ctx.addIssue({
            code: "custom",
            path: ["argv", 0],
            message: "the program must be written out; placeholders may be used from argv[1] on",
          });
        } else if (element === "") {
          ctx.addIssue({
            code: "custom",
            path: ["argv", 0],
            message: "the program cannot be empty",
          });
        }
        return;
      }
      for (const name of names) {
        used.add(name);
        if (!Object.hasOwn(command.args, name)) {
          ctx.addIssue({
            code: "custom",
            path: ["argv", index],
            message: `{${name}} is not declared in args`,
          });
        }
      }
    });
    for (const name of Object.keys(command.args)) {
      if (!used.has(name)) {
        ctx.addIssue({
          code: "custom",
          path: ["args", name],
          message: `is declared but argv does not use {${name}}`,
        });
      }
    }
  });

export const execConnectionSchema = z.strictObject({
  type: z.literal("exec"),
  /** The working directory of every command that does not set its own. */
  cwd: absolutePath.optional(),
  /**
   * The command's whole environment, with the commands' own `env` on top: nothing of
   * Airlock's own environment is passed on. PATH defaults to a fixed system path.
   */
  env: envSchema.default({}),
  timeout: timeoutSchema.default(30_000),
  /** The most of stdout, and of stderr, kept; the rest is read and dropped. */
  maxOutputBytes: resultByteCap,
  mask: connectionMaskSchema.optional(),
  /** Each command is an operation agents can ask for, by name. */
  commands: z
    .record(nameSchema, commandSchema)
    .refine((commands) => Object.keys(commands).length >= 1, "declare at least one command")
    .refine((commands) => Object.keys(commands).length <= 500, "at most 500 commands"),
});

export type ExecConnectionConfig = z.output<typeof execConnectionSchema>;
export type ExecCommandConfig = z.output<typeof commandSchema>;
export type ExecArgConfig = z.output<typeof argSchema>;
