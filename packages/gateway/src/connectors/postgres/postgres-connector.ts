/**
 * The `postgres` connector: runs an agent's SQL with the connection's own credentials. The
 * statement is classified by PostgreSQL's own parser before any rule sees it, estimated with
 * EXPLAIN, and, for reviewers, rehearsed in a transaction that is always rolled back.
 */
import { randomInt } from "node:crypto";
import pg from "pg";
import Cursor from "pg-cursor";
import { z } from "zod";
import type { Json } from "../../common/canonical-json.js";
import { clippedNote, MAX_JSON_DEPTH } from "../../common/json-depth.js";
import { defineOwn } from "../../common/own-key.js";
import { invalidRequest } from "../../common/zod-errors.js";
import { AirlockError } from "../../errors.js";
import type { FieldPath } from "../../masking/binary-fields.js";
import type { Connector, ConnectorType, Description, ExecutionOutcome } from "../connector.js";
import { cutPreview } from "../preview-cut.js";
import { type PostgresConnectionConfig, postgresConnectionSchema } from "./postgres-config.js";
import {
  analyzeSql,
  factNames,
  functionName,
  loadSqlParser,
  type SqlAnalysis,
  type SqlKind,
  SqlSyntaxError,
} from "./sql-analysis.js";
import { isPureFunction, isStatelessFunction, sqlRisk } from "./sql-risk.js";

// The parser is WebAssembly, compiled once when this module loads; `analyzeSql` is synchronous.
await loadSqlParser();

const paramSchema = z.union([
  // PostgreSQL text cannot hold NUL: the server would refuse it only when the action runs.
  z
    .string()
    .max(1_000_000)
    .regex(/^[^\0]*$/, "text for PostgreSQL cannot hold a NUL character"),
  z.number(),
  z.boolean(),
  z.null(),
]);

export const postgresInputSchema = z.strictObject({
  sql: z.string().min(1).max(1_000_000),
  /** Values for $1, $2, …: sent apart from the text, so they can never change what runs. */
  params: z.array(paramSchema).max(1000).optional(),
});

export type PostgresInput = z.output<typeof postgresInputSchema>;

export const postgresConnectorType: ConnectorType<PostgresConnectionConfig> = {
  type: "postgres",
  configSchema: postgresConnectionSchema,
  facts: {
    namespace: "sql",
    schema: {
      kind: "string",
      kinds: "list<string>",
      tables: "list<string>",
      namedTables: "list<string>",
      foreignTables: "list<string>",
      statements: "int",
      hasWhere: "bool",
      estimatedRows: "int",
      functions: "list<string>",
    },
  },
  operationNames: () => ["query"],
  create: (name, config) => createPostgresConnector(name, config),
};

/** Timestamps and dates as PostgreSQL prints them: no time zone guessed on the way through. */
const asText = (value: string) => value;
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 1082 || oid === 1114 || oid === 1184 || oid === 1083 || oid === 1266
      ? asText
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * A connection that keeps what the server last reported of the settings that decide how it
 * reads SQL (it reports both whenever they change). `parse` refuses SQL that changes them, but
 * code it cannot see into (DO, a function) may too: then the next statement is not sent.
 */
class WatchedClient extends pg.Client {
  readonly #reported = new Map<string, string>();

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const connection = (
      this as unknown as {
        connection: {
          on(
            event: "parameterStatus",
            listener: (message: { parameterName: string; parameterValue: string }) => void,
          ): void;
        };
      }
    ).connection;
    connection.on("parameterStatus", (message) => {
      this.#reported.set(message.parameterName, message.parameterValue);
    });
  }

  /** Why the server would read SQL otherwise than the parser does now, if it would. */
  misreads(): string | undefined {
    const encoding = this.#reported.get("client_encoding");
    if (encoding?.toUpperCase() !== "UTF8") return `client_encoding is ${encoding ?? "unknown"}`;
    const strings = this.#reported.get("standard_conforming_strings");
    if (strings !== "on") return `standard_conforming_strings is ${strings ?? "unknown"}`;
    return undefined;
  }
}

/** Refuses to send more SQL on a connection the server now reads otherwise. */
function checkReading(client: pg.ClientBase): void {
  const misread = client instanceof WatchedClient ? client.misreads() : "unknown";
  if (misread !== undefined) throw new ReadingChanged(misread);
}

/**
 * Airlock never speaks COPY's streaming sub-protocol, and pg-cursor cannot: pg hands a COPY's
 * data to the running query, and a cursor, lacking the handler, throws from the socket's event
 * handler, which ends the process. `parse` refuses COPY to or from the client; should one reach
 * the server all the same, the statement fails as on a lost connection (pg's own handling of
 * a connection error: the running query is failed) and the connection is closed.
 */
function refuseCopy(client: pg.ClientBase): void {
  const connection = (
    client as unknown as {
      connection: {
        removeAllListeners(event: string): void;
        on(event: string, listener: () => void): void;
        emit(event: "error", error: Error): void;
        stream: { destroy(): void };
      };
    }
  ).connection;
  for (const event of ["copyInResponse", "copyData"]) {
    connection.removeAllListeners(event);
    connection.on(event, () => {
      connection.emit("error", new Error("COPY to or from the client is not relayed"));
      connection.stream.destroy();
    });
  }
}

