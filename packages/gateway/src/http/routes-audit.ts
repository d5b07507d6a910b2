import type { Store } from "../store/store.js";
import { auditQuerySchema } from "./api-schemas.js";
import type { createRouter } from "./route.js";

export function auditRoutes(router: ReturnType<typeof createRouter>, deps: { store: Store }): void {
  router.route(
    {
      method: "GET",
      url: "/v1/audit",
      summary: "Audit events in chain order, filterable; page with afterSeq.",
      tag: "reviewers",
      auth: "reviewer",
      query: auditQuerySchema,
      responses: { 200: "A page of events" },
    },
    async ({ query }) => {
      const events = await deps.store.listAudit({
        ...(query.afterSeq !== undefined ? { afterSeq: query.afterSeq } : {}),
        ...(query.since !== undefined ? { since: query.since } : {}),
        ...(query.until !== undefined ? { until: query.until } : {}),
        ...(query.requestId ? { requestId: query.requestId } : {}),
        ...(query.type ? { type: query.type } : {}),
        ...(query.actor ? { actor: query.actor } : {}),
        limit: query.limit,
      });
      const last = events[events.length - 1];
      return {
        body: {
          events,
          ...(events.length === query.limit && last ? { nextAfterSeq: last.seq } : {}),
        },
      };
    },
  );
}
