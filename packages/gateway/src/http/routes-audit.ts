import type { AuditEvent } from "../audit/audit-chain.js";
import type { Store } from "../store/store.js";
import { auditQuerySchema } from "./api-schemas.js";
import { createPageBudget } from "./page-budget.js";
import type { createRouter } from "./route.js";

/** Events are read a batch at a time, so no more than one is held past a page's budget. */
const BATCH = 100;

export function auditRoutes(router: ReturnType<typeof createRouter>, deps: { store: Store }): void {
  router.route(
    {
      method: "GET",
      url: "/v1/audit",
      summary: "Audit events in chain order, filterable; page with afterSeq.",
      tag: "reviewers",
      auth: "reviewer",
      query: auditQuerySchema,
      responses: {
        200: "A page of events, {events, nextAfterSeq?}: while more may follow (the limit reached, or a page cut past about 4 MiB), nextAfterSeq is the afterSeq of the next page",
      },
    },
    async ({ query }) => {
      const filters = {
        ...(query.since !== undefined ? { since: query.since } : {}),
        ...(query.until !== undefined ? { until: query.until } : {}),
        ...(query.requestId ? { requestId: query.requestId } : {}),
        ...(query.type ? { type: query.type } : {}),
        ...(query.actor ? { actor: query.actor } : {}),
      };
      const events: AuditEvent[] = [];
      let afterSeq = query.afterSeq;
      const budget = createPageBudget();
      let cut = false;
      while (!cut && events.length < query.limit) {
        const wanted = Math.min(BATCH, query.limit - events.length);
        const batch = await deps.store.listAudit({
          ...filters,
          ...(afterSeq !== undefined ? { afterSeq } : {}),
          limit: wanted,
        });
        for (const event of batch) {
          if (!budget.fits(event)) {
            cut = true;
            break;
          }
          events.push(event);
        }
        if (batch.length < wanted) break;
        afterSeq = batch[batch.length - 1]!.seq;
      }
      const last = events[events.length - 1];
      return {
        body: {
          events,
          ...((cut || events.length === query.limit) && last ? { nextAfterSeq: last.seq } : {}),
        },
      };
    },
  );
}
