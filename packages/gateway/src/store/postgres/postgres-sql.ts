/**
 * What the PostgreSQL store's transactions share: running one (again, when it lost a conflict
 * with another), turning driver failures into Airlock's errors, multi-row inserts, and
 * appending to the one audit chain.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { hashParts } from "../../audit/audit-chain.js";
import { canonicalJson } from "../../common/canonical-json.js";
import type { ActionRequest, AuditEventInput } from "../../requests/request-types.js";
import type { StoreClock } from "../store-clock.js";
import { type Row, requestFromRow, reviewFromRow } from "../store-rows.js";
import { lostConflict, sqlState, storeFailure, unreachable } from "./postgres-errors.js";

export type Query = (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Row>>;

/**
 * The database's clock in ms, as times are stored: the start of the statement's transaction
 * (one value however often a statement reads it). Replicas judge leases and due times by it,
 * never by their own clocks, which may disagree.
 */
export const NOW_MS = "(extract(epoch FROM now()) * 1000)::bigint";

/** Rows per INSERT, well below PostgreSQL's 65,535 parameters per statement. */
const INSERT_BATCH = 1000;

/** Attempts at a transaction that keeps losing conflicts (see `runTransaction`). */
export const CONFLICT_ATTEMPTS = 3;

/**
 * Runs `work` in one transaction on one pooled connection. Driver failures become Airlock's
 * errors at each statement (`storeFailure`); anything else `work` throws (a refusal from a
 * pure transition) rolls back and passes through unchanged. A transaction the database
 * aborted for a serialization conflict or a deadlock is run again, `work` and all, a few
 * times: the conflict was with another transaction, and it has passed. The database's clock,
 * read as the transaction begins, goes to `clock` too, for the store's time between them.
 */
export function withTransaction<T>(
  pool: pg.Pool,
  what: string,
  work: (q: Query, at: number) => Promise<T>,
  clock?: StoreClock,
): Promise<T> {
  return transact(pool, what, work, () => "COMMIT", clock);
}

/** What an audited transaction appends as it commits. */
export interface Appended<T> {
  value: T;
  events: readonly AuditEventInput[];
  /** NOTIFY payloads on `channel`, delivered only if the transaction commits. */
  notify?: { channel: string; payloads: readonly string[] };
}

/**
 * As `withTransaction`, and appends `work`'s events to the one audit chain as it commits.
 * The chain's lock (`lock`, from `lockKey`) is held from the append until the commit is
 * flushed; the append, the notifications and COMMIT travel in one message, so the lock is
 * never held across a round trip to this process (see migration 3's `airlock_append_audit`).
 */
export function withAuditedTransaction<T>(
  pool: pg.Pool,
  lock: string,
  what: string,
  work: (q: Query, at: number) => Promise<Appended<T>>,
  clock?: StoreClock,
): Promise<T> {
  return transact(pool, what, work, (done) => commitMessage(lock, done), clock).then(
    (done) => done.value,
  );
}

async function transact<T>(
  pool: pg.Pool,
  what: string,
  work: (q: Query, at: number) => Promise<T>,
  commit: (value: T) => string,
  clock: StoreClock | undefined,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runTransaction(pool, what, work, commit, clock);
    } catch (error) {
      if (attempt >= CONFLICT_ATTEMPTS || !lostConflict(error)) throw error;
      await conflictPause(attempt);
    }
  }
}

/**
 * A short, random wait before running again what lost a conflict, so that the transactions
 * that met do not meet again at once.
 */
export function conflictPause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
}

