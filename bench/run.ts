/**
 * `npm run bench`: the same allowed request sent straight to the demo upstream and through
 * Airlock, at moderate and at high concurrency, each in one run so the ratios compare like
 * with like. Every request through Airlock is an audited allow decision, durable (fsync'd)
 * before it executes and before it answers.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { startDemoUpstream } from "@airlock/gateway";
import { startBenchGateway } from "./gateway.js";
import { type LoadResult, load, paced } from "./load.js";
import { benchPostgres, postgresServer } from "./postgres.js";
import { cpuPerRequest, freePort } from "./processes.js";
import { benchSqlAnalysis } from "./sql-analysis.js";
import { benchStore } from "./store.js";

const seconds = Number(process.env.BENCH_SECONDS ?? 6);
const warmup = Number(process.env.BENCH_WARMUP ?? 2);

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

function row(name: string, r: LoadResult): string {
  return `${name.padEnd(34)} ${fmt(r.perSecond, 0).padStart(8)} req/s   p50 ${fmt(r.p50).padStart(6)} ms   p99 ${fmt(r.p99).padStart(6)} ms${r.errors ? `   ${r.errors} errors` : ""}`;
}

const credential = `bench_${Date.now()}_credential`;
const upstreamPort = await freePort();
const children: ChildProcess[] = [];
const stops: (() => Promise<void>)[] = [];
let dir: string | undefined;
try {
  // The upstream shares the load generator's process: in production both live on other
  // machines, and this leaves the gateway a core of its own on a 2-core box.
  const upstream = await startDemoUpstream({ port: upstreamPort, token: credential });
  stops.push(() => upstream.close());
  const gateway = await startBenchGateway({ upstreamPort, credential });
  dir = gateway.dir;
  children.push(gateway.child);
  const gatewayPort = gateway.port;
  const direct = {
    path: "/invoices",
    method: "GET" as const,
    headers: { authorization: `Bearer ${credential}` },
    ok: (status: number) => status === 200,
  };
  const through = gateway.allowed;

  process.stdout.write(
    `Airlock benchmark: ${seconds}s per run after ${warmup}s warm-up; the gateway in its own process, load and upstream in this one\n\n`,
  );
  // A gateway that has served a while has its request path compiled; a fresh one is still
  // compiling it for its first several thousand requests, and would be measured doing that.
  const gatewayWarmup = Number(process.env.BENCH_GATEWAY_WARMUP ?? 5);
  process.stdout.write(
    `warming the gateway up: 64 concurrent callers for ${gatewayWarmup}s, not measured (so are the PostgreSQL ones)\n\n`,
  );
  await load(`http://127.0.0.1:${gatewayPort}`, through, {
    concurrency: 64,
    seconds: gatewayWarmup,
    warmup: 0,
  });

  const rate = Number(process.env.BENCH_RATE ?? 200);
  process.stdout.write(`moderate load: ${rate} requests/s, paced (open loop)\n`);
  const moderateDirect = await paced(`http://127.0.0.1:${upstreamPort}`, direct, {
    rate,
    seconds,
    warmup,
  });
  process.stdout.write(`  ${row("straight to the upstream", moderateDirect)}\n`);
  const moderate = await paced(`http://127.0.0.1:${gatewayPort}`, through, {
    rate,
    seconds,
    warmup,
  });
  process.stdout.write(`  ${row("through Airlock (audited, durable)", moderate)}\n`);
  process.stdout.write(
    `  ratio Airlock/direct: p50 ${fmt(moderate.p50 / moderateDirect.p50)}x (+${fmt(moderate.p50 - moderateDirect.p50)} ms), p99 ${fmt(moderate.p99 / moderateDirect.p99)}x (+${fmt(moderate.p99 - moderateDirect.p99)} ms)\n\n`,
  );

  process.stdout.write("high load: 64 concurrent callers (closed loop)\n");
  const highDirect = await load(`http://127.0.0.1:${upstreamPort}`, direct, {
    concurrency: 64,
    seconds,
    warmup,
  });
  process.stdout.write(`  ${row("straight to the upstream", highDirect)}\n`);
  const gatewayCpu = cpuPerRequest(children[0]!.pid);
  const high = await load(`http://127.0.0.1:${gatewayPort}`, through, {
    concurrency: 64,
    seconds,
    warmup,
  });
  const cpu = gatewayCpu(high, warmup);
  process.stdout.write(`  ${row("through Airlock (audited, durable)", high)}\n`);
  process.stdout.write(
    `  ratio Airlock/direct: throughput ${fmt(high.perSecond / highDirect.perSecond)}x, p50 ${fmt(high.p50 / highDirect.p50)}x, p99 ${fmt(high.p99 / highDirect.p99)}x\n\n`,
  );

  process.stdout.write("summary\n");
  process.stdout.write(
    `  added p50 latency at ${rate} req/s:  ${fmt(moderate.p50 - moderateDirect.p50)} ms (target < 1 ms)\n`,
  );
  process.stdout.write(
    `  durable audited allow decisions:  ${fmt(high.perSecond, 0)} per second (target >= 3000)\n`,
  );
  process.stdout.write(
    `  gateway CPU per decision:         ${cpu === undefined ? "n/a" : `${fmt(cpu, 0)} µs`} (all its threads; steadier than throughput on a shared machine)\n`,
  );

  process.stdout.write(`  ${gateway.cli(["audit", "verify"]).trim()}\n\n`);

  await benchPostgres({
    dir,
    upstreamPort,
    credential,
    seconds,
    warmup,
    gatewayWarmup,
    sqlite: high,
    write: (line) => process.stdout.write(line),
    row,
  });
  process.stdout.write("\n");
  await benchStore({
    dir,
    postgres: postgresServer,
    seconds,
    warmup,
    write: (line) => process.stdout.write(line),
  });
  process.stdout.write("\n");
  await benchSqlAnalysis((line) => process.stdout.write(line));
} finally {
  for (const child of children) child.kill("SIGTERM");
  for (const stop of stops) await stop();
  await new Promise((r) => setTimeout(r, 300));
  if (dir) rmSync(dir, { recursive: true, force: true });
}
