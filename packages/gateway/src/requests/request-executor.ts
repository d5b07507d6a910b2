/**
 * Runs approved actions exactly once. The claim (approved -> executing) is a transition only
 * one caller can win, and its audit event is durable before the connector is called. What
 * runs is checked against the hash that was approved. A request found `executing` at start
 * was interrupted: it ends `failed` with "outcome unknown", never a second run.
 */

import { setMaxListeners } from "node:events";
import { type Json, keyedDigest } from "../common/canonical-json.js";
import { clipDepth } from "../common/json-depth.js";
import type { Connector, ExecutionOutcome } from "../connectors/connector.js";
import { AirlockError, errorMessage } from "../errors.js";
import { longValues, scrubApart, scrubBase64, scrubHex } from "../masking/binary-fields.js";
import type { DetectorName } from "../masking/detector-names.js";
import { maskInput, scrubHidden } from "../masking/input-mask.js";
import { maskResult, maskText } from "../masking/result-masking.js";
import type { ByteScrubber, Redactor } from "../masking/secret-redactor.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { OutboxPlanner, Store } from "../store/store.js";
import type { Approvers } from "./request-approvers.js";
import { requestHash } from "./request-hash.js";
import {
  finishExecution,
  interruptExecution,
  startExecution,
  system,
} from "./request-transitions.js";
import type { ActionRequest, Outcome } from "./request-types.js";

export interface Executor {
  /**
   * Runs a request this process has just claimed (status executing, durably) from the very
   * object it hashed, so there is nothing stored to re-verify.
   */
  runClaimed(request: ActionRequest): Promise<ActionRequest>;
  /** Claims an approved request and runs it; null when someone else claimed it first. */
  execute(id: string): Promise<ActionRequest | null>;
  /**
   * Ends executions nobody is running any more as failed, "outcome unknown" (never a second
   * run), then runs approved requests nobody ran. With `all`, every execution found is
   * ended (one process owns the store, so none can still be running); otherwise only
   * those whose lease ran out: their heartbeat has not moved for a lease since this process
   * first saw it so, on its own monotonic clock (a first call ends none of them).
   */
  recover(options?: { all?: boolean }): Promise<{ interrupted: number; resumed: number }>;
  /**
   * Runs approved requests that nobody in this process is running: ones whose start failed
   * (the store was briefly unavailable) are picked up by the next sweep; ones whose start the
   * store refused (a fault) are left approved, and not tried again until a restart.
   */
  resumeApproved(): Promise<number>;
  /** Resolves when every execution under way has finished. */
  drain(): Promise<void>;
}

/**
 * What a request ends with when its outcome cannot be recorded: how the action went (told it
 * failed when it ran, an agent would submit it again), without the result, which may be what
 * could not be recorded, and saying it will not run again.
 */
function notRecorded(outcome: Outcome): Outcome {
  return {
    ok: outcome.ok,
    summary: `${outcome.ok ? "ran" : "failed"}, outcome not recorded`,
    reason: `the action ${outcome.ok ? "succeeded" : "failed"} (${outcome.summary}), but its outcome could not be recorded, so only this is kept; Airlock will not run it again`,
    result: null,
    resultDigest: null,
  };
}

/**
 * An error as the log shows it (pino's fields), its message and stack scrubbed of `hidden` and
 * masked by `detectors`: a connector's error can quote what the system returned.
 */
function scrubError(
  error: unknown,
  hidden: readonly string[],
  detectors: readonly DetectorName[],
): unknown {
  if (hidden.length === 0 && detectors.length === 0) return error;
  const text = (value: string) => maskText(scrubHidden(value, hidden), detectors).text;
  if (!(error instanceof Error)) return text(String(error));
  return { type: error.name, message: text(error.message), stack: text(error.stack ?? "") };
}

/** Whether the request ended with this outcome (and not one another replica gave it). */
function recordedAs(request: ActionRequest, outcome: Outcome): boolean {
  return (
    request.outcome?.summary === outcome.summary &&
    request.outcome.resultDigest === outcome.resultDigest
  );
}

