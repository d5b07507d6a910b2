/**
 * The storage layer alone: audited allow decisions (a request recorded as executing with its
 * three events, then its outcome with a fourth, each durable before the next step) driven
 * straight through the store from 64 concurrent callers in this process, with no HTTP, policy
 * or upstream. Set beside the figures through the gateway, it shows how much of the cost is
 * the storage's and how much the rest of the gateway's.
 */
import { join } from "node:path";
import { type ActionRequest, openStore, type Store } from "@airlock/gateway";
import pg from "pg";

type Change = ReturnType<Parameters<Store["insertRequest"]>[0]>;

/** The pure transitions, loaded from the built gateway (they are not part of its public API). */
interface Transitions {
  submit(args: unknown): Change;
  finishExecution(
    request: ActionRequest,
    outcome: { ok: boolean; summary: string; resultDigest: string },
    now: number,
  ): { change?: Change; value: ActionRequest };
}

const decision = {
  decision: "allow",
  rule: "reads pass",
  reason: 'rule "reads pass" allows it',
  risk: "low",
  riskReason: "GET reads data",
  review: null,
  mask: [],
  policyDigest: "d".repeat(64),
};

async function decisionsPerSecond(
  store: Store,
  t: Transitions,
  seconds: number,
  warmup: number,
): Promise<number> {
  let next = 0;
  let done = 0;
  let running = true;
  const caller = async () => {
    while (running) {
      const now = Date.now();
      const change = t.submit({
        id: `req_bench_${++next}`,
        proposal: {
          agent: "bench-bot",
          connection: "billing-api",
          operation: "request",
          input: { method: "GET", path: "/invoices" },
          justification: "",
          context: {},
        },
        agent: { name: "bench-bot", owner: "owner@example.com", labels: {} },
        connectionType: "http",
        idempotencyKey: null,
        hash: "a".repeat(64),
        nonce: "n".repeat(32),
        decision,
        description: {
          preview: "GET billing-api/invoices",
          facts: { http: { method: "GET", path: "/invoices" } },
          risk: { level: "low", reason: "GET reads data" },
        },
        now,
      });
      await store.insertRequest(
        () => change,
        () => [],
      );
      const outcome = { ok: true, summary: "200 OK", resultDigest: "r".repeat(64) };
      await store.transition(
        change.request.id,
        (request) => t.finishExecution(request, outcome, Date.now()),
        () => [],
        change.request,
      );
      done++;
    }
  };
  const callers = Array.from({ length: 64 }, caller);
  await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
  const from = done;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const rate = (done - from) / ((performance.now() - started) / 1000);
  running = false;
  await Promise.all(callers);
  return rate;
}

export async function benchStore(b: {
  dir: string;
  postgres: string;
  seconds: number;
  warmup: number;
  write: (line: string) => void;
}): Promise<void> {
  const t = (await import(
    new URL("../../packages/gateway/dist/requests/request-transitions.js", import.meta.url).href
  )) as Transitions;
  b.write("storage alone: 64 concurrent audited allow decisions, no HTTP, one process\n");
  const sqlite = await openStore(`sqlite:${join(b.dir, "store-alone.db")}`, b.dir, {
    serving: true,
  });
  try {
    const rate = await decisionsPerSecond(sqlite, t, b.seconds, b.warmup);
    b.write(`  SQLite                             ${rate.toFixed(0).padStart(8)} decisions/s\n`);
  } finally {
    await sqlite.close();
  }
  const admin = new pg.Client({ connectionString: b.postgres, connectionTimeoutMillis: 2000 });
  try {
    await admin.connect();
  } catch {
    b.write("  PostgreSQL: skipped, it cannot be reached\n");
    return;
  }
  const schema = `airlock_bench_store_${process.pid}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  try {
    const url = new URL(b.postgres);
    url.searchParams.set("options", `-c search_path=${schema}`);
    const store = await openStore(url.toString(), b.dir, { serving: true });
    try {
      const rate = await decisionsPerSecond(store, t, b.seconds, b.warmup);
      b.write(`  PostgreSQL                         ${rate.toFixed(0).padStart(8)} decisions/s\n`);
    } finally {
      await store.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
}
