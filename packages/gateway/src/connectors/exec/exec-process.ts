/**
 * Runs one argv as a child process in a process group of its own, so that a timeout, an abort
 * or the command's own exit can end everything it started, and keeps a bounded head of its output.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { errorMessage } from "../../errors.js";

/** How long a process group has between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;
/** How long to wait for the pipes after SIGKILL: only a process that left the group holds them then. */
const PIPE_WAIT_MS = 1000;

export interface ProcessSpec {
  program: string;
  args: readonly string[];
  cwd: string | undefined;
  env: Readonly<Record<string, string>>;
  timeoutMs: number;
  /** Bytes kept of stdout, and of stderr; the rest is read and dropped. */
  keepBytes: number;
}

export interface CapturedStream {
  /** The first `keepBytes` bytes. */
  head: Buffer;
  /** Every byte the stream carried. */
  total: number;
}

export type ProcessRun =
  | { started: false; reason: string }
  | {
      started: true;
      exitCode: number | null;
      signal: NodeJS.Signals | null;
      stdout: CapturedStream;
      stderr: CapturedStream;
      timedOut: boolean;
      aborted: boolean;
      /** Whether some process kept the pipes open after SIGKILL and was left behind. */
      abandoned: boolean;
    };

export async function runProcess(spec: ProcessSpec, signal: AbortSignal): Promise<ProcessRun> {
  if (signal.aborted) return { started: false, reason: "aborted before the command started" };
  let child: ChildProcess;
  try {
    child = spawn(spec.program, [...spec.args], {
      cwd: spec.cwd,
      env: { ...spec.env },
      stdio: ["ignore", "pipe", "pipe"],
      shell: false,
      detached: true,
      windowsHide: true,
    });
  } catch (error) {
    return { started: false, reason: `could not start: ${errorMessage(error)}` };
  }
  const outcome = await watch(child, spec, signal);
  if ("error" in outcome)
    return { started: false, reason: await startFailure(outcome.error, spec) };
  return outcome;
}

function watch(
  child: ChildProcess,
  spec: ProcessSpec,
  signal: AbortSignal,
): Promise<ProcessRun | { error: Error }> {
  return new Promise((resolve) => {
    const stdout = collect(child.stdout, spec.keepBytes);
    const stderr = collect(child.stderr, spec.keepBytes);
    let exited = false;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    let timedOut = false;
    let aborted = false;
    let done = false;
    let escalation: NodeJS.Timeout | undefined;
    let pipeWait: NodeJS.Timeout | undefined;

    const killGroup = (which: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        // The negative pid addresses the whole group that `detached` gave the child.
        process.kill(-child.pid, which);
      } catch {
        // ESRCH: the group is gone already.
      }
    };
    const stop = () => {
      if (escalation) return;
      killGroup("SIGTERM");
      escalation = setTimeout(() => {
        killGroup("SIGKILL");
        if (!done) pipeWait = setTimeout(() => finish(true), PIPE_WAIT_MS);
      }, KILL_GRACE_MS);
      // Outlives the result: a process of the group that shrugs off SIGTERM without holding
      // the output open is still killed when the grace is over. It keeps nobody waiting.
      escalation.unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, spec.timeoutMs);
    const onAbort = () => {
      if (exited) return;
      aborted = true;
      stop();
    };
    signal.addEventListener("abort", onAbort, { once: true });

    const finish = (abandoned: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(pipeWait);
      signal.removeEventListener("abort", onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({
        started: true,
        exitCode,
        signal: exitSignal,
        stdout: stdout(),
        stderr: stderr(),
        timedOut,
        aborted,
        abandoned,
      });
    };

    child.once("error", (error) => {
      // Without a pid it never started; other errors (a failed kill) change nothing here.
      if (child.pid !== undefined || done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve({ error });
    });
    child.once("exit", (code, sig) => {
      exited = true;
      exitCode = code;
      exitSignal = sig;
      clearTimeout(timer);
      // What the command left running in its group ends with it; a daemon that should
      // outlive the command detaches itself (setsid) and is not touched.
      stop();
    });
    child.once("close", () => {
      if (child.pid !== undefined) finish(false);
    });
  });
}

/** Keeps the first `keep` bytes and counts the rest, reading on so the child never blocks. */
function collect(stream: Readable | null, keep: number): () => CapturedStream {
  const chunks: Buffer[] = [];
  let size = 0;
  let total = 0;
  stream?.on("data", (chunk: Buffer) => {
    total += chunk.length;
    if (size < keep) {
      const part = chunk.length > keep - size ? chunk.subarray(0, keep - size) : chunk;
      chunks.push(part);
      size += part.length;
    }
  });
  stream?.on("error", () => {
    // A pipe destroyed while finishing; what was read is kept.
  });
  return () => ({ head: Buffer.concat(chunks, size), total });
}

async function startFailure(error: Error, spec: ProcessSpec): Promise<string> {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") {
    // spawn says ENOENT for a missing working directory too.
    if (spec.cwd !== undefined) {
      const isDirectory = await stat(spec.cwd).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!isDirectory) return `could not start: the working directory ${spec.cwd} does not exist`;
    }
    return `could not start: ${spec.program} not found`;
  }
  if (code === "EACCES") return `could not start: ${spec.program}: permission denied`;
  if (code === "E2BIG") return "could not start: the argument list is too long";
  return `could not start: ${errorMessage(error)}`;
}
