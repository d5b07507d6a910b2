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
  /**
   * Sets how far the database's clock runs ahead of the server's, as the connections of
   * `url` see it (with `clockAhead` only).
   */
  setClockAhead(ms: number): Promise<void>;
}

/**
 * A schema of its own for one test file, created now and dropped by `drop()`. With
 * `clockAhead`, the database's clock (`now()`, which Airlock reads all its times from) runs
 * that many ms ahead of the server's, and this process's, for the connections of `url`: a
 * `now()` of the schema's own comes before pg_catalog's on its search_path.
 */
export async function scratchSchema(options: { clockAhead?: number } = {}): Promise<ScratchSchema> {
  const name = `airlock_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const url = new URL(postgresUrl);
  const skewed = options.clockAhead !== undefined;
  url.searchParams.set("options", `-c search_path=${name}${skewed ? ",pg_catalog" : ""}`);
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  await client.query(`CREATE SCHEMA ${name}`);
  if (skewed) {
    await client.query(`CREATE TABLE ${name}.test_clock (ahead_ms bigint NOT NULL)`);
    await client.query(`INSERT INTO ${name}.test_clock VALUES ($1)`, [options.clockAhead]);
    await client.query(`CREATE FUNCTION ${name}.now() RETURNS timestamptz LANGUAGE sql STABLE
      AS $$ SELECT pg_catalog.now() + (SELECT ahead_ms FROM ${name}.test_clock) * interval '1 ms' $$`);
  }
  return {
    name,
    url: url.toString(),
    query: async (sql, params) => (await client.query(sql, params)).rows,
    async setClockAhead(ms) {
      if (!skewed)
        throw new Error("a scratch schema made without clockAhead keeps the server's clock");
      await client.query(`UPDATE ${name}.test_clock SET ahead_ms = $1`, [ms]);
    },
    async drop() {
      await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await client.end();
    },
  };
}
