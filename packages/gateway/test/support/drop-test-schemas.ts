/**
 * Vitest global setup for the PostgreSQL run: names this run and drops the per-gateway
 * schemas it created. Each run drops only its own schemas (and those a crashed run left
 * hours ago), so two checkouts can run the PostgreSQL scenarios on one server at once.
 */
import pg from "pg";

const STALE_AFTER_SECONDS = 6 * 3600;

async function dropSchemas(which: (name: string) => boolean): Promise<void> {
  const client = new pg.Client({
    connectionString:
      process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test",
  });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      "SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'airlock\\_t\\_%'",
    );
    for (const { name } of rows.filter((row) => which(row.name))) {
      await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    }
  } finally {
    await client.end();
  }
}

/** When the run that made `schema` started, in seconds; 0 for names from before runs had one. */
function runStart(schema: string): number {
  const run = /^airlock_t_([0-9a-z]+)_[0-9a-z]+_[0-9a-f]{16}$/.exec(schema)?.[1];
  return run === undefined ? 0 : Number.parseInt(run, 36);
}

export default async function setup(): Promise<() => Promise<void>> {
  const now = Math.floor(Date.now() / 1000);
  // Worker processes start after this and inherit it: testSchema puts it in every name.
  const run = `${now.toString(36)}_${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
  process.env.AIRLOCK_TEST_RUN = run;
  await dropSchemas((name) => runStart(name) < now - STALE_AFTER_SECONDS);
  return () => dropSchemas((name) => name.startsWith(`airlock_t_${run}_`));
}