export function createPostgresConnector(name: string, config: PostgresConnectionConfig): Connector {
  const url = new URL(config.url);
  const password = decodeURIComponent(url.password);
  const pool = new pg.Pool({
    connectionString: config.url,
    max: config.poolSize,
    statement_timeout: config.statementTimeout,
    application_name: "airlock",
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    types,
    Client: WatchedClient as unknown as new () => pg.ClientBase,
  });
  // An idle client that loses its server is dropped by the pool; without a listener the
  // error would end the process.
  pool.on("error", () => {});
  // The parser reads backslashes in strings as the standard says; a server told otherwise
  // (a role or database setting) would split statements differently, so it is pinned.
  const pinSession = (client: pg.ClientBase) =>
    client.query("SET standard_conforming_strings = on");
  // random()'s seed outlives DISCARD ALL: one request's setseed would make random() in the
  // next request on this connection predictable. It is seeded again, by a value nobody chose,
  // in the same round trip as the pin.
  const resetSession = (client: pg.ClientBase) =>
    client.query(
      `SET standard_conforming_strings = on; SELECT pg_catalog.setseed(${randomInt(2 ** 47) / 2 ** 46 - 1})`,
    );
  pool.on("connect", (client) => {
    refuseCopy(client);
    pinSession(client).catch(() => {});
  });

  const parseInput = (operation: string, input: unknown): PostgresInput => {
    if (operation !== "query") {
      throw new AirlockError(
        "unknown_operation",
        `connection ${name} (postgres) has no operation "${operation}"; use "query"`,
        { field: "operation" },
      );
    }
    const parsed = postgresInputSchema.safeParse(input);
    if (!parsed.success) throw invalidRequest(parsed.error, ["input"], "input");
    return parsed.data;
  };

  // parse, describe, dry run and execute all need the analysis of one and the same input
  // object (inputs are never changed after parse): it is computed once per object.
  const analysed = new WeakMap<PostgresInput, SqlAnalysis>();
  const analyze = (input: PostgresInput): SqlAnalysis => {
    const known = analysed.get(input);
    if (known) return known;
    try {
      const analysis = analyzeSql(input.sql);
      analysed.set(input, analysis);
      return analysis;
    } catch (error) {
      if (error instanceof RangeError) {
        throw new AirlockError(
          "invalid_request",
          "input.sql: nested too deeply to analyse; simplify the statement",
          { field: "input.sql" },
        );
      }
      if (error instanceof SqlSyntaxError) {
        throw new AirlockError(
          "invalid_request",
          `input.sql: ${error.message} (at character ${error.position}: line ${error.line}, column ${error.column})`,
          {
            field: "input.sql",
            details: { position: error.position, line: error.line, column: error.column },
          },
        );
      }
      throw error;
    }
  };

  const parse = (operation: string, input: unknown): Json => {
    const value = parseInput(operation, input);
    const analysis = analyze(value);
    // COPY to the client or from it speaks a streaming sub-protocol Airlock does not relay,
    // whatever the statement does besides (a DELETE … RETURNING inside it ranks above COPY).
    if (analysis.clientCopy) {
      throw new AirlockError(
        "invalid_request",
        "input.sql: COPY … TO STDOUT / FROM STDIN is not supported; read with SELECT and write with INSERT",
        { field: "input.sql" },
      );
    }
    // The server would read what follows otherwise than the parser did: a string to the
    // parser could be code to the server.
    const rereads = analysis.changesReading[0];
    if (rereads !== undefined) {
      throw new AirlockError(
        "invalid_request",
        `input.sql: ${rereads} is not allowed: it changes how the server reads SQL (its encoding or string escapes), so what runs could differ from what rules and reviewers see`,
        { field: "input.sql" },
      );
    }
    if (value.params !== undefined && analysis.statements > 1) {
      throw new AirlockError(
        "invalid_request",
        `input.params: parameters can only be used with a single statement (this has ${analysis.statements}); send the statements as separate actions`,
        { field: "input.params" },
      );
    }
    // The server refuses a mismatch only when the action runs, after any review.
    const given = value.params?.length ?? 0;
    if (analysis.params !== given) {
      throw new AirlockError(
        "invalid_request",
        analysis.params === 0
          ? `input.params: the SQL uses no parameters, but ${given} ${given === 1 ? "was" : "were"} given`
          : `input.params: the SQL uses parameters up to $${analysis.params}, so params needs ${analysis.params} value${analysis.params === 1 ? "" : "s"}, not ${given}`,
        { field: "input.params" },
      );
    }
    return value as Json;
  };

  /**
   * Runs `work` on a pooled client, translating connection failures for the caller. After
   * the agent's own SQL the session is reset (DISCARD ALL, after a ROLLBACK of anything left
   * open), so a `SET ROLE`, a search_path, a temp table or an advisory lock never reaches the
   * next request on that connection; a session that cannot be reset, or that `close` says may
   * hold what DISCARD ALL keeps, is closed instead.
   */
  const withClient = async <T>(
    work: (client: pg.PoolClient, overdue: () => boolean) => Promise<T>,
    options: { reset?: boolean; close?: boolean; deadlineMs?: number } = {},
  ): Promise<T> => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw new DatabaseUnreachable(error);
    }
    let broken = false;
    let overdue = false;
    let cutOff: NodeJS.Timeout | undefined;
    let stopWaiting: (error: Error) => void = () => {};
    const abandoned = new Promise<never>((_, reject) => {
      stopWaiting = reject;
    });
    // A connection cut from this side reports it as an error event: heard here, not thrown.
    const quiet = () => {};
    client.on("error", quiet);
    // SQL can lift its own statement_timeout (set_config), so the gateway keeps a clock too:
    // past the deadline the statement is cancelled and the connection thrown away.
    const timer =
      options.deadlineMs === undefined
        ? undefined
        : setTimeout(() => {
            overdue = true;
            const pid = (client as unknown as { processID: number }).processID;
            onBackend(pid, "pg_cancel_backend").catch(() => {});
            // A statement that outlives the cancel (it catches query_canceled, or no
            // connection was left to send the cancel from) is not waited for: its backend is
            // ended, and its connection closed from this side.
            cutOff = setTimeout(() => {
              onBackend(pid, "pg_terminate_backend").catch(() => {});
              (
                client as unknown as { connection?: { stream?: { destroy(): void } } }
              ).connection?.stream?.destroy();
              stopWaiting(new Overdue(options.deadlineMs ?? 0));
            }, OVERDUE_GRACE_MS);
            cutOff.unref();
          }, options.deadlineMs);
    try {
      const working = work(client, () => overdue);
      // Once abandoned, whatever it comes to is of no interest.
      working.catch(() => {});
      return await Promise.race([working, abandoned]);
    } catch (error) {
      broken = overdue || isConnectionError(error);
      if (overdue) throw new Overdue(options.deadlineMs ?? 0);
      throw error;
    } finally {
      clearTimeout(timer);
      clearTimeout(cutOff);
      if (overdue) broken = true;
      // Closing ends whatever the session held, a transaction left open included.
      let closing = broken || options.close === true;
      if (options.reset && !closing) {
        try {
          if (client.getTransactionStatus() !== "I") await client.query("ROLLBACK");
          await client.query("DISCARD ALL");
          await resetSession(client);
        } catch {
          closing = true;
        }
      }
      // A closed connection is discarded and may still report its end: it stays heard.
      if (!closing) client.off("error", quiet);
      client.release(closing);
    }
  };

  /** Cancels a running statement from a connection of its own (the pool may be full). */
  /** Cancels or ends a backend from a connection of its own. */
  const onBackend = async (pid: number, what: "pg_cancel_backend" | "pg_terminate_backend") => {
    const canceller = new pg.Client({
      connectionString: config.url,
      connectionTimeoutMillis: 5000,
    });
    canceller.on("error", () => {});
    try {
      await canceller.connect();
      await canceller.query(`SELECT ${what}($1)`, [pid]);
    } finally {
      await canceller.end().catch(() => {});
    }
  };

  /** Plan estimates without running anything: EXPLAIN only plans. */
  const estimate = async (
    analysis: SqlAnalysis,
    input: PostgresInput,
  ): Promise<{ rows: number; columns: string[] } | undefined> => {
    if (!analysis.parts.every((part) => explainable.has(part.kind))) return undefined;
    try {
      return await withClient(
        async (client) => {
          // Planning evaluates stable and immutable functions on constants, before anyone
          // decides: user code the names could reach leaves the size unknown.
          if ((await userCode(client, analysis, "planning")).length > 0) return undefined;
          let rows = 0;
          let columns: string[] = [];
          await client.query("BEGIN READ ONLY");
          try {
            await client.query(`SET LOCAL statement_timeout = ${config.previewTimeout}`);
            for (const part of analysis.parts) {
              const result = await client.query({
                text: `EXPLAIN (VERBOSE, FORMAT JSON) ${part.text}`,
                values: input.params ?? [],
                queryMode: "extended",
              } as pg.QueryConfig);
              const writes = part.kinds.some((kind) => writeKinds.has(kind));
              const plan = planOf(result.rows[0], writes);
              // A write the plan does not show is of unknown size.
              if (plan.rows === undefined) return undefined;
              rows += plan.rows;
              columns = plan.columns;
            }
          } finally {
            await client.query("ROLLBACK");
          }
          return { rows, columns };
        },
        { reset: true, deadlineMs: config.previewTimeout },
      );
    } catch {
      // An estimate is a hint: a statement EXPLAIN cannot plan fails the same way when run.
      return undefined;
    }
  };

  const preview = (_operation: string, raw: Json): string => {
    const input = raw as unknown as PostgresInput;
    const sql = cutPreview(input.sql);
    const params = input.params?.length ? `\n\nparams: ${JSON.stringify(input.params)}` : "";
    return `${name}:\n${sql}${params}`;
  };

  /**
   * What the catalog says the statement's names reach (see `namesReach`); undefined when it
   * cannot be asked. Not asked when it names no relation and no attribute.
   */
  const lookUp = async (analysis: SqlAnalysis): Promise<NamesReach | undefined> => {
    if (analysis.reaches.relations.length === 0 && attributes(analysis).length === 0) {
      return { behind: [], cut: false, foreign: [], triggers: [], called: [] };
    }
    try {
      return await withClient((client) => namesReach(client, analysis, config.maxReachedTables), {
        deadlineMs: config.previewTimeout,
      });
    } catch {
      return undefined;
    }
  };

  const describe = async (operation: string, raw: Json): Promise<Description> => {
    const input = raw as unknown as PostgresInput;
    const analysis = analyze(input);
    const [estimated, reach] = await Promise.all([estimate(analysis, input), lookUp(analysis)]);
    const behind = reach?.behind ?? [];
    // Tables it reads that no rule can see, like an XML export of a schema's: it ranks as code.
    // So do tables past the connection's bound, though what is listed stays listed: parents,
    // and what views and rules read, are listed first, so the cut falls on partitions.
    const unlisted = reach === undefined || reach.cut;
    const kinds: SqlKind[] = unlisted
      ? ["code", ...analysis.kinds.filter((kind) => kind !== "code" && kind !== "select")]
      : analysis.kinds;
    const foreign = reach?.foreign ?? [];
    const triggers = reach?.triggers ?? [];
    const notes = [summarise(analysis, estimated, behind)];
    if (triggers.length > 0) {
      notes.push(
        `Writing the tables it names may fire triggers: ${firstTen(triggers.map((fn) => fn.name))}; what they do is not seen here.`,
      );
    }
    if (foreign.length > 0) {
      const tables = foreign.map((table) => `${table.name} (server ${table.server})`);
      notes.push(
        `It acts on another system through foreign tables: ${firstTen(tables)}; what the wrapper does there is not seen here.`,
      );
    }
    if (reach === undefined) {
      notes.push(
        "What the views and rules it names read, and which names after a dot call functions, could not be looked up in the catalog, so it counts as code.",
      );
    } else if (reach.cut) {
      notes.push(
        `It reaches more than ${count(config.maxReachedTables, "table")} through views, rules, foreign keys, partitions and inheritance (the connection's maxReachedTables), too many to list for rules, so it counts as code.`,
      );
    }
    return {
      preview: preview(operation, raw),
      notes,
      facts: {
        sql: {
          kind: kinds[0] ?? analysis.kind,
          kinds,
          // Qualified names also by their bare names: rules match however the agent wrote them.
          // A rule on a table holds for a view over it too: what the views read is listed.
          // So does a rule on a partitioned or parent table for its partitions and children,
          // and the other way round: a partition's parents and a parent's partitions are listed.
          tables: factNames([...analysis.tables, ...behind.map((relation) => relation.name)]),
          namedTables: factNames(analysis.tables),
          // A foreign table's wrapper reads and writes another system (another database, the
          // server's files): its rows are not this database's.
          foreignTables: factNames(foreign.map((table) => table.name)),
          statements: analysis.statements,
          hasWhere: analysis.hasWhere,
          // Unknown counts as huge, so a size limit in a rule fails closed.
          estimatedRows: estimated?.rows ?? Number.MAX_SAFE_INTEGER,
          // A user's function in attribute notation (`o.notify_customer`) is called all the same,
          // and so is one a trigger runs.
          functions: factNames([
            ...analysis.functions,
            ...(reach?.called ?? []),
            ...triggers.map((fn) => fn.name),
          ]),
        },
      },
      risk:
        reach === undefined
          ? {
              level: "critical",
              reason:
                "what the views and rules it names read could not be looked up, so no rule on tables can see it",
            }
          : reach.cut
            ? {
                level: "critical",
                reason: `it reaches more than ${count(config.maxReachedTables, "table")} through views, rules, foreign keys, partitions and inheritance, so no rule on tables can see them all`,
              }
            : sqlRisk(analysis, estimated?.rows, {
                foreignTables: foreign.map((table) => table.name),
                triggerFunctions: triggers.filter((fn) => fn.user).map((fn) => fn.name),
              }),
    };
  };

  /**
   * Runs the writes and rolls them back, to tell reviewers how many rows they would touch.
   * Skipped, saying why, for what a rollback cannot undo or what takes schema locks.
   */
  const dryRun = async (_operation: string, raw: Json): Promise<string> => {
    const input = raw as unknown as PostgresInput;
    const analysis = analyze(input);
    if (analysis.readOnly) return "";
    if (!config.dryRun) return "Dry run: off for this connection.";
    if (!analysis.rollbackable) {
      return "Dry run: skipped, because a rollback could not undo this statement.";
    }
    const locking = analysis.parts.find((part) => !dryRunnable.has(part.kind));
    if (locking) {
      return `Dry run: skipped for ${locking.kind.toUpperCase()} statements, which take locks on the schema.`;
    }
    // A function can act outside the transaction (a replication slot, a signal, a file), and
    // the dry run happens before anyone decides: only functions known to be pure may run.
    const unsafe = analysis.functions.filter((fn) => !isPureFunction(fn));
    if (unsafe.length > 0) {
      return `Dry run: skipped, because it calls ${unsafe.slice(0, 5).join(", ")}, which a rollback might not undo.`;
    }
    if (analysis.statements > 20) return "Dry run: skipped for more than 20 statements.";
    try {
      const counts = await withClient(
        async (client, overdue) => {
          // Names alone do not say what PostgreSQL resolves them to: a table's column, or a
          // user's function called in attribute notation; a built-in, or a user's overload,
          // operator or cast. Whatever user code could be reached, the dry run is skipped.
          const reached = await userCode(client, analysis, "running");
          if (reached.length > 0) return { reached };
          await client.query("BEGIN");
          try {
            await client.query(`SET LOCAL statement_timeout = ${config.previewTimeout}`);
            await client.query(`SET LOCAL lock_timeout = ${config.previewTimeout}`);
            const lines: string[] = [];
            for (const part of analysis.parts) {
              checkReading(client);
              // A cancel that landed between two statements stopped nothing: none is sent after.
              if (overdue()) throw new Overdue(0);
              const target = part.tables[0] ? ` ${part.tables.join(", ")}` : "";
              const { command, rows } = await countRows(client, part.text, input.params ?? []);
              const what = `${command ?? part.kind.toUpperCase()}${target}`;
              // The command's count is of its own rows: a write nested in it goes uncounted.
              const inner = part.innerWrites.map((kind) => kind.toUpperCase()).join(", ");
              lines.push(
                inner
                  ? `${what}: ${count(rows)} from the ${command ?? "statement"} itself, rows changed by the ${inner} within it not counted`
                  : `${what}: ${count(rows)}`,
              );
            }
            return { lines };
          } finally {
            await client.query("ROLLBACK");
          }
        },
        { reset: true, deadlineMs: config.previewTimeout },
      );
      if (counts.reached) {
        return `Dry run: skipped, because it may reach ${counts.reached.slice(0, 5).join(", ")}, defined outside PostgreSQL's own catalog, which a rollback might not undo.`;
      }
      return `Dry run (rolled back): ${(counts.lines ?? []).join("; ")}.`;
    } catch (error) {
      // The database's message can quote row data the reviewer may not see: the code only.
      if (error instanceof Overdue) return `Dry run: stopped after ${config.previewTimeout} ms.`;
      if (error instanceof ReadingChanged) return `Dry run: stopped, because ${error.message}.`;
      const code = (error as { code?: unknown }).code;
      const sqlState = typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
      return `Dry run: the database refused it${sqlState ? ` (SQLSTATE ${sqlState})` : ""}.`;
    }
  };

  const executionTimeout =
    config.executionTimeout ?? Math.max(DEFAULT_EXECUTION_TIMEOUT_MS, config.statementTimeout);
  const execute = async (_operation: string, raw: Json): Promise<ExecutionOutcome> => {
    const input = raw as unknown as PostgresInput;
    const analysis = analyze(input);
    // Statements that manage transactions themselves, or cannot run inside one, run as sent.
    const ownTransaction =
      analysis.rollbackable && !analysis.parts.some((part) => part.kind === "transaction");
    const statements: Json[] = [];
    const hex: FieldPath[] = [];
    const summaries: string[] = [];
    let budget = config.maxResultBytes;
    try {
      await withClient(
        async (client, overdue) => {
          // SELECT … FOR UPDATE is not read-only for PostgreSQL, but it is still a select to
          // the rules: it runs READ ONLY too, so no table it reaches can be written. (What
          // READ ONLY does not stop, large objects or notifications, is no select: see
          // sql-analysis.)
          const readOnly = analysis.readOnly || analysis.kinds.every((kind) => kind === "select");
          if (ownTransaction) await client.query(readOnly ? "BEGIN READ ONLY" : "BEGIN");
          try {
            for (const part of analysis.parts) {
              checkReading(client);
              // A cancel that landed between two statements stopped nothing: none is sent after.
              if (overdue()) throw new Overdue(0);
              const result = await runStatement(client, part, input.params ?? [], {
                maxRows: config.maxRows,
                maxBytes: budget,
              });
              budget -= result.bytes;
              for (const path of result.hex) hex.push(["statements", statements.length, ...path]);
              statements.push(result.json);
              summaries.push(result.summary);
            }
            if (ownTransaction) await client.query("COMMIT");
            else if (client.getTransactionStatus() !== "I") throw new TransactionLeftOpen();
          } catch (error) {
            if (ownTransaction) await client.query("ROLLBACK").catch(() => {});
            throw error;
          }
        },
        // A second past the server's own timeout, so that the server's more precise message
        // comes first when one statement runs over.
        {
          reset: true,
          close: !resettable(analysis),
          deadlineMs:
            Math.min(config.statementTimeout * analysis.statements, executionTimeout) + 1000,
        },
      );
    } catch (error) {
      const reason =
        error instanceof DatabaseUnreachable ||
        error instanceof TransactionLeftOpen ||
        error instanceof Overdue
          ? error.message
          : error instanceof ReadingChanged
            ? `${error.message}${ownTransaction ? "; nothing was changed" : ""}`
            : `the database refused it: ${errorText(error)}${ownTransaction ? "; nothing was changed" : ""}`;
      return {
        ok: false,
        result: statements.length ? { statements } : null,
        ...(hex.length > 0 ? { hex } : {}),
        summary: "failed",
        reason,
      };
    }
    return {
      ok: true,
      result: { statements },
      ...(hex.length > 0 ? { hex } : {}),
      summary: summaries.join("; "),
    };
  };

  return {
    type: "postgres",
    name,
    secrets: [config.url, ...(password ? [password] : [])],
    parse,
    describe,
    preview,
    dryRun,
    execute,
    operations: async () => [
      {
        name: "query",
        description: `Runs SQL on the ${name} PostgreSQL database, with credentials Airlock holds; a policy decides, from what the statements read and write, whether it runs at once, waits for a person's approval, or is refused.`,
        inputSchema: {
          type: "object",
          properties: {
            sql: { type: "string", description: "One or more statements", maxLength: 1_000_000 },
            params: {
              type: "array",
              description: "Values for $1, $2, …, sent apart from the SQL",
              items: { type: ["string", "number", "boolean", "null"] },
              maxItems: 1000,
            },
          },
          required: ["sql"],
          additionalProperties: false,
        },
      },
    ],
    close: () => pool.end(),
  };
}