async function runTransaction<T>(
  pool: pg.Pool,
  what: string,
  work: (q: Query, at: number) => Promise<T>,
  commit: (value: T) => string,
  clock: StoreClock | undefined,
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw unreachable(what, error);
  }
  // A checked-out connection has no listener of the pool's: one that drops between two
  // statements would otherwise throw from its EventEmitter and end the process. The next
  // statement fails and reports it, so there is nothing to do here.
  const ignore = () => {};
  client.on("error", ignore);
  const q: Query = async (sql, params) => {
    try {
      return await client.query<Row>(sql, params);
    } catch (error) {
      throw storeFailure(what, error);
    }
  };
  let broken = false;
  let tx: Tx | undefined;
  try {
    // The chain's head read after its lock, and "lock first, read after", need each statement
    // to see what committed before it: READ COMMITTED, whatever the database's default. The
    // transaction's id and its session's pid come along, in the same message, in case its
    // COMMIT goes unanswered; and the database's clock as the transaction began (what
    // `NOW_MS` reads in every statement of it), for `work` to stamp times by, and for the
    // store's clock to learn from: timed here, it is a reading of it at no extra cost.
    const sent = performance.now();
    const begun = (await q(
      `BEGIN ISOLATION LEVEL READ COMMITTED; SELECT txid_current()::text AS txid, pg_backend_pid() AS pid, ${NOW_MS} AS now`,
    )) as unknown as pg.QueryResult<Row>[];
    const row = begun[1]?.rows[0];
    if (!row) throw unreachable(what, new Error("BEGIN returned no row"));
    clock?.observe(row.now as number, sent, performance.now());
    tx = { txid: row.txid as string, pid: row.pid as number };
    const value = await work(q, row.now as number);
    // A simple-protocol message: after a failing statement the rest (COMMIT) is skipped.
    try {
      await q(commit(value));
    } catch (error) {
      if (tx !== undefined && lostConnection(error) && (await committed(pool, tx))) {
        broken = true; // the connection is gone: closed, not handed out again
        return value;
      }
      throw error;
    }
    return value;
  } catch (error) {
    try {
      await client.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.off("error", ignore);
    // A connection that cannot even roll back is closed rather than handed out again.
    client.release(broken);
  }
}

/**
 * The closing message of an audited transaction: its notifications, its audit append and
 * COMMIT. Values travel as SQL literals (`sqlLiteral`) because only the simple protocol
 * carries several statements in one message.
 */
function commitMessage(lock: string, done: Appended<unknown>): string {
  const statements: string[] = [];
  if (done.notify && done.notify.payloads.length > 0) {
    statements.push(
      `SELECT pg_notify(${pg.escapeLiteral(done.notify.channel)}, payload) FROM unnest(${textArray(done.notify.payloads)}) AS payload`,
    );
  }
  if (done.events.length > 0) {
    const columns: Record<
      "ts" | "type" | "requestId" | "actorType" | "actorId" | "data" | "actor" | "after" | "rest",
      (string | null)[]
    > = {
      ts: [],
      type: [],
      requestId: [],
      actorType: [],
      actorId: [],
      data: [],
      actor: [],
      after: [],
      rest: [],
    };
    for (const event of done.events) {
      const ts = new Date(event.at).toISOString();
      const data = canonicalJson(event.data);
      const parts = hashParts({
        ts,
        type: event.type,
        requestId: event.requestId,
        actor: event.actor,
      });
      columns.ts.push(ts);
      columns.type.push(event.type);
      columns.requestId.push(event.requestId);
      columns.actorType.push(event.actor.type);
      columns.actorId.push(event.actor.id);
      columns.data.push(data);
      // The function assembles the form around the data it stores, so the data travels once.
      columns.actor.push(parts.actor);
      columns.after.push(parts.after);
      columns.rest.push(parts.rest);
    }
    statements.push(
      `SELECT airlock_append_audit(${lock}, ${Object.values(columns).map(textArray).join(", ")})`,
    );
  }
  statements.push("COMMIT");
  return statements.join(";\n");
}

function textArray(values: readonly (string | null)[]): string {
  return `ARRAY[${values.map(sqlLiteral).join(",")}]::text[]`;
}

/**
 * A value as an SQL literal. Dollar quoting needs no escaping and means the same whatever the
 * server's settings; it is used when the closing tag is the first place the tag occurs (a
 * value ending in `$airlock` would otherwise close early). Otherwise the driver's
 * `escapeLiteral`, which walks the string character by character, quotes it.
 */
export function sqlLiteral(value: string | null): string {
  if (value === null) return "NULL";
  const quoted = `${DOLLAR_TAG}${value}${DOLLAR_TAG}`;
  return quoted.indexOf(DOLLAR_TAG, DOLLAR_TAG.length) === quoted.length - DOLLAR_TAG.length
    ? quoted
    : pg.escapeLiteral(value);
}

const DOLLAR_TAG = "$airlock$";

/**
 * Whether a failure left the statement's outcome unknown: the connection went away, rather
 * than the server answering with an error.
 */
