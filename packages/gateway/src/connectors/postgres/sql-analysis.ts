/** Facts about SQL for policy rules, read by PostgreSQL's own parser as the server would. */
import { hasSqlDetails, loadModule, parseSync } from "libpg-query";

export type SqlKind =
  | "code"
  | "ddl"
  | "grant"
  | "delete"
  | "update"
  | "merge"
  | "copy"
  | "other"
  | "insert"
  | "transaction"
  | "select";

/**
 * Most dangerous first. "code" (DO, CALL, EXECUTE of a prepared statement, LOAD, COPY ... PROGRAM,
 * SQL handed to a function as text) leads because what it runs is invisible here and may do
 * anything below, DDL included. An XML export of tables the SQL does not name (a schema's, the
 * database's, one given by OID) is "code" too: no rule on `tables` can see what it reads.
 */
export const sqlKindDanger: readonly SqlKind[] = Object.freeze([
  "code",
  "ddl",
  "grant",
  "delete",
  "update",
  "merge",
  "copy",
  "other",
  "insert",
  "transaction",
  "select",
] as const);

export interface StatementAnalysis {
  /** The most dangerous of `kinds`. */
  kind: SqlKind;
  /**
   * Every kind of thing the statement does, most dangerous first: its own kind and that of each
   * statement nested in it (CTEs, EXPLAIN ANALYZE, PREPARE, rule actions), plus row changes made
   * besides its own kind (an upsert updates, MERGE's actions, COPY FROM inserts). "select" appears
   * only when reading is all it does.
   */
  kinds: SqlKind[];
  /**
   * Relations referenced, as PostgreSQL folds them (`public.orders`, `orders`), sorted; those
   * named by a string too, as regclass reads it (`'Public."Orders"'::regclass`, `to_regclass`,
   * the table given to `table_to_xml` and its `…schema` forms).
   */
  tables: string[];
  /** Functions called by name, as written and folded, sorted: side effects hide here. */
  functions: string[];
  /**
   * False when an UPDATE or DELETE in it has no WHERE clause, it truncates, or a MERGE in it
   * updates or deletes every row (see `mergeTouchesEveryRow`).
   */
  hasWhere: boolean;
  /** The statement's own text: from its first token up to its semicolon, trimmed. */
  text: string;
  /** The highest parameter it refers to ($3 gives 3; none, 0). */
  params: number;
  /**
   * Nothing in it writes or locks rows: reads, SHOW, plain EXPLAIN, cursors, COPY ... TO STDOUT.
   * Functions it calls are not judged (see `functions`).
   */
  readOnly: boolean;
  /** It can run inside a transaction block and a ROLLBACK undoes its effects. */
  rollbackable: boolean;
  /**
   * A COPY in it streams rows to or from the client (TO STDOUT, FROM STDIN), whatever else the
   * statement does (`COPY (DELETE … RETURNING *) TO STDOUT` is a delete first).
   */
  clientCopy: boolean;
  /**
   * What in it changes how the server reads the SQL that follows (`SET client_encoding`,
   * `set_config('standard_conforming_strings', …)`), which this parser would then read
   * otherwise; empty when nothing does.
   */
  changesReading: string[];
  /**
   * The kinds of the writes nested in it (a WITH entry's DELETE, an EXPLAIN ANALYZE'd UPDATE),
   * whose rows the statement's own command count does not include; most dangerous first.
   */
  innerWrites: SqlKind[];
  /**
   * Names by which the statement may reach functions besides its calls, sorted: `calls`, every
   * name a call or attribute notation could resolve to (`orders.notify` is `notify(orders)`);
   * `operators`, the operators it names, and the comparisons that IN, ORDER BY and joins use
   * unnamed; `casts`, the types it names (casts to them, columns typed by them); `relations`, the relations it names, each part
   * quoted as `to_regclass` reads them (`"a.b"` is one name, not a schema and a table). Only
   * the catalog can tell which are user code, or carry it.
   */
  reaches: { calls: string[]; operators: string[]; casts: string[]; relations: string[] };
  /**
   * The relations its own writes target, as in `reaches.relations`, sorted: `adds`, those it
   * may insert or update rows of (INSERT, UPDATE, an upsert, MERGE's INSERT and UPDATE,
   * COPY … FROM); `changes`, those it may update or delete rows of (UPDATE, DELETE, TRUNCATE,
   * an upsert, MERGE's UPDATE and DELETE). Only writes that run (not a plain EXPLAIN's). What
   * else may write (a function, a rule, a trigger, DDL) is not seen here.
   */
  writes: { adds: string[]; changes: string[] };
  /**
   * The relations it names only with ONLY, as in `reaches.relations`, sorted: every mention
   * reads, updates, deletes or truncates the relation's own rows, not its partitions' and
   * children's. Not a MERGE's target: MERGE INTO ONLY routes the rows it inserts to
   * partitions all the same. A relation named by a string counts as named without ONLY.
   */
  only: string[];
}

export interface SqlAnalysis extends Omit<StatementAnalysis, "text"> {
  statements: number;
  parts: StatementAnalysis[];
}

