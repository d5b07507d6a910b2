/**
 * The gateway the benchmarks measure and the action they send it: a fresh SQLite file, one
 * agent, and one rule that allows reads of the demo billing API, whose credential only the
 * gateway holds.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Call } from "./load.js";
import { airlock as builtAirlock, freePort, startProcess, waitFor } from "./processes.js";

export interface BenchGateway {
  dir: string;
  port: number;
  child: ChildProcess;
  /** The allowed action, with this gateway's agent token. */
  allowed: Call;
  /** Runs an `airlock` command against this gateway's config; returns its stdout. */
  cli: (args: string[]) => string;
}

/**
 * A bench gateway's config: reads of the demo billing API are allowed, nothing else is.
 * `connections` and `rules` add to that (YAML list items, indented as in the lists).
 */
export function benchConfig(options: {
  port: number;
  storage: string;
  upstreamPort: number;
  connections?: string;
  rules?: string;
}): string {
  return `server: { port: ${options.port}, publicUrl: "http://127.0.0.1:${options.port}" }
storage: "${options.storage}"
agents: [{ name: bench-bot, owner: owner@example.com }]
reviewers: [{ email: reviewer@example.com, groups: [ops] }]
connections:
  billing-api:
    type: http
    baseUrl: http://127.0.0.1:${options.upstreamPort}
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
${options.connections ?? ""}rules:
  - name: reads pass
    when: action.connection == "billing-api" && http.method == "GET"
    decision: allow
${options.rules ?? ""}  - name: nothing else
    decision: deny
`;
}

/** An allowed action: an audited allow decision, durable before the upstream call. */
export function allowedAction(agentToken: string): Call {
  return {
    path: "/v1/actions",
    method: "POST",
    headers: { authorization: `Bearer ${agentToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      connection: "billing-api",
      operation: "request",
      input: { method: "GET", path: "/invoices" },
    }),
    ok: (status, body) => status === 200 && body.includes('"succeeded"'),
  };
}

/** What a bench gateway and its CLI run with: the upstream's credential, quiet logs. */
export function benchEnv(credential: string): Record<string, string> {
  return { BILLING_API_TOKEN: credential, AIRLOCK_LOG_LEVEL: "warn" };
}

/** Runs `airlock ARGS --config CONFIG` to the end; returns its stdout. */
export function runCli(
  config: string,
  env: Record<string, string>,
  args: string[],
  airlock = builtAirlock,
): string {
  return execFileSync(process.execPath, [airlock, ...args, "--config", config], {
    env: { ...process.env, ...env },
    // Piped, so that a failing command's own words are in the error it throws.
    stdio: ["ignore", "pipe", "pipe"],
  }).toString();
}

/** Starts `airlock serve` on a config; resolves once it answers /readyz on `port`. */
export async function serve(
  config: string,
  port: number,
  env: Record<string, string>,
  airlock = builtAirlock,
): Promise<ChildProcess> {
  const child = await startProcess([airlock, "serve", "--config", config], env);
  await waitFor(`http://127.0.0.1:${port}/readyz`);
  return child;
}

/** A gateway of its own, on a SQLite file in a new directory unless `storage` says otherwise. */
export async function startBenchGateway(options: {
  upstreamPort: number;
  credential: string;
  /** The CLI of the build to run; this checkout's by default. */
  airlock?: string;
  storage?: string;
}): Promise<BenchGateway> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-bench-"));
  const port = await freePort();
  const config = join(dir, "airlock.yaml");
  const storage = options.storage ?? "sqlite:./airlock.db";
  writeFileSync(config, benchConfig({ port, storage, upstreamPort: options.upstreamPort }));
  const env = benchEnv(options.credential);
  const cli = (args: string[]) => runCli(config, env, args, options.airlock);
  const token = cli(["token", "create", "--agent", "bench-bot"]).trim();
  const child = await serve(config, port, env, options.airlock);
  return { dir, port, child, cli, allowed: allowedAction(token) };
}