/**
 * The user code (outside pg_catalog and information_schema: an extension's too) a statement
 * may run without naming it, as "function f", "operator ===", "cast to t", "type t", "user
 * code on t": functions, operators, casts and types (a domain's checks) its names could
 * resolve to, and what its relations carry (triggers, rules, row-security policies, defaults, constraints, indexes and their operator
 * classes, columns of domain or composite types), and their partitions', the tables behind a
 * view's, and those of tables whose foreign keys act on their rows; and foreign tables, whose
 * wrappers are extension code. Planning runs some of it too (a view's body, a policy, a
 * wrapper's remote estimate), so the estimate asks as well. A relation that cannot be
 * resolved counts: what it would run is unknown.
 */
async function userCode(
  client: pg.ClientBase,
  analysis: SqlAnalysis,
  /** Planning only (the estimate): what the planner may evaluate, not what runs on writes. */
  when: "planning" | "running",
): Promise<string[]> {
  const { calls, operators, casts, relations } = analysis.reaches;
  const result = await client.query<{ what: string }>(
    `WITH RECURSIVE user_ns AS (
       SELECT oid FROM pg_catalog.pg_namespace
       WHERE nspname NOT IN ('pg_catalog', 'information_schema')),
     named AS (
       SELECT t AS name, pg_catalog.to_regclass(t) AS oid FROM unnest($4::text[]) AS t),
     -- A write to one reaches the other: partitions and children, tables whose foreign
     -- keys act on its rows, the tables a view's rule writes to.
     edges AS (
       SELECT i.inhparent AS parent, i.inhrelid AS child FROM pg_catalog.pg_inherits i
       UNION ALL
       SELECT c.confrelid, c.conrelid FROM pg_catalog.pg_constraint c WHERE c.contype = 'f'
       UNION ALL
       SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
           AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
         WHERE d.refobjid <> r.ev_class),
     rel AS (
       SELECT oid::oid AS oid FROM named WHERE oid IS NOT NULL
       UNION
       SELECT edges.child FROM edges JOIN rel ON edges.parent = rel.oid),
     -- What the relations carry: their columns (by their types), defaults, constraints,
     -- triggers, rules, policies and indexes.
     attached AS (
       SELECT 'pg_catalog.pg_rewrite'::regclass AS classid, r.oid AS objid, r.ev_class AS relid
         FROM pg_catalog.pg_rewrite r JOIN rel ON r.ev_class = rel.oid
       UNION ALL SELECT 'pg_catalog.pg_policy'::regclass, po.oid, po.polrelid
         FROM pg_catalog.pg_policy po JOIN rel ON po.polrelid = rel.oid
       UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, ad.oid, ad.adrelid
         FROM pg_catalog.pg_attrdef ad JOIN rel ON ad.adrelid = rel.oid
       -- What runs only when rows are written: not asked about for the estimate.
       UNION ALL SELECT 'pg_catalog.pg_class'::regclass, rel.oid, rel.oid FROM rel WHERE $5
       UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, c.oid, c.conrelid
         FROM pg_catalog.pg_constraint c JOIN rel ON c.conrelid = rel.oid WHERE $5
       UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, tg.oid, tg.tgrelid
         FROM pg_catalog.pg_trigger tg JOIN rel ON tg.tgrelid = rel.oid WHERE $5
       UNION ALL SELECT 'pg_catalog.pg_class'::regclass, ix.indexrelid, ix.indrelid
         FROM pg_catalog.pg_index ix JOIN rel ON ix.indrelid = rel.oid WHERE $5),
     -- What they depend on outside pg_catalog: a function; an operator or operator class,
     -- which run functions of their own; a type other than an enum (a domain's checks and
     -- default, a composite's, an array's element's).
     reached AS (
       SELECT a.relid FROM attached a
         JOIN pg_catalog.pg_depend d ON d.classid = a.classid AND d.objid = a.objid
         LEFT JOIN pg_catalog.pg_proc p
           ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
         LEFT JOIN pg_catalog.pg_operator o
           ON d.refclassid = 'pg_catalog.pg_operator'::regclass AND o.oid = d.refobjid
         LEFT JOIN pg_catalog.pg_opclass oc
           ON d.refclassid = 'pg_catalog.pg_opclass'::regclass AND oc.oid = d.refobjid
         LEFT JOIN pg_catalog.pg_type t
           ON d.refclassid = 'pg_catalog.pg_type'::regclass AND t.oid = d.refobjid
         LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
         WHERE p.pronamespace IN (SELECT oid FROM user_ns)
           OR o.oprnamespace IN (SELECT oid FROM user_ns)
           OR oc.opcnamespace IN (SELECT oid FROM user_ns)
           OR (t.typnamespace IN (SELECT oid FROM user_ns) AND t.typtype <> 'e'
             AND coalesce(e.typtype, '') <> 'e'))
     SELECT DISTINCT 'function ' || p.proname AS what FROM pg_catalog.pg_proc p
       WHERE p.pronamespace IN (SELECT oid FROM user_ns) AND p.proname = ANY($1::text[])
     UNION
     SELECT DISTINCT 'operator ' || o.oprname FROM pg_catalog.pg_operator o
       WHERE o.oprnamespace IN (SELECT oid FROM user_ns) AND o.oprname = ANY($2::text[])
     UNION
     SELECT DISTINCT 'cast to ' || t.typname FROM pg_catalog.pg_cast c
       JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
       JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
       WHERE p.pronamespace IN (SELECT oid FROM user_ns)
         AND (c.castcontext <> 'e' OR t.typname = ANY($3::text[]))
     UNION
     -- A type it names, other than an enum: a value becoming one runs a domain's checks, and
     -- a composite's literal is read by its columns' types (with their checks) as it is parsed.
     SELECT DISTINCT 'type ' || t.typname FROM pg_catalog.pg_type t
       WHERE t.typnamespace IN (SELECT oid FROM user_ns) AND t.typtype <> 'e'
         AND t.typname = ANY($3::text[])
     UNION
     SELECT DISTINCT 'user code on ' || reached.relid::regclass::text FROM reached
     UNION
     SELECT 'a table it cannot resolve, ' || name FROM named WHERE oid IS NULL
     UNION
     -- A foreign table's wrapper is extension code, and may act elsewhere, planning included
     -- (postgres_fdw's remote estimates), and outside this transaction.
     SELECT 'a foreign table, ' || c.oid::regclass::text FROM pg_catalog.pg_class c
       JOIN rel ON c.oid = rel.oid WHERE c.relkind = 'f'
     ORDER BY 1`,
    [calls, operators, casts, relations, when === "running"],
  );
  return result.rows.map((row) => row.what);
}