export class SqlSyntaxError extends Error {
  override readonly name = "SqlSyntaxError";

  constructor(
    message: string,
    /** 1-based, in characters (code points) of the whole input. */
    readonly position: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(message);
  }
}

let loading: Promise<void> | undefined;
let loaded = false;

export async function loadSqlParser(): Promise<void> {
  loading ??= loadModule().then(
    () => {
      loaded = true;
    },
    (error: unknown) => {
      loading = undefined;
      throw error;
    },
  );
  await loading;
}

export function analyzeSql(sql: string): SqlAnalysis {
  if (!loaded) throw new Error("the SQL parser is not loaded: await loadSqlParser() first");
  rejectUnparseable(sql);
  let stmts: { stmt?: unknown; stmt_location?: number; stmt_len?: number }[];
  try {
    stmts = sql === "" ? [] : (parseSync(sql).stmts ?? []);
  } catch (error) {
    if (hasSqlDetails(error)) {
      throw syntaxError(error.message, sql, error.sqlDetails?.cursorPosition ?? 0);
    }
    throw error;
  }
  if (stmts.length === 0) throw new SqlSyntaxError("the SQL contains no statement", 1, 1, 1);

  // Statement offsets are in UTF-8 bytes.
  const bytes = Buffer.from(sql, "utf8");
  const parts = stmts.map(({ stmt, stmt_location: start = 0, stmt_len: length = 0 }) => {
    const text = bytes
      .subarray(start, length === 0 ? bytes.length : start + length)
      .toString("utf8")
      .trim();
    return analyzeStatement(stmt, text);
  });
  const kinds = byDanger(parts.flatMap((part) => part.kinds));
  return {
    kind: kinds[0] ?? "ddl",
    kinds,
    tables: sortedUnique(parts.flatMap((part) => part.tables)),
    functions: sortedUnique(parts.flatMap((part) => part.functions)),
    statements: parts.length,
    hasWhere: parts.every((part) => part.hasWhere),
    readOnly: parts.every((part) => part.readOnly),
    rollbackable: parts.every((part) => part.rollbackable),
    clientCopy: parts.some((part) => part.clientCopy),
    changesReading: sortedUnique(parts.flatMap((part) => part.changesReading)),
    innerWrites: byDanger(parts.flatMap((part) => part.innerWrites)),
    reaches: {
      calls: sortedUnique(parts.flatMap((part) => part.reaches.calls)),
      operators: sortedUnique(parts.flatMap((part) => part.reaches.operators)),
      casts: sortedUnique(parts.flatMap((part) => part.reaches.casts)),
      relations: sortedUnique(parts.flatMap((part) => part.reaches.relations)),
    },
    writes: {
      adds: sortedUnique(parts.flatMap((part) => part.writes.adds)),
      changes: sortedUnique(parts.flatMap((part) => part.writes.changes)),
    },
    // Only what no statement names without ONLY.
    only: sortedUnique(parts.flatMap((part) => part.only)).filter((relation) =>
      parts.every(
        (part) => part.only.includes(relation) || !part.reaches.relations.includes(relation),
      ),
    ),
    params: Math.max(0, ...parts.map((part) => part.params)),
    parts,
  };
}

/**
 * The parser reads a C string: a NUL would hide the rest of the input from it while the server
 * might see more, and an unpaired surrogate is encoded differently here than by the driver.
 */
function rejectUnparseable(sql: string): void {
  for (let i = 0; i < sql.length; i++) {
    const unit = sql.charCodeAt(i);
    if (unit === 0)
      throw syntaxError("SQL must not contain a NUL character", sql, codePoints(sql, i));
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = sql.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else throw syntaxError("SQL must not contain an unpaired surrogate", sql, codePoints(sql, i));
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      throw syntaxError("SQL must not contain an unpaired surrogate", sql, codePoints(sql, i));
    }
  }
}

const codePoints = (sql: string, units: number): number => [...sql.slice(0, units)].length;

