/** The embedded store: one SQLite file in WAL mode, made durable by group commit. */
import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { type AuditEvent, chainEvents } from "../../audit/audit-chain.js";
import { AirlockError, errorMessage } from "../../errors.js";
import type {
  ActionRequest,
  AuditEventInput,
  Change,
  RequestStatus,
  Review,
  TransitionResult,
} from "../../requests/request-types.js";
import type {
  AuditQuery,
  InsertResult,
  OutboxEntry,
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
import {
  claimedOutbox,
  eventFromRow,
  outboxFromRow,
  type Row,
  requestFromRow,
  reviewFromRow,
  sessionFromRow,
  tokenFromRow,
  UNREADABLE_PAYLOAD,
} from "../store-rows.js";
import { newerSchema, unmigrated } from "../store-schema.js";
import { type Checkpointer, startCheckpointer } from "./sqlite-checkpointer.js";
import { damaged, storeFailure, unusable } from "./sqlite-errors.js";
import { sqliteMigrations } from "./sqlite-migrations.js";
import { WalSync } from "./wal-sync.js";

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface SqliteOptions {
  /** Copy WAL pages back from a worker thread (worth it for a serving gateway). */
  backgroundCheckpoints?: boolean;
  /**
   * Refuse a file that is not there rather than create it: a command run against a
   * mistyped path would otherwise report on a new, empty database.
   */
  mustExist?: boolean;
  /**
   * Bring the tables up to date (the default). Without, the file must hold them at this
   * version's schema already; see `unmigrated`.
   */
  migrate?: boolean;
  /** The clock of the process that owns the file: the store's time (default Date.now). */
  clock?: () => number;
}

export function openSqliteStore(path: string, options: SqliteOptions = {}): SqliteStore {
  if (path !== ":memory:") {
    if (options.mustExist && !existsSync(path)) {
      throw new AirlockError(
        "store_unavailable",
        `no database at ${path}; check storage: in the config (airlock serve creates it on its first start)`,
      );
    }
    mkdirSync(dirname(path), { recursive: true });
  }
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: options.mustExist === true });
    db.pragma("busy_timeout = 5000");
    // Checked first: a file that is not Airlock's is left as it was, not even switched to WAL.
    const refusal =
      options.migrate === false
        ? unmigrated(`in ${path}`, applied(db), sqliteMigrations, "check storage: in the config")
        : undefined;
    if (refusal) {
      db.close();
      throw refusal;
    }
    // Opened as it is, the file keeps its journal mode: WAL is persistent, so switching would
    // change the file. What serves it (or makes it) switches it.
    if (options.migrate !== false) db.pragma("journal_mode = WAL");
    // In WAL mode the store syncs each group's commit itself (WalSync); in another, SQLite must.
    db.pragma(isWal(db) ? "synchronous = NORMAL" : "synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("mmap_size = 268435456");
    if (options.migrate !== false) migrate(db, path);
  } catch (error) {
    throw unusable(error, path);
  }
  return new SqliteStore(db, path, options);
}

function isWal(db: Database.Database): boolean {
  return db.pragma("journal_mode", { simple: true }) === "wal";
}

/** The migrations applied to the file; none when it has no table of them (not Airlock's). */
function applied(db: Database.Database): Set<number> | undefined {
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (!table) return undefined;
  return new Set(
    db
      .prepare("SELECT version FROM schema_migrations")
      .all()
      .map((row) => (row as { version: number }).version),
  );
}

function migrate(db: Database.Database, path: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
  const done = applied(db);
  const newer = done && newerSchema(`in ${path}`, done, sqliteMigrations);
  if (newer) throw newer;
  for (const migration of sqliteMigrations) {
    if (done?.has(migration.version)) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.name,
        new Date().toISOString(),
      );
    }).immediate();
  }
}

/** A lone commit syncs on the event loop; from this many writes on, on the sync thread. */
const SYNC_OFF_LOOP_FROM = 4;
const AUDIT_ROWS_PER_INSERT = 8;

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Writes are group-committed: every write asked for while the previous group commits runs in
 * a single transaction, followed by one fdatasync of the WAL, before any caller hears back.
 * Reads wait while a commit is not yet durable, and the next group waits for the sync, so
 * nobody reads state that a crash could take back; if the sync fails, the store refuses all
 * reads and writes from then on.
 */
