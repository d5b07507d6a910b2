/**
 * Deletes finished requests past `retention.requests`, a batch at a time so that no write
 * holds the store for long. What they did stays in the audit trail, whose chain is never
 * cut; each batch leaves a `requests.pruned` event there, in the same transaction.
 */
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Store } from "../store/store.js";
import { system } from "./request-transitions.js";

const BATCH = 500;

export async function pruneFinished(deps: {
  store: Store;
  keepMs: number;
  /**
   * The store's time (Store.now): what requests' finishing times are stamped by, so that the
   * cut-off is `keepMs` before now whichever replica prunes.
   */
  clock: () => number;
  logger: Logger;
  metrics: Metrics;
  /** Stops between batches (the gateway is closing). */
  stopped: () => boolean;
}): Promise<number> {
  const { store, clock } = deps;
  const before = clock() - deps.keepMs;
  let total = 0;
  for (;;) {
    const pruned = await store.pruneRequests(before, BATCH, (count, first, last) => ({
      type: "requests.pruned",
      requestId: null,
      actor: system,
      at: clock(),
      data: { count, first, last, finishedBefore: new Date(before).toISOString() },
    }));
    total += pruned;
    deps.metrics.prunedRequests.inc(pruned);
    if (pruned < BATCH || deps.stopped()) break;
    // Others' writes go between batches.
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (total > 0) {
    deps.logger.info(
      { requests: total, finishedBefore: new Date(before).toISOString() },
      "deleted finished requests past retention.requests; their audit events are kept",
    );
  }
  return total;
}