function lostConnection(error: unknown): boolean {
  const code = sqlState(error);
  return code === undefined || /^(08|57P)/.test(code);
}

/** A transaction, and the server process (session) that runs it. */
interface Tx {
  txid: string;
  pid: number;
}

/**
 * Asks the database, on another connection, whether a transaction whose COMMIT went
 * unanswered committed after all, so its callers hear the truth. Waits a little while it is
 * still finishing; one still in progress after that has its session ended: the server goes
 * on with a message it has read after the client is gone (a COMMIT waiting for the audit
 * chain's lock, say), and would commit it after its callers were told it failed. Ended, it
 * aborts, or (already writing its commit) commits, for good. False when it did not commit,
 * or the database cannot say.
 */
async function committed(pool: pg.Pool, tx: Tx): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    let status: unknown;
    try {
      status = (await pool.query<Row>("SELECT txid_status($1::bigint) AS status", [tx.txid]))
        .rows[0]?.status;
      if (status === "in progress" && attempt === 5) {
        // Only that session, and only while it still runs this transaction (a pid is reused
        // once its process is gone; `backend_xid` is the 32-bit xid the txid ends with).
        await pool.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE pid = $1 AND backend_xid = (($2::bigint % 4294967296)::text)::xid`,
          [tx.pid, tx.txid],
        );
      }
    } catch {
      return false;
    }
    if (status === "committed") return true;
    if (status !== "in progress") return false;
    await new Promise((resolve) => setTimeout(resolve, 50 * Math.min(attempt + 1, 5)));
  }
  return false;
}

/**
 * Advisory lock keys are database-wide; deriving them from the schema lets two Airlock
 * installations (or test files) in one database work without waiting on each other.
 */
export function lockKey(purpose: string, schema: string): string {
  return createHash("sha256")
    .update(`airlock ${purpose} ${schema}`)
    .digest()
    .readBigInt64BE(0)
    .toString();
}

/** A multi-row INSERT per batch of rows: one round trip for most writes. */
export async function insertRows(
  q: Query,
  table: string,
  columns: string[],
  rows: unknown[][],
  suffix = "",
): Promise<Row[]> {
  const out: Row[] = [];
  for (let start = 0; start < rows.length; start += INSERT_BATCH) {
    const params: unknown[] = [];
    const values = rows.slice(start, start + INSERT_BATCH).map(
      (row) =>
        `(${row
          .map((value) => {
            params.push(value);
            return `$${params.length}`;
          })
          .join(", ")})`,
    );
    const result = await q(
      `INSERT INTO ${table} (${columns.join(", ")}) VALUES ${values.join(", ")} ${suffix}`,
      params,
    );
    out.push(...result.rows);
  }
  return out;
}

/** A request row with its reviews, read in one statement so both come from one snapshot. */
export const SELECT_REQUEST = `SELECT r.*, (SELECT coalesce(json_agg(v ORDER BY v.created_at, v.id), '[]')::text
  FROM reviews v WHERE v.request_id = r.id) AS reviews_json FROM requests r`;

export function toRequest(row: Row): ActionRequest {
  // Reviews come along as `json_agg`: column names, BIGINTs as JSON numbers.
  return requestFromRow(row, (JSON.parse(row.reviews_json as string) as Row[]).map(reviewFromRow));
}

export const REQUEST_COLUMNS = [
  "id",
  "agent",
  "agent_snapshot",
  "connection",
  "connection_type",
  "operation",
  "input",
  "justification",
  "context",
  "idempotency_key",
  "hash",
  "nonce",
  "status",
  "decision",
  "description",
  "outcome",
  "created_at",
  "updated_at",
  "expires_at",
  "finished_at",
  "version",
];

export function requestParams(r: ActionRequest): unknown[] {
  return [
    r.id,
    r.agent.name,
    JSON.stringify(r.agent),
    r.connection,
    r.connectionType,
    r.operation,
    JSON.stringify(r.input),
    r.justification,
    JSON.stringify(r.context),
    r.idempotencyKey,
    r.hash,
    r.nonce,
    r.status,
    JSON.stringify(r.decision),
    JSON.stringify(r.description),
    r.outcome === null ? null : JSON.stringify(r.outcome),
    r.createdAt,
    r.updatedAt,
    r.expiresAt,
    r.finishedAt,
    r.version,
  ];
}
