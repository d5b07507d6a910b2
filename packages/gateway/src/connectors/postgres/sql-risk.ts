/** The risk hint of a SQL action, from its analysis and the planner's row estimate. Pure. */
import type { RiskHint } from "../connector.js";
import { functionName, type SqlAnalysis } from "./sql-analysis.js";

/** Reads above this many estimated rows are bulk exports. */
export const bulkRows = 10_000;
/** Writes above this many estimated rows are more than a fix-up. */
export const largeWriteRows = 1_000;

/**
 * Built-in functions that only compute a value from their arguments: a statement calling
 * nothing else may be rehearsed in a dry run. Anything else (pg_*, lo_*, dblink, set_config,
 * nextval, user functions) might act outside the transaction.
 */
const pureFunctions = new Set([
  "abs",
  "avg",
  "btrim",
  "ceil",
  "ceiling",
  "char_length",
  "character_length",
  "coalesce",
  "concat",
  "concat_ws",
  "count",
  "date_part",
  "date_trunc",
  "extract",
  "floor",
  "greatest",
  "initcap",
  "left",
  "length",
  "least",
  "lower",
  "lpad",
  "ltrim",
  "max",
  "md5",
  "min",
  "mod",
  "now",
  "nullif",
  "position",
  "power",
  "random",
  "regexp_replace",
  "replace",
  "right",
  "round",
  "rpad",
  "rtrim",
  "sign",
  "split_part",
  "sqrt",
  "string_agg",
  "strpos",
  "substr",
  "substring",
  "sum",
  "to_char",
  "to_date",
  "to_number",
  "to_timestamp",
  "trim",
  "trunc",
  "upper",
  "array_agg",
  "array_length",
  "cardinality",
  "json_build_object",
  "jsonb_build_object",
  "to_json",
  "to_jsonb",
  "jsonb_set",
  "age",
  "make_date",
  "make_interval",
  "gen_random_uuid",
  "current_date",
  "current_timestamp",
  "localtimestamp",
  "statement_timestamp",
  "clock_timestamp",
  "transaction_timestamp",
]);

export function isPureFunction(name: string): boolean {
  return pureFunctions.has(name.replace(/^pg_catalog\./, "").toLowerCase());
}

/**
 * Built-ins that read and compute only, beyond the pure ones a dry run may call (those must also
 * be safe to run before anyone approved): after them, the session holds nothing DISCARD ALL
 * leaves, and its connection is reset and reused rather than closed.
 */
const statelessFunctions = new Set([
  "json_agg",
  "jsonb_agg",
  "json_object_agg",
  "jsonb_object_agg",
  "bool_and",
  "bool_or",
  "every",
  "row_number",
  "rank",
  "dense_rank",
  "percent_rank",
  "cume_dist",
  "ntile",
  "lag",
  "lead",
  "first_value",
  "last_value",
  "nth_value",
  "unnest",
  "generate_series",
  "format",
  "json_build_array",
  "jsonb_build_array",
  "jsonb_pretty",
  "json_array_length",
  "jsonb_array_length",
  "jsonb_array_elements",
  "json_array_elements",
  "jsonb_each",
  "json_each",
  "jsonb_extract_path",
  "json_extract_path",
  "jsonb_extract_path_text",
  "json_extract_path_text",
  "jsonb_strip_nulls",
  "array_to_string",
  "string_to_array",
  "array_position",
  "array_remove",
  "array_append",
  "array_cat",
  "percentile_cont",
  "percentile_disc",
  "stddev",
  "variance",
  "encode",
  "decode",
  "sha256",
  "to_hex",
  "regexp_matches",
  "regexp_split_to_array",
  "starts_with",
  "date_bin",
  "justify_interval",
  "isfinite",
]);

/** A function that leaves no session state behind (see statelessFunctions). */
export function isStatelessFunction(name: string): boolean {
  return (
    isPureFunction(name) || statelessFunctions.has(name.replace(/^pg_catalog\./, "").toLowerCase())
  );
}

/** Functions whose effects a read-only transaction does not stop, by prefix or name. */
const effectful =
  /^(pg_|lo_|dblink|set_config$|setval$|nextval$|current_setting$|query_to_xml|table_to_xml|cursor_to_xml|database_to_xml|schema_to_xml|txid_)/i;

/** What the catalog says a statement reaches besides what its text shows. */
export interface CatalogReach {
  /** Foreign tables it reads or writes, as `schema.name`: their wrappers act on another system. */
  foreignTables: readonly string[];
  /**
   * User functions (outside pg_catalog) that the triggers of the tables it may write run, as
   * `schema.name`: code the SQL does not show, which may touch other tables.
   */
  triggerFunctions: readonly string[];
}

const nothingReached: CatalogReach = { foreignTables: [], triggerFunctions: [] };

export function sqlRisk(
  analysis: SqlAnalysis,
  estimatedRows: number | undefined,
  reach: CatalogReach = nothingReached,
): RiskHint {
  const kinds = new Set(analysis.kinds);
  const about =
    estimatedRows === undefined ? "" : ` (about ${estimatedRows.toLocaleString("en-US")} rows)`;
  if (kinds.has("code")) {
    return {
      level: "critical",
      reason:
        "runs code whose effects the SQL does not show (DO, CALL, EXECUTE, LOAD, COPY … PROGRAM, SQL given as text), or reads tables it does not name (an XML export of a schema or the database)",
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
  if (reach.foreignTables.length > 0) {
    const some = reach.foreignTables.slice(0, 5).join(", ");
    const more = reach.foreignTables.length > 5 ? ", …" : "";
    return {
      level: "high",
      reason: `acts on another system through the foreign table${reach.foreignTables.length === 1 ? "" : "s"} ${some}${more}`,
    };
  }
  if (reach.triggerFunctions.length > 0) {
    const some = reach.triggerFunctions.slice(0, 5).join(", ");
    const more = reach.triggerFunctions.length > 5 ? ", …" : "";
    return {
      level: "high",
      reason: `fires triggers that run code the SQL does not show: ${some}${more}`,
    };
  }
  if (kinds.has("other")) {
    return {
      level: "high",
      reason: "a statement Airlock cannot classify further (SET, VACUUM, LOCK, …)",
    };
  }
  const reaching = analysis.functions.filter((name) => effectful.test(functionName(name)));
  if (reaching.length > 0) {
    return {
      level: "high",
      reason: `calls ${reaching.slice(0, 5).join(", ")}, which can reach beyond the rows it reads`,
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
