/**
 * The storage interface. Everything outside `store/` is dialect-agnostic: services describe
 * what changes through pure transitions, and a store applies each change, its audit events
 * and its outbox entries in one transaction, durably, before anyone acts on it.
 */
import type { AuditEvent } from "../audit/audit-chain.js";
import type {
  ActionRequest,
  AuditEventInput,
  Change,
  RequestStatus,
  TransitionResult,
} from "../requests/request-types.js";

export type PrincipalKind = "agent" | "reviewer";

export interface TokenRecord {
  id: string;
  kind: PrincipalKind;
  /** The agent's name, or the reviewer's e-mail. */
  subject: string;
  /** SHA-256 of the token; the token itself is never stored. */
  hash: string;
  /** The first characters of the token, so people can tell tokens apart. */
  hint: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface OutboxEntry {
  /** Who handles it: a channel's name, or another consumer. */
  topic: string;
  requestId: string | null;
  payload: Record<string, unknown>;
  /** Not before this time (ms); at once when absent. Reminders are written ahead this way. */
  availableAt?: number;
}

export interface OutboxItem extends OutboxEntry {
  id: number;
  attempts: number;
  createdAt: number;
}

/** An outbox entry as an operator sees it: what it is for, and how its delivery went. */
export interface OutboxRecord extends OutboxItem {
  /** "pending" (to deliver, or being delivered) or "dead" (given up: a dead letter). */
  state: "pending" | "dead";
  availableAt: number;
  lastError: string | null;
}

export interface RequestQuery {
  statuses?: RequestStatus[];
  agent?: string;
  connection?: string;
  /** Only requests created before this id (ids sort by creation). */
  before?: string;
  limit: number;
}

export interface AuditQuery {
  afterSeq?: number;
  since?: number;
  until?: number;
  requestId?: string;
  type?: string;
  actor?: string;
  limit: number;
}

/** A committed change to a request, for waking long-polls and live views. */
export interface RequestChange {
  id: string;
  status: RequestStatus;
  version: number;
}

/** The outbox entries a change produces, chosen by the caller (channels, webhooks). */
export type OutboxPlanner = (change: Change) => OutboxEntry[];

/** A reviewer signed in through the identity provider; the cookie holds the id, this its hash. */
export interface SessionRecord {
  idHash: string;
  email: string;
  issuer: string;
  subject: string;
  /** Groups from the identity provider's claim (config groups are added when it is used). */
  groups: string[];
  /** When the identity provider last authenticated the person (ms). */
  authTime: number;
  acr: string | null;
  createdAt: number;
  expiresAt: number;
  /** The identity provider's refresh token, sealed for this session; null when it gave none. */
  refreshToken: string | null;
  /** When the identity provider last vouched for the session and its groups (ms). */
  checkedAt: number;
}

/** What the identity provider said of a session when asked again. */
export interface SessionCheck {
  groups: string[];
  refreshToken: string | null;
  checkedAt: number;
}

/** A sign-in between the redirect to the identity provider and its return. */
export interface SignInRecord {
  stateHash: string;
  verifier: string;
  nonce: string;
  returnTo: string;
  stepUp: boolean;
  expiresAt: number;
}

/** What `Store.insertRequest` came to; only `inserted: true` wrote anything. */
export type InsertResult =
  /** The request as recorded, stamped with the store's time. */
  | { inserted: true; request: ActionRequest }
  /** The agent already used the request's idempotency key: the request that holds it. */
  | { inserted: false; existing: ActionRequest }
  /** The request would wait for review, and the agent already has `maxPending` that do. */
  | { inserted: false; atPendingLimit: true };

/**
 * Time. Methods that judge what is due, expired or still held take `now`, the caller's clock.
 * A store that one process owns (SQLite) judges by it. A store that replicas share
 * (PostgreSQL) judges by its own clock instead, ignoring `now`, and writes its leases and
 * due times as its own clock plus the duration asked for: replicas' clocks are never
 * compared, so a replica whose clock runs ahead cannot take what another still holds. The
 * exception is `claimOnce`, whose expiry is judged by the clock that judged the message.
 *
 * `now()` is the store's time outside its transactions, for what the caller judges or stamps
 * itself: the owning process's clock on SQLite; on PostgreSQL the database's, learned from the
 * readings of it each transaction takes as it begins (no round trip of its own, and one when
 * none has for a while), so every replica's agrees with the others' and with the times the
 * database stamps, within about half a round trip. The gateway passes it wherever replicas
 * must agree: as `now` to the methods that judge by the caller's clock (sessions, sign-ins),
 * to rules as their `now`, and as the time of what it stamps itself (ids, audit events that
 * belong to no request change, tokens, sessions, retention's cut-off). Only `claimOnce` is
 * given each replica's own clock, the one that judged the message's signed time.
 */
export interface Store {
  readonly dialect: "sqlite" | "postgres";