/** How a relation behind the named ones is reached (see namesReach). */
type Reached = "view" | "rule" | "reference" | "referenced" | "child" | "parent";

interface NamesReach {
  /**
   * Relations behind the named ones, as `schema.name`, by how they are reached: through a
   * view's query or a rule's actions, by a foreign key that refers to one, as the table a
   * foreign key of one refers to, as a partition or child table, as a table it is a partition
   * or child of. Partitions and children last: only they are ever cut, at `limit`.
   */
  behind: { name: string; how: Reached }[];
  /** More were reached than the `limit` namesReach was given. */
  cut: boolean;
  /** Foreign tables named or reached (not only as a parent), as `schema.name`, and their server. */
  foreign: { name: string; server: string }[];
  /** The functions the triggers of what it may write run, as `schema.name`; `user` if not built in. */
  triggers: { name: string; user: boolean }[];
  /** Names after a dot that call a user's function rather than read a column. */
  called: string[];
}

/**
 * Names after a dot (`o.notify_customer`, `(x).f`) that may call a function, as PostgreSQL
 * takes `x.f` for `f(x)` when x has no column f; those called by name already are left out.
 */
function attributes(analysis: SqlAnalysis): string[] {
  const called = new Set(analysis.functions.map((name) => functionName(name)));
  return analysis.reaches.calls.filter((name) => !called.has(name));
}

