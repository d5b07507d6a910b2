/** The shared store: PostgreSQL, for any number of gateway replicas on one database. */
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { AuditEvent } from "../../audit/audit-chain.js";
import { AirlockError } from "../../errors.js";
import type {
  ActionRequest,
  AuditEventInput,
  Change,
  RequestStatus,
  TransitionResult,
} from "../../requests/request-types.js";
import type {
  AuditQuery,
  InsertResult,
  OutboxItem,
  OutboxPlanner,
  OutboxRecord,
  RequestChange,
  RequestQuery,
  SessionCheck,
  SessionRecord,
  SignInRecord,
  Store,
  TokenRecord,
} from "../store.js";
import { StoreClock } from "../store-clock.js";
import {
  claimedOutbox,
  eventFromRow,
  outboxFromRow,
  type Row,
  sessionFromRow,
  tokenFromRow,
  UNREADABLE_PAYLOAD,
} from "../store-rows.js";
import { newerSchema, unmigrated } from "../store-schema.js";
import { lostConflict, storeFailure, unreachable } from "./postgres-errors.js";
import { GroupCommit } from "./postgres-group-commit.js";
import { postgresMigrations } from "./postgres-migrations.js";
import {
  type Appended,
  CONFLICT_ATTEMPTS,
  conflictPause,
  lockKey,
  NOW_MS,
  type Query,
  SELECT_REQUEST,
  toRequest,
  withAuditedTransaction,
  withTransaction,
} from "./postgres-sql.js";

export interface PostgresOptions {
  /** Connections in the pool (default 10); the change feed holds one more of its own. */
  poolSize?: number;
  /**
   * How long a connection attempt (default 10 s) or a statement (default 30 s; migrations
   * excepted) may go unanswered before it fails with `store_unavailable`.
   */
  timeoutMs?: number;
  /** Hears about failures nobody is waiting for: dropped idle connections, the change feed. */
  onError?: (error: unknown) => void;
  /**
   * Bring the schema up to date (the default). Without, the current schema must hold the
   * tables at this version's schema already; see `unmigrated`.
   */
  migrate?: boolean;
  /**
   * How long the store's time runs on from its last reading of the database's clock before
   * it reads it again (default 10 s), when no transaction has read it meanwhile.
   */
  clockRefreshMs?: number;
}

/**
 * Expired MCP calls and cancels, other than the statement's own ($1), swept by the statement
 * that records one; rows others hold are skipped, so two replicas never wait in a cycle.
 */
const SWEEP_MCP_CALLS = `WITH swept AS (DELETE FROM mcp_calls WHERE call_key IN (SELECT call_key
  FROM mcp_calls WHERE expires_at <= ${NOW_MS} AND call_key <> $1 LIMIT 100
  FOR UPDATE SKIP LOCKED))`;

/**
 * How long past its expiry (by the database's clock) a message's claim, a session or a
 * sign-in is kept before a replica sweeps it away. Each replica judges their expiry by the
 * `now` it passes: for a message's claim its own clock, which may run behind the database's,
 * and a sweep by the sweeping replica's would end them early for all the others when its
 * clock runs ahead; for sessions and sign-ins the store's time as the replica learned it (a
 * replica from before that passed its own clock). A day is far more than a replica's clock
 * can lag the database's and still work (Slack's and Teams' messages must be minutes from
 * its own time).
 */
const SWEEP_GRACE_MS = 86_400_000;

/** Every replica listens here; payloads say which store and schema they come from. */
const CHANNEL = "airlock_changes";
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
const NOTIFY_BYTES = 7900;
/** How long a found token is trusted before it is read again (revocations on other replicas). */
const TOKEN_TTL_MS = 1000;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;

/**
 * BIGINT (type 20) comes back as a JS number: times in ms, audit seqs and outbox ids all stay
 * far below 2^53. Set on this store's connections only, never `pg.types` globally, so other
 * users of `pg` in the process (the SQL connector) keep the driver's defaults.
 */
const INT8_OID = 20;
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * Opens the store, bringing the schema up to date first. Migrations run in one transaction
 * under an advisory lock, so replicas starting together migrate once and the rest wait.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresOptions = {},
): Promise<PostgresStore> {
  const where = describeUrl(url);
  const report = options.onError ?? (() => {});
  const base: pg.ClientConfig = {
    connectionString: url,
    types,
    // Fail closed in bounded time when the server does not answer at all.
    connectionTimeoutMillis: options.timeoutMs ?? 10_000,
  };
  const config: pg.ClientConfig = {
    ...base,
    // A connection that silently stops answering (a half-open TCP connection, a stalled
    // network) fails its statement after this long, so a batch holding row locks cannot hang
    // the replica, and keep-alives notice a dead peer within about half a minute.
    query_timeout: options.timeoutMs ?? 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // And if this process hangs mid-transaction, the server ends the session and its locks.
    idle_in_transaction_session_timeout: 60_000,
  };
  const pool = new pg.Pool({ ...config, max: options.poolSize ?? 10 });
  // Without a listener, an idle connection the server drops would end the process.
  pool.on("error", (error) => report(storeFailure("keep an idle connection", error)));
  // The schema, or why a store opened as it is cannot be used.
  let schema: string | AirlockError;
  // Migrations may take long on a large database: their connection has no statement timeout.
  const migrating = new pg.Pool({ ...base, max: 1 });
  migrating.on("error", () => {});
  // Its first reading of the database's clock is taken on the way in, so the store's time
  // is the database's from the start.
  const clock = new StoreClock();
  try {
    schema =
      options.migrate === false
        ? await migratedSchema(migrating, where, clock)
        : await migrate(migrating, clock);
  } catch (error) {
    await pool.end().catch(() => {});
    throw atOpen(where, error);
  } finally {
    await migrating.end().catch(() => {});
  }
  if (schema instanceof AirlockError) {
    await pool.end().catch(() => {});
    throw schema;
  }
  const store = new PostgresStore(
    pool,
    config,
    schema,
    report,
    clock,
    options.clockRefreshMs ?? 10_000,
  );
  try {
    await store.startListening();
  } catch (error) {
    await store.close();
    throw atOpen(where, unreachable("listen for changes", error));
  }
  return store;
}