  /**
   * The store's time (ms since the epoch), without a round trip: what every process using the
   * store judges and stamps by outside its transactions (see Time).
   */
  now(): number;

  /**
   * Records the new request `submit` makes (pure, synchronous), with its events and the
   * outbox entries `plan` gives for it. `at` is the store's time to stamp it by, as for
   * `transition`: where replicas share the store (PostgreSQL), the database's clock as the
   * inserting transaction began, the clock every replica judges its expiry by; undefined
   * where one process owns the store, whose own clock stamps it. When the agent already used
   * the request's idempotency key, nothing is written and the earlier request is returned.
   * With `maxPending`, a request that would be pending is refused (nothing written) when
   * the agent already has that many pending at its creation time, counted as `countPending`
   * does: in the inserting transaction, serialised against the agent's other such inserts
   * (in this process and on other replicas), so that a burst cannot pass the limit. The
   * idempotency key is looked at first: a request already made is returned, not refused.
   */
  insertRequest(
    submit: (at: number | undefined) => Change,
    plan: OutboxPlanner,
    maxPending?: number,
  ): Promise<InsertResult>;

  /**
   * Loads a request under a lock, lets `decide` (pure, synchronous) choose the change, and
   * commits it with its events and outbox entries. Throws `not_found` for an unknown id.
   * `known` is the caller's copy: used as is when its version is still current, saving a read.
   * `at` is the store's time to decide by where replicas share it (PostgreSQL: the database's
   * clock, as the change's transaction began), so that every replica judges a request's
   * expiry alike; undefined where one process owns the store, whose own clock decides.
   */
  transition<T>(
    id: string,
    decide: (current: ActionRequest, at: number | undefined) => TransitionResult<T>,
    plan: OutboxPlanner,
    known?: ActionRequest,
  ): Promise<T>;

  getRequest(id: string): Promise<ActionRequest | undefined>;
  findByIdempotencyKey(agent: string, key: string): Promise<ActionRequest | undefined>;
  listRequests(query: RequestQuery): Promise<ActionRequest[]>;
  /** Ids of pending requests whose expiry has passed (by the store's clock: see Time). */
  expiredPending(now: number, limit: number): Promise<string[]>;
  /**
   * How many of the agent's requests wait for review at `now` (not those whose time is up
   * but not yet swept; by the store's clock), counted up to `limit`.
   */
  countPending(agent: string, now: number, limit: number): Promise<number>;
  idsWithStatus(status: RequestStatus, limit: number): Promise<string[]>;
  /**
   * Marks executions as still running (their `updatedAt` becomes `now`, by the store's clock:
   * see Time): the heartbeat that tells other replicas not to end them as interrupted. Not a
   * state change: no version, no event.
   */
  touchExecuting(ids: readonly string[], now: number): Promise<void>;
  countByStatus(): Promise<Partial<Record<RequestStatus, number>>>;

  /** Appends events that belong to no request transition (tokens, start-up). */
  appendAudit(events: AuditEventInput[]): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditEvent[]>;
  /** The last event of the chain, or undefined when there is none. */
  lastAuditEvent(): Promise<{ seq: number; hash: string; type: string } | undefined>;
  /**
   * The chain in order, read in batches: from `afterSeq`'s next event when given (numbered
   * events only, for an export that goes on from the last), else from the first, unnumbered
   * rows included.
   */
  auditEvents(options?: { since?: number; afterSeq?: number }): AsyncIterable<AuditEvent>;

