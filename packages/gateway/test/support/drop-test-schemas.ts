/** Vitest global setup for the PostgreSQL run: drops the per-gateway schemas it created. */
import pg from "pg";

async function dropTestSchemas(): Promise<void> {
  const client = new pg.Client({
    connectionString:
      process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test",
  });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      "SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'airlock\\_t\\_%'",
    );
    for (const { name } of rows) await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
  } finally {
    await client.end();
  }
}

export default async function setup(): Promise<() => Promise<void>> {
  await dropTestSchemas();
  return dropTestSchemas;
}
