/** The shared store: PostgreSQL, for any number of gateway replicas on one database. */
import { createHash, randomUUID } from "node:crypto";
import pg from "pg";
import { type AuditEvent, chainEvents } from "../../audit/audit-chain.js";
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
  OutboxEntry,
  OutboxItem,
  OutboxPlanner,
  RequestChange,
  RequestQuery,
  SessionRecord,
  SignInRecord,
  Store,
  TokenRecord,
} from "../store.js";
import {
  eventFromRow,
  type Row,
  requestFromRow,
  reviewFromRow,
  sessionFromRow,
  tokenFromRow,
} from "../store-rows.js";
import { postgresMigrations } from "./postgres-migrations.js";

type Query = (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Row>>;

export interface PostgresOptions {
  /** Connections in the pool (default 10); the change feed holds one more of its own. */
  poolSize?: number;
  /** Hears about failures nobody is waiting for: dropped idle connections, the change feed. */
  onError?: (error: unknown) => void;
}

/** Every replica listens here; payloads say which store and schema they come from. */
const CHANNEL = "airlock_changes";
/** Rows per INSERT, well below PostgreSQL's 65,535 parameters per statement. */
const INSERT_BATCH = 1000;
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
  const config: pg.ClientConfig = {
    connectionString: url,
    types,
    keepAlive: true,
    // Fail closed in bounded time when the server does not answer at all.
    connectionTimeoutMillis: 10_000,
  };
  const pool = new pg.Pool({ ...config, max: options.poolSize ?? 10 });
  // Without a listener, an idle connection the server drops would end the process.
  pool.on("error", (error) => report(unavailable("keep an idle connection", error)));
  let schema: string;
  try {
    schema = await migrate(pool);
  } catch (error) {
    await pool.end().catch(() => {});
    throw atOpen(where, error);
  }
  const store = new PostgresStore(pool, config, schema, report);
  try {
    await store.startListening();
  } catch (error) {
    await store.close();
    throw atOpen(where, unavailable("listen for changes", error));
  }
  return store;
}

