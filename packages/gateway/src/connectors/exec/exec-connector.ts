/**
 * The `exec` connector: runs commands the operator wrote out as argv templates, never a
 * shell, with arguments an agent fills in only within each one's enum or pattern.
 */
import type { Json } from "../../common/canonical-json.js";
import { AirlockError } from "../../errors.js";
import { type ByteScrubber, createByteScrubber } from "../../masking/secret-redactor.js";
import type {
  Connector,
  ConnectorDeps,
  ConnectorType,
  Description,
  ExecutionOutcome,
  OutcomeMasking,
} from "../connector.js";
import { compileCommands, type ExecCommand, parseCommandInput, valuesOf } from "./exec-command.js";
import { type ExecConnectionConfig, execConnectionSchema } from "./exec-config.js";
import { type CapturedStream, runProcess } from "./exec-process.js";
import { renderArgv, shellJoin, shellQuote } from "./exec-template.js";

export const execConnectorType: ConnectorType<ExecConnectionConfig> = {
  type: "exec",
  configSchema: execConnectionSchema,
  facts: {
    namespace: "exec",
    schema: {
      command: "string",
      program: "string",
      argv: "list<string>",
      args: "map<string, string>",
    },
  },
  operationNames: (config) => Object.keys(config.commands),
  create: (name, config, deps) => createExecConnector(name, config, deps),
};

