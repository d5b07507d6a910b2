/**
 * Group commit for request changes on PostgreSQL. Every change appends to the one audit chain
 * under a lock that is held until its transaction's WAL flush is done, so one change per
 * transaction would cap the whole deployment at one flush per change. Instead, the changes
 * asked for while a batch is committing are queued and then written together: one
 * transaction, a fixed number of statements whatever the batch's size, one lock, one flush.
 */
import type pg from "pg";
import { AirlockError } from "../../errors.js";
import type {
  ActionRequest,
  Change,
  Review,
  TransitionResult,
} from "../../requests/request-types.js";
import type { InsertResult, OutboxEntry, OutboxPlanner, RequestChange } from "../store.js";
import type { StoreClock } from "../store-clock.js";
import { sqlState } from "./postgres-errors.js";
import {
  insertRows,
  NOW_MS,
  type Query,
  REQUEST_COLUMNS,
  requestParams,
  SELECT_REQUEST,
  toRequest,
  withAuditedTransaction,
} from "./postgres-sql.js";

interface Settle {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

interface InsertItem extends Settle {
  kind: "insert";
  submit: (at: number | undefined) => Change;
  plan: OutboxPlanner;
  /** The agent's limit of pending requests, for a request that would be pending. */
  maxPending: number | undefined;
}

/** A new request as made in its batch's transaction, at the database's time. */
interface Made {
  item: InsertItem;
  index: number;
  change: Change;
  outbox: OutboxEntry[];
}

interface TransitionItem extends Settle {
  kind: "transition";
  id: string;
  decide: (current: ActionRequest, at: number | undefined) => TransitionResult<unknown>;
  plan: OutboxPlanner;
  known: ActionRequest | undefined;
}

type Item = InsertItem | TransitionItem;

/** What one item came to, settled once the batch has committed. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A committed change with its outbox entries, in the order its item was asked for. */
interface Written {
  change: Change;
  outbox: OutboxEntry[];
}

/** Items per transaction: large enough for any burst, small enough to keep statements short. */
const MAX_BATCH = 500;
/** Changes waiting beyond this are refused at once rather than queued behind a stuck database. */
const MAX_QUEUED = 10_000;
/**
 * Batches in flight at once: while one waits for the audit lock and its flush, the next reads
 * and locks its rows, so the lock is rarely left idle.
 */
const MAX_IN_FLIGHT = 2;

export interface GroupCommitOptions {
  pool: pg.Pool;
  /** The audit chain's advisory lock key (see `withAuditedTransaction`). */
  auditLock: string;
  /** The advisory lock key under which an agent's pending requests are counted and added. */
  pendingLock: (agent: string) => string;
  /** The NOTIFY payloads that tell other replicas about a batch's changes. */
  notifications: (changes: RequestChange[]) => string[];
  channel: string;
  /** Called for each change once its batch has committed. */
  committed: (change: RequestChange) => void;
  /** Learns from the database's time each batch's transaction reads as it begins. */
  clock: StoreClock;
}

export class GroupCommit {
  private queue: Item[] = [];
  private inFlight = 0;
  private scheduled = false;
  private idle: (() => void)[] = [];

  constructor(private readonly options: GroupCommitOptions) {}

  /**
   * Records the request `submit` makes at the database's time as the batch's transaction
   * began, or returns the one the agent's idempotency key already names, or (with
   * `maxPending`) refuses a request that would be pending past the agent's limit.
   */
  insert(
    submit: (at: number | undefined) => Change,
    plan: OutboxPlanner,
    maxPending?: number,
  ): Promise<InsertResult> {
    return this.enqueue<InsertResult>((settle) => ({
      kind: "insert",
      submit,
      plan,
      maxPending,
      ...settle,
    }));
  }

  /**
   * As `Store.transition`: `decide` sees the request as committed, locked for this batch, and
   * the database's time as the batch's transaction began.
   */
  transition<T>(
    id: string,
    decide: (current: ActionRequest, at: number | undefined) => TransitionResult<T>,
    plan: OutboxPlanner,
    known: ActionRequest | undefined,
  ): Promise<T> {
    return this.enqueue<T>((settle) => ({
      kind: "transition",
      id,
      decide,
      plan,
      known,
      ...settle,
    }));
  }