/**
 * The schema `migrate` would make its tables in, changing nothing; or, when it lacks them or
 * some of this version's migrations, the refusal that says so.
 */
async function migratedSchema(
  pool: pg.Pool,
  where: string,
  clock: StoreClock,
): Promise<string | AirlockError> {
  const sent = performance.now();
  const { rows } = await pool.query(
    `SELECT current_schema() AS schema, EXISTS (SELECT 1 FROM pg_catalog.pg_tables
      WHERE schemaname = current_schema() AND tablename = 'schema_migrations') AS present,
      ${NOW_MS} AS now`,
  );
  clock.observe(Number(rows[0]?.now), sent, performance.now());
  const schema = rows[0]?.schema as string | null | undefined;
  const applied =
    schema && rows[0]?.present === true
      ? new Set(
          (
            await pool.query(`SELECT version FROM ${pg.escapeIdentifier(schema)}.schema_migrations`)
          ).rows.map((row) => row.version as number),
        )
      : undefined;
  const refusal = unmigrated(
    schema
      ? `in schema ${schema} of PostgreSQL at ${where}`
      : `in PostgreSQL at ${where} (no schema on its search_path exists, or the role may not use it)`,
    applied,
    postgresMigrations,
    "check storage: in the config: its database, user and search_path",
  );
  return refusal ?? (schema as string);
}

async function migrate(pool: pg.Pool, clock: StoreClock): Promise<string> {
  return withTransaction(
    pool,
    "migrate the schema",
    async (q) => {
      const schema = (await q("SELECT current_schema() AS schema")).rows[0]?.schema as
        | string
        | null
        | undefined;
      if (!schema) {
        throw new AirlockError(
          "store_unavailable",
          "the store (PostgreSQL) has no schema to create its tables in: none on the search_path exists, or the role may not use it; make the role own one (CREATE SCHEMA … AUTHORIZATION role), or GRANT USAGE, CREATE ON SCHEMA … TO the role",
        );
      }
      await q("SELECT pg_advisory_xact_lock($1::bigint)", [lockKey("migrate", schema)]);
      await q(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
      const applied = new Set(
        (await q("SELECT version FROM schema_migrations")).rows.map((row) => row.version as number),
      );
      const newer = newerSchema(`in schema ${schema}`, applied, postgresMigrations);
      if (newer) throw newer;
      for (const migration of postgresMigrations) {
        if (applied.has(migration.version)) continue;
        await q(migration.sql);
        await q("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [
          migration.version,
          migration.name,
          new Date().toISOString(),
        ]);
      }
      return schema;
    },
    clock,
  );
}

/**
 * An error while opening, with what the database said and where it is: for the operator
 * starting the gateway or a command, whatever the failure.
 */
function atOpen(where: string, error: unknown): AirlockError {
  const inner = unreachable("open", error);
  return new AirlockError("store_unavailable", `${inner.message} (PostgreSQL at ${where})`, {
    cause: error,
  });
}

/** Host, port and database, never the credentials, for operators reading a start-up error. */
function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return "the configured URL";
  }
}

/**
 * Replicas serialise through the database: request changes are group-committed (see
 * `GroupCommit`), locking their rows (`FOR UPDATE`) and appending to the audit chain under a
 * per-schema advisory lock taken last, and outbox items are claimed with `SKIP LOCKED`. New
 * requests that would wait for review are counted against their agent's limit under a
 * per-agent advisory lock taken first. Changes reach other replicas by NOTIFY, sent inside
 * the committing transaction so only committed changes are heard. This store's own
 * changes reach its listeners directly after commit (no wait on the server, and still
 * delivered while the LISTEN connection is down); the notifications it hears back carry its
 * own random origin id and are dropped, so each listener hears each change once.
 */