export class SqliteStore implements Store {
  readonly dialect = "sqlite" as const;
  /** One process owns the file: its clock is the store's time. */
  readonly now: () => number;
  private readonly walSync: WalSync | undefined;
  private readonly listeners = new Set<(change: RequestChange) => void>();
  private readonly stmt: ReturnType<SqliteStore["prepare"]>;
  private readonly insertAudits = new Map<number, Database.Statement>();
  private queue: Pending[] = [];
  private checkpointer: Checkpointer | undefined;
  /** Set for good when a commit could not be synced: the store refuses everything after. */
  private broken: AirlockError | undefined;
  /**
   * Set for good once SQLite has found the file damaged (SQLITE_CORRUPT): each such read or
   * write fails alone (internal), but what the rest reads cannot be trusted, so the store is
   * no longer ready, and says why. A restart does not mend the file.
   */
  private damage: AirlockError | undefined;
  /** Set while writes fail (a full or read-only disk); cleared by the next good commit. */
  private writeFailure: AirlockError | undefined;
  /** Settles when the last group's commit is durable; unset when nothing is being synced. */
  private syncing: Promise<void> | undefined;
  /**
   * The last audit event, as this connection last wrote or read it; undefined when unknown.
   * Another connection's commit (`airlock token revoke` appends events) moves data_version.
   */
  private auditHead: { seq: number; hash: string } | null | undefined;
  private headDataVersion = -1;
  private readonly tokenCache = new Map<string, TokenRecord>();
  private tokenCacheVersion = -1;
  private tokenCacheCheckedAt = Number.NEGATIVE_INFINITY;
  private scheduled = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
    options: SqliteOptions,
  ) {
    this.now = options.clock ?? Date.now;
    // None for a file opened as it is in another journal mode (nor in memory): SQLite syncs it.
    this.walSync = isWal(db) ? new WalSync(`${path}-wal`) : undefined;
    this.stmt = this.prepare();
    if (path !== ":memory:" && options.backgroundCheckpoints) {
      const driver = createRequire(import.meta.url).resolve("better-sqlite3");
      // A failing helper only means the writer's own checkpoints do all the work again.
      this.checkpointer = startCheckpointer(path, driver, () => {});
    }
  }

  /** Queues a write for the next group commit; resolves once it is durable. */
  private write<T>(work: () => T): Promise<T> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed)
      return Promise.reject(new AirlockError("store_unavailable", "the store is closed"));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.syncing) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(inline = false): void {
    this.scheduled = false;
    if (this.syncing) return; // the sync's end schedules the next group
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    let outcomes: Outcome[];
    try {
      if (!this.db.open) throw new AirlockError("store_unavailable", "the store is closed");
      // Most groups have no failing write: run them straight, and only when one fails, run
      // the group again with a savepoint per write, so the failure undoes only its own.
      outcomes = this.commitGroup(batch, false) ?? this.commitGroup(batch, true)!;
    } catch (error) {
      try {
        if (this.db.open && this.db.inTransaction) this.stmt.rollback.run();
      } catch {
        // The connection is past rolling back; the error below is what callers hear.
      }
      this.auditHead = undefined;
      const failure = this.failure(error);
      this.writeFailure = failure;
      for (const item of batch) item.reject(failure);
      return;
    }
    if (this.walSync && !inline && batch.length >= SYNC_OFF_LOOP_FROM) {
      this.syncing = this.walSync.syncOffLoop().then(
        () => {
          this.syncing = undefined;
          this.settle(batch, outcomes);
          if (this.queue.length > 0) this.schedule();
        },
        (error: unknown) => {
          this.syncing = undefined;
          this.syncFailed(batch, error);
        },
      );
      return;
    }
    try {
      this.walSync?.sync();
    } catch (error) {
      this.syncFailed(batch, error);
      return;
    }
    this.settle(batch, outcomes);
  }

  /**
   * Runs a group in one transaction and commits it. Straight (no savepoints), it gives up at
   * the first write that throws, rolls everything back and returns undefined.
   */
  private commitGroup(batch: Pending[], savepoints: boolean): Outcome[] | undefined {
    const outcomes: Outcome[] = [];
    this.stmt.begin.run();
    const version = this.stmt.dataVersion.get() as number;
    if (version !== this.headDataVersion) {
      this.headDataVersion = version;
      this.auditHead = undefined;
    }
    for (const item of batch) {
      if (savepoints) this.stmt.savepoint.run();
      try {
        outcomes.push({ ok: true, value: item.work() });
        if (savepoints) this.stmt.release.run();
      } catch (error) {
        this.auditHead = undefined;
        // SQLite itself ends the transaction on some errors (a full disk): then that error
        // is the group's, and the caller hears it rather than a failed ROLLBACK.
        if (!this.db.inTransaction) throw error;
        if (!savepoints) {
          this.stmt.rollback.run();
          return undefined;
        }
        this.stmt.rollbackTo.run();
        this.stmt.release.run();
        outcomes.push({
          ok: false,
          error: error instanceof Database.SqliteError ? this.failure(error) : error,
        });
      }
    }
    this.stmt.commit.run();
    return outcomes;
  }

  private settle(batch: Pending[], outcomes: Outcome[]): void {
    this.writeFailure = undefined;
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  private syncFailed(batch: Pending[], error: unknown): void {
    // Committed but perhaps not on disk, and Linux reports a failed fsync only once: from
    // here on nothing this process reads can be trusted to be durable. Like PostgreSQL,
    // stop, and let a restart read back what the disk really holds.
    this.broken = new AirlockError(
      "store_unavailable",
      `the store could not make a commit durable (${(error as Error).message}); restart the gateway once the disk is healthy`,
      { cause: error },
    );
    for (const item of [...batch, ...this.queue.splice(0)]) item.reject(this.broken);
  }

  private prepare() {
    const db = this.db;
    return {
      begin: db.prepare("BEGIN IMMEDIATE"),
      commit: db.prepare("COMMIT"),
      rollback: db.prepare("ROLLBACK"),
      savepoint: db.prepare("SAVEPOINT item"),
      release: db.prepare("RELEASE item"),
      rollbackTo: db.prepare("ROLLBACK TO item"),
      request: db.prepare("SELECT * FROM requests WHERE id = ?"),
      version: db.prepare("SELECT version FROM requests WHERE id = ?"),
      reviews: db.prepare("SELECT * FROM reviews WHERE request_id = ? ORDER BY created_at, id"),
      byKey: db.prepare("SELECT * FROM requests WHERE agent = ? AND idempotency_key = ?"),
      pendingOf: db.prepare(
        `SELECT count(*) AS n FROM (SELECT 1 FROM requests
          WHERE status = 'pending' AND agent = ? AND (expires_at IS NULL OR expires_at > ?) LIMIT ?)`,
      ),
      insertRequest: db.prepare(`INSERT INTO requests (id, agent, agent_snapshot, connection,
        connection_type, operation, input, justification, context, idempotency_key, hash, nonce, status,
        decision, description, outcome, created_at, updated_at, expires_at, finished_at, version)
        VALUES (@id, @agent, @agent_snapshot, @connection, @connection_type, @operation, @input,
        @justification, @context, @idempotency_key, @hash, @nonce, @status, @decision, @description,
        @outcome, @created_at, @updated_at, @expires_at, @finished_at, @version)`),
      updateRequest: db.prepare(`UPDATE requests SET status = ?, outcome = ?, updated_at = ?,
        expires_at = ?, finished_at = ?, version = ? WHERE id = ? AND version = ?`),
      insertReview: db.prepare(`INSERT INTO reviews (id, request_id, reviewer, decision, comment,
        request_hash, evidence, reviewer_groups, created_at) VALUES (@id, @request_id, @reviewer,
        @decision, @comment, @request_hash, @evidence, @reviewer_groups, @created_at)`),
      auditHead: db.prepare("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"),
      insertOutbox: db.prepare(`INSERT INTO outbox (topic, request_id, payload, available_at,
        created_at) VALUES (?, ?, ?, ?, ?)`),
      expired: db.prepare(`SELECT id FROM requests WHERE status = 'pending' AND expires_at <= ?
        ORDER BY expires_at LIMIT ?`),
      withStatus: db.prepare("SELECT id FROM requests WHERE status = ? ORDER BY id LIMIT ?"),
      touchExecuting: db.prepare(
        "UPDATE requests SET updated_at = ? WHERE id = ? AND status = 'executing'",
      ),
      countByStatus: db.prepare("SELECT status, count(*) AS n FROM requests GROUP BY status"),
      insertToken: db.prepare(`INSERT INTO tokens (id, kind, subject, hash, hint, created_at,
        revoked_at) VALUES (@id, @kind, @subject, @hash, @hint, @created_at, @revoked_at)`),
      tokenByHash: db.prepare("SELECT * FROM tokens WHERE hash = ?"),
      dataVersion: db.prepare("PRAGMA data_version").pluck(),
      tokens: db.prepare("SELECT * FROM tokens ORDER BY created_at, id"),
      revokeToken: db.prepare(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
      ),
      // One request's entries for one channel go in order: an entry waits while an earlier one
      // is due, being delivered or being retried (one scheduled for later does not hold it;
      // one written due at once does, whatever the clock says now, as on PostgreSQL).
      claimOutbox: db.prepare(`UPDATE outbox SET lease_until = @lease_until, attempts = attempts + 1
        WHERE id IN (SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.available_at <= @now
        AND (o.lease_until IS NULL OR o.lease_until <= @now)
        AND o.topic IN (SELECT value FROM json_each(@topics))
        AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.request_id = o.request_id
          AND e.topic = o.topic AND e.id < o.id AND e.state = 'pending'
          AND (e.attempts > 0 OR e.available_at <= @now OR e.available_at <= e.created_at))
        ORDER BY o.id LIMIT @limit)
        RETURNING id, topic, request_id, payload, attempts, created_at`),
      completeOutbox: db.prepare("DELETE FROM outbox WHERE id = ?"),
      releaseOutboxClaims: db.prepare(
        "UPDATE outbox SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL",
      ),
      listOutbox: db.prepare(`SELECT id, topic, request_id, payload, state, attempts, available_at,
        last_error, created_at FROM outbox WHERE state = ? AND id > ? ORDER BY id LIMIT ?`),
      redeliverOutbox: db.prepare(`UPDATE outbox SET state = 'pending', attempts = 0,
        available_at = created_at, lease_until = NULL WHERE state = 'dead'
        AND (@ids IS NULL OR id IN (SELECT value FROM json_each(@ids)))
        AND (@topic IS NULL OR topic = @topic)`),
      countOutbox: db.prepare("SELECT state, count(*) AS n FROM outbox GROUP BY state"),
      // One whose notifications are still to be delivered waits for them (or their dead letter).
      finishedBefore: db.prepare(`SELECT id FROM requests r WHERE finished_at < ?
        AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.request_id = r.id AND o.state = 'pending')
        ORDER BY finished_at, id LIMIT ?`),
      pruneReviews: db.prepare(
        "DELETE FROM reviews WHERE request_id IN (SELECT value FROM json_each(?))",
      ),
      pruneRefs: db.prepare(
        "DELETE FROM channel_refs WHERE request_id IN (SELECT value FROM json_each(?))",
      ),
      pruneOutbox: db.prepare(
        "DELETE FROM outbox WHERE request_id IN (SELECT value FROM json_each(?))",
      ),
      pruneRequests: db.prepare(
        "DELETE FROM requests WHERE id IN (SELECT value FROM json_each(?))",
      ),
      retryOutbox: db.prepare(`UPDATE outbox SET available_at = ?, lease_until = NULL,
        last_error = ? WHERE id = ?`),
      deadOutbox: db.prepare(`UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = ?
        WHERE id = ?`),
      abandonOutbox: db.prepare(`UPDATE outbox SET state = 'dead', lease_until = NULL,
        last_error = @error WHERE state = 'pending' AND available_at < @before
        AND (lease_until IS NULL OR lease_until < @before)
        AND topic NOT IN (SELECT value FROM json_each(@topics))
        AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.request_id = outbox.request_id
          AND e.topic = outbox.topic AND e.id < outbox.id AND e.state = 'pending')`),
      insertSession: db.prepare(`INSERT INTO sessions (id_hash, email, issuer, subject, groups,
        auth_time, acr, created_at, expires_at, refresh_token, checked_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      claimSessionCheck: db.prepare(`UPDATE sessions SET checking_until = @until
        WHERE id_hash = @idHash AND expires_at > @now AND refresh_token = @refreshToken
        AND (checking_until IS NULL OR checking_until <= @now)`),
      releaseSessionCheck: db.prepare(
        "UPDATE sessions SET checking_until = NULL WHERE id_hash = ?",
      ),
      recordSessionCheck: db.prepare(`UPDATE sessions SET groups = @groups,
        refresh_token = @refreshToken, checked_at = @checkedAt, checking_until = NULL
        WHERE id_hash = @idHash`),
      expireSessions: db.prepare("DELETE FROM sessions WHERE expires_at <= ?"),
      session: db.prepare("SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?"),
      deleteSession: db.prepare("DELETE FROM sessions WHERE id_hash = ?"),
      insertSignIn: db.prepare(`INSERT INTO sign_ins (state_hash, verifier, nonce, return_to,
        step_up, expires_at) VALUES (?, ?, ?, ?, ?, ?)`),
      expireSignIns: db.prepare("DELETE FROM sign_ins WHERE expires_at <= ?"),
      takeSignIn: db.prepare("DELETE FROM sign_ins WHERE state_hash = ? RETURNING *"),
      sweepReplays: db.prepare("DELETE FROM replay_guard WHERE expires_at <= ? AND key <> ?"),
      claimOnce: db.prepare(`INSERT INTO replay_guard (key, expires_at) VALUES (?, ?)
        ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
        WHERE replay_guard.expires_at <= ? RETURNING key`),
      sweepMcpCalls: db.prepare("DELETE FROM mcp_calls WHERE expires_at <= ? AND call_key <> ?"),
      holdMcpCall: db.prepare(`INSERT INTO mcp_calls (call_key, request_id, cancelled, expires_at)
        VALUES (@call, @requestId, 0, @now + @ttlMs)
        ON CONFLICT (call_key) DO UPDATE SET request_id = excluded.request_id,
          expires_at = excluded.expires_at,
          cancelled = mcp_calls.cancelled AND mcp_calls.expires_at > @now
        WHERE mcp_calls.request_id IS NULL OR mcp_calls.expires_at <= @now
        RETURNING cancelled`),
      cancelMcpCall: db.prepare(`INSERT INTO mcp_calls (call_key, request_id, cancelled, expires_at)
        VALUES (@call, NULL, 1, @now + @ttlMs)
        ON CONFLICT (call_key) DO UPDATE SET cancelled = 1,
          request_id = CASE WHEN mcp_calls.expires_at > @now THEN mcp_calls.request_id END,
          expires_at = max(mcp_calls.expires_at, excluded.expires_at)
        RETURNING request_id`),
      releaseMcpCall: db.prepare("DELETE FROM mcp_calls WHERE call_key = ? AND request_id = ?"),
      mcpCallCancelled: db.prepare(
        "SELECT 1 FROM mcp_calls WHERE call_key = ? AND cancelled = 1 AND expires_at > ?",
      ),
      getRef: db.prepare("SELECT ref FROM channel_refs WHERE request_id = ? AND channel = ?"),
      setRef: db.prepare(`INSERT INTO channel_refs (request_id, channel, ref) VALUES (?, ?, ?)
        ON CONFLICT (request_id, channel) DO UPDATE SET ref = excluded.ref`),
    };
  }

  /**
   * The group commit runs writes one after another on one connection, so the count of
   * pending requests here already includes those recorded earlier in the same group.
   */
  async insertRequest(
    submit: (at: number | undefined) => Change,
    plan: OutboxPlanner,
    maxPending?: number,
  ): Promise<InsertResult> {
    const result = await this.write((): InsertResult => {
      // One process owns the file: its own clock stamps the request (`at` undefined).
      const change = submit(undefined);
      const request = change.request;
      if (request.idempotencyKey !== null) {
        const row = this.stmt.byKey.get(request.agent.name, request.idempotencyKey) as
          | Row
          | undefined;
        if (row) return { inserted: false, existing: this.toRequest(row) };
      }
      if (
        maxPending !== undefined &&
        request.status === "pending" &&
        (
          this.stmt.pendingOf.get(request.agent.name, request.createdAt, maxPending) as {
            n: number;
          }
        ).n >= maxPending
      ) {
        return { inserted: false, atPendingLimit: true };
      }
      this.stmt.insertRequest.run(requestRow(request));
      this.writeChange(change, plan(change));
      return { inserted: true, request };
    });
    if (result.inserted) {
      const { id, status, version } = result.request;
      this.emit({ id, status, version });
    }
    return result;
  }

  async transition<T>(
    id: string,
    decide: (current: ActionRequest, at: number | undefined) => TransitionResult<T>,
    plan: OutboxPlanner,
    known?: ActionRequest,
  ): Promise<T> {
    const result = await this.write(() => {
      const current = this.current(id, known);
      // One process owns the file: its own clock decides (`at` undefined).
      const verdict = decide(current, undefined);
      if (verdict.change) {
        const next = verdict.change.request;
        const updated = this.stmt.updateRequest.run(
          next.status,
          next.outcome === null ? null : JSON.stringify(next.outcome),
          next.updatedAt,
          next.expiresAt,
          next.finishedAt,
          next.version,
          id,
          current.version,
        );
        if (updated.changes !== 1) throw new Error(`request ${id} changed underneath a transition`);
        if (verdict.change.review) this.stmt.insertReview.run(reviewRow(verdict.change.review));
        this.writeChange(verdict.change, plan(verdict.change));
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

  private current(id: string, known: ActionRequest | undefined): ActionRequest {
    if (known) {
      const version = this.stmt.version.get(id) as { version: number } | undefined;
      if (version?.version === known.version) return known;
    }
    const row = this.stmt.request.get(id) as Row | undefined;
    if (!row) throw new AirlockError("not_found", `no request ${id}`);
    return this.toRequest(row);
  }

  private writeChange(change: Change, outbox: OutboxEntry[]): void {
    this.appendEvents(change.events);
    const now = change.request.updatedAt;
    for (const entry of outbox) {
      this.stmt.insertOutbox.run(
        entry.topic,
        entry.requestId,
        JSON.stringify(entry.payload),
        entry.availableAt ?? now,
        now,
      );
    }
  }

  private appendEvents(events: AuditEventInput[]): void {
    if (events.length === 0) return;
    if (this.auditHead === undefined) {
      this.auditHead = (this.stmt.auditHead.get() as { seq: number; hash: string }) ?? null;
    }
    const chained = chainEvents(
      this.auditHead ?? undefined,
      events.map((e) => ({
        ts: new Date(e.at).toISOString(),
        type: e.type,
        requestId: e.requestId,
        actor: e.actor,
        data: e.data,
      })),
    );
    const values: unknown[] = [];
    for (const event of chained) {
      values.push(
        event.seq,
        event.ts,
        event.type,
        event.requestId,
        event.actor.type,
        event.actor.id,
        event.dataJson,
        event.prevHash,
        event.hash,
      );
    }
    for (let at = 0; at < chained.length; at += AUDIT_ROWS_PER_INSERT) {
      const rows = Math.min(AUDIT_ROWS_PER_INSERT, chained.length - at);
      this.insertAudit(rows).run(values.slice(at * 9, (at + rows) * 9));
    }
    const last = chained[chained.length - 1]!;
    this.auditHead = { seq: last.seq, hash: last.hash };
  }

  /** One INSERT for the events of a change (a submission records three), prepared once. */
  private insertAudit(rows: number): Database.Statement {
    let statement = this.insertAudits.get(rows);
    if (!statement) {
      statement = this.db.prepare(`INSERT INTO audit_events (seq, ts, type, request_id,
        actor_type, actor_id, data, prev_hash, hash) VALUES
        ${Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`);
      this.insertAudits.set(rows, statement);
    }
    return statement;
  }

  async getRequest(id: string): Promise<ActionRequest | undefined> {
    return this.read(() => {
      const row = this.stmt.request.get(id) as Row | undefined;
      return row ? this.toRequest(row) : undefined;
    });
  }

  async findByIdempotencyKey(agent: string, key: string): Promise<ActionRequest | undefined> {
    return this.read(() => {
      const row = this.stmt.byKey.get(agent, key) as Row | undefined;
      return row ? this.toRequest(row) : undefined;
    });
  }

  async listRequests(query: RequestQuery): Promise<ActionRequest[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.statuses && query.statuses.length > 0) {
      where.push(`status IN (${query.statuses.map(() => "?").join(", ")})`);
      params.push(...query.statuses);
    }
    if (query.agent !== undefined) {
      where.push("agent = ?");
      params.push(query.agent);
    }
    if (query.connection !== undefined) {
      where.push("connection = ?");
      params.push(query.connection);
    }
    if (query.before !== undefined) {
      where.push("id < ?");
      params.push(query.before);
    }
    const sql = `SELECT * FROM requests ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY id DESC LIMIT ?`;
    return this.read(() =>
      (this.db.prepare(sql).all(...params, query.limit) as Row[]).map((row) => this.toRequest(row)),
    );
  }

  async countPending(agent: string, now: number, limit: number): Promise<number> {
    return this.read(() => (this.stmt.pendingOf.get(agent, now, limit) as { n: number }).n);
  }

  async expiredPending(now: number, limit: number): Promise<string[]> {
    return this.read(() =>
      (this.stmt.expired.all(now, limit) as { id: string }[]).map((r) => r.id),
    );
  }

  async idsWithStatus(status: RequestStatus, limit: number): Promise<string[]> {
    return this.read(() =>
      (this.stmt.withStatus.all(status, limit) as { id: string }[]).map((r) => r.id),
    );
  }

  async touchExecuting(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.write(() => {
      for (const id of ids) this.stmt.touchExecuting.run(now, id);
    });
  }

  async countByStatus(): Promise<Partial<Record<RequestStatus, number>>> {
    return this.read(() => {
      const out: Partial<Record<RequestStatus, number>> = {};
      for (const row of this.stmt.countByStatus.all() as { status: RequestStatus; n: number }[]) {
        out[row.status] = row.n;
      }
      return out;
    });
  }

  async appendAudit(events: AuditEventInput[]): Promise<void> {
    await this.write(() => this.appendEvents(events));
  }

  async listAudit(query: AuditQuery): Promise<AuditEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.afterSeq !== undefined) {
      where.push("seq > ?");
      params.push(query.afterSeq);
    }
    if (query.since !== undefined) {
      where.push("ts >= ?");
      params.push(new Date(query.since).toISOString());
    }
    if (query.until !== undefined) {
      where.push("ts < ?");
      params.push(new Date(query.until).toISOString());
    }
    if (query.requestId !== undefined) {
      where.push("request_id = ?");
      params.push(query.requestId);
    }
    if (query.type !== undefined) {
      where.push("type = ?");
      params.push(query.type);
    }
    if (query.actor !== undefined) {
      where.push("actor_id = ?");
      params.push(query.actor);
    }
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY seq LIMIT ?`;
    return this.read(() =>
      (this.db.prepare(sql).all(...params, query.limit) as Row[]).map(eventFromRow),
    );
  }

  async lastAuditEvent(): Promise<{ seq: number; hash: string; type: string } | undefined> {
    return this.read(
      () =>
        this.db
          .prepare("SELECT seq, hash, type FROM audit_events ORDER BY seq DESC LIMIT 1")
          .get() as { seq: number; hash: string; type: string } | undefined,
    );
  }

  async *auditEvents(
    options: { since?: number; afterSeq?: number } = {},
  ): AsyncIterable<AuditEvent> {
    // Without `since`, every row, whatever its time holds: one whose ts is no text (a table
    // rebuilt by hand) must still reach the verifier, as GET /v1/audit lists it.
    const since = options.since === undefined ? undefined : new Date(options.since).toISOString();
    // Paged from the last number read, past the rows of that number already read: a table made
    // again without its key can hold two events of one number, and paging on seq > last never
    // read one that a batch ended before (GET /v1/audit?requestId= listed it); read, it fails.
    // The first batch has no bound on the number: rows with none (NULL sorts first) come too,
    // unless it goes on after `afterSeq`, an export's last event.
    const select = (where: string[]) =>
      this.db.prepare(
        `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq LIMIT ?`,
      );
    const onTime = since === undefined ? [] : ["ts >= ?"];
    const resumed = options.afterSeq !== undefined;
    const first = select(resumed ? [...onTime, "seq > ?"] : onTime);
    const next = select([...onTime, "seq >= ?"]);
    let after: unknown = options.afterSeq;
    let readAtAfter = 0;
    for (let batch = 0; ; batch++) {
      const limit = readAtAfter + 1000;
      const bounded = batch > 0 || resumed;
      const params = [...(since === undefined ? [] : [since]), ...(bounded ? [after] : [])];
      const rows = await this.read(() => (batch > 0 ? next : first).all(...params, limit) as Row[]);
      if (rows.length <= readAtAfter) return;
      for (const row of rows.slice(readAtAfter)) yield eventFromRow(row);
      after = rows[rows.length - 1]!.seq;
      readAtAfter = rows.filter((row) => row.seq === after).length;
      // Each batch is read at once, and a walk of the whole chain would hold the event loop
      // from end to end (a second per 200,000 events): other requests and signals go between.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async insertToken(token: TokenRecord, event: AuditEventInput): Promise<void> {
    await this.write(() => {
      this.tokenCache.clear();
      this.stmt.insertToken.run({
        id: token.id,
        kind: token.kind,
        subject: token.subject,
        hash: token.hash,
        hint: token.hint,
        created_at: token.createdAt,
        revoked_at: token.revokedAt,
      });
      this.appendEvents([event]);
    });
  }

  /**
   * Tokens are read on every request, so found ones are cached. SQLite's data_version moves
   * whenever another connection (`airlock token revoke`) commits; it is looked at no more
   * than every 100 ms, and then the cache starts over. A revocation in this process clears
   * it at once; one from the command line takes effect within a tenth of a second. Unlike
   * other reads, this one does not wait for a group's sync: every request asks it, and a
   * token is created and revoked durably before anyone is told.
   */
  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.run(() => {
      const now = performance.now();
      if (now - this.tokenCacheCheckedAt >= 100 || this.tokenCache.size > 10_000) {
        this.tokenCacheCheckedAt = now;
        const version = this.stmt.dataVersion.get() as number;
        if (version !== this.tokenCacheVersion || this.tokenCache.size > 10_000) {
          this.tokenCache.clear();
          this.tokenCacheVersion = version;
        }
      }
      const cached = this.tokenCache.get(hash);
      if (cached) return cached;
      const row = this.stmt.tokenByHash.get(hash) as Row | undefined;
      if (!row) return undefined;
      const token = tokenFromRow(row);
      this.tokenCache.set(hash, token);
      return token;
    });
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.read(() => (this.stmt.tokens.all() as Row[]).map(tokenFromRow));
  }

  async revokeToken(id: string, event: AuditEventInput): Promise<boolean> {
    return this.write(() => {
      this.tokenCache.clear();
      const result = this.stmt.revokeToken.run(event.at, id);
      if (result.changes === 1) this.appendEvents([event]);
      return result.changes === 1;
    });
  }

  async claimOutbox(
    now: number,
    leaseMs: number,
    limit: number,
    topics: readonly string[],
  ): Promise<OutboxItem[]> {
    return this.write(() => {
      const rows = this.stmt.claimOutbox.all({
        now,
        lease_until: now + leaseMs,
        limit,
        topics: JSON.stringify(topics),
      }) as Row[];
      const { items, unreadable } = claimedOutbox(rows);
      for (const id of unreadable) this.stmt.deadOutbox.run(UNREADABLE_PAYLOAD, id);
      return items;
    });
  }

  async completeOutbox(id: number): Promise<void> {
    await this.write(() => this.stmt.completeOutbox.run(id));
  }

  async pruneRequests(
    finishedBefore: number,
    limit: number,
    audit: (count: number, first: string, last: string) => AuditEventInput,
  ): Promise<number> {
    return this.write(() => {
      const ids = (this.stmt.finishedBefore.all(finishedBefore, limit) as { id: string }[]).map(
        (row) => row.id,
      );
      if (ids.length === 0) return 0;
      const list = JSON.stringify(ids);
      this.stmt.pruneReviews.run(list);
      this.stmt.pruneRefs.run(list);
      this.stmt.pruneOutbox.run(list);
      this.stmt.pruneRequests.run(list);
      this.appendEvents([audit(ids.length, ids[0]!, ids.at(-1)!)]);
      return ids.length;
    });
  }

  async listOutbox(query: {
    state: "pending" | "dead";
    after?: number;
    limit: number;
  }): Promise<OutboxRecord[]> {
    return this.read(() =>
      (this.stmt.listOutbox.all(query.state, query.after ?? 0, query.limit) as Row[]).map(
        outboxFromRow,
      ),
    );
  }

  async redeliverOutbox(selection: { ids?: readonly number[]; topic?: string }): Promise<number> {
    return this.write(
      () =>
        this.stmt.redeliverOutbox.run({
          ids: selection.ids ? JSON.stringify(selection.ids) : null,
          topic: selection.topic ?? null,
        }).changes,
    );
  }

  async countOutbox(): Promise<{ pending: number; dead: number }> {
    return this.read(() => {
      const out = { pending: 0, dead: 0 };
      for (const row of this.stmt.countOutbox.all() as { state: string; n: number }[]) {
        if (row.state === "pending" || row.state === "dead") out[row.state] = row.n;
      }
      return out;
    });
  }

  async abandonOutbox(
    now: number,
    unclaimedMs: number,
    topics: readonly string[],
    error: string,
  ): Promise<number> {
    const before = now - unclaimedMs;
    return this.write(
      () => this.stmt.abandonOutbox.run({ before, topics: JSON.stringify(topics), error }).changes,
    );
  }

  async releaseOutboxClaims(): Promise<number> {
    return this.write(() => this.stmt.releaseOutboxClaims.run().changes);
  }

  async failOutbox(
    now: number,
    id: number,
    error: string,
    retryInMs: number | null,
  ): Promise<void> {
    await this.write(() =>
      retryInMs === null
        ? this.stmt.deadOutbox.run(error, id)
        : this.stmt.retryOutbox.run(now + retryInMs, error, id),
    );
  }

  async getChannelRef(requestId: string, channel: string): Promise<string | undefined> {
    return this.read(
      () => (this.stmt.getRef.get(requestId, channel) as { ref: string } | undefined)?.ref,
    );
  }

  async setChannelRef(requestId: string, channel: string, ref: string): Promise<void> {
    await this.write(() => this.stmt.setRef.run(requestId, channel, ref));
  }

  async insertSession(
    session: SessionRecord,
    event: AuditEventInput,
    replaces?: string | undefined,
  ): Promise<void> {
    await this.write(() => {
      this.stmt.expireSessions.run(session.createdAt);
      if (replaces !== undefined) this.stmt.deleteSession.run(replaces);
      this.stmt.insertSession.run(
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
      );
      this.appendEvents([event]);
    });
  }

  async findSession(idHash: string, now: number): Promise<SessionRecord | undefined> {
    return this.read(() => {
      const row = this.stmt.session.get(idHash, now) as Row | undefined;
      return row && sessionFromRow(row);
    });
  }

  async deleteSession(idHash: string, event: AuditEventInput | undefined): Promise<boolean> {
    return this.write(() => {
      const deleted = this.stmt.deleteSession.run(idHash).changes === 1;
      if (deleted && event) this.appendEvents([event]);
      return deleted;
    });
  }

  async claimSessionCheck(
    idHash: string,
    now: number,
    leaseMs: number,
    refreshToken: string,
  ): Promise<boolean> {
    const until = now + leaseMs;
    return this.write(
      () => this.stmt.claimSessionCheck.run({ idHash, now, until, refreshToken }).changes === 1,
    );
  }

  async releaseSessionCheck(idHash: string): Promise<void> {
    await this.write(() => this.stmt.releaseSessionCheck.run(idHash));
  }

  async recordSessionCheck(
    idHash: string,
    check: SessionCheck,
    event: AuditEventInput | undefined,
  ): Promise<boolean> {
    return this.write(() => {
      const { groups, refreshToken, checkedAt } = check;
      const recorded =
        this.stmt.recordSessionCheck.run({
          idHash,
          groups: JSON.stringify(groups),
          refreshToken,
          checkedAt,
        }).changes === 1;
      if (recorded && event) this.appendEvents([event]);
      return recorded;
    });
  }

  async insertSignIn(signIn: SignInRecord, now: number): Promise<void> {
    await this.write(() => {
      this.stmt.expireSignIns.run(now);
      this.stmt.insertSignIn.run(
        signIn.stateHash,
        signIn.verifier,
        signIn.nonce,
        signIn.returnTo,
        signIn.stepUp ? 1 : 0,
        signIn.expiresAt,
      );
    });
  }

  async takeSignIn(stateHash: string, now: number): Promise<SignInRecord | undefined> {
    const row = await this.write(() => this.stmt.takeSignIn.get(stateHash) as Row | undefined);
    if (!row || (row.expires_at as number) <= now) return undefined;
    return {
      stateHash: row.state_hash as string,
      verifier: row.verifier as string,
      nonce: row.nonce as string,
      returnTo: row.return_to as string,
      stepUp: row.step_up === 1,
      expiresAt: row.expires_at as number,
    };
  }

  /** An expired key is taken over in place; the expired rest are swept on the way. */
  async claimOnce(key: string, expiresAt: number, now: number): Promise<boolean> {
    return this.write(() => {
      this.stmt.sweepReplays.run(now, key);
      return this.stmt.claimOnce.get(key, expiresAt, now) !== undefined;
    });
  }

  async holdMcpCall(call: string, requestId: string, ttlMs: number, now: number): Promise<boolean> {
    return this.write(() => {
      this.stmt.sweepMcpCalls.run(now, call);
      const row = this.stmt.holdMcpCall.get({ call, requestId, ttlMs, now }) as Row | undefined;
      return row?.cancelled === 1;
    });
  }

  async cancelMcpCall(call: string, ttlMs: number, now: number): Promise<string | undefined> {
    return this.write(() => {
      this.stmt.sweepMcpCalls.run(now, call);
      const row = this.stmt.cancelMcpCall.get({ call, ttlMs, now }) as Row | undefined;
      return (row?.request_id as string | null | undefined) ?? undefined;
    });
  }

  async releaseMcpCall(call: string, requestId: string): Promise<void> {
    await this.write(() => this.stmt.releaseMcpCall.run(call, requestId));
  }

  async mcpCallCancelled(call: string, now: number): Promise<boolean> {
    return this.read(() => this.stmt.mcpCallCancelled.get(call, now) !== undefined);
  }

  subscribe(listener: (change: RequestChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every change is made in this process and heard at once: none can be missed. */
  onMissedChanges(_listener: () => void): () => void {
    return () => {};
  }

  /** Ready means readable, not found damaged and, as far as the last commit tells, writable. */
  async ping(): Promise<void> {
    this.run(() => this.db.prepare("SELECT 1").get());
    if (this.damage) throw this.damage;
    if (this.writeFailure) throw this.writeFailure;
  }

  /** A driver failure as callers get it; one that finds the file damaged is kept for `ping`. */
  private failure(error: unknown): AirlockError {
    if (damaged(error)) {
      this.damage ??= new AirlockError(
        "store_unavailable",
        `the database file ${this.path} is damaged (SQLite: ${errorMessage(error)}), and what is read from it cannot be trusted: stop the gateway, check the file (sqlite3 ${this.path} "PRAGMA integrity_check"), restore it from a backup, then run airlock audit verify`,
        { cause: error },
      );
    }
    return storeFailure(error);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Writes already queued still commit; nothing new is taken.
      while (this.syncing) await this.syncing;
      this.flush(true);
      this.closed = true;
      await this.checkpointer?.stop();
      await this.walSync?.close();
      this.db.close();
      this.listeners.clear();
    })();
    return this.closing;
  }

  private emit(change: RequestChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /** A read, once what it could see is durable. */
  private async read<T>(fn: () => T): Promise<T> {
    while (this.syncing) await this.syncing;
    return this.run(fn);
  }

  /** Runs a synchronous database call, turning driver failures into Airlock's errors. */
  private run<T>(fn: () => T): T {
    if (this.broken) throw this.broken;
    if (this.closed) throw new AirlockError("store_unavailable", "the store is closed");
    try {
      return fn();
    } catch (error) {
      if (error instanceof AirlockError) throw error;
      if (error instanceof Database.SqliteError) throw this.failure(error);
      throw error;
    }
  }

  private toRequest(row: Row): ActionRequest {
    return requestFromRow(row, (this.stmt.reviews.all(row.id) as Row[]).map(reviewFromRow));
  }
}

function requestRow(r: ActionRequest): Row {
  return {
    id: r.id,
    agent: r.agent.name,
    agent_snapshot: JSON.stringify(r.agent),
    connection: r.connection,
    connection_type: r.connectionType,
    operation: r.operation,
    input: JSON.stringify(r.input),
    justification: r.justification,
    context: JSON.stringify(r.context),
    idempotency_key: r.idempotencyKey,
    hash: r.hash,
    nonce: r.nonce,
    status: r.status,
    decision: JSON.stringify(r.decision),
    description: JSON.stringify(r.description),
    outcome: r.outcome === null ? null : JSON.stringify(r.outcome),
    created_at: r.createdAt,
    updated_at: r.updatedAt,
    expires_at: r.expiresAt,
    finished_at: r.finishedAt,
    version: r.version,
  };
}

function reviewRow(r: Review): Row {
  return {
    id: r.id,
    request_id: r.requestId,
    reviewer: r.reviewer,
    decision: r.decision,
    comment: r.comment,
    request_hash: r.requestHash,
    evidence: JSON.stringify(r.evidence),
    reviewer_groups: JSON.stringify(r.groups ?? []),
    created_at: r.createdAt,
  };
}
