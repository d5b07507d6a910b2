/** Runs the built `airlock` command as a separate process, as an operator would. */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

export const airlockBin = fileURLToPath(new URL("../../dist/cli/airlock.js", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [airlockBin, ...args],
      { env: { ...process.env, ...options.env }, cwd: options.cwd, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A port nobody is listening on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts `airlock serve` and resolves once /healthz answers. */
export async function startServe(
  configPath: string,
  port: number,
  env: Record<string, string>,
  /** Told of the process as soon as it is spawned, before it serves. */
  spawned?: (child: ChildProcess) => void,
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  let output = "";
  const child = spawn(process.execPath, [airlockBin, "serve", "--config", configPath], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  spawned?.(child);
  child.stdout!.on("data", (d) => {
    output += d;
  });
  child.stderr!.on("data", (d) => {
    output += d;
  });
  const url = `http://127.0.0.1:${port}`;
  // Generous: on a busy 2-core machine a cold start has taken over 15 s.
  const deadline = Date.now() + 40_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`airlock serve exited ${child.exitCode ?? child.signalCode}:\n${output}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      // Not left running: a stray replica would go on claiming work from the shared database.
      child.kill("SIGKILL");
      throw new Error(`airlock serve did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url, output: () => output };
}

export function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
  });
}