export class PostgresStore implements Store {
  readonly dialect = "postgres" as const;
  private readonly listeners = new Set<(change: RequestChange) => void>();
  private readonly missedListeners = new Set<() => void>();
  /** Set when the change feed drops; the feed's return tells `missedListeners`. */
  private feedWasLost = false;
  /** Per store, not per process: two stores in one process are two replicas to each other. */
  private readonly origin = randomUUID();
  private readonly auditLock: string;
  private readonly writer: GroupCommit;
  private readonly tokenCache = new Map<string, { token: TokenRecord; readAt: number }>();
  /** Moves at each token change here: a read that started before one is not cached. */
  private tokenGeneration = 0;
  private feed: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;
  private closing: Promise<void> | undefined;
  /** A reading of the database's clock on its way, asked for by `now`. */
  private readingClock = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    private readonly schema: string,
    private readonly report: (error: unknown) => void,
    private readonly clock: StoreClock,
    private readonly clockRefreshMs: number,
  ) {
    this.auditLock = lockKey("audit", schema);
    this.writer = new GroupCommit({
      pool,
      auditLock: this.auditLock,
      pendingLock: (agent) => lockKey(`pending ${JSON.stringify(agent)}`, schema),
      channel: CHANNEL,
      notifications: (changes) => this.notifications(changes),
      committed: (change) => this.emit(change),
      clock,
    });
  }

  /**
   * The database's clock, without a round trip: learned from the readings of it that every
   * transaction takes as it begins (see `StoreClock`), so that replicas whose own clocks
   * disagree judge alike. When none has for `clockRefreshMs`, one is taken in the
   * background, and this answer runs on from the last.
   */
  now(): number {
    if (performance.now() - this.clock.lastReading >= this.clockRefreshMs) this.readClock();
    return this.clock.now();
  }

  private readClock(): void {
    if (this.readingClock || this.closing) return;
    this.readingClock = true;
    const sent = performance.now();
    this.pool
      .query<Row>(`SELECT ${NOW_MS} AS now`)
      .then(({ rows }) => this.clock.observe(Number(rows[0]?.now), sent, performance.now()))
      // Unanswered, the time runs on from the last reading; the next ask tries again.
      .catch(() => {})
      .finally(() => {
        this.readingClock = false;
      });
  }

  async insertRequest(
    submit: (at: number | undefined) => Change,
    plan: OutboxPlanner,
    maxPending?: number,
  ): Promise<InsertResult> {
    this.assertOpen();
    return this.writer.insert(submit, plan, maxPending);
  }

  async transition<T>(
    id: string,
    decide: (current: ActionRequest, at: number | undefined) => TransitionResult<T>,
    plan: OutboxPlanner,
    known?: ActionRequest,
  ): Promise<T> {
    this.assertOpen();
    return this.writer.transition(id, decide, plan, known);
  }

  async getRequest(id: string): Promise<ActionRequest | undefined> {
    const rows = await this.query(`read request ${id}`, `${SELECT_REQUEST} WHERE r.id = $1`, [id]);
    return rows[0] ? toRequest(rows[0]) : undefined;
  }

  async findByIdempotencyKey(agent: string, key: string): Promise<ActionRequest | undefined> {
    const rows = await this.query(
      "look up an idempotency key",
      `${SELECT_REQUEST} WHERE r.agent = $1 AND r.idempotency_key = $2`,
      [agent, key],
    );
    return rows[0] ? toRequest(rows[0]) : undefined;
  }

  async listRequests(query: RequestQuery): Promise<ActionRequest[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    if (query.statuses && query.statuses.length > 0) {
      where.push(`r.status = ANY(${param(query.statuses)}::text[])`);
    }
    if (query.agent !== undefined) where.push(`r.agent = ${param(query.agent)}`);
    if (query.connection !== undefined) where.push(`r.connection = ${param(query.connection)}`);
    if (query.before !== undefined) where.push(`r.id < ${param(query.before)}`);
    const sql = `${SELECT_REQUEST} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY r.id DESC LIMIT ${param(query.limit)}`;
    return (await this.query("list requests", sql, params)).map(toRequest);
  }

  async countPending(agent: string, _now: number, limit: number): Promise<number> {
    const rows = await this.query(
      "count pending requests",
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM requests WHERE status = 'pending' AND agent = $1
      AND (expires_at IS NULL OR expires_at > ${NOW_MS}) LIMIT $2) AS pending`,
      [agent, limit],
    );
    return rows[0]?.n as number;
  }

  /** By the database's clock, as every replica's transitions judge expiry (`transition`'s `at`). */
  async expiredPending(_now: number, limit: number): Promise<string[]> {
    const rows = await this.query(
      "list expired requests",
      `SELECT id FROM requests WHERE status = 'pending' AND expires_at <= ${NOW_MS}
      ORDER BY expires_at LIMIT $1`,
      [limit],
    );
    return rows.map((row) => row.id as string);
  }

  async idsWithStatus(status: RequestStatus, limit: number): Promise<string[]> {
    const rows = await this.query(
      `list ${status} requests`,
      "SELECT id FROM requests WHERE status = $1 ORDER BY id LIMIT $2",
      [status, limit],
    );
    return rows.map((row) => row.id as string);
  }

  async touchExecuting(ids: readonly string[], _now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.query(
      "renew execution leases",
      // A row another transaction holds is waited for, not skipped: skipped while another
      // replica's lease check held it, the heartbeat looked stopped to that check once it
      // got the row. Rows are locked in id order, as group commits lock theirs, so waiting
      // closes no cycle with them. Stamped by the database's clock, as the rest of the row.
      `UPDATE requests SET updated_at = ${NOW_MS} WHERE id IN (SELECT id FROM requests
      WHERE id = ANY($1::text[]) AND status = 'executing' ORDER BY id FOR UPDATE)`,
      [[...ids]],
    );
  }

  async countByStatus(): Promise<Partial<Record<RequestStatus, number>>> {
    const rows = await this.query(
      "count requests",
      "SELECT status, count(*)::int AS n FROM requests GROUP BY status",
    );
    const out: Partial<Record<RequestStatus, number>> = {};
    for (const row of rows) out[row.status as RequestStatus] = row.n as number;
    return out;
  }

  async appendAudit(events: AuditEventInput[]): Promise<void> {
    this.assertOpen();
    if (events.length === 0) return;
    await this.audited("append to the audit trail", async () => ({ value: undefined, events }));
  }

  async listAudit(query: AuditQuery): Promise<AuditEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    if (query.afterSeq !== undefined) where.push(`seq > ${param(query.afterSeq)}`);
    if (query.since !== undefined) {
      where.push(`ts >= ${param(new Date(query.since).toISOString())}`);
    }
    if (query.until !== undefined) {
      where.push(`ts < ${param(new Date(query.until).toISOString())}`);
    }
    if (query.requestId !== undefined) where.push(`request_id = ${param(query.requestId)}`);
    if (query.type !== undefined) where.push(`type = ${param(query.type)}`);
    if (query.actor !== undefined) where.push(`actor_id = ${param(query.actor)}`);
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY seq LIMIT ${param(query.limit)}`;
    return (await this.query("read the audit trail", sql, params)).map(eventFromRow);
  }

  async lastAuditEvent(): Promise<{ seq: number; hash: string; type: string } | undefined> {
    const [row] = await this.query(
      "read the audit trail",
      "SELECT seq, hash, type FROM audit_events ORDER BY seq DESC LIMIT 1",
      [],
    );
    return row === undefined
      ? undefined
      : { seq: Number(row.seq), hash: String(row.hash), type: String(row.type) };
  }

  async *auditEvents(
    options: { since?: number; afterSeq?: number } = {},
  ): AsyncIterable<AuditEvent> {
    // From the first stored event, whatever its number: a forged one numbered 0 or less,
    // which GET /v1/audit lists, must reach the verifier too; and, without `since`, whatever
    // its time holds: a row whose ts does not compare as text is read all the same.
    // Paged from the last number read, past the rows of that number already read: a table made
    // again without its key can hold two events of one number, and paging on seq > last never
    // read one that a batch ended before (GET /v1/audit?requestId= listed it); read, it fails.
    // Rows with no number at all (NULL sorts last, where no page reaches) are read at the end.
    const onTime = options.since === undefined ? [] : [new Date(options.since).toISOString()];
    const resumed = options.afterSeq !== undefined;
    let after: number | undefined = options.afterSeq;
    let readAtAfter = 0;
    for (let batch = 0; ; batch++) {
      const where = [
        ...(onTime.length ? ["ts >= $1"] : []),
        after === undefined
          ? "seq IS NOT NULL"
          : `seq ${batch === 0 ? ">" : ">="} $${onTime.length + 1}`,
      ];
      const rows = await this.query(
        "read the audit trail",
        `SELECT * FROM audit_events WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ${readAtAfter + 1000}`,
        after === undefined ? onTime : [...onTime, after],
      );
      if (rows.length <= readAtAfter) break;
      for (const row of rows.slice(readAtAfter)) yield eventFromRow(row);
      const last = rows[rows.length - 1]!.seq as number;
      readAtAfter = rows.filter((row) => row.seq === last).length;
      after = last;
    }
    if (resumed) return;
    const unnumbered = await this.query(
      "read the audit trail",
      `SELECT * FROM audit_events WHERE ${onTime.length ? "ts >= $1 AND " : ""}seq IS NULL`,
      onTime,
    );
    for (const row of unnumbered) yield eventFromRow(row);
  }

  async insertToken(token: TokenRecord, event: AuditEventInput): Promise<void> {
    await this.audited("record a token", async (q) => {
      await q(
        `INSERT INTO tokens (id, kind, subject, hash, hint, created_at, revoked_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [
          token.id,
          token.kind,
          token.subject,
          token.hash,
          token.hint,
          token.createdAt,
          token.revokedAt,
        ],
      );
      return { value: undefined, events: [event] };
    });
    this.forgetTokens();
  }

  /**
   * Tokens are read on every request, so found ones are cached, each for one second: a
   * revocation here clears the cache at once; one made on another replica (or by the CLI)
   * is seen here within a second, when the entry is read again.
   */
  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    this.assertOpen();
    const now = performance.now();
    const cached = this.tokenCache.get(hash);
    if (cached && now - cached.readAt < TOKEN_TTL_MS) return cached.token;
    const generation = this.tokenGeneration;
    const rows = await this.query("read a token", "SELECT * FROM tokens WHERE hash = $1", [hash]);
    if (this.tokenCache.size >= 10_000) this.tokenCache.clear();
    if (!rows[0]) {
      this.tokenCache.delete(hash);
      return undefined;
    }
    const token = tokenFromRow(rows[0]);
    // A revocation here while this read was under way must not be undone by caching it.
    if (generation === this.tokenGeneration) this.tokenCache.set(hash, { token, readAt: now });
    return token;
  }

  private forgetTokens(): void {
    this.tokenGeneration++;
    this.tokenCache.clear();
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.query("list tokens", "SELECT * FROM tokens ORDER BY created_at, id")).map(
      tokenFromRow,
    );
  }

  async revokeToken(id: string, event: AuditEventInput): Promise<boolean> {
    const revoked = await this.audited("revoke a token", async (q) => {
      const result = await q(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        [event.at, id],
      );
      return result.rowCount === 1
        ? { value: true, events: [event] }
        : { value: false, events: [] };
    });
    // After commit: a read racing the revocation cannot leave the old record cached.
    this.forgetTokens();
    return revoked;
  }

  /** `SKIP LOCKED`: replicas claiming at once each take different items, none waits. */
  async claimOutbox(
    _now: number,
    leaseMs: number,
    limit: number,
    topics: readonly string[],
  ): Promise<OutboxItem[]> {
    const rows = await this.query(
      "claim outbox items",
      // One request's entries for one channel go in order, across replicas: an entry waits
      // while an earlier one is due, leased or being retried (one scheduled for later does
      // not hold it). An earlier one locked by another replica's claim counts as due. One
      // written due at once holds whatever its time says: written by a replica from before
      // due times were the database's, it is stamped by that replica's clock, and may not
      // yet look due while the entry after it does.
      // Due and leased by the database's clock, not this replica's: one whose clock runs
      // ahead would take over a delivery still under way, and make it twice.
      `UPDATE outbox SET lease_until = ${NOW_MS} + $1, attempts = attempts + 1
      WHERE id IN (SELECT o.id FROM outbox o WHERE o.state = 'pending'
        AND o.available_at <= ${NOW_MS}
        AND (o.lease_until IS NULL OR o.lease_until <= ${NOW_MS}) AND o.topic = ANY($3::text[])
        AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.request_id = o.request_id
          AND e.topic = o.topic AND e.id < o.id AND e.state = 'pending'
          AND (e.attempts > 0 OR e.available_at <= ${NOW_MS} OR e.available_at <= e.created_at))
        ORDER BY o.id LIMIT $2 FOR UPDATE SKIP LOCKED)
      RETURNING id, topic, request_id, payload, attempts, created_at`,
      [leaseMs, limit, topics],
    );
    const { items, unreadable } = claimedOutbox(rows);
    if (unreadable.length > 0) {
      // The rest are claimed and must be handed out: should this fail too, the unreadable
      // come round again once their lease runs out.
      await this.query(
        "give up unreadable outbox items",
        "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = $1 WHERE id = ANY($2::bigint[])",
        [UNREADABLE_PAYLOAD, unreadable],
      ).catch((error) => this.report(error));
    }
    return items.sort((a, b) => a.id - b.id);
  }

  async pruneRequests(
    finishedBefore: number,
    limit: number,
    audit: (count: number, first: string, last: string) => AuditEventInput,
  ): Promise<number> {
    return this.audited("prune finished requests", async (q) => {
      // Rows another replica is pruning (or anything else holds) are left to it.
      const ids = (
        await q(
          // One whose notifications are still to be delivered waits for them (or their dead letter).
          `SELECT id FROM requests r WHERE finished_at < $1
          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.request_id = r.id AND o.state = 'pending')
          ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
          [finishedBefore, limit],
        )
      ).rows.map((row) => String(row.id));
      if (ids.length === 0) return { value: 0, events: [] };
      for (const table of ["reviews", "channel_refs", "outbox"]) {
        await q(`DELETE FROM ${table} WHERE request_id = ANY($1::text[])`, [ids]);
      }
      await q("DELETE FROM requests WHERE id = ANY($1::text[])", [ids]);
      return { value: ids.length, events: [audit(ids.length, ids[0]!, ids.at(-1)!)] };
    });
  }

  async takeRateToken(key: string, burst: number, perSecond: number): Promise<number | undefined> {
    // The database's clock, so that replicas whose clocks differ fill one bucket alike.
    const refill = `LEAST($2::float8, b.tokens
      + GREATEST(0, excluded.at_ms - b.at_ms) / 1000.0 * $3::float8)`;
    const taken = await this.query(
      "take a rate-limit token",
      `INSERT INTO rate_buckets AS b (key, tokens, at_ms)
      SELECT $1, $2::float8 - 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
      ON CONFLICT (key) DO UPDATE SET tokens = ${refill} - 1,
        at_ms = GREATEST(b.at_ms, excluded.at_ms)
      WHERE ${refill} >= 1
      RETURNING tokens`,
      [key, burst, perSecond],
    );
    if (taken.length === 1) return undefined;
    const [left] = await this.query(
      "read a rate-limit bucket",
      `SELECT LEAST($2::float8, tokens + GREATEST(0,
        (extract(epoch FROM clock_timestamp()) * 1000)::bigint - at_ms) / 1000.0 * $3::float8)
        AS tokens FROM rate_buckets WHERE key = $1`,
      [key, burst, perSecond],
    );
    const tokens = Number(left?.tokens ?? 0);
    return Math.max(1, Math.ceil((1 - tokens) / perSecond));
  }

  async listOutbox(query: {
    state: "pending" | "dead";
    after?: number;
    limit: number;
  }): Promise<OutboxRecord[]> {
    const rows = await this.query(
      "list the outbox",
      `SELECT id, topic, request_id, payload, state, attempts, available_at, last_error,
      created_at FROM outbox WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3`,
      [query.state, query.after ?? 0, query.limit],
    );
    return rows.map(outboxFromRow);
  }

  async redeliverOutbox(selection: { ids?: readonly number[]; topic?: string }): Promise<number> {
    const rows = await this.query(
      "deliver dead letters again",
      `UPDATE outbox SET state = 'pending', attempts = 0, available_at = created_at,
      lease_until = NULL WHERE state = 'dead' AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
      AND ($2::text IS NULL OR topic = $2) RETURNING id`,
      [selection.ids ? [...selection.ids] : null, selection.topic ?? null],
    );
    return rows.length;
  }

  async countOutbox(): Promise<{ pending: number; dead: number }> {
    const rows = await this.query(
      "count the outbox",
      "SELECT state, count(*)::int AS n FROM outbox GROUP BY state",
    );
    const out = { pending: 0, dead: 0 };
    for (const row of rows) {
      if (row.state === "pending" || row.state === "dead") out[row.state] = row.n as number;
    }
    return out;
  }

  async abandonOutbox(
    _now: number,
    unclaimedMs: number,
    topics: readonly string[],
    error: string,
  ): Promise<number> {
    const rows = await this.query(
      "give up on outbox items nobody can deliver",
      `WITH t AS (SELECT ${NOW_MS} - $1::bigint AS before)
      UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = $3 FROM t
      WHERE state = 'pending' AND available_at < t.before
        AND (lease_until IS NULL OR lease_until < t.before)
        AND NOT (topic = ANY($2::text[]))
        AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.request_id = outbox.request_id
          AND e.topic = outbox.topic AND e.id < outbox.id AND e.state = 'pending')
      RETURNING id`,
      [unclaimedMs, topics, error],
    );
    return rows.length;
  }

  async completeOutbox(id: number): Promise<void> {
    await this.query("complete an outbox item", "DELETE FROM outbox WHERE id = $1", [id]);
  }

  async failOutbox(
    _now: number,
    id: number,
    error: string,
    retryInMs: number | null,
  ): Promise<void> {
    if (retryInMs === null) {
      await this.query(
        "give up an outbox item",
        "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = $1 WHERE id = $2",
        [error, id],
      );
    } else {
      await this.query(
        "reschedule an outbox item",
        `UPDATE outbox SET available_at = ${NOW_MS} + $1, lease_until = NULL, last_error = $2
        WHERE id = $3`,
        [retryInMs, error, id],
      );
    }
  }

  async getChannelRef(requestId: string, channel: string): Promise<string | undefined> {
    const rows = await this.query(
      "read a channel reference",
      "SELECT ref FROM channel_refs WHERE request_id = $1 AND channel = $2",
      [requestId, channel],
    );
    return rows[0]?.ref as string | undefined;
  }

  async setChannelRef(requestId: string, channel: string, ref: string): Promise<void> {
    await this.query(
      "record a channel reference",
      `INSERT INTO channel_refs (request_id, channel, ref) VALUES ($1, $2, $3)
      ON CONFLICT (request_id, channel) DO UPDATE SET ref = excluded.ref`,
      [requestId, channel, ref],
    );
  }

  async insertSession(
    session: SessionRecord,
    event: AuditEventInput,
    replaces?: string | undefined,
  ): Promise<void> {
    await this.audited("record a session", async (q) => {
      // A day past by the database's clock (see SWEEP_GRACE_MS), not by this replica's.
      await q(`DELETE FROM sessions WHERE expires_at <= ${NOW_MS} - $1 OR id_hash = $2`, [
        SWEEP_GRACE_MS,
        replaces ?? null,
      ]);
      await q(
        `INSERT INTO sessions (id_hash, email, issuer, subject, groups, auth_time, acr,
        created_at, expires_at, refresh_token, checked_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          session.idHash,
          session.email,
          session.issuer,
          session.subject,
          JSON.stringify(session.groups),
          session.authTime,
          session.acr,
          session.createdAt,
          session.expiresAt,
          session.refreshToken,
          session.checkedAt,
        ],
      );
      return { value: undefined, events: [event] };
    });
  }

  async findSession(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const row = (
      await this.query(
        "read a session",
        "SELECT * FROM sessions WHERE id_hash = $1 AND expires_at > $2",
        [idHash, now],
      )
    )[0];
    return row && sessionFromRow(row);
  }

  async deleteSession(idHash: string, event: AuditEventInput | undefined): Promise<boolean> {
    return this.audited("end a session", async (q) => {
      const deleted = (await q("DELETE FROM sessions WHERE id_hash = $1", [idHash])).rowCount === 1;
      return { value: deleted, events: deleted && event ? [event] : [] };
    });
  }

  async claimSessionCheck(
    idHash: string,
    now: number,
    leaseMs: number,
    refreshToken: string,
  ): Promise<boolean> {
    const rows = await this.query(
      "claim a session's check",
      // Held by the database's clock: a replica whose clock runs ahead would otherwise take a
      // check still under way, and spend a refresh token the provider takes only once.
      `UPDATE sessions SET checking_until = ${NOW_MS} + $3 WHERE id_hash = $1 AND expires_at > $2
      AND refresh_token = $4 AND (checking_until IS NULL OR checking_until <= ${NOW_MS})
      RETURNING id_hash`,
      [idHash, now, leaseMs, refreshToken],
    );
    return rows.length === 1;
  }

  async releaseSessionCheck(idHash: string): Promise<void> {
    await this.query(
      "release a session's check",
      "UPDATE sessions SET checking_until = NULL WHERE id_hash = $1",
      [idHash],
    );
  }

  async recordSessionCheck(
    idHash: string,
    check: SessionCheck,
    event: AuditEventInput | undefined,
  ): Promise<boolean> {
    return this.audited("record a session's check", async (q) => {
      const recorded =
        (
          await q(
            `UPDATE sessions SET groups = $2, refresh_token = $3, checked_at = $4,
            checking_until = NULL WHERE id_hash = $1`,
            [idHash, JSON.stringify(check.groups), check.refreshToken, check.checkedAt],
          )
        ).rowCount === 1;
      return { value: recorded, events: recorded && event ? [event] : [] };
    });
  }

  async insertSignIn(signIn: SignInRecord, _now: number): Promise<void> {
    await this.query(
      "record a sign-in",
      // A day past by the database's clock (see SWEEP_GRACE_MS), not by this replica's.
      `WITH expired AS (DELETE FROM sign_ins WHERE expires_at <= ${NOW_MS} - $7)
      INSERT INTO sign_ins (state_hash, verifier, nonce, return_to, step_up, expires_at)
      VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        signIn.stateHash,
        signIn.verifier,
        signIn.nonce,
        signIn.returnTo,
        signIn.stepUp,
        signIn.expiresAt,
        SWEEP_GRACE_MS,
      ],
    );
  }

  /** DELETE … RETURNING: of two replicas completing the same sign-in, one gets it. */
  async takeSignIn(stateHash: string, now: number): Promise<SignInRecord | undefined> {
    const row = (
      await this.query(
        "complete a sign-in",
        "DELETE FROM sign_ins WHERE state_hash = $1 RETURNING *",
        [stateHash],
      )
    )[0];
    if (!row || (row.expires_at as number) <= now) return undefined;
    return {
      stateHash: row.state_hash as string,
      verifier: row.verifier as string,
      nonce: row.nonce as string,
      returnTo: row.return_to as string,
      stepUp: row.step_up === true,
      expiresAt: row.expires_at as number,
    };
  }

  /**
   * An expired key (by `now`, the clock that judged the message's time) is taken over in
   * place. Claims a day past by the database's clock are swept on the way (SWEEP_GRACE_MS):
   * by the caller's, a replica whose clock runs ahead would sweep claims that the others
   * still accept messages for, and a replay to them would pass.
   */
  async claimOnce(key: string, expiresAt: number, now: number): Promise<boolean> {
    const rows = await this.query(
      "record a message as seen",
      // The sweep skips rows others hold, so two replicas claiming at once never wait in a cycle.
      `WITH swept AS (DELETE FROM replay_guard WHERE key IN (SELECT key FROM replay_guard
        WHERE expires_at <= ${NOW_MS} - $4 AND key <> $1 LIMIT 100 FOR UPDATE SKIP LOCKED))
      INSERT INTO replay_guard (key, expires_at) VALUES ($1, $2)
      ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
      WHERE replay_guard.expires_at <= $3 RETURNING key`,
      [key, expiresAt, now, SWEEP_GRACE_MS],
    );
    return rows.length === 1;
  }

  async holdMcpCall(call: string, requestId: string, ttlMs: number): Promise<boolean> {
    const rows = await this.query(
      "record an MCP call's request",
      `${SWEEP_MCP_CALLS} INSERT INTO mcp_calls (call_key, request_id, cancelled, expires_at)
      VALUES ($1, $2, FALSE, ${NOW_MS} + $3)
      ON CONFLICT (call_key) DO UPDATE SET request_id = excluded.request_id,
        expires_at = excluded.expires_at,
        cancelled = mcp_calls.cancelled AND mcp_calls.expires_at > ${NOW_MS}
      WHERE mcp_calls.request_id IS NULL OR mcp_calls.expires_at <= ${NOW_MS}
      RETURNING cancelled`,
      [call, requestId, ttlMs],
    );
    return rows[0]?.cancelled === true;
  }

  async cancelMcpCall(call: string, ttlMs: number): Promise<string | undefined> {
    const rows = await this.query(
      "record an MCP call's cancel",
      `${SWEEP_MCP_CALLS} INSERT INTO mcp_calls (call_key, request_id, cancelled, expires_at)
      VALUES ($1, NULL, TRUE, ${NOW_MS} + $2)
      ON CONFLICT (call_key) DO UPDATE SET cancelled = TRUE,
        request_id = CASE WHEN mcp_calls.expires_at > ${NOW_MS} THEN mcp_calls.request_id END,
        expires_at = GREATEST(mcp_calls.expires_at, excluded.expires_at)
      RETURNING request_id`,
      [call, ttlMs],
    );
    return (rows[0]?.request_id as string | null | undefined) ?? undefined;
  }

  async releaseMcpCall(call: string, requestId: string): Promise<void> {
    await this.query(
      "forget an answered MCP call",
      "DELETE FROM mcp_calls WHERE call_key = $1 AND request_id = $2",
      [call, requestId],
    );
  }

  async mcpCallCancelled(call: string): Promise<boolean> {
    const rows = await this.query(
      "look up an MCP call's cancel",
      `SELECT 1 FROM mcp_calls WHERE call_key = $1 AND cancelled AND expires_at > ${NOW_MS}`,
      [call],
    );
    return rows.length > 0;
  }

  subscribe(listener: (change: RequestChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async ping(): Promise<void> {
    await this.query("answer a ping", "SELECT 1");
  }

  /** Waits for transactions under way, then ends every connection. Safe to call again. */
  async close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // Changes already asked for are written (and heard) before the connections end.
    await this.writer.drained();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const feed = this.feed;
    this.feed = undefined;
    this.listeners.clear();
    this.missedListeners.clear();
    await Promise.allSettled([feed?.end(), this.pool.end()]);
  }

  /**
   * Connects the change feed: one connection of its own, outside the pool, that LISTENs.
   * When it drops, it is connected again with backoff. Changes committed meanwhile are not
   * replayed: once the feed is back, `onMissedChanges` listeners read again what they follow.
   */
  async startListening(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    let live = false;
    const lost = (error?: unknown) => {
      // Before it is live, connect() reports failures; after close(), ending is expected.
      if (!live || this.closing) return;
      live = false;
      this.feedWasLost = true;
      if (this.feed === client) this.feed = undefined;
      this.report(
        storeFailure("keep listening for changes", error ?? new Error("connection ended")),
      );
      client.end().catch(() => {});
      this.scheduleListening();
    };
    client.on("error", (error) => lost(error));
    client.on("end", () => lost());
    client.on("notification", (message) => this.notified(message));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    if (this.closing) {
      await client.end().catch(() => {});
      return;
    }
    live = true;
    this.feed = client;
    this.reconnectDelay = RECONNECT_MIN_MS;
    if (this.feedWasLost) {
      this.feedWasLost = false;
      for (const listener of this.missedListeners) listener();
    }
  }

  onMissedChanges(listener: () => void): () => void {
    this.missedListeners.add(listener);
    return () => this.missedListeners.delete(listener);
  }

  private scheduleListening(): void {
    if (this.closing || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.startListening().catch((error) => {
        this.report(storeFailure("listen for changes again", error));
        this.scheduleListening();
      });
    }, delay);
    // The feed alone must not keep a process alive that has nothing else to do.
    this.reconnectTimer.unref();
  }

  /**
   * A batch's changes in as few notifications as fit PostgreSQL's 8000-byte payload limit:
   * `changes` holds `[id, status, version]` triples.
   */
  private notifications(changes: RequestChange[]): string[] {
    const head = `{"origin":${JSON.stringify(this.origin)},"schema":${JSON.stringify(this.schema)},"changes":[`;
    const payloads: string[] = [];
    let body = "";
    let bytes = Buffer.byteLength(head) + 2;
    for (const { id, status, version } of changes) {
      const item = JSON.stringify([id, status, version]);
      const size = Buffer.byteLength(item) + 1;
      if (body && bytes + size > NOTIFY_BYTES) {
        payloads.push(`${head}${body}]}`);
        body = "";
        bytes = Buffer.byteLength(head) + 2;
      }
      body += body ? `,${item}` : item;
      bytes += size;
    }
    if (body) payloads.push(`${head}${body}]}`);
    return payloads;
  }

  /** Also reads the one-change payloads of replicas from before batching, during an upgrade. */
  private notified(message: pg.Notification): void {
    if (message.channel !== CHANNEL || !message.payload) return;
    let payload: Row;
    try {
      payload = JSON.parse(message.payload) as Row;
    } catch {
      return;
    }
    if (payload.origin === this.origin || payload.schema !== this.schema) return;
    const changes = Array.isArray(payload.changes)
      ? (payload.changes as unknown[])
      : [[payload.id, payload.status, payload.version]];
    for (const change of changes) {
      if (!Array.isArray(change)) continue;
      const [id, status, version] = change as unknown[];
      if (typeof id !== "string" || typeof status !== "string" || typeof version !== "number") {
        continue;
      }
      this.emit({ id, status: status as RequestStatus, version });
    }
  }

  /** A listener's failure is reported, never turned into a failure of what already committed. */
  private emit(change: RequestChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new AirlockError("store_unavailable", "the store is closed");
  }

  /** A transaction whose audit events are appended as it commits (`withAuditedTransaction`). */
  private async audited<T>(what: string, work: (q: Query) => Promise<Appended<T>>): Promise<T> {
    this.assertOpen();
    return withAuditedTransaction(this.pool, this.auditLock, what, work, this.clock);
  }

  /**
   * One statement on any pooled connection, in a transaction of its own: run again, a few
   * times, when it lost a conflict with another transaction (see `withTransaction`).
   */
  private async query(what: string, sql: string, params?: unknown[]): Promise<Row[]> {
    this.assertOpen();
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.pool.query<Row>(sql, params)).rows;
      } catch (error) {
        if (attempt >= CONFLICT_ATTEMPTS || !lostConflict(error)) throw storeFailure(what, error);
      }
      await conflictPause(attempt);
    }
  }
}