  /** Resolves once nothing is queued or being written. */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private enqueue<T>(make: (settle: Settle) => Item): Promise<T> {
    if (this.queue.length >= MAX_QUEUED) {
      return Promise.reject(
        new AirlockError(
          "store_unavailable",
          `the store (PostgreSQL) has ${MAX_QUEUED} changes waiting to be written; try again shortly`,
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push(make({ resolve: resolve as (value: unknown) => void, reject }));
      this.schedule();
    });
  }

  /** Waits one turn of the event loop, so that changes asked for together go together. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= MAX_IN_FLIGHT || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight >= MAX_IN_FLIGHT || this.queue.length === 0) return;
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight++;
      void this.commit(batch).finally(() => {
        this.inFlight--;
        this.schedule();
        if (this.queue.length === 0 && this.inFlight === 0) {
          for (const resolve of this.idle.splice(0)) resolve();
        }
      });
    });
  }

  private async commit(batch: Item[]): Promise<void> {
    let outcomes: Outcome[] = [];
    let written: Written[] = [];
    try {
      await withAuditedTransaction(
        this.options.pool,
        this.options.auditLock,
        describe(batch),
        async (q, at) => {
          // From scratch on each attempt: a transaction that lost a conflict runs again.
          outcomes = [];
          written = [];
          await this.write(q, batch, outcomes, written, at);
          return {
            value: undefined,
            events: written.flatMap(({ change }) => change.events),
            notify: {
              channel: this.options.channel,
              payloads: this.options.notifications(
                written.map(({ change }) => {
                  const { id, status, version } = change.request;
                  return { id, status, version };
                }),
              ),
            },
          };
        },
        this.options.clock,
      );
    } catch (error) {
      await this.failed(batch, error);
      return;
    }
    this.settle(batch, outcomes, written);
  }

  private async failed(batch: Item[], error: unknown): Promise<void> {
    if (batch.length > 1 && isDataError(error)) {
      // One item's data the database refuses (a bug's, since input is checked before) must
      // not fail the others: each is written again on its own, and only the culprit fails.
      for (const item of batch) await this.commit([item]);
      return;
    }
    // Nothing of the batch committed, refusals included: every item hears the failure.
    for (const item of batch) item.reject(error);
  }

  /** After COMMIT: listeners hear each change, then each caller its outcome. */
  private settle(batch: Item[], outcomes: Outcome[], written: Written[]): void {
    for (const { change } of written) {
      const { id, status, version } = change.request;
      this.options.committed({ id, status, version });
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  /**
   * Locks are taken in one order (agents' pending locks first, sorted, and only while holding
   * no other; then rows: new requests by idempotency key, existing ones by id; the audit lock
   * last), so two batches, here or on another replica, never wait on each other in a cycle.
   */
  private async write(
    q: Query,
    batch: Item[],
    outcomes: Outcome[],
    written: Written[],
    at: number,
  ): Promise<void> {
    const byIndex = new Map<number, Written>();
    await this.insertRequests(q, make(batch, outcomes, at), outcomes, byIndex);
    const reviews = await this.applyTransitions(q, batch, outcomes, byIndex, at);
    written.push(...[...byIndex.entries()].sort(([a], [b]) => a - b).map(([, w]) => w));
    if (written.length === 0) return;

    if (reviews.length > 0) {
      await insertRows(q, "reviews", REVIEW_COLUMNS, reviews.map(reviewRow));
    }
    await insertOutbox(q, written);
  }

  /**
   * One INSERT for every new request; a request whose idempotency key is taken writes
   * nothing and returns the request that holds the key. A concurrent insert of the same key
   * on another replica makes the statement wait for it, then read the winner. A request past
   * its agent's limit of pending requests is left out and writes nothing.
   */
  private async insertRequests(
    q: Query,
    inserts: Made[],
    outcomes: Outcome[],
    byIndex: Map<number, Written>,
  ): Promise<void> {
    if (inserts.length === 0) return;
    const overLimit = await this.overPendingLimit(q, inserts);
    for (const { item, index } of inserts) {
      if (overLimit.has(item))
        outcomes[index] = { ok: true, value: { inserted: false, atPendingLimit: true } };
    }
    const admitted = inserts
      .filter(({ item }) => !overLimit.has(item))
      .sort((a, b) => compareKeys(a.change.request, b.change.request));
    if (admitted.length === 0) return;
    const rows = await insertRows(
      q,
      "requests",
      REQUEST_COLUMNS,
      admitted.map(({ change }) => requestParams(change.request)),
      "ON CONFLICT (agent, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
    );
    const inserted = new Set(rows.map((row) => row.id as string));
    const refused = admitted.filter(({ change }) => !inserted.has(change.request.id));
    const holders = new Map<string, ActionRequest>();
    if (refused.length > 0) {
      const found = await q(
        `${SELECT_REQUEST} JOIN unnest($1::text[], $2::text[]) AS k(agent, key)
        ON r.agent = k.agent AND r.idempotency_key = k.key`,
        [
          refused.map(({ change }) => change.request.agent.name),
          refused.map(({ change }) => change.request.idempotencyKey),
        ],
      );
      for (const row of found.rows) {
        const request = toRequest(row);
        holders.set(keyOf(request), request);
      }
    }
    for (const { change, outbox, index } of admitted) {
      const request = change.request;
      if (inserted.has(request.id)) {
        outcomes[index] = { ok: true, value: { inserted: true, request } };
        byIndex.set(index, { change, outbox });
        continue;
      }
      const existing = holders.get(keyOf(request));
      outcomes[index] = existing
        ? { ok: true, value: { inserted: false, existing } }
        : {
            ok: false,
            error: new Error(`request ${request.id} conflicted with no visible request`),
          };
    }
  }

  /**
   * The new requests that would pass their agent's limit of pending requests. Each agent's
   * pending requests are counted under an advisory lock of the agent's, held until commit:
   * batches adding pending requests for one agent, here or on another replica, take turns,
   * and each counts what the ones before it committed. Batches with none to add take no
   * lock. In the batch, places go in the order asked; a request whose idempotency key is
   * already held, or taken by an earlier request of the batch, takes none: it is answered
   * with the request that holds the key.
   */
  private async overPendingLimit(q: Query, inserts: Made[]): Promise<Set<InsertItem>> {
    const over = new Set<InsertItem>();
    // Only a request that would wait for review is limited, and pays for the count.
    const limited = inserts.filter(
      ({ item, change }) => item.maxPending !== undefined && change.request.status === "pending",
    );
    if (limited.length === 0) return over;
    // Per agent, the largest limit. A request counts while it has not expired by the
    // database's clock, which every replica judges expiry by.
    const agents = new Map<string, { max: number }>();
    for (const { item, change } of limited) {
      const { agent } = change.request;
      const seen = agents.get(agent.name);
      agents.set(agent.name, { max: Math.max(seen?.max ?? 0, item.maxPending!) });
    }
    // In one order, as every batch takes them; counted by a statement of its own, whose
    // snapshot (READ COMMITTED) starts once the locks are held.
    const locks = [...agents.keys()].map(this.options.pendingLock).sort();
    await q("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", [locks]);
    const keyed = limited
      .map(({ change }) => change.request)
      .filter((request) => request.idempotencyKey !== null);
    const found = await q(
      `SELECT a.agent, NULL::text AS key, (SELECT count(*)::int FROM (SELECT 1 FROM requests r
        WHERE r.status = 'pending' AND r.agent = a.agent
        AND (r.expires_at IS NULL OR r.expires_at > ${NOW_MS}) LIMIT a.max) AS p) AS pending
      FROM unnest($1::text[], $2::int[]) AS a(agent, max)
      UNION ALL
      SELECT r.agent, r.idempotency_key, NULL FROM requests r
      JOIN unnest($3::text[], $4::text[]) AS k(agent, key)
        ON r.agent = k.agent AND r.idempotency_key = k.key`,
      [
        [...agents.keys()],
        [...agents.values()].map((a) => a.max),
        keyed.map((request) => request.agent.name),
        keyed.map((request) => request.idempotencyKey),
      ],
    );
    const pending = new Map<string, number>();
    const taken = new Set<string>();
    for (const row of found.rows) {
      if (row.key === null) pending.set(row.agent as string, row.pending as number);
      else taken.add(JSON.stringify([row.agent, row.key]));
    }
    for (const { item, change } of limited.sort((a, b) => a.index - b.index)) {
      const request = change.request;
      const key = request.idempotencyKey === null ? undefined : keyOf(request);
      if (key !== undefined && taken.has(key)) continue;
      const count = pending.get(request.agent.name) ?? 0;
      if (count >= item.maxPending!) {
        over.add(item);
        continue;
      }
      pending.set(request.agent.name, count + 1);
      if (key !== undefined) taken.add(key);
    }
    return over;
  }

  /**
   * Locks every request the batch changes, in id order, reads those whose caller's copy is
   * stale, then runs each item's pure `decide` in the order asked: a second change to one
   * request sees the first. One UPDATE writes each request's final state.
   */
  private async applyTransitions(
    q: Query,
    batch: Item[],
    outcomes: Outcome[],
    byIndex: Map<number, Written>,
    at: number,
  ): Promise<Review[]> {
    const items = batch
      .map((item, index) => ({ item, index }))
      .filter((x): x is { item: TransitionItem; index: number } => x.item.kind === "transition");
    if (items.length === 0) return [];
    const ids = [...new Set(items.map(({ item }) => item.id))].sort();
    // Lock first, read after: a statement that waited for a lock still reads with the
    // snapshot it started with, which would miss the review the previous holder added.
    const locked = new Map<string, number>();
    for (const row of (
      await q(
        "SELECT id, version FROM requests WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        [ids],
      )
    ).rows) {
      locked.set(row.id as string, row.version as number);
    }
    // A caller's copy stands in for the row only when every item on that request brought a
    // current one: a copy can be current in version yet carry an older lease time (the
    // heartbeat renews it without a version), and only its own caller accepted that.
    const current = new Map<string, ActionRequest>();
    const mustRead = new Set<string>();
    for (const { item } of items) {
      const known = item.known;
      if (known && known.id === item.id && known.version === locked.get(item.id)) {
        if (!current.has(item.id)) current.set(item.id, known);
      } else {
        mustRead.add(item.id);
      }
    }
    for (const id of mustRead) current.delete(id);
    const stale = [...locked.keys()].filter((id) => !current.has(id));
    if (stale.length > 0) {
      for (const row of (await q(`${SELECT_REQUEST} WHERE r.id = ANY($1::text[])`, [stale])).rows) {
        current.set(row.id as string, toRequest(row));
      }
    }

    const { reviews, changed } = decideAll(items, current, outcomes, byIndex, at);
    if (changed.size === 0) return reviews;

    const finals = [...changed].map((id) => current.get(id)!);
    const updated = await q(
      `UPDATE requests AS r SET status = v.status, outcome = v.outcome, updated_at = v.updated_at,
      expires_at = v.expires_at, finished_at = v.finished_at, version = v.version
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
        $7::int[], $8::int[]) AS v(id, status, outcome, updated_at, expires_at, finished_at,
        version, prior)
      WHERE r.id = v.id AND r.version = v.prior`,
      [
        finals.map((r) => r.id),
        finals.map((r) => r.status),
        finals.map((r) => (r.outcome === null ? null : JSON.stringify(r.outcome))),
        finals.map((r) => r.updatedAt),
        finals.map((r) => r.expiresAt),
        finals.map((r) => r.finishedAt),
        finals.map((r) => r.version),
        finals.map((r) => locked.get(r.id)),
      ],
    );
    if (updated.rowCount !== finals.length) {
      throw new Error("a request changed underneath its locked transition");
    }
    return reviews;
  }
}

/**
 * Makes each new request of the batch at `at`, the database's time as the batch's
 * transaction began: the time its expiry is judged by (`NOW_MS`, in this transaction and in
 * every replica's later ones), so its time to live is as long as asked whatever the clock of
 * the replica that submitted it says. Taken from the transaction's first message, it costs
 * no round trip. A request whose making throws fails alone.
 */
function make(batch: Item[], outcomes: Outcome[], at: number): Made[] {
  const made: Made[] = [];
  batch.forEach((item, index) => {
    if (item.kind !== "insert") return;
    try {
      const change = item.submit(at);
      made.push({ item, index, change, outbox: item.plan(change) });
    } catch (error) {
      outcomes[index] = { ok: false, error };
    }
  });
  return made;
}

/**
 * Runs each transition's pure `decide` in the order asked, on `current` (the requests as
 * locked, or as their callers knew them), so a second change to one request sees the first.
 * Fills in each item's outcome and the changes to write; returns the new reviews and the ids
 * of the requests that changed (their final state is left in `current`).
 */
function decideAll(
  items: { item: TransitionItem; index: number }[],
  current: Map<string, ActionRequest>,
  outcomes: Outcome[],
  byIndex: Map<number, Written>,
  at: number,
): { reviews: Review[]; changed: Set<string> } {
  const reviews: Review[] = [];
  const changed = new Set<string>();
  for (const { item, index } of items) {
    const request = current.get(item.id);
    if (!request) {
      outcomes[index] = {
        ok: false,
        error: new AirlockError("not_found", `no request ${item.id}`),
      };
      continue;
    }
    let verdict: TransitionResult<unknown>;
    let outbox: OutboxEntry[] = [];
    try {
      verdict = item.decide(request, at);
      if (verdict.change) outbox = item.plan(verdict.change);
    } catch (error) {
      outcomes[index] = { ok: false, error };
      continue;
    }
    if (verdict.change) {
      current.set(item.id, verdict.change.request);
      changed.add(item.id);
      if (verdict.change.review) reviews.push(verdict.change.review);
      byIndex.set(index, { change: verdict.change, outbox });
    }
    outcomes[index] = verdict.error
      ? { ok: false, error: verdict.error }
      : { ok: true, value: verdict.value };
  }
  return { reviews, changed };
}

const REVIEW_COLUMNS = [
  "id",
  "request_id",
  "reviewer",
  "decision",
  "comment",
  "request_hash",
  "evidence",
  "reviewer_groups",
  "created_at",
];

function reviewRow(r: Review): unknown[] {
  return [
    r.id,
    r.requestId,
    r.reviewer,
    r.decision,
    r.comment,
    r.requestHash,
    JSON.stringify(r.evidence),
    JSON.stringify(r.groups ?? []),
    r.createdAt,
  ];
}

/**
 * The batch's outbox entries, in the order asked (ids give one request's entries their order).
 * Written and due by the database's clock, which every replica claims by: an entry written
 * ahead (a reminder) is due as long after the change as it was asked to be, whatever the
 * clock of the replica that wrote it says.
 */
async function insertOutbox(q: Query, written: readonly Written[]): Promise<void> {
  const entries = written.flatMap(({ change, outbox }) =>
    outbox.map((entry) => ({
      entry,
      delay: (entry.availableAt ?? change.request.updatedAt) - change.request.updatedAt,
    })),
  );
  if (entries.length === 0) return;
  await q(
    `INSERT INTO outbox (topic, request_id, payload, available_at, created_at)
    SELECT e.topic, e.request_id, e.payload, ${NOW_MS} + e.delay, ${NOW_MS}
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY
      AS e(topic, request_id, payload, delay, n)
    ORDER BY e.n`,
    [
      entries.map(({ entry }) => entry.topic),
      entries.map(({ entry }) => entry.requestId),
      entries.map(({ entry }) => JSON.stringify(entry.payload)),
      entries.map(({ delay }) => delay),
    ],
  );
}

/**
 * A failure caused by what was written rather than by the database's state: invalid text
 * or numbers (class 22), a violated constraint (23), a message the server could not read.
 */
function isDataError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && (/^2[23]/.test(code) || code === "08P01");
}

function keyOf(request: ActionRequest): string {
  return JSON.stringify([request.agent.name, request.idempotencyKey]);
}

/** Requests with idempotency keys in one order, so that two batches wait on keys in one order. */
function compareKeys(a: ActionRequest, b: ActionRequest): number {
  const x = keyOf(a);
  const y = keyOf(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * What a failed batch was doing, for the error every caller in it receives: no request ids,
 * since the batch holds other agents' requests.
 */
function describe(batch: Item[]): string {
  const inserts = batch.filter((item) => item.kind === "insert").length;
  const changes = batch.length - inserts;
  const parts = [
    inserts ? `record ${inserts === 1 ? "a request" : `${inserts} requests`}` : "",
    changes ? `change ${changes === 1 ? "a request" : `${changes} requests`}` : "",
  ];
  return parts.filter(Boolean).join(" and ");
}
