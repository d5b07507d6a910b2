/**
 * PostgreSQL storage: durable audited decisions per second with one gateway and with two
 * replicas on the same database, and approval-to-execution latency across replicas (from the
 * vote's response to the upstream receiving the call). Skipped when no PostgreSQL answers.
 */
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { allowedAction, benchConfig, benchEnv, runCli, serve } from "./gateway.js";
import { type LoadResult, load } from "./load.js";
import { cpuPerRequest, freePort } from "./processes.js";

export const postgresServer =
  process.env.AIRLOCK_BENCH_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

export interface PostgresBench {
  dir: string;
  upstreamPort: number;
  credential: string;
  seconds: number;
  warmup: number;
  /** Seconds of unmeasured load that warm each gateway up first. */
  gatewayWarmup: number;
  /** The SQLite figure from the same run, for the ratio. */
  sqlite: LoadResult;
  write: (line: string) => void;
  row: (name: string, result: LoadResult) => string;
}

export async function benchPostgres(b: PostgresBench): Promise<void> {
  const admin = new pg.Client({ connectionString: postgresServer, connectionTimeoutMillis: 2000 });
  try {
    await admin.connect();
  } catch (error) {
    b.write(
      `PostgreSQL: skipped, ${postgresServer} cannot be reached (${(error as Error).message})\n`,
    );
    return;
  }
  const schema = `airlock_bench_${process.pid}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(postgresServer);
  url.searchParams.set("options", `-c search_path=${schema}`);
  const children: ChildProcess[] = [];
  // The upstream records when each call arrives, for the approval-to-execution latency.
  const arrivals = new Map<string, number>();
  const upstream = createServer((request, response) => {
    arrivals.set(request.url ?? "", performance.now());
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const timedPort = (upstream.address() as AddressInfo).port;
  try {
    const ports = [await freePort(), await freePort()];
    const config = (port: number) =>
      benchConfig({
        port,
        storage: String(url),
        upstreamPort: b.upstreamPort,
        connections: `  timed:
    type: http
    baseUrl: http://127.0.0.1:${timedPort}
`,
        rules: `  - name: timed writes need one reviewer
    when: action.connection == "timed"
    decision: review
    review: { approvers: [ops] }
`,
      });
    const paths = ports.map((port, i) => {
      const path = join(b.dir, `postgres-${i}.yaml`);
      writeFileSync(path, config(port));
      return path;
    });
    const env = benchEnv(b.credential);
    const token = (kind: string, subject: string) =>
      runCli(paths[0]!, env, ["token", "create", kind, subject]).trim();
    const agent = token("--agent", "bench-bot");
    const reviewer = token("--reviewer", "reviewer@example.com");
    for (const [i, path] of paths.entries()) children.push(await serve(path, ports[i]!, env));
    const origin = (i: number) => `http://127.0.0.1:${ports[i]}`;
    const allowed = allowedAction(agent);

    b.write("PostgreSQL storage: 64 concurrent callers, audited allow decisions\n");
    await Promise.all(
      [0, 1].map((i) =>
        load(origin(i), allowed, { concurrency: 32, seconds: b.gatewayWarmup, warmup: 0 }),
      ),
    );
    const gatewayCpu = cpuPerRequest(children[0]!.pid);
    const one = await load(origin(0), allowed, {
      concurrency: 64,
      seconds: b.seconds,
      warmup: b.warmup,
    });
    const cpu = gatewayCpu(one, b.warmup);
    b.write(`  ${b.row("one gateway", one)}\n`);
    if (cpu !== undefined) {
      b.write(
        `    gateway CPU per decision: ${cpu.toFixed(0)} µs (the database's own not counted)\n`,
      );
    }
    const [a, c] = await Promise.all(
      [0, 1].map((i) =>
        load(origin(i), allowed, { concurrency: 32, seconds: b.seconds, warmup: b.warmup }),
      ),
    );
    const both = a!.perSecond + c!.perSecond;
    b.write(
      `  two replicas (32 callers each)      ${both.toFixed(0).padStart(8)} req/s   p50 ${a!.p50.toFixed(2)} / ${c!.p50.toFixed(2)} ms${a!.errors + c!.errors ? `   ${a!.errors + c!.errors} errors` : ""}\n`,
    );
    b.write(
      `  ratio to SQLite in this run: one gateway ${(one.perSecond / b.sqlite.perSecond).toFixed(2)}x, two replicas ${(both / b.sqlite.perSecond).toFixed(2)}x\n\n`,
    );

    // Submitted on one replica, approved on the other: how soon after the vote's answer
    // does the upstream hear the call?
    const latencies: number[] = [];
    for (let n = 0; n < 200; n++) {
      const submitted = await fetch(`${origin(0)}/v1/actions`, {
        method: "POST",
        headers: allowed.headers,
        body: JSON.stringify({
          connection: "timed",
          operation: "request",
          input: { method: "POST", path: `/timed/${n}`, body: { n } },
        }),
      });
      const { id } = (await submitted.json()) as { id: string };
      await fetch(`${origin(1)}/v1/requests/${id}/reviews`, {
        method: "POST",
        headers: { authorization: `Bearer ${reviewer}`, "content-type": "application/json" },
        body: JSON.stringify({ decision: "approve" }),
      }).then((r) => r.text());
      const answered = performance.now();
      const deadline = answered + 5000;
      while (!arrivals.has(`/timed/${n}`) && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 0.2));
      }
      const arrived = arrivals.get(`/timed/${n}`);
      if (arrived !== undefined) latencies.push(Math.max(0, arrived - answered));
    }
    latencies.sort((x, y) => x - y);
    const at = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
    b.write(
      `approval to execution across replicas (${latencies.length} approvals): p50 ${at(0.5)?.toFixed(2)} ms, p99 ${at(0.99)?.toFixed(2)} ms (target p99 < 50 ms)\n`,
    );
  } finally {
    for (const child of children) child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    await new Promise<void>((r) => upstream.close(() => r()));
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await admin.end();
  }
}
