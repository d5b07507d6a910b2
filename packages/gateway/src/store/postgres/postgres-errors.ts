/**
 * What a failure of PostgreSQL's means to callers. `store_unavailable`: the database cannot
 * be reached, or cannot do the work for now (out of disk or connections, shutting down, a
 * lock or a conflict), and trying again later may succeed. `internal`: it refused the work
 * itself (a constraint, a bug's SQL, data it does not take, a damaged table), and trying
 * again fails alike. An `internal` error's message holds nothing the database said: that
 * stays with its cause, for the log.
 */
import pg from "pg";
import { AirlockError } from "../../errors.js";

/** SQLSTATE classes that pass: the connection, authorization, resources, an operator, the system. */
const TRANSIENT_CLASSES = new Set(["08", "28", "53", "57", "58"]);
/** And single codes that pass, out of classes that mostly do not. */
const TRANSIENT_CODES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "40003", // statement_completion_unknown
  "55P03", // lock_not_available
  "55006", // object_in_use
  "25006", // read_only_sql_transaction: a standby, during a failover
  "25P03", // idle_in_transaction_session_timeout
  "3D000", // invalid_catalog_name: the database is not there (yet)
  "72000", // snapshot_too_old
]);

/**
 * SQLSTATEs by which the database says it found pages of a table or an index damaged. Unlike
 * SQLite's, the store stays ready: every replica shares the database, so taking this one out
 * serves no one better, and the tables that are not damaged are still served. A damaged
 * index, the likelier case, is repaired online (REINDEX), with nothing to restart after.
 */
const DAMAGED: Record<string, string> = { XX001: "data_corrupted", XX002: "index_corrupted" };

/**
 * The SQLSTATE of the database's answer behind a failure (itself, or its cause once wrapped),
 * if the database answered: a network error's code (EPIPE) is no SQLSTATE.
 */
export function sqlState(error: unknown): string | undefined {
  const answer = error instanceof AirlockError ? error.cause : error;
  return answer instanceof pg.DatabaseError ? answer.code : undefined;
}

/** A conflict with another transaction that running the same transaction again resolves. */
export function lostConflict(error: unknown): boolean {
  const code = sqlState(error);
  return code === "40001" || code === "40P01";
}

/**
 * Whether a failure passes. The database's own answers say so by their SQLSTATE; one without
 * (a connection refused, dropped or timed out) is the network's. A protocol violation is a
 * message the server could not read: the same message fails again.
 */
function transient(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) {
    return false; // the driver refused what it was handed: a bug's
  }
  const code = sqlState(error);
  if (code === undefined) return true;
  if (code === "08P01") return false;
  return TRANSIENT_CLASSES.has(code.slice(0, 2)) || TRANSIENT_CODES.has(code);
}

/** A driver failure as the error callers get; `what` is what the store was doing. */
export function storeFailure(what: string, error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  if (!transient(error)) {
    const code = sqlState(error);
    const damage = code === undefined ? undefined : DAMAGED[code];
    if (damage) {
      return new AirlockError(
        "internal",
        `the store (PostgreSQL) could not ${what}: the database found a table or index of its damaged (${code} ${damage}), and will refuse this until it is repaired; the log says which: check the database (pg_amcheck --heapallindexed lists what is damaged), REINDEX a damaged index, restore a damaged table from a backup, then run airlock audit verify`,
        { cause: error },
      );
    }
    return new AirlockError(
      "internal",
      `the store (PostgreSQL) could not ${what}: the database refused it, and would again; the log has the details`,
      { cause: error },
    );
  }
  return unreachable(what, error);
}

/**
 * A failure to reach the database (or one that passes) as `store_unavailable`, with what it
 * said. Also what an operator opening the store is told, whatever the failure: a refusal
 * there (a migration the database would not take) is told with what the database said.
 */
export function unreachable(what: string, error: unknown): AirlockError {
  if (error instanceof AirlockError && error.code !== "internal") return error;
  const said = error instanceof AirlockError ? error.cause : error;
  return new AirlockError(
    "store_unavailable",
    `the store (PostgreSQL) could not ${what}: ${describeError(said)}; ${nextStep(said)}`,
    { cause: said },
  );
}

/**
 * What the operator does next. Most failures pass once the database answers again; a missing
 * database, a refused role or a missing grant stay until someone sets them up.
 */
function nextStep(error: unknown): string {
  const code = sqlState(error);
  if (code === "3D000") {
    return "create it (CREATE DATABASE airlock OWNER airlock) or correct the database name in the storage URL";
  }
  if (code === "28000" || code === "28P01") return "check the user and password in the storage URL";
  if (code === "42501") {
    return "give the role what it lacks: Airlock's role should own its database (CREATE DATABASE airlock OWNER airlock) or its schema";
  }
  return "try again once the database answers";
}

function describeError(error: unknown): string {
  // Connecting to a name with several addresses fails with an AggregateError and no message.
  if (error instanceof AggregateError && !error.message) {
    return error.errors.map(describeError).join("; ") || "connection failed";
  }
  if (error instanceof Error)
    return error.message || (error as { code?: string }).code || error.name;
  return String(error);
}