/**
 * What the statement's names reach, by the catalog, in one query.
 *
 * `behind`: the relations read or written through the views, materialized views and rules of
 * the relations a statement names, and theirs in turn, as `schema.name`: what a view's query
 * reads, what a rule's actions do (a rule on INSERT, UPDATE or DELETE only when the statement
 * may write the relation's rows). The catalog records each rule's relations (pg_depend), by
 * OID, so a view is followed whatever its body's search_path was. Names resolve by the
 * session's search_path, as the statement's will; when a statement before the last may
 * change it (a SET, a function outside the stateless built-ins), a bare name stands for every
 * relation of that name. User code the SQL does not name (a trigger, an operator) is trusted
 * not to change it.
 *
 * With them, by pg_inherits, the partitions and inheriting tables of each, all the way down
 * (a statement without ONLY reads and writes their rows too; not those of a relation that
 * plain statements, as below, name only with ONLY, which keeps to its own rows: see `only`
 * in sql-analysis), and the tables each is a partition or child of, all the way up (its rows
 * are theirs: a rule on a partitioned table holds for its partitions). Not across: a
 * partition's siblings are not listed. A relation's rules act only when it is named or
 * reached through a rule or a foreign key, never through a parent or child, as PostgreSQL
 * applies rules before it expands inheritance.
 *
 * Which relations' rows the statement may write: those its own writes target (`writes` of
 * sql-analysis) when it is a plain read, write or COPY (kinds select, insert, update,
 * delete, merge, copy, transaction, calling only built-ins known to compute only); every
 * relation of any other statement that is not read-only (DDL, code, one calling a user's
 * function: what that writes is not seen); and all of them when a name after a dot calls a
 * user's function in a statement that is not read-only. What it writes through a view, a rule's action, a
 * partition or child, or a cascade is written too; what it only reads fires none of its
 * rules or triggers, and changes no row another table's key refers to.
 *
 * And when the statement may delete or update rows of a relation (by its own writes, a
 * rule's action or a cascade), the tables whose foreign keys refer to that relation,
 * whatever the key's action: a cascade deletes or updates their rows, SET NULL and SET
 * DEFAULT change them, TRUNCATE … CASCADE empties them, and RESTRICT or NO ACTION reads them
 * to refuse the change. Their rows are acted on as if named: their rules, partitions and the
 * keys that refer to them are followed in turn.
 *
 * And when it may insert or update rows of a relation (by its own writes, a rule's action or
 * a cascade), the tables that the foreign keys of that relation refer to: the key's check
 * reads them (and locks the row it finds), so whether a key exists there can be learnt by
 * writing. They are only read: up to their parents and down to their partitions, no further
 * (no rule, trigger or key of theirs acts).
 *
 * At most `limit` relations are listed (parents and what views, rules and keys reach first,
 * so a cut falls on partitions and children), and `cut` says whether more were reached.
 *
 * `foreign`: the foreign tables among the relations named and reached, with their servers;
 * not those reached only as a parent, whose rows a child's statement does not touch.
 *
 * `triggers`: the functions that the user triggers (not the internal ones of constraints) of
 * the relations whose rows it may write run, named and reached, but for those reached only as
 * a parent or as what a foreign key refers to: a view's INSTEAD OF trigger, a partition's, a
 * table's on any event, enabled or not, since which of them fire depends on the event and on
 * settings the SQL may change. What a trigger function does (its body) is not followed: one
 * that writes a table the statement only reads fires that table's triggers unlisted, as it
 * would those of a table the statement does not name.
 *
 * `called`: names after a dot that a user's function (outside pg_catalog and
 * information_schema) callable with one argument bears, in the search_path's schemas (or any,
 * as above). Whether x has a column of that name is not asked: a function of the name counts,
 * failing toward listing it. The built-ins that act are listed by the parser already.
 */