  insertToken(token: TokenRecord, event: AuditEventInput): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(id: string, event: AuditEventInput): Promise<boolean>;

  /**
   * Leases due outbox items of `topics` (the channels this process has) to it for `leaseMs`.
   * Items of other topics are left to the replicas that have their channel. Due, and leased
   * until, by the store's clock (see Time). One whose payload no longer reads as a JSON object
   * (its row edited or damaged) is not handed out: it becomes a dead letter saying so.
   */
  claimOutbox(
    now: number,
    leaseMs: number,
    limit: number,
    topics: readonly string[],
  ): Promise<OutboxItem[]>;
  /**
   * Gives up on pending items of other topics than `topics` that nobody has claimed for
   * `unclaimedMs` (due before then, leased until before then, by the store's clock) and that
   * no earlier item of theirs holds back: no process has their channel (one removed from the
   * config). They become dead letters with `error`. Returns how many.
   */
  abandonOutbox(
    now: number,
    unclaimedMs: number,
    topics: readonly string[],
    error: string,
  ): Promise<number>;
  /**
   * Hands back every claimed item: those a process left when it was killed (or stopped by a
   * second signal) are due again now, not when their lease runs out minutes later. Returns
   * how many. Absent where replicas share the store, as a claim there may be a live one's.
   */
  releaseOutboxClaims?(): Promise<number>;
  /** A delivered item is deleted: only dead letters are kept. */
  completeOutbox(id: number): Promise<void>;
  /**
   * Schedules another attempt `retryInMs` from now (by the store's clock: 0 hands a claim
   * back, due at once), or with null gives up and keeps the item for inspection.
   */
  failOutbox(now: number, id: number, error: string, retryInMs: number | null): Promise<void>;
  /**
   * Deletes up to `limit` requests that finished before `finishedBefore`, oldest first, with
   * their reviews, channel references and outbox entries, and appends `audit(count)` in the
   * same transaction when any went. Their audit events stay: the chain is never cut. Returns
   * how many went.
   */
  pruneRequests(
    finishedBefore: number,
    limit: number,
    audit: (count: number, first: string, last: string) => AuditEventInput,
  ): Promise<number>;
  /**
   * Takes a token from the bucket `key` (`burst` at once, refilled at `perSecond`), counted
   * in the database so that replicas share it: undefined when taken, else the whole seconds
   * to wait. Absent where one process owns the store (SQLite), which counts in memory.
   */
  takeRateToken?(key: string, burst: number, perSecond: number): Promise<number | undefined>;
  /** Outbox entries in one state, by id, after `after`: what an operator looks at. */
  listOutbox(query: {
    state: "pending" | "dead";
    after?: number;
    limit: number;
  }): Promise<OutboxRecord[]>;
  /**
   * Makes dead letters pending again, with their attempts reset: those of `ids`, or all (of
   * `topic`, when given). Returns how many. Each is due since it was made, by the clock of the
   * gateway that made it: the operator's host may run ahead of the gateways', and an entry due
   * only at its time would wait that long, and let its request's later entries pass it. An
   * entry keeps its place in its request's order, so it goes before those still waiting.
   */
  redeliverOutbox(selection: { ids?: readonly number[]; topic?: string }): Promise<number>;
  /** How many entries wait to be delivered, and how many are dead letters. */
  countOutbox(): Promise<{ pending: number; dead: number }>;
  /** Where a channel put its message for a request (to update it in place later). */
  getChannelRef(requestId: string, channel: string): Promise<string | undefined>;
  setChannelRef(requestId: string, channel: string, ref: string): Promise<void>;

