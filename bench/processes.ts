/** Starting and waiting for the processes a benchmark measures. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { LoadResult } from "./load.js";

export const airlock = fileURLToPath(
  new URL("../../packages/gateway/dist/cli/airlock.js", import.meta.url),
);

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts a node process; resolves when its output matches `ready`, or at once without one. */
export function startProcess(
  args: string[],
  env: Record<string, string>,
  ready?: RegExp,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (!ready) resolve(child);
    let output = "";
    const onData = (data: Buffer) => {
      output += data;
      if (ready?.test(output)) resolve(child);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}:\n${output}`)));
  });
}

export async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not come up`);
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms; undefined where
 * /proc is not there. Steadier than throughput on a shared VM: it counts the work, not the
 * waiting for a core.
 */
function cpuMs(pid: number | undefined): number | undefined {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are 12th and 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Starts counting a process's CPU time; the function returned divides what it used since
 * among a load run's requests, in µs each (undefined where /proc is not there).
 */
export function cpuPerRequest(
  pid: number | undefined,
): (run: LoadResult, warmup: number) => number | undefined {
  const before = cpuMs(pid);
  return (run, warmup) => {
    const after = cpuMs(pid);
    if (before === undefined || after === undefined) return undefined;
    // The warm-up's requests ran at the measured rate, and are in the CPU figure too.
    return ((after - before) * 1000) / (run.requests + run.perSecond * warmup);
  };
}