export function createExecConnector(
  name: string,
  config: ExecConnectionConfig,
  deps: ConnectorDeps,
): Connector {
  const commands = compileCommands(config);
  // PATH is Airlock's own plumbing, not a credential; every other value may be one.
  const secrets = [
    ...new Set(
      [config.env, ...Object.values(config.commands).map((c) => c.env ?? {})].flatMap((env) =>
        Object.entries(env).flatMap(([key, value]) => (key === "PATH" ? [] : [value])),
      ),
    ),
  ];
  const scrubber = createByteScrubber([...secrets, ...deps.secrets]);
  const running = new Set<{ stop: AbortController; done: Promise<unknown> }>();
  let closed = false;

  const commandFor = (operation: string): ExecCommand => {
    const command = commands.get(operation);
    if (!command) {
      throw new AirlockError(
        "unknown_operation",
        `connection ${name} (exec) has no command "${operation}"; its commands are: ${[...commands.keys()].join(", ")}`,
        { field: "operation" },
      );
    }
    return command;
  };

  const preview = (operation: string, input: Json): string => {
    const command = commandFor(operation);
    const line = shellJoin(renderArgv(command.template, valuesOf(input)));
    return command.cwd === undefined ? line : `cd ${shellQuote(command.cwd)} && ${line}`;
  };

  const describe = async (operation: string, input: Json): Promise<Description> => {
    const command = commandFor(operation);
    const args = valuesOf(input);
    return {
      preview: preview(operation, input),
      ...(command.description === undefined ? {} : { notes: [command.description] }),
      facts: {
        exec: {
          command: command.name,
          program: command.program,
          argv: renderArgv(command.template, args),
          args,
        },
      },
      risk: { level: command.risk, reason: `runs command "${command.name}" (${command.program})` },
    };
  };

  const execute = async (
    operation: string,
    input: Json,
    signal: AbortSignal,
    masking?: OutcomeMasking,
  ): Promise<ExecutionOutcome> => {
    const command = commandFor(operation);
    const masked = masking?.hidden ?? [];
    const detectors = masking?.detectors ?? [];
    // Masked arguments are scrubbed from the output with the credentials, and what the
    // detectors find is masked, before the cut.
    const scrubbing =
      masked.length > 0
        ? createByteScrubber([...secrets, ...deps.secrets], masked, detectors)
        : detectors.length > 0
          ? scrubber.detecting(detectors)
          : scrubber;
    const argv = renderArgv(command.template, valuesOf(input));
    if (closed) {
      return {
        ok: false,
        result: null,
        summary: "not started",
        reason: "the connection is closed",
      };
    }
    // One controller per run, rather than AbortSignal.any, so nothing stays attached to the
    // caller's signal once the run is over.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    if (signal.aborted) stop.abort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const done = runProcess(
      {
        program: command.program,
        args: argv.slice(1),
        cwd: command.cwd,
        env: command.env,
        timeoutMs: command.timeoutMs,
        // Read past the cap as far as the scrubber reads past a cut, so that a value straddling
        // it is still found whole, or by its start.
        keepBytes: config.maxOutputBytes + scrubbing.overlap,
      },
      stop.signal,
    );
    const entry = { stop, done };
    running.add(entry);
    const outcome = await done.finally(() => {
      running.delete(entry);
      signal.removeEventListener("abort", onAbort);
    });
    if (!outcome.started) {
      return { ok: false, result: null, summary: "not started", reason: outcome.reason };
    }
    if (outcome.abandoned) {
      deps.logger.warn(
        { connection: name, command: command.name },
        "a process the command started kept its output open after SIGKILL; it was left running",
      );
    }
    const cap = config.maxOutputBytes;
    const stdout = clip(outcome.stdout, cap, scrubbing);
    const stderr = clip(outcome.stderr, cap, scrubbing);
    const result: Record<string, Json> = {
      exitCode: outcome.exitCode,
      signal: outcome.signal,
      stdout: stdout.text,
      stderr: stderr.text,
    };
    if (stdout.truncated || stderr.truncated) {
      const truncated: Record<string, string> = {};
      if (stdout.truncated) truncated.stdout = `cut at ${cap} of ${outcome.stdout.total} bytes`;
      if (stderr.truncated) truncated.stderr = `cut at ${cap} of ${outcome.stderr.total} bytes`;
      result.truncated = truncated;
    }
    if (outcome.timedOut) result.timedOut = true;
    if (outcome.aborted) result.aborted = true;

    const bytes = outcome.stdout.total + outcome.stderr.total;
    const output = `${bytes} bytes of output${stdout.truncated || stderr.truncated ? ", truncated" : ""}`;
    if (outcome.timedOut) {
      return {
        ok: false,
        result,
        summary: `killed after ${command.timeoutMs / 1000} s (timeout)`,
        reason: `timed out after ${command.timeoutMs} ms and was killed`,
      };
    }
    if (outcome.aborted) {
      return {
        ok: false,
        result,
        summary: "killed (aborted)",
        reason: "the execution was aborted and the command was killed",
      };
    }
    if (outcome.exitCode === null) {
      const how = outcome.signal ?? "an unknown cause";
      return {
        ok: false,
        result,
        summary: `killed by ${how}, ${output}`,
        reason: `was killed by ${how}`,
      };
    }
    const ok = outcome.exitCode === 0;
    return {
      ok,
      result,
      summary: `exit ${outcome.exitCode}, ${output}`,
      ...(ok ? {} : { reason: `exited with code ${outcome.exitCode}` }),
    };
  };

  return {
    type: "exec",
    name,
    secrets,
    parse: (operation, input) => parseCommandInput(commandFor(operation), input),
    describe,
    preview,
    execute,
    operations: async () =>
      Object.entries(config.commands).map(([operation, command]) => ({
        name: operation,
        description: `${command.description ?? `Runs the ${operation} command`} (on ${name}, through Airlock: a policy decides whether it runs at once, waits for a person's approval, or is refused)`,
        inputSchema: {
          type: "object",
          properties: Object.fromEntries(
            Object.entries(command.args).map(([arg, spec]) => [
              arg,
              {
                type: "string",
                ...(spec.enum ? { enum: spec.enum } : { pattern: `^(?:${spec.pattern})$` }),
                maxLength: spec.maxLength,
                ...(spec.description === undefined ? {} : { description: spec.description }),
                ...(spec.default === undefined ? {} : { default: spec.default }),
              },
            ]),
          ),
          required: Object.entries(command.args)
            .filter(([, spec]) => !spec.optional && spec.default === undefined)
            .map(([arg]) => arg),
          additionalProperties: false,
        },
      })),
    // Executions are drained before connectors close; anything still running is stopped.
    close: async () => {
      closed = true;
      for (const { stop } of running) stop.abort();
      await Promise.allSettled([...running].map(({ done }) => done));
    },
  };
}

/**
 * Scrubs credentials and masked values from the raw bytes before they are cut to `cap` and
 * decoded (lossily, as UTF-8), so an echoed one cannot survive in pieces.
 */
function clip(
  stream: CapturedStream,
  cap: number,
  scrubber: ByteScrubber,
): { text: string; truncated: boolean } {
  const whole = stream.total <= stream.head.length;
  const { bytes, truncated } = scrubber.clip(stream.head, cap, whole, true);
  return { text: bytes.toString("utf8"), truncated };
}