export function createExecutor(deps: {
  store: Store;
  connectors: ReadonlyMap<string, Connector>;
  approvers: Approvers;
  redactor: Redactor;
  plan: OutboxPlanner;
  logger: Logger;
  metrics: Metrics;
  /**
   * The store's time (Store.now), what is stored is stamped by: an execution's start and end
   * and a heartbeat where one process owns the store, an outcome recorded late on any.
   */
  clock: () => number;
  /**
   * Milliseconds on a clock no step of the wall clock moves (performance.now by default): what
   * a lease's lapse is timed by. An NTP correction that steps `clock` forward by more than a
   * lease would otherwise end a live execution on another replica at the next check.
   */
  monotonic?: () => number;
  /** Called after a finished execution commits (to wake channel delivery). */
  afterCommit?: () => void;
  /** Waits between attempts to record an outcome while the store fails. */
  retryDelays?: number[];
  /** How long an execution stays ours without a heartbeat; renewed every third of it. */
  leaseMs?: number;
}): Executor {
  const { store, connectors, redactor, plan, logger, metrics, clock } = deps;
  const monotonic = deps.monotonic ?? (() => performance.now());
  const inFlight = new Set<Promise<unknown>>();
  const leaseMs = deps.leaseMs ?? 60_000;
  // Executions this process runs now; their leases are renewed while they run.
  const leased = new Set<string>();
  let heartbeat: NodeJS.Timeout | undefined;
  // One renewal at a time: one that waits for a row another transaction holds is not
  // joined by more, each holding a connection.
  let beating = false;
  const beat = () => {
    if (leased.size === 0) {
      clearInterval(heartbeat);
      heartbeat = undefined;
      return;
    }
    if (beating) return;
    beating = true;
    store
      .touchExecuting([...leased], clock())
      .catch((error) => logger.warn({ err: error }, "could not renew execution leases"))
      .finally(() => {
        beating = false;
      });
  };
  const leasedWhile = <T>(id: string, work: Promise<T>): Promise<T> => {
    holding(id);
    return work.finally(() => leased.delete(id));
  };
  const holding = (id: string) => {
    leased.add(id);
    if (!heartbeat) {
      heartbeat = setInterval(beat, Math.max(100, Math.floor(leaseMs / 3)));
      heartbeat.unref();
    }
  };
  /**
   * Executions other replicas run, as last seen here: their heartbeat (the `updatedAt` the
   * running replica's heartbeat stamps) and since when, on this process's monotonic
   * clock, it has not moved. A lease has run out when the heartbeat stood still for a whole
   * lease as this process counts: no comparison of two machines' clocks, no step of a wall
   * clock counted as time passed, and nothing ended that this process has not watched for that
   * long (an execution whose start took long to commit).
   */
  const watched = new Map<string, { heartbeat: number; since: number }>();
  /**
   * Executions the store would not end (a fault, or a row that no longer reads): each is said
   * once at error, with what failed; every sweep after would only repeat it.
   */
  const unendable = new Set<string>();
  const retryDelays = deps.retryDelays ?? [50, 100, 200, 400, 800];
  /** Outcomes still being recorded after their caller was told the store failed. */
  const unrecorded = new Map<
    string,
    { request: ActionRequest; outcome: Outcome; timer: NodeJS.Timeout | undefined }
  >();
  let draining = false;
  // Executions are never abandoned halfway (a stop waits for them); connectors keep their own timeouts.
  const running = new AbortController().signal;
  // Each execution in flight listens on it, and stops listening when it ends: not a leak, so
  // no "possible EventTarget memory leak" warning past ten at once.
  setMaxListeners(0, running);

  const track = <T>(promise: Promise<T>): Promise<T> => {
    inFlight.add(promise);
    promise.finally(() => inFlight.delete(promise)).catch(() => {});
    return promise;
  };

  const integrityProblem = (request: ActionRequest): string | undefined => {
    const recomputed = requestHash(
      {
        agent: request.agent.name,
        connection: request.connection,
        operation: request.operation,
        input: request.input,
        justification: request.justification,
        context: request.context,
      },
      request.nonce,
    );
    if (recomputed !== request.hash) {
      return "integrity check failed: the stored action no longer matches its hash; it was not run";
    }
    const stale = request.reviews.find(
      (r) => r.decision === "approve" && r.requestHash !== request.hash,
    );
    if (stale) {
      return `integrity check failed: ${stale.reviewer} approved a different action (hash ${stale.requestHash.slice(0, 12)}…); it was not run`;
    }
    return undefined;
  };

  /** What an action did, beside the verdict its request was given meanwhile. */
  const late = async (request: ActionRequest, outcome: Outcome, recordedStatus: string) => {
    logger.warn(
      { requestId: request.id, status: recordedStatus, summary: outcome.summary },
      "an action's outcome came after its request had been ended; recorded beside it as execution.late_outcome",
    );
    await store.appendAudit([
      {
        type: "execution.late_outcome",
        requestId: request.id,
        actor: system,
        at: clock(),
        data: {
          ok: outcome.ok,
          summary: outcome.summary,
          ...(outcome.reason ? { reason: outcome.reason } : {}),
          resultDigest: outcome.resultDigest,
          recordedStatus,
        },
      },
    ]);
  };

  /**
   * Records how the action ended: the request as it ran is the caller's copy. One that was
   * ended meanwhile ("outcome unknown", by a replica that took its lease for lapsed) keeps
   * that verdict, and the trail gets what did happen beside it: `execution.late_outcome`.
   */
  const finish = async (
    request: ActionRequest,
    outcome: Outcome,
    planned: OutboxPlanner = plan,
  ): Promise<ActionRequest> => {
    let finished: ActionRequest;
    try {
      finished = await store.transition(
        request.id,
        // Stamped by the store's time, as the request's other steps: see `Store.transition`.
        (current, at = clock()) => finishExecution(current, outcome, at),
        planned,
        request,
      );
    } catch (error) {
      // Ended meanwhile and, finished, deleted past retention.requests: the trail still gets it.
      if (error instanceof AirlockError && error.code === "not_found") {
        await late(request, outcome, "deleted");
        throw new AirlockError(
          "not_found",
          `the action ran (${outcome.summary}) but request ${request.id} was ended and deleted meanwhile; what it did is in the audit trail (execution.late_outcome); do not submit it again`,
          { details: { requestId: request.id, executed: true }, cause: error },
        );
      }
      throw error;
    }
    if (!recordedAs(finished, outcome)) await late(request, outcome, finished.status);
    return finished;
  };

  /**
   * `plan`, for a change that must be made whatever the channels can say of it: notifications
   * that cannot be planned are left out (and logged). Channels not told how a request ended
   * are a smaller harm than a request that never ends.
   */
  const endPlanned =
    (requestId: string): OutboxPlanner =>
    (change) => {
      try {
        return plan(change);
      } catch (error) {
        logger.error(
          { requestId, err: error },
          "could not plan the notifications of a request's end; channels are not told",
        );
        return [];
      }
    };

  /**
   * Records the outcome; one refused for another reason than the store being down (the
   * outbox planned for it, or the store, throws on it) is replaced by a bare failure that says
   * how the action went. Trying it again would fail the same way, and the request would stay
   * `executing` (on SQLite, until a restart) with its long-polls waiting on it.
   */
  const record = async (request: ActionRequest, outcome: Outcome): Promise<ActionRequest> => {
    try {
      return await finish(request, outcome);
    } catch (error) {
      if (error instanceof AirlockError && ["store_unavailable", "not_found"].includes(error.code))
        throw error;
      logger.error(
        { requestId: request.id, err: error },
        "an action's outcome could not be recorded; its request ends with how it went, the outcome not recorded",
      );
    }
    return finish(request, notRecorded(outcome), endPlanned(request.id));
  };

  /**
   * The action has run: its outcome must be recorded, so a store that fails now is retried
   * for a while. If it stays down, the caller is told the action ran, so that nobody
   * submits it again, and the outcome is recorded in the background (keepRecording). A store
   * that refuses even the bare end (`record`) is not down: it would refuse it again, so the
   * caller is told at once, and the request stays as the store keeps it, `executing`, until
   * a lease check or the next start ends it "outcome unknown" (if the store lets it).
   */
  const recordOutcome = async (
    request: ActionRequest,
    outcome: Outcome,
  ): Promise<ActionRequest> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await record(request, outcome);
      } catch (error) {
        // Gone (see finish): no attempt brings it back, and the store is not what failed.
        if (error instanceof AirlockError && error.code === "not_found") throw error;
        if (error instanceof AirlockError && error.code === "internal") {
          logger.error(
            { requestId: request.id, err: error },
            "the store refused to record how an action that ran ended; it is not tried again",
          );
          throw new AirlockError(
            "internal",
            `the action ran (${outcome.summary}) but the store refused to record the outcome of request ${request.id}; do not submit it again`,
            { details: { requestId: request.id, executed: true }, cause: error },
          );
        }
        if (attempt >= retryDelays.length + 1) {
          logger.error(
            { requestId: request.id, err: error },
            "the outcome of an action that ran could not be recorded; trying again in the background",
          );
          keepRecording(request, outcome);
          throw new AirlockError(
            "store_unavailable",
            `the action ran (${outcome.summary}) but its outcome could not be recorded; do not submit it again: GET /v1/actions/${request.id} shows it once the store is back`,
            { details: { requestId: request.id, executed: true }, cause: error },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, retryDelays[attempt - 1]));
      }
    }
  };

  /**
   * The caller has been told; the outcome, known here, is still recorded as soon as the store
   * takes it, so the request does not stay `executing` (on SQLite, until a restart) and its
   * long-polls end. The lease is kept meanwhile. A stop tries each once more (the store may be
   * back by then) before it gives up: a restart then ends the request "outcome unknown", as it
   * ends any execution it finds under way. Before, a stop gave up at once, and an outcome the
   * store could have taken by then was lost.
   */
  const keepRecording = (request: ActionRequest, outcome: Outcome, delay = 1000): void => {
    if (unrecorded.has(request.id)) return;
    const entry = { request, outcome, timer: undefined as NodeJS.Timeout | undefined };
    unrecorded.set(request.id, entry);
    // While draining, the drain's last try is the one left.
    if (draining) return;
    entry.timer = setTimeout(() => {
      unrecorded.delete(request.id);
      holding(request.id);
      // Tracked, so that a stop waits for a try under way rather than closing the store on it.
      void track(
        recordLate(request, outcome).then((unavailable) => {
          if (unavailable) keepRecording(request, outcome, Math.min(delay * 2, 30_000));
        }),
      );
    }, delay);
    entry.timer.unref();
  };

  /** One try at recording an outcome its caller was told could not be; true when the store failed. */
  const recordLate = async (request: ActionRequest, outcome: Outcome): Promise<boolean> => {
    try {
      const finished = await record(request, outcome);
      leased.delete(request.id);
      deps.afterCommit?.();
      if (recordedAs(finished, outcome)) {
        logger.info({ requestId: request.id }, "the outcome was recorded after all");
      }
      return false;
    } catch (error) {
      if (error instanceof AirlockError && error.code === "store_unavailable") return true;
      // Another replica ended it meanwhile ("outcome unknown"), or it is gone.
      leased.delete(request.id);
      logger.error({ requestId: request.id, err: error }, "the outcome could not be recorded");
      return false;
    }
  };

  /** The config may have changed since the votes: they must still make the quorum. */
  const quorumProblem = (request: ActionRequest): string | undefined => {
    if (request.decision.decision !== "review") return undefined;
    const shortfall = deps.approvers.shortfall(request);
    return shortfall && `not run: ${shortfall}`;
  };

  /** Text of an outcome as it is shown: credentials, masked values, what the detectors find. */
  const shownText = (
    value: string,
    hidden: readonly string[],
    detectors: readonly DetectorName[],
  ): string => maskText(scrubHidden(redactor.redactText(value), hidden), detectors).text;

  /**
   * The outcome as it is recorded and returned: credentials and the input fields the policy
   * masks stay hidden even when echoed back, and the result detectors mask what the system
   * returned. Binary content is scrubbed as its bytes, of every credential the gateway knows
   * (the connector knows its own), and read by the detectors when those bytes are UTF-8 text.
   * Only the digest sees the result whole.
   */
  const shown = (
    request: ActionRequest,
    hidden: readonly string[],
    done: ExecutionOutcome,
  ): Outcome => {
    try {
      const result = clipDepth(done.result);
      const detectors = request.decision.maskResult ?? [];
      const scrub = <T extends Json>(value: T): Json =>
        maskResult(scrubHidden(redactor.redact(value), hidden), detectors).value;
      const text = (value: string): string => shownText(value, hidden, detectors);
      // Made for the first binary field only: most results hold none.
      let bytes: ByteScrubber | undefined;
      const base64 = (data: string): string => {
        bytes ??= redactor.bytes(hidden);
        return scrubHidden(
          redactor.redactText(scrubBase64(data, bytes, detectors)),
          longValues(hidden),
        );
      };
      const hex = (data: string): string => {
        bytes ??= redactor.bytes(hidden);
        return scrubHex(data, bytes, detectors);
      };
      return {
        ok: done.ok,
        summary: text(done.summary),
        ...(done.reason ? { reason: text(done.reason) } : {}),
        result: scrubApart(
          result,
          { ...(done.binary && { base64: done.binary }), ...(done.hex && { hex: done.hex }) },
          scrub,
          { base64, hex },
        ),
        // Keyed by the request's nonce, which only the store holds: a reader of the audit
        // trail cannot confirm a guess at a masked value (a card's middle digits, say).
        resultDigest: result === null ? null : keyedDigest(request.nonce, result),
      };
    } catch (error) {
      // The action ran, and how it went is the connector's to say, whatever fails here after:
      // told "the connector failed", an agent would submit it again.
      logger.error(
        { requestId: request.id, err: error },
        "the result of an action that ran could not be processed; it is not kept",
      );
      return {
        ok: done.ok,
        summary: `${done.ok ? "ran" : "failed"}, result not kept`,
        reason: `the action ran and its connector reported ${done.ok ? "success" : "a failure"}, but Airlock could not process the result, so it is not kept`,
        result: null,
        resultDigest: null,
      };
    }
  };

  const run = async (request: ActionRequest, fromStore: boolean): Promise<ActionRequest> => {
    const started = performance.now();
    let outcome: Outcome;
    const connector = connectors.get(request.connection);
    // What comes back from the store is checked against the hashes it was approved under.
    const problem = fromStore ? (integrityProblem(request) ?? quorumProblem(request)) : undefined;
    const notRun = (reason: string): Outcome => ({
      ok: false,
      summary: "not run",
      reason,
      result: null,
      resultDigest: null,
    });
    if (problem) {
      logger.error({ requestId: request.id }, problem);
      outcome = notRun(problem);
    } else if (!connector) {
      outcome = notRun(`connection ${request.connection} is no longer configured`);
    } else {
      // The masked values and the detectors go to the connector too: what it cuts to size (a
      // body at its cap, a long reason) it scrubs and masks first, or a piece left at the cut
      // would pass unrecognised here. (None, and no work, when the policy masks nothing.)
      const { hidden } = maskInput(request.input, request.decision.mask);
      const detectors = request.decision.maskResult ?? [];
      try {
        // `shown` throws nothing: what is caught here is the connector's.
        outcome = shown(
          request,
          hidden,
          await connector.execute(request.operation, request.input, running, {
            hidden,
            detectors,
          }),
        );
      } catch (error) {
        // Its message can quote the input, or what the system returned: masked fields stay
        // hidden in it, and what the detectors find masked, in the log as in the reason below.
        logger.error(
          { requestId: request.id, err: scrubError(error, hidden, detectors) },
          "the connector failed",
        );
        // A connector answers the failures it knows with an outcome; one it throws may have
        // come after the action took effect.
        outcome = {
          ok: false,
          summary: "connector error",
          // As every outcome's reason is: what it quotes may be what the system returned.
          reason: shownText(
            `the connector failed: ${errorMessage(error)}; whether the action took effect is unknown, and Airlock will not run it again`,
            hidden,
            detectors,
          ),
          result: null,
          resultDigest: null,
        };
      }
    }
    metrics.executionSeconds.observe((performance.now() - started) / 1000);
    metrics.executions.inc({ outcome: outcome.ok ? "succeeded" : "failed" });
    const finished = await recordOutcome(request, outcome);
    deps.afterCommit?.();
    logger.info(
      { requestId: request.id, status: finished.status, summary: outcome.summary },
      "execution finished",
    );
    return finished;
  };

  const starting = new Set<string>();
  /**
   * Approved requests whose start the store refused, not for being down (a fault: it would
   * refuse it alike at every sweep). They stay approved, never run, and are not tried again
   * by this process, nor logged again at each sweep; a restart tries each once more.
   */
  const unstartable = new Set<string>();
  const execute = async (id: string): Promise<ActionRequest | null> => {
    if (starting.has(id)) return null;
    starting.add(id);
    let claimed: ActionRequest | null;
    try {
      claimed = await store.transition(
        id,
        (current, at = clock()) => startExecution(current, at),
        plan,
      );
    } catch (error) {
      if (error instanceof AirlockError && error.code === "internal") unstartable.add(id);
      throw error;
    } finally {
      starting.delete(id);
    }
    if (!claimed) return null;
    return leasedWhile(claimed.id, run(claimed, true));
  };

  const resumeApproved = async (): Promise<number> => {
    const approved = await store.idsWithStatus("approved", 1000);
    const listed = new Set(approved);
    for (const id of unstartable) if (!listed.has(id)) unstartable.delete(id);
    const ids = approved.filter((id) => !starting.has(id) && !unstartable.has(id));
    for (const id of ids) {
      void track(execute(id)).catch((error) =>
        logger.error(
          { requestId: id, err: error },
          unstartable.has(id)
            ? "the store refused to start an approved request; it stays approved and is not run, nor tried again until the gateway restarts"
            : "could not run an approved request; will retry",
        ),
      );
    }
    return ids.length;
  };

  return {
    runClaimed: (request) => track(leasedWhile(request.id, run(request, false))),
    execute: (id) => track(execute(id)),
    async recover(options = {}) {
      let interrupted = 0;
      const executing = await store.idsWithStatus("executing", 10_000);
      const listed = new Set(executing);
      for (const id of watched.keys()) if (!listed.has(id)) watched.delete(id);
      for (const id of unendable) if (!listed.has(id)) unendable.delete(id);
      for (const id of executing) {
        if (leased.has(id)) continue;
        // Timed before the row's lock is waited for: while another transaction held the row,
        // its replica's heartbeat may have waited for it too, and that time is not counted.
        const asked = monotonic();
        const last = watched.get(id);
        let readAt = asked;
        // Decided under the row's lock: a replica that renewed its lease meanwhile keeps it.
        let current: ActionRequest;
        let ended: boolean;
        try {
          ({ request: current, ended } = await store.transition(
            id,
            (row, at = clock()) => {
              readAt = monotonic();
              const lapsed =
                last !== undefined &&
                last.heartbeat === row.updatedAt &&
                asked - last.since > leaseMs;
              if (!options.all && !lapsed) return { value: { request: row, ended: false } };
              const result = interruptExecution(row, at);
              return { ...result, value: { request: result.value, ended: !!result.change } };
            },
            endPlanned(id),
          ));
        } catch (error) {
          // Down: every other request would fail alike, and the caller tries again later.
          if (error instanceof AirlockError && error.code === "store_unavailable") throw error;
          // One the store will not change (or that is gone) must not keep the others, nor the
          // approved requests after them, from being seen to: at a start, nor at each sweep.
          // It is left as the store keeps it, and is never run.
          watched.delete(id);
          if (unendable.has(id)) {
            logger.debug(
              { requestId: id, err: error },
              "still cannot end an interrupted execution",
            );
          } else {
            unendable.add(id);
            logger.error(
              { requestId: id, err: error },
              "could not end an interrupted execution; it is left as it is, and not run (said once: later sweeps fail alike)",
            );
          }
          continue;
        }
        if (!ended) {
          if (current.status !== "executing") watched.delete(id);
          else if (last?.heartbeat !== current.updatedAt) {
            watched.set(id, { heartbeat: current.updatedAt, since: readAt });
          }
          continue;
        }
        watched.delete(id);
        logger.warn(
          { requestId: id, status: current.status },
          "an execution was interrupted by a stop; outcome unknown",
        );
        interrupted++;
      }
      return { interrupted, resumed: await resumeApproved() };
    },
    resumeApproved,
    async drain() {
      draining = true;
      for (const { timer } of unrecorded.values()) clearTimeout(timer);
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      const left = [...unrecorded.values()];
      unrecorded.clear();
      const failed = await Promise.all(
        left.map((e) => {
          holding(e.request.id);
          return recordLate(e.request, e.outcome);
        }),
      );
      const lost = left.filter((_, i) => failed[i]).map((e) => e.request.id);
      for (const id of lost) leased.delete(id);
      if (lost.length > 0) {
        logger.error(
          { requestIds: lost },
          "stopping with outcomes the store would not take: the next start ends them outcome unknown",
        );
      }
    },
  };
}