async function migrate(pool: pg.Pool): Promise<string> {
  return withTransaction(pool, "migrate the schema", async (q) => {
    const schema = (await q("SELECT current_schema() AS schema")).rows[0]?.schema as
      | string
      | null
      | undefined;
    if (!schema) {
      throw new AirlockError(
        "store_unavailable",
        "the store (PostgreSQL) has no schema to create its tables in: none on the search_path exists",
      );
    }
    await q("SELECT pg_advisory_xact_lock($1::bigint)", [lockKey("migrate", schema)]);
    await q(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
    const applied = new Set(
      (await q("SELECT version FROM schema_migrations")).rows.map((row) => row.version as number),
    );
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
  });
}

/**
 * Runs `work` in one transaction on one pooled connection. Driver failures become
 * `store_unavailable` at each statement; anything else `work` throws (a refusal from a pure
 * transition) rolls back and passes through unchanged.
 */
async function withTransaction<T>(
  pool: pg.Pool,
  what: string,
  work: (q: Query) => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw unavailable(what, error);
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
      throw unavailable(what, error);
    }
  };
  let broken = false;
  try {
    await q("BEGIN");
    const value = await work(q);
    await q("COMMIT");
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

/** A driver failure as `store_unavailable`: the database is unreachable or failing. */
function unavailable(what: string, error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  return new AirlockError(
    "store_unavailable",
    `the store (PostgreSQL) could not ${what}: ${describeError(error)}; try again once the database answers`,
    { cause: error },
  );
}

/** An error while opening, with where the database is (for operators, not callers). */
function atOpen(where: string, error: unknown): AirlockError {
  const inner = unavailable("open", error);
  return new AirlockError("store_unavailable", `${inner.message} (PostgreSQL at ${where})`, {
    cause: error,
  });
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
 * Advisory lock keys are database-wide; deriving them from the schema lets two Airlock
 * installations (or test files) in one database work without waiting on each other.
 */
function lockKey(purpose: string, schema: string): string {
  return createHash("sha256")
    .update(`airlock ${purpose} ${schema}`)
    .digest()
    .readBigInt64BE(0)
    .toString();
}

/** A request row with its reviews, read in one statement so both come from one snapshot. */
const SELECT_REQUEST = `SELECT r.*, (SELECT coalesce(json_agg(v ORDER BY v.created_at, v.id), '[]')::text
  FROM reviews v WHERE v.request_id = r.id) AS reviews_json FROM requests r`;

/**
 * Replicas serialise through the database: a transition locks its request row (`FOR
 * UPDATE`), appends to the audit chain under a per-schema advisory lock taken last, and
 * outbox items are claimed with `SKIP LOCKED`. Changes reach other replicas by NOTIFY, sent
 * inside the committing transaction so only committed changes are heard. This store's own
 * changes reach its listeners directly after commit (no wait on the server, and still
 * delivered while the LISTEN connection is down); the notifications it hears back carry its
 * own random origin id and are dropped, so each listener hears each change once.
 */
export class PostgresStore implements Store {
  readonly dialect = "postgres" as const;
  private readonly listeners = new Set<(change: RequestChange) => void>();
  /** Per store, not per process: two stores in one process are two replicas to each other. */
  private readonly origin = randomUUID();
  private readonly auditLock: string;
  private readonly tokenCache = new Map<string, { token: TokenRecord; readAt: number }>();
  private feed: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    private readonly schema: string,
    private readonly report: (error: unknown) => void,
  ) {
    // A whole-number literal we computed, so it can be inlined (see appendEvents).
    this.auditLock = lockKey("audit", schema);
  }

  async insertRequest(
    change: Change,
    outbox: OutboxEntry[],
  ): Promise<{ inserted: true } | { inserted: false; existing: ActionRequest }> {
    const request = change.request;
    const existing = await this.transaction(`record request ${request.id}`, async (q) => {
      // A concurrent insert with the same key makes this wait for it; once it commits, this
      // one writes nothing and reads the winner.
      const inserted = await q(
        `INSERT INTO requests (id, agent, agent_snapshot, connection, connection_type, operation,
        input, justification, context, idempotency_key, hash, nonce, status, decision, description,
        outcome, created_at, updated_at, expires_at, finished_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $19, $20, $21)
        ON CONFLICT (agent, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`,
        requestParams(request),
      );
      if (inserted.rowCount === 0) {
        const row = (
          await q(`${SELECT_REQUEST} WHERE r.agent = $1 AND r.idempotency_key = $2`, [
            request.agent.name,
            request.idempotencyKey,
          ])
        ).rows[0];
        if (!row) throw new Error(`request ${request.id} conflicted with no visible request`);
        return toRequest(row);
      }
      await this.writeChange(q, change, outbox);
      return undefined;
    });
    if (existing) return { inserted: false, existing };
    this.emit({ id: request.id, status: request.status, version: request.version });
    return { inserted: true };
  }

  async transition<T>(
    id: string,
    decide: (current: ActionRequest) => TransitionResult<T>,
    plan: OutboxPlanner,
    known?: ActionRequest,
  ): Promise<T> {
    const result = await this.transaction(`change request ${id}`, async (q) => {
      // Lock first, read after: a statement that waited for the lock still reads with the
      // snapshot it started with, which would miss the review the previous holder added.
      const locked = (await q("SELECT version FROM requests WHERE id = $1 FOR UPDATE", [id]))
        .rows[0];
      if (!locked) throw new AirlockError("not_found", `no request ${id}`);
      let current: ActionRequest;
      if (known !== undefined && known.id === id && known.version === locked.version) {
        current = known;
      } else {
        const row = (await q(`${SELECT_REQUEST} WHERE r.id = $1`, [id])).rows[0];
        if (!row) throw new AirlockError("not_found", `no request ${id}`);
        current = toRequest(row);
      }
      const verdict = decide(current);
      if (verdict.change) {
        const next = verdict.change.request;
        const updated = await q(
          `UPDATE requests SET status = $1, outcome = $2, updated_at = $3, expires_at = $4,
          finished_at = $5, version = $6 WHERE id = $7 AND version = $8`,
          [
            next.status,
            next.outcome === null ? null : JSON.stringify(next.outcome),
            next.updatedAt,
            next.expiresAt,
            next.finishedAt,
            next.version,
            id,
            current.version,
          ],
        );
        if (updated.rowCount !== 1) {
          throw new Error(`request ${id} changed underneath a transition`);
        }
        const review = verdict.change.review;
        if (review) {
          await q(
            `INSERT INTO reviews (id, request_id, reviewer, decision, comment, request_hash,
            evidence, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
            [
              review.id,
              review.requestId,
              review.reviewer,
              review.decision,
              review.comment,
              review.requestHash,
              JSON.stringify(review.evidence),
              review.createdAt,
            ],
          );
        }
        await this.writeChange(q, verdict.change, plan(verdict.change));
      }
      return verdict;
    });
    if (result.change) {
      const next = result.change.request;
      this.emit({ id: next.id, status: next.status, version: next.version });
    }
    if (result.error) throw result.error;
    return result.value;
  }

  /** Outbox entries, the notification, and last the audit events, so their lock is brief. */
  private async writeChange(q: Query, change: Change, outbox: OutboxEntry[]): Promise<void> {
    const now = change.request.updatedAt;
    await insertRows(
      q,
      "outbox",
      ["topic", "request_id", "payload", "available_at", "created_at"],
      outbox.map((entry) => [
        entry.topic,
        entry.requestId,
        JSON.stringify(entry.payload),
        entry.availableAt ?? now,
        now,
      ]),
    );
    const { id, status, version } = change.request;
    // Delivered by the server only if and when this transaction commits.
    await q("SELECT pg_notify($1, $2)", [
      CHANNEL,
      JSON.stringify({ origin: this.origin, schema: this.schema, id, status, version }),
    ]);
    await this.appendEvents(q, change.events);
  }

  /**
   * One chain across all replicas: appends take a transaction-scoped advisory lock, then
   * read the head. The lock and the head travel in one simple-protocol message, whose
   * statements each take a fresh snapshot, so the head read after the lock is granted
   * includes the previous holder's commit, and the lock is held one round trip less.
   */
  private async appendEvents(q: Query, events: AuditEventInput[]): Promise<void> {
    if (events.length === 0) return;
    const results = (await q(
      `SELECT pg_advisory_xact_lock(${this.auditLock});
      SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`,
    )) as unknown as pg.QueryResult<Row>[];
    const head = results[1]?.rows[0];
    const chained = chainEvents(
      head ? { seq: head.seq as number, hash: head.hash as string } : undefined,
      events.map((e) => ({
        ts: new Date(e.at).toISOString(),
        type: e.type,
        requestId: e.requestId,
        actor: e.actor,
        data: e.data,
      })),
    );
    await insertRows(
      q,
      "audit_events",
      ["seq", "ts", "type", "request_id", "actor_type", "actor_id", "data", "prev_hash", "hash"],
      chained.map((event) => [
        event.seq,
        event.ts,
        event.type,
        event.requestId,
        event.actor.type,
        event.actor.id,
        event.dataJson,
        event.prevHash,
        event.hash,
      ]),
    );
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

  async expiredPending(now: number, limit: number): Promise<string[]> {
    const rows = await this.query(
      "list expired requests",
      `SELECT id FROM requests WHERE status = 'pending' AND expires_at <= $1
      ORDER BY expires_at LIMIT $2`,
      [now, limit],
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

  async touchExecuting(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.query(
      "renew execution leases",
      "UPDATE requests SET updated_at = $1 WHERE id = ANY($2::text[]) AND status = 'executing'",
      [now, [...ids]],
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
    await this.transaction("append to the audit trail", (q) => this.appendEvents(q, events));
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

  async *auditEvents(options: { since?: number } = {}): AsyncIterable<AuditEvent> {
    const since = options.since === undefined ? "" : new Date(options.since).toISOString();
    let after = 0;
    for (;;) {
      const rows = await this.query(
        "read the audit trail",
        "SELECT * FROM audit_events WHERE seq > $1 AND ts >= $2 ORDER BY seq LIMIT 1000",
        [after, since],
      );
      if (rows.length === 0) return;
      for (const row of rows) yield eventFromRow(row);
      after = rows[rows.length - 1]!.seq as number;
    }
  }

  async insertToken(token: TokenRecord, event: AuditEventInput): Promise<void> {
    await this.transaction("record a token", async (q) => {
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
      await this.appendEvents(q, [event]);
    });
    this.tokenCache.clear();
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
    const rows = await this.query("read a token", "SELECT * FROM tokens WHERE hash = $1", [hash]);
    if (this.tokenCache.size >= 10_000) this.tokenCache.clear();
    if (!rows[0]) {
      this.tokenCache.delete(hash);
      return undefined;
    }
    const token = tokenFromRow(rows[0]);
    this.tokenCache.set(hash, { token, readAt: now });
    return token;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.query("list tokens", "SELECT * FROM tokens ORDER BY created_at, id")).map(
      tokenFromRow,
    );
  }

  async revokeToken(id: string, event: AuditEventInput): Promise<boolean> {
    const revoked = await this.transaction("revoke a token", async (q) => {
      const result = await q(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        [event.at, id],
      );
      if (result.rowCount !== 1) return false;
      await this.appendEvents(q, [event]);
      return true;
    });
    // After commit: a read racing the revocation cannot leave the old record cached.
    this.tokenCache.clear();
    return revoked;
  }

  /** `SKIP LOCKED`: replicas claiming at once each take different items, none waits. */
  async claimOutbox(now: number, leaseMs: number, limit: number): Promise<OutboxItem[]> {
    const rows = await this.query(
      "claim outbox items",
      `UPDATE outbox SET lease_until = $1, attempts = attempts + 1
      WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND available_at <= $2
        AND (lease_until IS NULL OR lease_until <= $2) ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
      RETURNING id, topic, request_id, payload, attempts, created_at`,
      [now + leaseMs, now, limit],
    );
    return rows
      .map((row) => ({
        id: row.id as number,
        topic: row.topic as string,
        requestId: row.request_id as string | null,
        payload: JSON.parse(row.payload as string) as Record<string, unknown>,
        attempts: row.attempts as number,
        createdAt: row.created_at as number,
      }))
      .sort((a, b) => a.id - b.id);
  }

  async completeOutbox(id: number): Promise<void> {
    await this.query(
      "complete an outbox item",
      "UPDATE outbox SET state = 'done', lease_until = NULL WHERE id = $1",
      [id],
    );
  }

  async failOutbox(id: number, error: string, retryAt: number | null): Promise<void> {
    if (retryAt === null) {
      await this.query(
        "give up an outbox item",
        "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = $1 WHERE id = $2",
        [error, id],
      );
    } else {
      await this.query(
        "reschedule an outbox item",
        "UPDATE outbox SET available_at = $1, lease_until = NULL, last_error = $2 WHERE id = $3",
        [retryAt, error, id],
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

  async insertSession(session: SessionRecord, event: AuditEventInput): Promise<void> {
    await this.transaction("record a session", async (q) => {
      await q("DELETE FROM sessions WHERE expires_at <= $1", [session.createdAt]);
      await q(
        `INSERT INTO sessions (id_hash, email, issuer, subject, groups, auth_time, acr,
        created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
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
        ],
      );
      await this.appendEvents(q, [event]);
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
    return this.transaction("end a session", async (q) => {
      const deleted = (await q("DELETE FROM sessions WHERE id_hash = $1", [idHash])).rowCount === 1;
      if (deleted && event) await this.appendEvents(q, [event]);
      return deleted;
    });
  }

  async insertSignIn(signIn: SignInRecord, now: number): Promise<void> {
    await this.query(
      "record a sign-in",
      `WITH expired AS (DELETE FROM sign_ins WHERE expires_at <= $7)
      INSERT INTO sign_ins (state_hash, verifier, nonce, return_to, step_up, expires_at)
      VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        signIn.stateHash,
        signIn.verifier,
        signIn.nonce,
        signIn.returnTo,
        signIn.stepUp,
        signIn.expiresAt,
        now,
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
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const feed = this.feed;
    this.feed = undefined;
    this.listeners.clear();
    await Promise.allSettled([feed?.end(), this.pool.end()]);
  }

  /**
   * Connects the change feed: one connection of its own, outside the pool, that LISTENs.
   * When it drops, it is connected again with backoff; changes committed meanwhile are not
   * replayed, since long-polls read the request again whenever they wake or time out.
   */
  async startListening(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    let live = false;
    const lost = (error?: unknown) => {
      // Before it is live, connect() reports failures; after close(), ending is expected.
      if (!live || this.closing) return;
      live = false;
      if (this.feed === client) this.feed = undefined;
      this.report(
        unavailable("keep listening for changes", error ?? new Error("connection ended")),
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
  }

  private scheduleListening(): void {
    if (this.closing || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.startListening().catch((error) => {
        this.report(unavailable("listen for changes again", error));
        this.scheduleListening();
      });
    }, delay);
    // The feed alone must not keep a process alive that has nothing else to do.
    this.reconnectTimer.unref();
  }

  private notified(message: pg.Notification): void {
    if (message.channel !== CHANNEL || !message.payload) return;
    let change: Row;
    try {
      change = JSON.parse(message.payload) as Row;
    } catch {
      return;
    }
    if (change.origin === this.origin || change.schema !== this.schema) return;
    if (
      typeof change.id !== "string" ||
      typeof change.status !== "string" ||
      typeof change.version !== "number"
    ) {
      return;
    }
    this.emit({ id: change.id, status: change.status as RequestStatus, version: change.version });
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

  private async transaction<T>(what: string, work: (q: Query) => Promise<T>): Promise<T> {
    this.assertOpen();
    return withTransaction(this.pool, what, work);
  }

  /** One statement on any pooled connection, in a transaction of its own. */
  private async query(what: string, sql: string, params?: unknown[]): Promise<Row[]> {
    this.assertOpen();
    try {
      return (await this.pool.query<Row>(sql, params)).rows;
    } catch (error) {
      throw unavailable(what, error);
    }
  }
}

/** A multi-row INSERT per batch: one round trip for most changes. */
async function insertRows(
  q: Query,
  table: string,
  columns: string[],
  rows: unknown[][],
): Promise<void> {
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
    await q(`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${values.join(", ")}`, params);
  }
}

function requestParams(r: ActionRequest): unknown[] {
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

function toRequest(row: Row): ActionRequest {
  // Reviews come along as `json_agg`: column names, BIGINTs as JSON numbers.
  return requestFromRow(row, (JSON.parse(row.reviews_json as string) as Row[]).map(reviewFromRow));
}
