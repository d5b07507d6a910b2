/**
 * The real PostgreSQL for tests: 127.0.0.1:5432, database `test` (AIRLOCK_TEST_POSTGRES
 * overrides). With CI=true an unreachable server fails the tests; elsewhere they are skipped
 * with one line saying how to enable them.
 */
import pg from "pg";

export const postgresUrl =
  process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

async function reachable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

const problem = await reachable();
if (problem && process.env.CI === "true") {
  throw new Error(
    `PostgreSQL at ${postgresUrl} cannot be reached (${problem}); CI runs these tests for real: start it (see .ci/run)`,
  );
}
if (problem) {
  process.stderr.write(
    `PostgreSQL tests skipped: ${postgresUrl} cannot be reached (${problem}). Start PostgreSQL on 127.0.0.1:5432 with a database "test" (trust auth), or set AIRLOCK_TEST_POSTGRES.\n`,
  );
}

/** Whether the PostgreSQL tests run: pass to `describe.skipIf(!postgresAvailable)`. */
export const postgresAvailable = problem === undefined;

export interface ScratchSchema {
  name: string;
  /** A URL whose connections see this schema first. */
  url: string;
  /** Runs SQL as the test's own superuser, outside Airlock. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
  ): Promise<R[]>;
  drop(): Promise<void>;
}

/** A schema of its own for one test file, created now and dropped by `drop()`. */
export async function scratchSchema(): Promise<ScratchSchema> {
  const name = `airlock_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const url = new URL(postgresUrl);
  url.searchParams.set("options", `-c search_path=${name}`);
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  await client.query(`CREATE SCHEMA ${name}`);
  return {
    name,
    url: url.toString(),
    query: async (sql, params) => (await client.query(sql, params)).rows,
    async drop() {
      await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await client.end();
    },
  };
}
