/**
 * The request lifecycle as the API sees it: submit (decide, record, and run what is allowed),
 * read and wait, cancel, review. Decisions are pure transitions; this service loads what they
 * need, lets the store commit them, and acts only on what was committed.
 */
import type { Json } from "../common/canonical-json.js";
import { newId } from "../common/ids.js";
import { createRateLimiter } from "../common/rate-limiter.js";
import { textProblem } from "../common/storable-text.js";
import type { AgentConfig } from "../config/config-schema.js";
import type { LiveConfig } from "../config/live-config.js";
import type { Connector, Description } from "../connectors/connector.js";
import { AirlockError } from "../errors.js";
import type { DetectorName } from "../masking/detector-names.js";
import { maskInput, scrubHidden, withTopKeysHidden } from "../masking/input-mask.js";
import { maskText } from "../masking/result-masking.js";
import type { Redactor } from "../masking/secret-redactor.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { evaluatePolicy } from "../policy/policy-evaluate.js";
import type { OutboxPlanner, RequestQuery, Store } from "../store/store.js";
import type { Approvers } from "./request-approvers.js";
import type { Executor } from "./request-executor.js";
import { newNonce, requestHash } from "./request-hash.js";
import { cancel, castVote, expire, type Reviewer, submit } from "./request-transitions.js";
import { type ActionRequest, isTerminal, type Proposal, type Vote } from "./request-types.js";
import type { Waiters } from "./request-waiters.js";

/**
 * How soon a waiting agent looks again at a request past its expiry by `clock` that the store
 * did not expire yet: on PostgreSQL, the store's time is the database's clock as learned
 * between transactions, which can run a little ahead of the clock its transactions read.
 */
const EXPIRY_RECHECK_MS = 1000;

export interface ActionSubmission {
  connection: string;
  operation: string;
  input: unknown;
  justification?: string | undefined;
  /** Parsed from JSON at the boundary, so JSON all the way down. */
  context?: Record<string, unknown> | undefined;
  idempotencyKey?: string | undefined;
}

export interface RequestServiceDeps {
  store: Store;
  /** The rules in force, read at each decision: a reload replaces them. */
  live: Pick<LiveConfig, "policy">;
  connectors: ReadonlyMap<string, Connector>;
  /** Each connection's default result detectors, for rules that name none. */
  resultMasks: ReadonlyMap<string, readonly DetectorName[]>;
  approvers: Approvers;
  executor: Executor;
  waiters: Waiters;
  plan: OutboxPlanner;
  logger: Logger;
  metrics: Metrics;
  /**
   * The store's time (Store.now): what rules see as `now`, what ids are stamped with, and
   * what expiry is judged by outside the store's transactions, alike on every replica.
   */
  clock: () => number;
  /** Called after any commit that may have produced outbox entries. */
  afterCommit: () => void;
  /** Config secrets, which a connector's description can quote (an argv template's `${env:}`). */
  redactor: Redactor;
}

export type RequestService = ReturnType<typeof createRequestService>;

/**
 * Text kept as it is must survive storage unchanged, whichever door it came in by (the API
 * checks it too, Slack and other channels do not).
 */
function storable(field: string, text: string | undefined): void {
  const problem = text === undefined ? undefined : textProblem(text);
  if (problem) throw new AirlockError("invalid_request", `${field}: ${problem}`, { field });
}

