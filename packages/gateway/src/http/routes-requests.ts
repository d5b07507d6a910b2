/** The reviewer API: what I may decide, the full context of one request, and my vote. */
import { AirlockError } from "../errors.js";
import type { RequestService } from "../requests/request-service.js";
import type { ActionRequest } from "../requests/request-types.js";
import { reviewerAbility, reviewerView } from "../requests/request-views.js";
import { idParamsSchema, requestListQuerySchema, reviewBodySchema } from "./api-schemas.js";
import { createPageBudget } from "./page-budget.js";
import type { createRouter } from "./route.js";

/** Requests are read a batch at a time, so no more than one is held past a page's budget. */
const BATCH = 50;

export function requestRoutes(
  router: ReturnType<typeof createRouter>,
  deps: { requests: RequestService; publicUrl: string; clock: () => number },
): void {
  const { requests, publicUrl } = deps;
  /** The request as this reviewer sees it, counted under the config as it is now. */
  const viewFor = (request: ActionRequest, reviewer: Parameters<typeof reviewerView>[1]) =>
    reviewerView(
      request,
      reviewer,
      requests.ownersOf(request),
      publicUrl,
      requests.countedGroups(request),
    );

  router.route(
    {
      method: "GET",
      url: "/v1/requests",
      summary:
        "Requests for reviewers. With the default status=pending, only those this reviewer may decide, most urgent first.",
      tag: "reviewers",
      auth: "reviewer",
      query: requestListQuerySchema,
      responses: {
        200: "A page of requests, {requests, next?}: while more may follow (the limit reached, or a page cut past about 4 MiB), next is the before of the next page",
      },
    },
    async ({ principal, query }) => {
      const statuses = query.status ?? ["pending"];
      const onlyPending = statuses.length === 1 && statuses[0] === "pending";
      const now = deps.clock();
      const decidable = (request: ActionRequest) => {
        if (request.expiresAt !== null && request.expiresAt <= now) return false;
        const you = reviewerAbility(request, principal.reviewer, requests.ownersOf(request));
        return you.canApprove || you.canDeny;
      };
      const shown: { request: ActionRequest; view: ReturnType<typeof reviewerView> }[] = [];
      let before = query.before;
      let scanned = 0;
      const budget = createPageBudget();
      let cut = false;
      scan: while (scanned < query.limit) {
        const wanted = Math.min(BATCH, query.limit - scanned);
        const batch = await requests.list({
          statuses,
          ...(query.agent ? { agent: query.agent } : {}),
          ...(query.connection ? { connection: query.connection } : {}),
          ...(before ? { before } : {}),
          limit: wanted,
        });
        for (const request of batch) {
          if (!onlyPending || decidable(request)) {
            const view = viewFor(request, principal.reviewer);
            if (!budget.fits(view)) {
              cut = true;
              break scan;
            }
            shown.push({ request, view });
          }
          before = request.id;
          scanned++;
        }
        if (batch.length < wanted) break;
      }
      if (onlyPending) {
        const rank = { critical: 0, high: 1, medium: 2, low: 3 } as const;
        shown.sort(
          ({ request: a }, { request: b }) =>
            rank[a.decision.risk] - rank[b.decision.risk] ||
            (a.expiresAt ?? 0) - (b.expiresAt ?? 0),
        );
      }
      return {
        body: {
          requests: shown.map(({ view }) => view),
          ...((cut || scanned === query.limit) && before ? { next: before } : {}),
        },
      };
    },
  );

  router.route(
    {
      method: "GET",
      url: "/v1/requests/:id",
      summary:
        "The full context of a request: action, preview, facts, risk, justification, masked input, reviews.",
      tag: "reviewers",
      auth: "reviewer",
      params: idParamsSchema,
      responses: { 200: "The request", 404: "No such request" },
    },
    async ({ principal, params }) => {
      const request = await requests.load(params.id);
      return {
        body: viewFor(request, principal.reviewer),
      };
    },
  );

  router.route(
    {
      method: "POST",
      url: "/v1/requests/:id/reviews",
      summary: "Approve or deny a pending request, with a comment.",
      tag: "reviewers",
      auth: "reviewer",
      params: idParamsSchema,
      body: reviewBodySchema,
      responses: {
        200: "The vote was recorded; the request as it stands now",
        403: "self_approval, not_an_approver or step_up_required",
        404: "No such request",
        409: "already_reviewed or not_pending",
        410: "expired",
      },
    },
    async ({ principal, params, body }) => {
      if (body === undefined)
        throw new AirlockError("invalid_request", "body: send {decision, comment?}", {
          field: "body",
        });
      let request: Awaited<ReturnType<typeof requests.review>>;
      try {
        request = await requests.review(principal.reviewer, params.id, body);
      } catch (error) {
        // Say where the fresh sign-in happens, for the console to send the reviewer there.
        if (error instanceof AirlockError && error.code === "step_up_required") {
          const returnTo = encodeURIComponent(`/requests/${params.id}`);
          throw new AirlockError("step_up_required", error.message, {
            details: { login: `/auth/login?stepUp=1&returnTo=${returnTo}` },
          });
        }
        throw error;
      }
      return {
        body: viewFor(request, principal.reviewer),
      };
    },
  );
}
