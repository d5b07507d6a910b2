/**
 * `node bench/dist/compare.js BEFORE AFTER`: is AFTER faster than BEFORE? Each is a built
 * checkout (a directory holding packages/gateway/dist). Both gateways run at once, each on its
 * own SQLite file (with `BENCH_STORAGE=postgres`, its own schema on the PostgreSQL server the
 * benchmark uses), and are warmed up; then they take turns under the same load, in ABBA
 * order. This VM's speed drifts by ±20% within minutes, far more than most changes move
 * throughput, but little within one pair of short runs: the ratio of each pair is the figure
 * to trust, and what this prints.
 */
import { existsSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { startDemoUpstream } from "@airlock/gateway";
import pg from "pg";
import { type BenchGateway, startBenchGateway } from "./gateway.js";
import { load } from "./load.js";
import { postgresServer } from "./postgres.js";
import { cpuPerRequest, freePort } from "./processes.js";

const checkouts = process.argv.slice(2).map((dir) => resolve(dir));
const cli = (dir: string) => join(dir, "packages/gateway/dist/cli/airlock.js");
if (checkouts.length !== 2 || !checkouts.every((dir) => existsSync(cli(dir)))) {
  process.stderr.write(
    "usage: node bench/dist/compare.js BEFORE AFTER\n" +
      "  each a checkout built with `npx tsc -b packages/gateway`; for an earlier commit:\n" +
      "  git worktree add /tmp/before COMMIT, link node_modules into it, and build it there\n",
  );
  process.exit(2);
}
// Fewer rounds than this leave a median that one drifting pair can decide.
const rounds = Math.max(4, Number(process.env.BENCH_ROUNDS ?? 8));
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const concurrency = 64;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const credential = `compare_${Date.now()}_credential`;
const upstreamPort = await freePort();
const upstream = await startDemoUpstream({ port: upstreamPort, token: credential });
const gateways: BenchGateway[] = [];
const onPostgres = process.env.BENCH_STORAGE === "postgres";
const schemas = checkouts.map((_, i) => `airlock_compare_${process.pid}_${i}`);
const admin = onPostgres ? new pg.Client({ connectionString: postgresServer }) : undefined;
/** Each checkout's own schema, on the one server: they take turns, so they share it fairly. */
const storageOf = async (i: number): Promise<string | undefined> => {
  if (!admin) return undefined;
  await admin.query(`CREATE SCHEMA ${schemas[i]}`);
  const url = new URL(postgresServer);
  url.searchParams.set("options", `-c search_path=${schemas[i]}`);
  return String(url);
};
try {
  await admin?.connect();
  for (const [i, dir] of checkouts.entries()) {
    const storage = await storageOf(i);
    gateways.push(
      await startBenchGateway({
        upstreamPort,
        credential,
        airlock: cli(dir),
        ...(storage ? { storage } : {}),
      }),
    );
  }
  const origin = (g: BenchGateway) => `http://127.0.0.1:${g.port}`;
  process.stderr.write(`warming both gateways up (${concurrency} callers, 6s each)\n`);
  for (const g of gateways) {
    await load(origin(g), g.allowed, { concurrency, seconds: 6, warmup: 0 });
  }
  const rates: number[][] = [[], []];
  const cpus: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) {
    for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const g = gateways[i]!;
      const cpu = cpuPerRequest(g.child.pid);
      const run = await load(origin(g), g.allowed, { concurrency, seconds, warmup: 0.5 });
      if (run.errors > 0) throw new Error(`${checkouts[i]}: ${run.errors} requests failed`);
      rates[i]!.push(run.perSecond);
      cpus[i]!.push(cpu(run, 0.5) ?? Number.NaN);
    }
    process.stderr.write(
      `round ${round + 1}/${rounds}: ${rates.map((r) => `${r.at(-1)!.toFixed(0)}/s`).join(" vs ")}\n`,
    );
  }
  const [before, after] = checkouts;
  for (const [i, dir] of checkouts.entries()) {
    process.stdout.write(
      `${dir}: median ${median(rates[i]!).toFixed(0)} decisions/s, ${median(cpus[i]!).toFixed(0)} µs of gateway CPU each\n`,
    );
  }
  const pairs = rates[1]!.map((rate, n) => rate / rates[0]![n]!);
  const cpuPairs = cpus[1]!.map((cpu, n) => cpu / cpus[0]![n]!);
  process.stdout.write(
    `${after} / ${before}, paired: throughput median ${median(pairs).toFixed(3)}x (${Math.min(...pairs).toFixed(3)} to ${Math.max(...pairs).toFixed(3)}), CPU per decision median ${median(cpuPairs).toFixed(3)}x\n`,
  );
} finally {
  for (const g of gateways) {
    if (g.child.exitCode === null && g.child.signalCode === null) {
      const exited = new Promise((r) => g.child.once("exit", r));
      g.child.kill("SIGTERM");
      await exited;
    }
    rmSync(g.dir, { recursive: true, force: true });
  }
  if (admin) {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
  await upstream.close();
}
