/**
 * Load generators. `load` is closed-loop (`concurrency` callers, each sending its next
 * request when the last returns): it finds throughput. `paced` is open-loop (a request every
 * 1/rate seconds, whether or not earlier ones returned): it measures latency at a given load
 * without hiding queueing, as a closed loop would.
 */
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

function summarise(latencies: number[], errors: number, seconds: number): LoadResult {
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

async function once(pool: Pool, call: Call): Promise<{ ms: number; ok: boolean }> {
  const started = process.hrtime.bigint();
  try {
    const response = await pool.request({
      path: call.path,
      method: call.method,
      headers: call.headers,
      body: call.body,
    });
    const text = await response.body.text();
    return {
      ms: Number(process.hrtime.bigint() - started) / 1e6,
      ok: call.ok(response.statusCode, text),
    };
  } catch {
    return { ms: 0, ok: false };
  }
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
      const result = await once(pool, call);
      if (!measuring) continue;
      if (result.ok) latencies.push(result.ms);
      else errors++;
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
  return summarise(latencies, errors, seconds);
}

export async function paced(
  origin: string,
  call: Call,
  options: { rate: number; seconds: number; warmup: number },
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: 64, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  let errors = 0;
  const inFlight = new Set<Promise<void>>();
  const interval = 1000 / options.rate;
  const total = Math.round(options.rate * (options.warmup + options.seconds));
  const warm = Math.round(options.rate * options.warmup);
  const begin = performance.now();
  let measuredFrom = 0;
  for (let i = 0; i < total; i++) {
    // Sleep to the i-th slot; a late slot is sent at once, so delays show up as latency.
    const due = begin + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    if (i === warm) measuredFrom = performance.now();
    const measured = i >= warm;
    const p: Promise<void> = once(pool, call).then((result) => {
      inFlight.delete(p);
      if (!measured) return;
      if (result.ok) latencies.push(result.ms);
      else errors++;
    });
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - measuredFrom) / 1000;
  await pool.close();
  return summarise(latencies, errors, seconds);
}
