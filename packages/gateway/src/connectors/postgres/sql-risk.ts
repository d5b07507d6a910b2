/** The risk hint of a SQL action, from its analysis and the planner's row estimate. Pure. */
import type { RiskHint } from "../connector.js";
import type { SqlAnalysis } from "./sql-analysis.js";

/** Reads above this many estimated rows are bulk exports. */
export const bulkRows = 10_000;
/** Writes above this many estimated rows are more than a fix-up. */
export const largeWriteRows = 1_000;

/** Functions that act outside the rows a statement reads, even in a read-only transaction. */
const sideEffects = new Set([
  "pg_terminate_backend",
  "pg_cancel_backend",
  "pg_reload_conf",
  "pg_rotate_logfile",
  "set_config",
  "pg_advisory_lock",
  "pg_read_file",
  "pg_read_binary_file",
  "pg_ls_dir",
  "lo_import",
  "lo_export",
  "dblink",
  "dblink_exec",
  "pg_sleep",
]);

export function sqlRisk(analysis: SqlAnalysis, estimatedRows: number | undefined): RiskHint {
  const kinds = new Set(analysis.kinds);
  const about =
    estimatedRows === undefined ? "" : ` (about ${estimatedRows.toLocaleString("en-US")} rows)`;
  if (kinds.has("code")) {
    return {
      level: "critical",
      reason:
        "runs code whose effects the SQL does not show (DO, CALL, EXECUTE, LOAD, COPY … PROGRAM)",
    };
  }
  if (kinds.has("ddl")) return { level: "critical", reason: "DDL changes the schema" };
  if (kinds.has("grant"))
    return { level: "critical", reason: "GRANT or REVOKE changes who may do what" };
  if (!analysis.hasWhere) {
    return {
      level: "critical",
      reason: "a write without a WHERE clause touches every row of its table",
    };
  }
  if (kinds.has("other")) {
    return {
      level: "high",
      reason: "a statement Airlock cannot classify further (SET, VACUUM, LOCK, …)",
    };
  }
  const effectful = analysis.functions.filter((name) =>
    sideEffects.has(name.replace(/^pg_catalog\./, "")),
  );
  if (effectful.length > 0) {
    return {
      level: "high",
      reason: `calls ${effectful.join(", ")}, whose effects a read-only transaction does not stop`,
    };
  }
  if (kinds.has("copy")) return { level: "high", reason: "COPY moves data in bulk" };
  const writes = ["delete", "update", "merge", "insert"].filter((kind) => kinds.has(kind as never));
  if (writes.length > 0) {
    const what = writes.map((kind) => kind.toUpperCase()).join(", ");
    if (estimatedRows === undefined || estimatedRows > largeWriteRows) {
      return { level: "high", reason: `${what} on many rows or an unknown number${about}` };
    }
    return { level: "medium", reason: `${what} on few rows${about}` };
  }
  if (estimatedRows === undefined) {
    return { level: "medium", reason: "a read whose size could not be estimated" };
  }
  if (estimatedRows > bulkRows) return { level: "high", reason: `a bulk read${about}` };
  return { level: "low", reason: `a small read${about}` };
}
