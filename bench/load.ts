/** A closed-loop load generator: `concurrency` callers, each sending its next request when the last returns. */
import { Pool } from "undici";

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
}

export interface Call {
  path: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: string;
  /** Whether the answer is what the scenario expects (a wrong answer counts as an error). */
  ok: (status: number, body: string) => boolean;
}

export async function load(
  origin: string,
  call: Call,
  options: { concurrency: number; seconds: number; warmup: number },
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: options.concurrency, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  let errors = 0;
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const started = process.hrtime.bigint();
      try {
        const response = await pool.request({
          path: call.path,
          method: call.method,
          headers: call.headers,
          body: call.body,
        });
        const text = await response.body.text();
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        if (!measuring) continue;
        if (call.ok(response.statusCode, text)) latencies.push(ms);
        else errors++;
      } catch {
        if (measuring) errors++;
      }
    }
  };
  const workers = Array.from({ length: options.concurrency }, worker);
  await new Promise((r) => setTimeout(r, options.warmup * 1000));
  measuring = true;
  const begin = performance.now();
  await new Promise((r) => setTimeout(r, options.seconds * 1000));
  measuring = false;
  const seconds = (performance.now() - begin) / 1000;
  stop = true;
  await Promise.all(workers);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  return {
    requests: latencies.length,
    errors,
    seconds,
    perSecond: latencies.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
  };
}