  /**
   * Records a new session, with its audit event, and forgets expired ones and the one it
   * replaces (the id hash of the session the same browser held before, if any). Expiry is
   * judged by the caller's clock (`findSession`'s `now`); where replicas share the store,
   * expired sessions are forgotten only well after that by the store's clock, so that a
   * replica whose clock runs ahead never ends the sessions that others still honour.
   */
  insertSession(
    session: SessionRecord,
    event: AuditEventInput,
    replaces?: string | undefined,
  ): Promise<void>;
  findSession(idHash: string, now: number): Promise<SessionRecord | undefined>;
  deleteSession(idHash: string, event: AuditEventInput | undefined): Promise<boolean>;
  /**
   * Takes the session's next check with the identity provider for this replica for
   * `leaseMs` (by the store's clock): false while another replica holds it, when the session
   * has ended at `now` (the caller's clock, as `findSession` judges), or when it no longer
   * holds `refreshToken` (sealed, as read: another check has replaced it since). One check
   * at a time, and never with a replaced token, since a refresh token the provider rotates
   * works only once.
   */
  claimSessionCheck(
    idHash: string,
    now: number,
    leaseMs: number,
    refreshToken: string,
  ): Promise<boolean>;
  /** Gives a claimed check up unanswered (the provider could not be reached). */
  releaseSessionCheck(idHash: string): Promise<void>;
  /** Records a check's answer (and releases the claim), with its audit event if any. */
  recordSessionCheck(
    idHash: string,
    check: SessionCheck,
    event: AuditEventInput | undefined,
  ): Promise<boolean>;
  /**
   * Records a sign-in under way, and forgets the ones that expired before `now` (where
   * replicas share the store, well after that by its clock, as `insertSession` does).
   */
  insertSignIn(signIn: SignInRecord, now: number): Promise<void>;
  /** Returns and deletes the sign-in with this state: each can complete only once. */
  takeSignIn(stateHash: string, now: number): Promise<SignInRecord | undefined>;

  /**
   * Records `key` as seen until `expiresAt` and says whether this is the first time: false
   * when it was already recorded and has not expired (a replayed message). Shared by every
   * replica, and kept across restarts. Unlike the rest (see Time), expired means by `now`,
   * the caller's clock, on every store: `expiresAt` is when the message's own time falls out
   * of the window the caller accepts it in, judged by that clock, so each replica refuses a
   * replay for exactly as long as it would accept the message. Where replicas share the
   * store, expired claims are swept only well after that by the store's clock, so that a
   * replica whose clock runs ahead never clears a claim that another still needs.
   */
  claimOnce(key: string, expiresAt: number, now: number): Promise<boolean>;

  /**
   * Records that the MCP tool call `call` (a key naming its agent, its client's session and
   * its JSON-RPC id) waits on request `requestId`, for up to `ttlMs` (by the store's clock:
   * see Time), so that the client's cancel finds the request whichever replica it reaches.
   * True when the call's cancel came first (`cancelMcpCall`): the caller withdraws the
   * request itself. A call already recorded under the key with another request keeps it.
   */
  holdMcpCall(call: string, requestId: string, ttlMs: number, now: number): Promise<boolean>;
  /**
   * Marks `call` cancelled and returns the request it waits on, once it has recorded one;
   * until then the mark waits `ttlMs` for it (`holdMcpCall` then says it was cancelled).
   * Expired calls and marks are swept on the way.
   */
  cancelMcpCall(call: string, ttlMs: number, now: number): Promise<string | undefined>;
  /**
   * Whether `call` was marked cancelled and the mark is still in time: asked by a call before
   * it submits, so that a cancel which overtook it stops it before it makes a request.
   */
  mcpCallCancelled(call: string, now: number): Promise<boolean>;
  /** Forgets a call that has been answered, if it still waits on `requestId`. */
  releaseMcpCall(call: string, requestId: string): Promise<void>;

  /** Called after every committed request change, in this process and (PostgreSQL) others. */
  subscribe(listener: (change: RequestChange) => void): () => void;
  /**
   * Called when changes may have gone unheard (PostgreSQL: the change feed was cut and is
   * back): whoever follows changes should read again what it follows.
   */
  onMissedChanges(listener: () => void): () => void;

  /** Throws `store_unavailable` when the store cannot be read. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