async function namesReach(
  client: pg.ClientBase,
  analysis: SqlAnalysis,
  limit: number,
): Promise<NamesReach> {
  const anySchema = analysis.parts.slice(0, -1).some((part) => !resettable(part));
  // Whose rows each statement may insert or update ("adds") and update or delete
  // ("changes"): a plain read, write or COPY (calling only built-ins known to compute only)
  // writes what its own writes target and only reads the rest; any other statement that is
  // not read-only (DDL, code, a call of a user's function) may write whatever it names.
  // The same plain statements' ONLY is taken at its word: a relation they name only with
  // ONLY is read or written without its partitions and children.
  const adds = new Set<string>();
  const changes = new Set<string>();
  const whole = new Set<string>();
  for (const part of analysis.parts) {
    const known =
      part.kinds.every((kind) => plainKinds.has(kind) || kind === "copy") &&
      part.functions.every((fn) => isStatelessFunction(fn));
    for (const relation of part.reaches.relations) {
      if (!known || !part.only.includes(relation)) whole.add(relation);
    }
    if (part.readOnly) continue;
    for (const relation of known ? part.writes.adds : part.reaches.relations) adds.add(relation);
    for (const relation of known ? part.writes.changes : part.reaches.relations) {
      changes.add(relation);
    }
  }
  const named: string[] = [];
  const bare: (string | null)[] = [];
  const added: boolean[] = [];
  const changed: boolean[] = [];
  const descends: boolean[] = [];
  for (const relation of analysis.reaches.relations) {
    // A catalog other than this database's fails when the statement runs: it reads nothing.
    const parts = [...relation.matchAll(/"((?:[^"]|"")*)"/g)].map((m) => m[1] ?? "").slice(-2);
    named.push(parts.map((part) => `"${part}"`).join("."));
    bare.push(anySchema && parts.length === 1 ? (parts[0] ?? "").replaceAll('""', '"') : null);
    added.push(adds.has(relation));
    changed.push(changes.has(relation));
    descends.push(whole.has(relation));
  }
  const result = await client.query<{
    what: "relation" | "foreign" | "trigger" | "function";
    name: string;
    /** How a relation is reached; a foreign table's server; whether a trigger's is user code. */
    detail: string | null;
  }>(
    `WITH RECURSIVE given AS (
       SELECT * FROM unnest($1::text[], $2::text[], $7::boolean[], $8::boolean[], $9::boolean[])
         AS t(relation, bare, adds, changes, descends)),
     -- Names after a dot that call a user's function (see "called" on NamesReach).
     called AS (
       SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE p.proname = ANY($4::text[]) AND p.prokind = 'f'
           AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND ($5 OR n.nspname = ANY(pg_catalog.current_schemas(true)))),
     -- The relations named, with whether the statement may add or change their rows, and
     -- whether it reaches their partitions and children (not when named only with ONLY).
     -- When it is not read-only, a user's function called after a dot may write any of them.
     named AS (
       SELECT oid, bool_or(adds) OR unseen AS adds, bool_or(changes) OR unseen AS changes,
           bool_or(descends) OR unseen AS descends
         FROM (SELECT pg_catalog.to_regclass(relation)::oid AS oid, adds, changes, descends
                 FROM given
               UNION ALL
               SELECT c.oid, given.adds, given.changes, given.descends FROM given
                 JOIN pg_catalog.pg_class c ON c.relname = given.bare) AS resolved
         CROSS JOIN (SELECT $3 AND EXISTS (SELECT FROM called) AS unseen) AS calls
         WHERE oid IS NOT NULL GROUP BY oid, unseen),
     -- The foreign keys that may act on a table's rows when they change, by what they refer to.
     refs AS MATERIALIZED (
       SELECT c.confrelid AS target, c.conrelid AS source FROM pg_catalog.pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid <> c.confrelid AND $3),
     -- What is named or reached through a view's or rule's actions, or a foreign key that
     -- refers to one, is acted on as if named: from it, on through its own views and rules,
     -- down to its partitions and children (not from what is named only with ONLY), up to the
     -- tables it is a partition or child of. From a child only further down, from a parent
     -- only further up. "changes" is whether the rows may be deleted or updated (by the
     -- statement, through a view or a child, by a rule's action or a cascade): then the
     -- foreign keys that refer to it lead on too. "adds" is whether rows may be inserted or
     -- updated: then what its own foreign keys refer to is read, by the keys' checks, and
     -- from there only up and down. Each step is an index lookup from the relation at hand,
     -- but for the foreign keys that refer to it (no index on what a key refers to): those
     -- are few, read once above and scanned.
     reached AS (
       SELECT oid, 'named' AS how, changes, adds FROM named
       UNION
       SELECT next.oid, next.how, next.changes, next.adds FROM reached, LATERAL (
         SELECT d.refobjid AS oid,
             CASE WHEN r.ev_type = '1' THEN 'view' ELSE 'rule' END AS how,
             r.ev_type <> '1' OR reached.changes AS changes,
             r.ev_type <> '1' OR reached.adds AS adds
           FROM pg_catalog.pg_rewrite r
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
             AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
           WHERE r.ev_class = reached.oid
             AND reached.how IN ('named', 'view', 'rule', 'reference')
             AND d.refobjid <> r.ev_class
             AND (r.ev_type = '1' OR reached.adds OR reached.changes)
         UNION ALL
         SELECT refs.source, 'reference', true, true FROM refs
           WHERE refs.target = reached.oid AND reached.changes
         UNION ALL
         SELECT c.confrelid, 'referenced', false, false FROM pg_catalog.pg_constraint c
           WHERE c.conrelid = reached.oid AND c.contype = 'f' AND c.confrelid <> c.conrelid
             AND reached.adds
         UNION ALL
         SELECT i.inhrelid, 'child', reached.changes, reached.adds FROM pg_catalog.pg_inherits i
           WHERE i.inhparent = reached.oid AND reached.how <> 'parent'
             AND (reached.how <> 'named'
               OR reached.oid NOT IN (SELECT oid FROM named WHERE NOT descends))
         UNION ALL
         SELECT i.inhparent, 'parent', false, false FROM pg_catalog.pg_inherits i
           WHERE i.inhrelid = reached.oid AND reached.how <> 'child') next),
     behind AS (
       SELECT DISTINCT ON (oid) oid, how FROM reached
         WHERE oid NOT IN (SELECT oid FROM named)
         ORDER BY oid, how = 'child', how = 'parent', how = 'referenced', how = 'reference',
           how = 'rule')
     (SELECT 'relation' AS what, n.nspname || '.' || c.relname AS name, behind.how AS detail
       FROM behind
       JOIN pg_catalog.pg_class c ON c.oid = behind.oid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       ORDER BY behind.how = 'child', 2 LIMIT $6)
     UNION ALL
     (SELECT DISTINCT 'foreign', n.nspname || '.' || c.relname, s.srvname FROM reached
       JOIN pg_catalog.pg_class c ON c.oid = reached.oid AND c.relkind = 'f'
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid
       JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
       WHERE reached.how <> 'parent' LIMIT $6)
     UNION ALL
     (SELECT DISTINCT 'trigger', n.nspname || '.' || p.proname,
         CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') THEN 'built-in' ELSE 'user' END
       FROM reached
       JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = reached.oid
       -- Internal triggers are a constraint's own (a foreign key's checks and actions, a
       -- deferrable unique or exclusion constraint's recheck), but before PostgreSQL 15 a
       -- partition's copy of its table's trigger is internal too: only the constraint's own
       -- are left out, and a constraint trigger's copy (a constraint of type 't') stays.
       LEFT JOIN pg_catalog.pg_constraint con ON con.oid = tg.tgconstraint
       JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
       JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
       WHERE (reached.changes OR reached.adds)
         AND (NOT tg.tgisinternal OR coalesce(con.contype, 't') = 't'))
     UNION ALL
     SELECT 'function', proname, NULL FROM called
     ORDER BY 1, 2`,
    [
      named,
      bare,
      !analysis.readOnly,
      attributes(analysis),
      anySchema,
      limit + 1,
      added,
      changed,
      descends,
    ],
  );
  const behind: NamesReach["behind"] = [];
  const foreign: NamesReach["foreign"] = [];
  const triggers: NamesReach["triggers"] = [];
  const called: string[] = [];
  for (const row of result.rows) {
    if (row.what === "function") called.push(row.name);
    else if (row.what === "trigger") triggers.push({ name: row.name, user: row.detail === "user" });
    else if (row.what === "foreign") foreign.push({ name: row.name, server: row.detail ?? "" });
    else behind.push({ name: row.name, how: (row.detail ?? "rule") as Reached });
  }
  // Parents and what views read come first: a cut falls on partitions and children.
  behind.sort((a, b) => Number(a.how === "child") - Number(b.how === "child"));
  const cut = behind.length > limit || foreign.length > limit;
  return {
    behind: behind.slice(0, limit),
    cut,
    foreign: foreign.slice(0, limit),
    triggers,
    called,
  };
}