/** `index` counts code points from 0, as PostgreSQL reports error positions. */
function syntaxError(message: string, sql: string, index: number): SqlSyntaxError {
  let line = 1;
  let column = 1;
  let seen = 0;
  for (const char of sql) {
    if (seen++ === index) break;
    if (char === "\n") {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  return new SqlSyntaxError(message, index + 1, line, column);
}

type Node = Record<string, unknown>;

const isNode = (value: unknown): value is Node =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const strings = (value: unknown): string[] =>
  list(value).flatMap((item) =>
    isNode(item) && isNode(item.String) && typeof item.String.sval === "string"
      ? [item.String.sval]
      : [],
  );

const dangerOf = new Map(sqlKindDanger.map((kind, index) => [kind, index]));
const byDanger = (kinds: Iterable<SqlKind>): SqlKind[] =>
  [...new Set(kinds)].sort((a, b) => (dangerOf.get(a) ?? 0) - (dangerOf.get(b) ?? 0));
const sortedUnique = (values: Iterable<string>): string[] => [...new Set(values)].sort();

interface Effect {
  kinds: SqlKind[];
  readOnly?: boolean;
  rollbackable?: boolean;
}

const read: Effect = { kinds: ["select"], readOnly: true };
/** Role management counts as grant, like GRANT itself: it decides who may do what. */
const grants = new Set([
  "GrantStmt",
  "GrantRoleStmt",
  "AlterDefaultPrivilegesStmt",
  "CreateRoleStmt",
  "AlterRoleStmt",
  "AlterRoleSetStmt",
  "DropRoleStmt",
  "ReassignOwnedStmt",
]);
/** PostgreSQL refuses these inside a transaction block. */
const outsideTransactions = new Set([
  "CreatedbStmt",
  "DropdbStmt",
  "CreateTableSpaceStmt",
  "DropTableSpaceStmt",
  "AlterSystemStmt",
  "CreateSubscriptionStmt",
  "AlterSubscriptionStmt",
  "DropSubscriptionStmt",
]);
const mergeActions: Record<string, SqlKind> = {
  CMD_INSERT: "insert",
  CMD_UPDATE: "update",
  CMD_DELETE: "delete",
};

/** Operators used without being named: IN, ANY over a subquery, ORDER BY, DISTINCT, joins. */
const implicitOperators = ["=", "<>", "<", ">", "<=", ">="];

const writeStatements = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/** What one statement node does by itself; the walk adds what is nested in it. */
function effectOf(type: string, node: Node): Effect {
  switch (type) {
    case "SelectStmt":
      return node.intoClause === undefined ? read : { kinds: ["ddl"] };
    case "VariableShowStmt":
    case "ExplainStmt":
    case "DeclareCursorStmt":
    case "FetchStmt":
    case "ClosePortalStmt":
    case "ReturnStmt":
      return read;
    case "InsertStmt":
      return {
        kinds:
          isNode(node.onConflictClause) && node.onConflictClause.action === "ONCONFLICT_UPDATE"
            ? ["insert", "update"]
            : ["insert"],
      };
    case "UpdateStmt":
      return { kinds: ["update"] };
    case "DeleteStmt":
    case "TruncateStmt":
      return { kinds: ["delete"] };
    case "MergeStmt":
      return {
        kinds: [
          "merge",
          ...list(node.mergeWhenClauses).flatMap((clause) => {
            const action =
              isNode(clause) &&
              isNode(clause.MergeWhenClause) &&
              mergeActions[String(clause.MergeWhenClause.commandType)];
            return action ? [action] : [];
          }),
        ],
      };
    case "CopyStmt": {
      // A server-side file or program is outside the transaction; PROGRAM runs a shell command.
      const serverSide = typeof node.filename === "string";
      const kinds: SqlKind[] = ["copy"];
      if (node.is_from === true) kinds.push("insert");
      if (node.is_program === true) kinds.push("code");
      return { kinds, readOnly: node.is_from !== true && !serverSide, rollbackable: !serverSide };
    }
    case "TransactionStmt":
      return { kinds: ["transaction"], rollbackable: false };
    case "ConstraintsSetStmt":
      return { kinds: ["transaction"] };
    case "VariableSetStmt":
      if (node.name === "TRANSACTION" || node.name === "SESSION CHARACTERISTICS") {
        return { kinds: ["transaction"] };
      }
      // Changing the role changes every privilege check that follows.
      if (node.name === "role" || node.name === "session_authorization")
        return { kinds: ["grant"] };
      return { kinds: ["other"] };
    case "DoStmt":
    case "CallStmt":
    case "ExecuteStmt":
    case "LoadStmt":
      // Arbitrary code may reach outside the transaction (dblink, COPY ... PROGRAM, COMMIT in CALL).
      return { kinds: ["code"], rollbackable: false };
    case "VacuumStmt":
      return { kinds: ["other"], rollbackable: node.is_vacuumcmd !== true };
    case "LockStmt":
    case "ListenStmt":
    case "NotifyStmt":
    case "UnlistenStmt":
      // LISTEN, UNLISTEN and NOTIFY take effect at commit, so a ROLLBACK undoes them.
      return { kinds: ["other"] };
    case "CheckPointStmt":
    case "PrepareStmt":
    case "DeallocateStmt":
      // Prepared statements belong to the session, not the transaction.
      return { kinds: ["other"], rollbackable: false };
    case "DiscardStmt":
      return { kinds: ["other"], rollbackable: node.target !== "DISCARD_ALL" };
    case "IndexStmt":
    case "DropStmt":
      return { kinds: ["ddl"], rollbackable: node.concurrent !== true };
    case "ReindexStmt":
      return {
        kinds: ["ddl"],
        rollbackable:
          node.kind !== "REINDEX_OBJECT_SCHEMA" &&
          node.kind !== "REINDEX_OBJECT_SYSTEM" &&
          node.kind !== "REINDEX_OBJECT_DATABASE" &&
          !hasOption(node.params, "concurrently"),
      };
    case "ClusterStmt":
      return { kinds: ["ddl"], rollbackable: node.relation !== undefined };
    case "AlterDatabaseStmt":
      return { kinds: ["ddl"], rollbackable: !hasOption(node.options, "tablespace") };
    case "AlterTableStmt":
      return {
        kinds: ["ddl"],
        rollbackable: !list(node.cmds).some(
          (cmd) =>
            isNode(cmd) &&
            isNode(cmd.AlterTableCmd) &&
            isNode(cmd.AlterTableCmd.def) &&
            isNode(cmd.AlterTableCmd.def.PartitionCmd) &&
            cmd.AlterTableCmd.def.PartitionCmd.concurrent === true,
        ),
      };
    default:
      if (grants.has(type)) return { kinds: ["grant"] };
      return { kinds: ["ddl"], rollbackable: !outsideTransactions.has(type) };
  }
}

const optionNamed = (options: unknown, name: string): Node | undefined =>
  list(options)
    .map((option) => (isNode(option) && isNode(option.DefElem) ? option.DefElem : undefined))
    .find((option) => option?.defname === name);
const hasOption = (options: unknown, name: string): boolean =>
  optionNamed(options, name) !== undefined;

/** EXPLAIN runs its statement only with ANALYZE; any value PostgreSQL might read as true counts. */
function explainRuns(node: Node): boolean {
  return list(node.options).some((option) => {
    if (!isNode(option) || !isNode(option.DefElem) || option.DefElem.defname !== "analyze") {
      return false;
    }
    const arg = option.DefElem.arg;
    if (!isNode(arg)) return true;
    if (isNode(arg.Boolean)) return arg.Boolean.boolval === true;
    if (isNode(arg.Integer)) return (arg.Integer.ival ?? 0) !== 0;
    if (isNode(arg.String)) {
      const value = String(arg.String.sval).toLowerCase();
      return value !== "false" && value !== "off";
    }
    return true;
  });
}

/** A relation's name with each part quoted, as `to_regclass` reads it. */
function quotedRelation(node: Node): string {
  return [node.catalogname, node.schemaname, node.relname]
    .filter((part): part is string => typeof part === "string" && part !== "")
    .map((part) => `"${part.replaceAll('"', '""')}"`)
    .join(".");
}

function relationName(node: Node): string {
  return [node.catalogname, node.schemaname, node.relname]
    .filter((part) => typeof part === "string" && part !== "")
    .join(".");
}

const relationObjects = new Set([
  "OBJECT_TABLE",
  "OBJECT_VIEW",
  "OBJECT_MATVIEW",
  "OBJECT_INDEX",
  "OBJECT_SEQUENCE",
  "OBJECT_FOREIGN_TABLE",
]);
/** Objects named `relation.name`, like `DROP TRIGGER tr ON t`. */
const objectsOnRelations = new Set([
  "OBJECT_COLUMN",
  "OBJECT_TRIGGER",
  "OBJECT_POLICY",
  "OBJECT_RULE",
  "OBJECT_TABCONSTRAINT",
]);

/** Relations that a statement names as plain identifier lists or creates by renaming. */
function namedRelations(type: string, node: Node): string[] {
  const named = (objectType: unknown, object: unknown): string[] => {
    const parts = isNode(object) && isNode(object.List) ? strings(object.List.items) : [];
    if (relationObjects.has(String(objectType))) return [parts.join(".")];
    if (objectsOnRelations.has(String(objectType))) return [parts.slice(0, -1).join(".")];
    return [];
  };
  const relation = isNode(node.relation) ? node.relation : undefined;
  switch (type) {
    case "DropStmt":
      return list(node.objects).flatMap((object) => named(node.removeType, object));
    case "CommentStmt":
    case "SecLabelStmt":
      return named(node.objtype, node.object);
    case "RenameStmt":
      return relation && relationObjects.has(String(node.renameType))
        ? [relationName({ ...relation, relname: node.newname })]
        : [];
    case "AlterObjectSchemaStmt":
      return relation && relationObjects.has(String(node.objectType))
        ? [relationName({ ...relation, schemaname: node.newschema })]
        : [];
    default:
      return [];
  }
}

interface Visit {
  value: unknown;
  /** Names of the WITH entries that an unqualified relation name here refers to. */
  ctes: ReadonlySet<string>;
  /** False under a plain EXPLAIN: statements there are planned, not run. */
  runs: boolean;
}

/**
 * Built-ins whose effects READ ONLY does not stop: large objects, notifications, the
 * replication stream, other sessions, the server's settings, and the server's own state
 * (statistics, backups, replication slots and origins, recovery, index summaries, the log).
 */
const actingFunction =
  /^(lo_(?!get$)|lowrite$|loread$|pg_notify$|pg_logical_emit_message$|set_config$|dblink|pg_terminate_backend$|pg_cancel_backend$|pg_reload_conf$|pg_rotate_logfile$|pg_switch_wal$|pg_create_restore_point$|pg_file_|pg_advisory|pg_try_advisory|pg_stat_reset|pg_backup_(start|stop)$|pg_(start|stop)_backup$|pg_promote$|pg_wal_replay_(pause|resume)$|pg_(create|drop|copy)_\w*replication_slot$|pg_replication_slot_advance$|pg_logical_slot_get_|pg_replication_origin_(create|drop|advance|session_setup|session_reset|xact_setup|xact_reset)$|pg_log_backend_memory_contexts$|pg_import_system_collations$|brin_summarize|brin_desummarize_range$|gin_clean_pending_list$)/i;

/**
 * A function's own name, without the schema or catalog that qualifies it: an extension's
 * functions live in any schema (`public.dblink_exec`), and `db.pg_catalog.f` is `f` too.
 */
export function functionName(qualified: string): string {
  return qualified.slice(qualified.lastIndexOf(".") + 1);
}

/**
 * Names as rules read them: each as written and by every shorter qualification, down to the
 * bare name (`db.public.orders` is also `public.orders` and `orders`). The same table can be
 * written either way, so a rule on `"orders" in sql.tables` must see `public.orders` too.
 */
export function factNames(names: readonly string[]): string[] {
  return sortedUnique(
    names.flatMap((name) => name.split(".").map((_, i, parts) => parts.slice(i).join("."))),
  );
}

/**
 * Built-ins that run SQL handed to them as text (`ts_rewrite` with two arguments; with three it
 * only rewrites): the parser sees a string, so what runs in it, a `pg_terminate_backend` or a
 * `pg_notify`, is as invisible as a DO block's body. So do tablefunc's `crosstab` forms, and
 * its `connectby`, which pastes the table and column names it is given into its query as
 * they are.
 */
const sqlTextFunctions =
  /^(query_to_xml|query_to_xmlschema|query_to_xml_and_xmlschema|ts_stat|crosstab[234]?|connectby)$/i;

function runsSqlText(name: string, args: number): boolean {
  const bare = functionName(name);
  return sqlTextFunctions.test(bare) || (/^ts_rewrite$/i.test(bare) && args === 2);
}

/**
 * Built-ins that are not mere computations and that one argument can call. PostgreSQL takes
 * `(x).f` for f(x) whatever x's type, when it has no column f: `(pid).pg_terminate_backend`
 * ends a session and `('s'::regclass).nextval` advances a sequence. Whether a name after a
 * dot is a column or a function only the catalog knows; one of these names counts as a call.
 */
const attributeCall =
  /^(pg_|lo_|loread$|lowrite$|dblink|set_config$|nextval$|setval$|currval$|txid_|brin_|gin_clean_pending_list$|setseed$|ts_stat$|query_to_xml)/i;

/** XML exports of one table, given as a regclass: what they read is listed if it is a literal. */
const tableExports = /^table_to_xml(schema|_and_xmlschema)?$/i;
/** XML exports of every table in a schema, or in the database: what they read is never named. */
const wholesaleExports = /^(schema|database)_to_xml(schema|_and_xmlschema)?$/i;

/** A string constant's value (`'t'`, `E't'`, `$$t$$`); undefined for anything else. */
function stringConstant(node: unknown): string | undefined {
  return isNode(node) &&
    isNode(node.A_Const) &&
    isNode(node.A_Const.sval) &&
    typeof node.A_Const.sval.sval === "string"
    ? node.A_Const.sval.sval
    : undefined;
}

/**
 * The string naming a relation in `'t'::regclass` (`regclass 't'`, `CAST('t' AS regclass)`),
 * `to_regclass('t')` or `regclass('t')`; undefined for anything else, a value computed or
 * cast on its way included (then no name can be read from the text).
 */
function regclassLiteral(key: string, node: Node): string | undefined {
  if (key === "TypeCast") {
    const type = isNode(node.typeName) ? node.typeName : undefined;
    if (!type || type.arrayBounds !== undefined || strings(type.names).at(-1) !== "regclass") {
      return undefined;
    }
    return stringConstant(node.arg);
  }
  if (key === "FuncCall" || key === "funccall") {
    const name = functionName(strings(node.funcname).join("."));
    const args = list(node.args);
    if ((name === "to_regclass" || name === "regclass") && args.length === 1) {
      return stringConstant(args[0]);
    }
  }
  return undefined;
}

/**
 * A relation's name as regclass's input reads a string (SplitIdentifierString): parts split
 * at dots, whitespace around them skipped, unquoted parts folded to lower case (ASCII only,
 * as in UTF-8), quoted ones kept with `""` read as `"`, each cut to 63 bytes like any
 * identifier. Undefined for an OID (`'16384'`) and for what PostgreSQL refuses.
 */
function regclassName(
  text: string,
): { catalogname?: string; schemaname?: string; relname: string } | undefined {
  if (/^[0-9]+$/.test(text) || text === "-") return undefined;
  const space = (char: string | undefined) =>
    char === " " || char === "\t" || char === "\n" || char === "\r" || char === "\f";
  const parts: string[] = [];
  let i = 0;
  while (space(text[i])) i++;
  while (i < text.length) {
    let part = "";
    if (text[i] === '"') {
      for (;;) {
        const close = text.indexOf('"', i + 1);
        if (close < 0) return undefined;
        part += text.slice(i + 1, close);
        i = close + 1;
        if (text[i] !== '"') break;
        part += '"';
      }
    } else {
      const start = i;
      while (i < text.length && text[i] !== "." && !space(text[i])) i++;
      part = text.slice(start, i).replace(/[A-Z]/g, (char) => char.toLowerCase());
    }
    if (part === "") return undefined;
    parts.push(truncatedIdentifier(part));
    while (space(text[i])) i++;
    if (i === text.length) break;
    if (text[i] !== ".") return undefined;
    i++;
    while (space(text[i])) i++;
    if (i === text.length) return undefined;
  }
  const [relname, schemaname, catalogname] = parts.reverse();
  if (relname === undefined || parts.length > 3) return undefined;
  return { relname, schemaname, catalogname };
}

/** An identifier cut to NAMEDATALEN - 1 bytes, at a character's start, as PostgreSQL cuts it. */
function truncatedIdentifier(name: string): string {
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length <= 63) return name;
  let end = 63;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

/**
 * The string an XML export of one table is given its table by, when it is a literal (`'t'`,
 * `'t'::regclass`, by position or as `tbl => …`); undefined when it is not.
 */
function exportedTable(args: unknown[]): string | undefined {
  const named = args.find(
    (arg) => isNode(arg) && isNode(arg.NamedArgExpr) && arg.NamedArgExpr.name === "tbl",
  );
  const first = args[0];
  const table =
    isNode(named) && isNode(named.NamedArgExpr)
      ? named.NamedArgExpr.arg
      : isNode(first) && !isNode(first.NamedArgExpr)
        ? first
        : undefined;
  if (!isNode(table)) return undefined;
  const [key, node] = Object.entries(table)[0] ?? [];
  return (
    stringConstant(table) ??
    (key !== undefined && isNode(node) ? regclassLiteral(key, node) : undefined)
  );
}

function runsFunctionThatActs(functions: Set<string>): boolean {
  for (const name of functions) if (actingFunction.test(functionName(name))) return true;
  return false;
}

function analyzeStatement(stmt: unknown, text: string): StatementAnalysis {
  const kinds = new Set<SqlKind>();
  const tables = new Set<string>();
  const relations = new Set<string>();
  const functions = new Set<string>();
  let hasWhere = true;
  let readOnly = true;
  let rollbackable = true;
  let clientCopy = false;
  let runsText = false;
  // An XML export reads tables the SQL does not name: a schema's, the database's, or one
  // given by OID or by an expression.
  let readsUnnamed = false;
  const changesReading = new Set<string>();
  const innerWrites = new Set<SqlKind>();
  const calls = new Set<string>();
  const operators = new Set<string>(implicitOperators);
  const casts = new Set<string>();
  const adds = new Set<string>();
  const changes = new Set<string>();
  // Relations mentioned with ONLY, and those mentioned without it (or so read by PostgreSQL).
  const onlyMentions = new Set<string>();
  const wholeMentions = new Set<string>();
  let params = 0;

  // An explicit stack: parse trees can nest deeper than the call stack allows.
  const stack: Visit[] = [{ value: stmt, ctes: new Set(), runs: true }];
  for (let visit = stack.pop(); visit !== undefined; visit = stack.pop()) {
    const { value, runs } = visit;
    if (Array.isArray(value)) {
      for (const item of value) stack.push({ value: item, ctes: visit.ctes, runs });
      continue;
    }
    if (!isNode(value)) continue;
    const ctes = isNode(value.withClause)
      ? enterWith(value.withClause, visit.ctes, runs, stack)
      : visit.ctes;

    for (const key in value) {
      const child = value[key];
      if (key === "withClause" || typeof child !== "object" || child === null) continue;
      if (key === "lockingClause" && runs) readOnly = false;
      if (!isNode(child)) {
        stack.push({ value: child, ctes, runs });
        continue;
      }
      if (key === "RangeVar") {
        // Only a range reference in FROM, USING or MERGE ... USING can name a WITH entry.
        if (child.schemaname !== undefined || !ctes.has(String(child.relname))) {
          tables.add(relationName(child));
          relations.add(quotedRelation(child));
          (child.inh === true ? wholeMentions : onlyMentions).add(quotedRelation(child));
        }
        continue;
      }
      if (typeof child.relname === "string") {
        // A field typed RangeVar (a DML target, a created or altered relation): always a relation.
        tables.add(relationName(child));
        relations.add(quotedRelation(child));
        (child.inh === true ? wholeMentions : onlyMentions).add(quotedRelation(child));
        continue;
      }
      if (key === "ParamRef" && typeof child.number === "number") {
        params = Math.max(params, child.number);
      }
      if (key === "FuncCall" || key === "funccall") {
        functions.add(strings(child.funcname).join("."));
        if (runsSqlText(strings(child.funcname).join("."), list(child.args).length)) {
          runsText = true;
        }
        const name = strings(child.funcname).at(-1);
        if (name !== undefined) calls.add(name);
        if (name !== undefined && wholesaleExports.test(name)) readsUnnamed = true;
        if (name !== undefined && tableExports.test(name)) {
          const exported = exportedTable(list(child.args));
          const relation = exported === undefined ? undefined : regclassName(exported);
          if (relation) {
            tables.add(relationName(relation));
            relations.add(quotedRelation(relation));
            wholeMentions.add(quotedRelation(relation));
          } else {
            readsUnnamed = true;
          }
        }
      }
      // A relation named by a string is named all the same, as PostgreSQL reads the string.
      const literal = regclassLiteral(key, child);
      const relation = literal === undefined ? undefined : regclassName(literal);
      if (relation) {
        tables.add(relationName(relation));
        relations.add(quotedRelation(relation));
        wholeMentions.add(quotedRelation(relation));
      }
      // `t.f` and `(x).f` may call f(t) or f(x): any field but the first may name a function.
      const attributes =
        key === "ColumnRef"
          ? strings(child.fields).slice(1)
          : key === "A_Indirection"
            ? strings(child.indirection)
            : [];
      for (const name of attributes) {
        calls.add(name);
        if (attributeCall.test(name)) functions.add(name);
        if (runsSqlText(name, 1)) runsText = true;
      }
      if (key === "A_Expr" || (key === "SubLink" && child.operName !== undefined)) {
        const name = strings(key === "A_Expr" ? child.name : child.operName).at(-1);
        if (name !== undefined) operators.add(name);
      }
      // ORDER BY … USING op compares with the operator (and its class's functions).
      if (key === "SortBy" && child.useOp !== undefined) {
        const name = strings(child.useOp).at(-1);
        if (name !== undefined) operators.add(name);
      }
      // A type named anywhere (a cast, an XMLTABLE column, a column definition list) has
      // values converted to it: a domain's checks run, and a composite's column types' input.
      if (key === "typeName" || key === "TypeName") {
        const name = strings(child.names).at(-1);
        if (name !== undefined) casts.add(name);
      }
      // Looked for whether it runs here or not: a prepared statement runs later.
      const rereads = readingChange(key, child);
      if (rereads) changesReading.add(rereads);
      // Looked for under a plain EXPLAIN too: whether it runs or not, it is not relayed.
      if (key === "CopyStmt" && typeof child.filename !== "string") clientCopy = true;
      let childRuns = runs;
      // A statement node's key is its type (`DeleteStmt`); a field holding one is lower-case.
      if (/^[A-Z]\w*Stmt$/.test(key)) {
        for (const name of namedRelations(key, child)) if (name !== "") tables.add(name);
        // MERGE INTO ONLY p still routes the rows it inserts to p's partitions.
        if (key === "MergeStmt" && isNode(child.relation)) {
          wholeMentions.add(quotedRelation(child.relation));
        }
        if (runs) {
          const effect = effectOf(key, child);
          for (const kind of effect.kinds) kinds.add(kind);
          if (value !== stmt && writeStatements.has(key)) {
            for (const kind of effect.kinds) innerWrites.add(kind);
          }
          for (const target of writeTargets(key, child)) {
            if (effect.kinds.some((kind) => kind === "insert" || kind === "update")) {
              adds.add(target);
            }
            if (effect.kinds.some((kind) => kind === "update" || kind === "delete")) {
              changes.add(target);
            }
          }
          readOnly &&= effect.readOnly ?? false;
          rollbackable &&= effect.rollbackable ?? true;
          if (key === "TruncateStmt") hasWhere = false;
          if ((key === "UpdateStmt" || key === "DeleteStmt") && child.whereClause === undefined) {
            hasWhere = false;
          }
          if (key === "MergeStmt" && mergeTouchesEveryRow(child)) hasWhere = false;
        }
        if (key === "ExplainStmt") childRuns = runs && explainRuns(child);
      }
      stack.push({ value: child, ctes, runs: childRuns });
    }
  }

  // Functions that act beyond the rows and that a READ ONLY transaction does not stop (large
  // objects, notifications, the replication stream, other sessions, the server's settings):
  // a statement calling one is not a read. (nextval and setval READ ONLY refuses itself.)
  if (runsFunctionThatActs(functions)) {
    kinds.add("other");
    readOnly = false;
  }
  if (runsText) {
    kinds.add("code");
    readOnly = false;
  }
  // What it reads cannot be listed in `tables`, so no rule on tables can hold it: it ranks
  // with code the SQL does not show. It still only reads.
  if (readsUnnamed) kinds.add("code");
  // Nearly every statement reads; "select" says that reading is all this one does.
  if (kinds.size > 1) kinds.delete("select");
  const sorted = byDanger(kinds);
  return {
    kind: sorted[0] ?? "ddl",
    kinds: sorted,
    tables: sortedUnique(tables),
    functions: sortedUnique(functions),
    hasWhere,
    text,
    readOnly,
    rollbackable,
    clientCopy,
    changesReading: sortedUnique(changesReading),
    innerWrites: byDanger(innerWrites),
    reaches: {
      calls: sortedUnique(calls),
      operators: sortedUnique(operators),
      casts: sortedUnique(casts),
      relations: sortedUnique(relations),
    },
    writes: { adds: sortedUnique(adds), changes: sortedUnique(changes) },
    only: sortedUnique([...onlyMentions].filter((relation) => !wholeMentions.has(relation))),
    params,
  };
}

/**
 * The relations a statement node writes rows of, quoted as in `reaches.relations`: a data
 * change's target, TRUNCATE's tables, COPY's table (which rows it adds, if any, its kinds
 * say: COPY … TO adds none).
 */
function writeTargets(type: string, node: Node): string[] {
  switch (type) {
    case "InsertStmt":
    case "UpdateStmt":
    case "DeleteStmt":
    case "MergeStmt":
    case "CopyStmt":
      return isNode(node.relation) ? [quotedRelation(node.relation)] : [];
    case "TruncateStmt":
      return list(node.relations).flatMap((item) =>
        isNode(item) && isNode(item.RangeVar) ? [quotedRelation(item.RangeVar)] : [],
      );
    default:
      return [];
  }
}

/**
 * MERGE's ON is its WHERE: one that names no column holds for every row alike (`ON true`,
 * `ON 1 = 1`), so an UPDATE or DELETE for matched rows with no AND of its own changes them all.
 * So does one for rows NOT MATCHED BY SOURCE, whatever the ON says.
 */
function mergeTouchesEveryRow(node: Node): boolean {
  const actions = list(node.mergeWhenClauses).flatMap((clause) =>
    isNode(clause) && isNode(clause.MergeWhenClause) ? [clause.MergeWhenClause] : [],
  );
  const unconditional = (clause: Node) =>
    (clause.commandType === "CMD_UPDATE" || clause.commandType === "CMD_DELETE") &&
    clause.condition === undefined;
  if (
    actions.some(
      (clause) => clause.matchKind === "MERGE_WHEN_NOT_MATCHED_BY_SOURCE" && unconditional(clause),
    )
  ) {
    return true;
  }
  const matched = actions.some(
    (clause) =>
      (clause.matchKind === "MERGE_WHEN_MATCHED" || clause.matched === true) &&
      unconditional(clause),
  );
  return matched && !namesAColumn(node.joinCondition);
}

function namesAColumn(tree: unknown): boolean {
  const stack = [tree];
  for (let value = stack.pop(); value !== undefined; value = stack.pop()) {
    if (Array.isArray(value)) stack.push(...value);
    else if (isNode(value)) {
      if (isNode(value.ColumnRef)) return true;
      stack.push(...Object.values(value));
    }
  }
  return false;
}

/**
 * Settings that change how the server splits and reads SQL text: another client encoding
 * turns bytes this parser read as part of a string into code, and backslashes in strings
 * mean something else without standard_conforming_strings.
 */
const readingSettings = new Set([
  "client_encoding",
  "standard_conforming_strings",
  "backslash_quote",
]);

/** How a node changes `readingSettings`, said for the caller; undefined when it does not. */
function readingChange(key: string, node: Node): string | undefined {
  if (key === "VariableSetStmt") {
    if (node.kind === "VAR_RESET_ALL") return "RESET ALL";
    const name = String(node.name ?? "").toLowerCase();
    if (!readingSettings.has(name)) return undefined;
    return `${node.kind === "VAR_RESET" ? "RESET" : "SET"} ${name}`;
  }
  if (key === "DiscardStmt" && node.target === "DISCARD_ALL") return "DISCARD ALL";
  if (key === "FuncCall" || key === "funccall") {
    const name = strings(node.funcname);
    if (functionName(name.join(".")).toLowerCase() !== "set_config") return undefined;
    const first = list(node.args)[0];
    const literal =
      isNode(first) && isNode(first.A_Const) && isNode(first.A_Const.sval)
        ? first.A_Const.sval.sval
        : undefined;
    if (typeof literal !== "string") return "set_config of a setting named by an expression";
    const setting = literal.toLowerCase();
    return readingSettings.has(setting) ? `set_config of ${setting}` : undefined;
  }
  return undefined;
}

/**
 * Queues the WITH entries and returns the names visible in the statement that owns them. An entry
 * sees only earlier entries unless the WITH is RECURSIVE, in which case it sees all of them.
 */
function enterWith(
  withClause: Node,
  outer: ReadonlySet<string>,
  runs: boolean,
  stack: Visit[],
): ReadonlySet<string> {
  const entries = list(withClause.ctes).flatMap((cte) =>
    isNode(cte) && isNode(cte.CommonTableExpr) ? [cte.CommonTableExpr] : [],
  );
  const names = entries.map((entry) => String(entry.ctename));
  entries.forEach((entry, index) => {
    const visible = withClause.recursive === true ? names : names.slice(0, index);
    stack.push({ value: entry.ctequery, ctes: new Set([...outer, ...visible]), runs });
  });
  return new Set([...outer, ...names]);
}