export function createRequestService(deps: RequestServiceDeps) {
  const { store, live, connectors, approvers, executor, waiters, plan, logger, metrics, clock } =
    deps;

  const { ownersOf } = approvers;

  const connectorFor = (name: string): Connector => {
    const connector = connectors.get(name);
    if (!connector) {
      throw new AirlockError(
        "unknown_connection",
        `connection: no connection named "${name}"${connectors.size ? ` (known: ${[...connectors.keys()].join(", ")})` : ""}`,
        { field: "connection" },
      );
    }
    return connector;
  };

  /** Each rate-limited agent's bucket, by the agent's limit as configured now. */
  const limiter = createRateLimiter({ burst: 1, perSecond: 1, clock });
  const checkRate = async (agent: AgentConfig): Promise<void> => {
    const limit = agent.rateLimit;
    if (!limit) return;
    const burst = limit.burst ?? limit.perMinute;
    const perSecond = limit.perMinute / 60;
    // Shared by every replica on a database: the limit is the agent's, not each one's.
    const wait = store.takeRateToken
      ? await store.takeRateToken(`agent:${agent.name}`, burst, perSecond)
      : limiter.take(agent.name, { burst, perSecond });
    if (wait !== undefined) {
      throw new AirlockError(
        "rate_limited",
        `agent ${agent.name} submits actions faster than its limit of ${limit.perMinute} a minute (agents[].rateLimit); try again in ${wait} s`,
        { details: { retryAfter: wait } },
      );
    }
  };

  async function submitAction(agent: AgentConfig, body: ActionSubmission): Promise<ActionRequest> {
    const key = body.idempotencyKey ?? null;
    // A retry of a submission already recorded (its answer lost) submits nothing new: the
    // rate limit must not refuse it, or the agent hears "try again" about an action that ran.
    const existing = key === null ? undefined : await store.findByIdempotencyKey(agent.name, key);
    if (!existing) await checkRate(agent);
    const connector = connectorFor(body.connection);
    const input = connector.parse(body.operation, body.input);
    storable("justification", body.justification);
    const proposal = {
      agent: agent.name,
      connection: body.connection,
      operation: body.operation,
      input,
      justification: body.justification ?? "",
      context: (body.context ?? {}) as Record<string, Json>,
    };
    if (existing) return sameOrRefuse(existing, proposal);
    const nonce = newNonce();
    const hash = requestHash(proposal, nonce);

    let description: Description;
    try {
      description = await connector.describe(body.operation, input);
    } catch (error) {
      if (error instanceof AirlockError) throw error;
      throw new AirlockError(
        "invalid_request",
        `input: the action cannot be described: ${String(error)}`,
        {
          field: "input",
          cause: error,
        },
      );
    }
    const now = clock();
    const decision = evaluatePolicy(live.policy, {
      action: proposal,
      agent: { name: agent.name, owner: agent.owner, labels: agent.labels },
      now: new Date(now),
      facts: description.facts,
      risk: description.risk,
    });
    decision.maskResult ??= [...(deps.resultMasks.get(body.connection) ?? [])];
    // A cheap early refusal that spares the dry run; the store's count as it inserts is the
    // one that holds when submissions race.
    if (decision.decision === "review" && !(await withinPendingLimit(agent, now))) {
      return overPendingLimit(agent, key, proposal);
    }
    // Reviewers see a preview built from the masked input, never the real values scrubbed
    // after the fact; facts, notes and errors (which can quote the input) are scrubbed of them.
    // The input's own keys stay as sent here (the connector reads its fields by them): the
    // preview is scrubbed as text after, of hidden values the agent used as such a key (an MCP
    // tool's argument's name).
    const forPreview = maskInput(input, decision.mask, { topKeys: false });
    const { masked, hidden } = forPreview;
    const notes = [...(description.notes ?? [])];
    if (decision.decision === "review" && connector.dryRun) {
      const rehearsal = await connector.dryRun(body.operation, input);
      if (rehearsal) notes.push(rehearsal);
    }
    const preview =
      decision.mask.length === 0
        ? description.preview
        : scrubHidden(connector.preview(body.operation, masked), hidden);
    // Connectors build descriptions from their config too, which can hold secrets: what is
    // stored and shown goes through the redactor (rules above saw the real facts).
    const shown: Description = deps.redactor.redact({
      // Notes come from the real system (a dry run's counts): the result detectors apply too.
      preview: [
        ...scrubHidden(notes, hidden).map((note) => maskText(note, decision.maskResult ?? []).text),
        preview,
      ].join("\n\n"),
      facts:
        decision.mask.length === 0
          ? description.facts
          : scrubHidden(description.facts, hidden, { exact: true }),
      risk: description.risk,
    });
    // A rule's reason is config text, which can hold a resolved `${env:}` reference.
    decision.reason = deps.redactor.redactText(decision.reason);
    if (decision.error) {
      // A CEL error can quote a value the condition holds, a configured secret included.
      decision.error = deps.redactor.redactText(scrubHidden(decision.error, hidden));
      logger.warn(
        {
          agent: agent.name,
          connection: body.connection,
          rule: decision.rule,
          err: decision.error,
        },
        "a rule could not be evaluated; the action was denied",
      );
    }
    // The audit trail's copy of the input hides its own keys too, from the same masking.
    const maskedInput = { masked: withTopKeysHidden(forPreview), hidden };
    // Stamped (its id, submission, expiry, audit events) by the store's time as it is
    // recorded: on PostgreSQL, the database's clock, which every replica judges its expiry
    // by, so it lives `expiresIn` whatever this replica's clock says. Read in the inserting
    // transaction's first message, it costs nothing, and is exact where `clock` (the store's
    // time as learned before, which the rule above saw as `now`) is off by up to half a
    // round trip.
    const inserted = await store.insertRequest(
      (at = now) =>
        submit({
          id: newId("req", at),
          proposal,
          agent: { name: agent.name, owner: agent.owner, labels: agent.labels },
          connectionType: connector.type,
          idempotencyKey: key,
          hash,
          nonce,
          decision,
          description: shown,
          maskedInput,
          now: at,
        }),
      plan,
      agent.maxPending,
    );
    if (!inserted.inserted) {
      if ("existing" in inserted) return sameOrRefuse(inserted.existing, proposal);
      return overPendingLimit(agent, key, proposal);
    }
    const { request } = inserted;
    deps.afterCommit();
    metrics.decisions.inc({ decision: decision.decision, rule: decision.rule ?? "(no rule)" });
    logger.info(
      {
        requestId: request.id,
        agent: agent.name,
        connection: body.connection,
        operation: body.operation,
        decision: decision.decision,
        rule: decision.rule,
      },
      "action decided",
    );
    if (request.status === "executing") return executor.runClaimed(request);
    return request;
  }

  async function withinPendingLimit(agent: AgentConfig, now: number): Promise<boolean> {
    return (await store.countPending(agent.name, now, agent.maxPending)) < agent.maxPending;
  }

  /** A submission past the agent's limit of pending requests: refused, unless a twin exists. */
  async function overPendingLimit(
    agent: AgentConfig,
    key: string | null,
    proposal: Proposal,
  ): Promise<ActionRequest> {
    // A twin of this submission (the same key, sent twice at once) may have just been
    // recorded and taken the last place: it is the answer, not a refusal.
    const twin = key === null ? undefined : await store.findByIdempotencyKey(agent.name, key);
    if (twin) return sameOrRefuse(twin, proposal);
    throw new AirlockError(
      "rate_limited",
      `agent ${agent.name} already has ${agent.maxPending} requests waiting for review, its limit (agents[].maxPending); wait for reviewers to decide them, or cancel some`,
    );
  }

  /** The earlier request, as it stands now (a pending one whose time is up is expired). */
  async function sameOrRefuse(existing: ActionRequest, proposal: Proposal): Promise<ActionRequest> {
    if (requestHash(proposal, existing.nonce) !== existing.hash) {
      throw new AirlockError(
        "invalid_request",
        `idempotencyKey: already used for request ${existing.id}, which asked for something different; use a new key for a new action`,
        { field: "idempotencyKey" },
      );
    }
    return load(existing.id);
  }

  /** Reads a request, expiring it first when its time is up. */
  async function load(id: string): Promise<ActionRequest> {
    const request = await store.getRequest(id);
    if (!request) throw new AirlockError("not_found", `no request ${id}`);
    if (
      request.status === "pending" &&
      request.expiresAt !== null &&
      clock() >= request.expiresAt
    ) {
      // Judged again under the lock, by the store's clock where replicas share it.
      const expired = await store.transition(
        id,
        (current, at = clock()) => expire(current, at),
        plan,
      );
      deps.afterCommit();
      return expired;
    }
    return request;
  }

  /**
   * Waits until the request is terminal, `waitMs` pass, or the caller goes away; with
   * `fromVersion`, also until the request is at any other version (a vote, a step started).
   */
  async function waitForTerminal(
    id: string,
    waitMs: number,
    signal?: AbortSignal,
    fromVersion?: number,
  ): Promise<ActionRequest> {
    const deadline = clock() + waitMs;
    const watch = waiters.watch(id);
    try {
      for (;;) {
        const request = await load(id);
        const left = deadline - clock();
        const moved = fromVersion !== undefined && request.version !== fromVersion;
        if (isTerminal(request.status) || moved || left <= 0 || signal?.aborted || waiters.closed)
          return request;
        // Wake at the expiry too, so a waiting agent hears about it on time. Still pending
        // past it by this clock, it is not yet due by the clock the store's transaction read
        // (a few ms behind): its expiry is heard as a change, or looked for again shortly.
        const untilExpiry =
          request.status === "pending" && request.expiresAt !== null
            ? request.expiresAt - clock() + 1
            : left;
        await watch.next(
          Math.max(0, Math.min(left, untilExpiry > 0 ? untilExpiry : EXPIRY_RECHECK_MS)),
          signal,
        );
      }
    } finally {
      watch.close();
    }
  }

  async function getForAgent(
    agent: AgentConfig,
    id: string,
    waitMs = 0,
    signal?: AbortSignal,
    fromVersion?: number,
  ) {
    const request = await load(id);
    if (request.agent.name !== agent.name) throw new AirlockError("not_found", `no request ${id}`);
    if (waitMs > 0 && !isTerminal(request.status)) {
      return waitForTerminal(id, waitMs, signal, fromVersion);
    }
    return request;
  }

  /** How long a request held for review waited, once a change here ended its wait. */
  const waited = (request: ActionRequest): void => {
    const end =
      request.status === "denied" || request.status === "expired" || request.status === "cancelled"
        ? request.finishedAt
        : request.status === "approved"
          ? request.updatedAt
          : null;
    if (end === null) return;
    metrics.reviewWait.observe(
      { outcome: request.status },
      Math.max(0, end - request.createdAt) / 1000,
    );
  };

  async function cancelForAgent(agent: AgentConfig, id: string): Promise<ActionRequest> {
    const request = await store.transition(
      id,
      (current, at = clock()) => cancel(current, agent.name, at),
      plan,
    );
    deps.afterCommit();
    waited(request);
    logger.info({ requestId: id, agent: agent.name }, "request cancelled");
    return request;
  }

  async function review(
    reviewer: Reviewer,
    id: string,
    vote: {
      decision: Vote;
      comment?: string | undefined;
      requestHash?: string | undefined;
      /** The chat channel the vote came through (Slack, Teams); none for the API and console. */
      via?: string;
    },
  ): Promise<ActionRequest> {
    storable("comment", vote.comment);
    const reviewId = newId("rev", clock());
    let after: ActionRequest;
    try {
      after = await store.transition(
        id,
        (current, at = clock()) => {
          // Its approval would never count (request-approvers.ts); a denial still ends it.
          const gone = vote.decision === "approve" ? approvers.agentGone(current) : undefined;
          if (gone) {
            throw new AirlockError(
              "forbidden",
              `${gone}: its requests can no longer be approved; deny it, or let it expire`,
            );
          }
          return castVote(current, {
            reviewer,
            decision: vote.decision,
            comment: vote.comment ?? "",
            ...(vote.requestHash === undefined ? {} : { expectedHash: vote.requestHash }),
            ...(vote.via === undefined ? {} : { via: vote.via }),
            owners: ownersOf(current),
            counts: (review) => approvers.disqualified(current, review) === undefined,
            groupsOf: (review) => approvers.groupsOf(current, review),
            reviewId,
            now: at,
          });
        },
        plan,
      );
    } finally {
      deps.afterCommit();
    }
    metrics.reviews.inc({ decision: vote.decision });
    waited(after);
    logger.info(
      { requestId: id, reviewer: reviewer.email, decision: vote.decision, status: after.status },
      "review recorded",
    );
    if (after.status === "approved") {
      void executor
        .execute(id)
        .catch((error) =>
          logger.error({ requestId: id, err: error }, "could not run an approved request"),
        );
    }
    return after;
  }

  async function list(query: RequestQuery): Promise<ActionRequest[]> {
    return store.listRequests(query);
  }

  /**
   * The agent's own requests, newest first, as `list` finds them; those whose time is up are
   * expired on the way, as a read of one would, so no agent is told to wait for the dead.
   */
  async function listForAgent(
    agent: AgentConfig,
    query: Omit<RequestQuery, "agent">,
  ): Promise<ActionRequest[]> {
    const found = await store.listRequests({ ...query, agent: agent.name });
    const now = clock();
    return Promise.all(
      found.map((request) =>
        request.status === "pending" && request.expiresAt !== null && now >= request.expiresAt
          ? load(request.id)
          : request,
      ),
    );
  }

  /** Pending requests past their expiry become expired; returns how many. */
  async function sweepExpired(): Promise<number> {
    // Side by side, so that they share one group commit.
    const results = await Promise.all(
      (await store.expiredPending(clock(), 500)).map((id) =>
        store.transition(id, (current, at = clock()) => expire(current, at), plan),
      ),
    );
    const expired = results.filter((r) => r.status === "expired");
    for (const request of expired) waited(request);
    const count = expired.length;
    if (count > 0) {
      deps.afterCommit();
      logger.info({ count }, "expired pending requests");
    }
    return count;
  }

  return {
    submit: submitAction,
    load,
    waitForTerminal,
    getForAgent,
    cancel: cancelForAgent,
    review,
    list,
    listForAgent,
    sweepExpired,
    ownersOf,
    countedGroups: approvers.countedGroups,
  };
}