/** What EXPLAIN can estimate. */
const explainable = new Set(["select", "insert", "update", "delete", "merge"]);
/** What a dry run may execute: plain data changes, whose locks are on rows. */
const dryRunnable = new Set(["select", "insert", "update", "delete", "merge"]);

/** Kinds whose statements leave no session state but what DISCARD ALL clears. */
const plainKinds = new Set(["select", "insert", "update", "delete", "merge", "transaction"]);

/**
 * Whether the session an action ran on can be reset for the next one (by the pool's next
 * taker, perhaps another agent). DISCARD ALL clears a session's settings, role, temporary
 * tables, prepared statements, cursors, LISTENs and advisory locks, but not everything: a
 * library loaded with LOAD, dblink's named connections, a replication origin set up for the
 * session, a temporary replication slot, a backup begun with pg_backup_start. Only plain
 * reads and writes that call nothing but built-ins known to compute only (aggregates, window
 * and JSON functions, …) are known to leave none of that; after anything else (kinds `code`,
 * `other`, `ddl`, `grant`, `copy`, a user or extension function) the connection is closed
 * rather than reused, and the next action gets a fresh session (a connection's set-up, a few
 * milliseconds).
 */
function resettable(analysis: Pick<SqlAnalysis, "kinds" | "functions">): boolean {
  return (
    analysis.kinds.every((kind) => plainKinds.has(kind)) &&
    analysis.functions.every((fn) => isStatelessFunction(fn))
  );
}

interface StatementResult {
  json: Json;
  summary: string;
  bytes: number;
  /** Where in `json` bytea sits, written `\x` and hex digits. */
  hex: FieldPath[];
}

/** A batch of rows; the result (fields, command, count) is absent once the cursor is done. */
/**
 * Runs a statement for its count alone: rows it returns are read a few at a time and
 * dropped, so a dry run never holds a result in memory (it runs before anyone decides).
 */
async function countRows(
  client: pg.PoolClient,
  text: string,
  values: unknown[],
): Promise<{ command: string | undefined; rows: number }> {
  const cursor = client.query(new Cursor(text, values, { rowMode: "array" }));
  let result: pg.QueryResult | undefined;
  let returned = 0;
  let failed: unknown;
  try {
    for (;;) {
      const batch = await read(cursor, 10);
      result = batch.result ?? result;
      if (batch.rows.length === 0) break;
      returned += batch.rows.length;
    }
  } catch (error) {
    failed = error;
    throw error;
  } finally {
    await closeCursor(cursor, failed);
  }
  return { command: result?.command || undefined, rows: rowsOf(result, returned) };
}

/**
 * How many rows a statement read through a cursor touched. One that returns rows was read in
 * portions, and the server's count covers only the last one: the rows read are the count.
 */
function rowsOf(result: pg.QueryResult | undefined, read: number): number {
  return (result?.fields.length ?? 0) > 0 ? read : (result?.rowCount ?? 0);
}

/**
 * Closing a cursor waits for the server's answer: after the connection itself failed none will
 * come, and the connection is thrown away instead.
 */
async function closeCursor(cursor: Cursor, failed: unknown): Promise<void> {
  if (failed === undefined || !isConnectionError(failed)) await cursor.close();
}

function read(
  cursor: Cursor,
  rows: number,
): Promise<{ rows: unknown[][]; result: pg.QueryResult | undefined }> {
  return new Promise((resolve, reject) => {
    cursor.read(rows, (error, batch, result) =>
      error ? reject(error) : resolve({ rows: batch as unknown[][], result }),
    );
  });
}

/**
 * One statement through a cursor, so a huge read is cut without being fetched whole. A write
 * has run to completion before its first row comes back, so its RETURNING rows past the cap
 * are read and dropped to learn how many rows it changed.
 */
async function runStatement(
  client: pg.PoolClient,
  part: { text: string; kind: string },
  values: unknown[],
  limits: { maxRows: number; maxBytes: number },
): Promise<StatementResult> {
  const cursor = client.query(new Cursor(part.text, values, { rowMode: "array" }));
  const rows: Json[] = [];
  const hex: FieldPath[] = [];
  let bytes = 0;
  let cut: string | undefined;
  let result: pg.QueryResult | undefined;
  let done = false;
  // Rows are read a few at a time, as many as the rows seen so far say fit in what is left
  // of the cap: a batch of huge rows is never in memory at once. The first is one row.
  let seen = 0;
  let seenBytes = 0;
  let batchSize = 1;
  let failed: unknown;
  try {
    while (!done) {
      const batch = await read(cursor, batchSize);
      result = batch.result ?? result;
      done = batch.rows.length === 0;
      for (const raw of batch.rows) {
        if (cut) {
          seen++;
          continue;
        }
        const cells: FieldPath[] = [];
        const row = raw.map((value, column) =>
          toJson(value, 0, (trail) => cells.push([column, ...trail])),
        );
        const size = JSON.stringify(row).length + 1;
        seen++;
        seenBytes += size;
        if (rows.length >= limits.maxRows) {
          cut = `cut at ${limits.maxRows} rows (the connection's maxRows)`;
        } else if (bytes + size > limits.maxBytes) {
          cut = `cut at ${rows.length} rows: more would pass the connection's maxResultBytes`;
        } else {
          for (const cell of cells) hex.push(["rows", rows.length, ...cell]);
          rows.push(row);
          bytes += size;
        }
      }
      if (cut && part.kind === "select") break;
      const room = Math.max(limits.maxBytes - bytes, 65_536);
      batchSize = Math.max(1, Math.min(500, Math.floor(room / Math.max(1, seenBytes / seen))));
    }
  } catch (error) {
    failed = error;
    throw error;
  } finally {
    await closeCursor(cursor, failed);
  }
  const fields = result?.fields ?? [];
  const command = result?.command || part.kind.toUpperCase();
  const rowCount = done ? rowsOf(result, seen) : null;
  const json: Record<string, Json> = { command, rowCount };
  if (fields.length > 0) {
    json.columns = fields.map((field) => field.name);
    json.rows = rows;
  }
  if (cut) json.truncated = cut;
  const counted = rowCount === null ? `more than ${count(rows.length)}, cut` : count(rowCount);
  return {
    json,
    bytes,
    summary: `${command}: ${counted}${cut && rowCount !== null ? ", cut" : ""}`,
    hex,
  };
}

const writeKinds = new Set(["insert", "update", "delete", "merge"]);

/**
 * A plan's estimated rows and its output columns. For a statement that writes, the rows are
 * those its writes are fed, wherever in the plan they are (a DELETE in a WITH is below the
 * SELECT that counts what it returned), added up; undefined when the plan shows no write.
 */
function planOf(row: unknown, writes: boolean): { rows: number | undefined; columns: string[] } {
  const explained = (row as { "QUERY PLAN"?: { Plan?: PlanNode }[] } | undefined)?.["QUERY PLAN"];
  const top = explained?.[0]?.Plan;
  if (!top) return { rows: writes ? undefined : 0, columns: [] };
  const columns = (top.Output ?? []).map(columnName);
  if (!writes) return { rows: Math.round(top["Plan Rows"] ?? 0), columns };
  let rows: number | undefined;
  const stack = (explained ?? []).flatMap((entry) => (entry.Plan ? [entry.Plan] : []));
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    stack.push(...(node.Plans ?? []));
    if (node["Node Type"] !== "ModifyTable") continue;
    // Without RETURNING a write's own node estimates no rows: its input is what it changes.
    const fed = node.Plans?.find((child) => child["Parent Relationship"] === "Outer");
    rows = (rows ?? 0) + Math.round(Math.max(node["Plan Rows"] ?? 0, fed?.["Plan Rows"] ?? 0));
  }
  return { rows, columns };
}

/**
 * A plan's output column as reviewers read it: a column's name, or "(expression)". The
 * planner writes an expression out with its constants folded in, parameters included
 * (`'O''BRIEN'::text` for `upper($1)`), which would show values a rule masks.
 */
function columnName(output: string): string {
  const plain = /^(?:(?:[a-z_][a-z0-9_$]*|"[^"]+")\.)*([a-z_][a-z0-9_$]*|"[^"]+")$/.exec(output);
  return plain ? plain[1]! : "(expression)";
}

interface PlanNode {
  "Node Type"?: string;
  "Parent Relationship"?: string;
  "Plan Rows"?: number;
  Output?: string[];
  Plans?: PlanNode[];
}

/** Names for a reviewer's note: the first ten, and how many more. */
function firstTen(names: readonly string[]): string {
  const more = names.length > 10 ? `, and ${names.length - 10} more` : "";
  return `${names.slice(0, 10).join(", ")}${more}`;
}

/** The first lines reviewers read: what kind of statement, on what, and how big. */
function summarise(
  analysis: SqlAnalysis,
  estimated: { rows: number; columns: string[] } | undefined,
  behind: NamesReach["behind"],
): string {
  const what = analysis.kinds.map((kind) => kind.toUpperCase()).join(" + ");
  const labels: [readonly Reached[], string][] = [
    [["view", "rule"], "through views and rules"],
    [["reference"], "tables whose foreign keys refer to it"],
    [["referenced"], "tables its foreign keys refer to"],
    [["child"], "partitions and child tables"],
    [["parent"], "parent tables"],
  ];
  const ways = labels.flatMap(([how, label]) => {
    const names = behind.filter((relation) => how.includes(relation.how)).map((r) => r.name);
    return names.length === 0 ? [] : [`${label}: ${firstTen(names)}`];
  });
  const through = ways.length ? ` (${ways.join("; ")})` : "";
  const on = analysis.tables.length ? ` on ${analysis.tables.join(", ")}${through}` : "";
  const statements = analysis.statements > 1 ? ` (${analysis.statements} statements)` : "";
  let size = "";
  if (estimated) {
    size = `; about ${count(estimated.rows)} (planner estimate)`;
    if (analysis.readOnly && estimated.columns.length) {
      size += `; columns: ${estimated.columns.join(", ")}`;
    }
  }
  const where = analysis.hasWhere ? "" : "; a write WITHOUT a WHERE clause";
  return `${what}${on}${statements}${size}${where}`;
}

function count(rows: number, noun = "row"): string {
  return `${rows.toLocaleString("en-US")} ${noun}${rows === 1 ? "" : "s"}`;
}

/**
 * PostgreSQL values as JSON: big numbers stay exact as text, bytes as \x hex, each told to
 * `bytes` by where it sits in `value` (a bytea[] holds many), to be scrubbed as bytes.
 */
function toJson(
  value: unknown,
  depth = 0,
  bytes?: (trail: FieldPath) => void,
  trail: (string | number)[] = [],
): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "bigint") return value.toString();
  if (Buffer.isBuffer(value)) {
    bytes?.([...trail]);
    return `\\x${value.toString("hex")}`;
  }
  if (value instanceof Date) return value.toISOString();
  // jsonb comes back nested up to thousands deep, past what JSON.stringify can encode.
  if (typeof value === "object" && depth >= MAX_JSON_DEPTH) return clippedNote;
  const inner = (key: string | number, item: unknown): Json => {
    trail.push(key);
    const json = toJson(item, depth + 1, bytes, trail);
    trail.pop();
    return json;
  };
  if (Array.isArray(value)) return value.map((item, index) => inner(index, item));
  if (typeof value === "object") {
    const out: Record<string, Json> = {};
    // A jsonb key named __proto__ stays a key.
    for (const [key, item] of Object.entries(value)) defineOwn(out, key, inner(key, item));
    return out;
  }
  return String(value);
}

/** The database's own words, without the connection details a driver error may carry. */
function errorText(error: unknown): string {
  if (error instanceof DatabaseUnreachable) return error.message;
  const e = error as { message?: string; code?: string; position?: string };
  const code = e.code && /^[0-9A-Z]{5}$/.test(e.code) ? ` [SQLSTATE ${e.code}]` : "";
  return `${e.message ?? String(error)}${code}`;
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return (
    typeof code !== "string" ||
    !/^[0-9A-Z]{5}$/.test(code) ||
    code.startsWith("08") ||
    code.startsWith("57P")
  );
}

/** The agent's SQL began a transaction it did not end; it is rolled back, never committed. */
class TransactionLeftOpen extends Error {
  constructor() {
    super(
      "the SQL left a transaction open (BEGIN without COMMIT); Airlock rolled it back, so nothing in that transaction was kept",
    );
  }
}

/** How long a cancelled statement may take to stop before its connection is cut. */
const OVERDUE_GRACE_MS = 3000;

/** How long one action's statements may take together, unless the connection says. */
const DEFAULT_EXECUTION_TIMEOUT_MS = 120_000;

/** The gateway's own deadline passed: the statement was cancelled, the connection closed. */
class Overdue extends Error {
  constructor(ms: number) {
    super(
      `the statements ran past their time limit (${ms} ms, from the connection's statementTimeout and executionTimeout) and were cancelled`,
    );
  }
}

/** The SQL changed how the server reads SQL, where the parser could not see it. */
class ReadingChanged extends Error {
  constructor(misread: string) {
    super(
      `the SQL changed how the server reads what follows (${misread}), so the statements after it were not sent`,
    );
  }
}

/** The database could not be reached: said without host, port or user. */
class DatabaseUnreachable extends Error {
  constructor(cause: unknown) {
    const code = (cause as { code?: string } | undefined)?.code;
    super(`the database could not be reached${code ? ` (${code})` : ""}`, { cause });
  }
}
