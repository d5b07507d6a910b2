/** The agent API: submit an action, read or wait for it, list its own, cancel it. */
import { AirlockError } from "../errors.js";
import type { RequestService } from "../requests/request-service.js";
import { type ActionRequest, isTerminal } from "../requests/request-types.js";
import { type AgentView, agentView } from "../requests/request-views.js";
import { agentActionPage } from "./agent-action-pages.js";
import {
  actionBodySchema,
  actionListQuerySchema,
  idParamsSchema,
  readQuerySchema,
  waitQuerySchema,
} from "./api-schemas.js";
import type { createRouter, Reply } from "./route.js";

/** The status code that says how the action ended up, for POST /v1/actions. */
function actionReply(request: ActionRequest, view: AgentView): Reply {
  if (request.status === "denied") {
    const byReviewer = request.reviews.find((r) => r.decision === "deny");
    return {
      status: 403,
      body: {
        error: new AirlockError(
          "denied",
          byReviewer
            ? `denied by ${byReviewer.reviewer}${byReviewer.comment ? `: ${byReviewer.comment}` : ""}`
            : request.decision.reason,
        ).toJSON(),
        action: view,
      },
    };
  }
  if (
    request.status === "pending" ||
    request.status === "approved" ||
    request.status === "executing"
  ) {
    return { status: 202, body: view, headers: { location: `/v1/actions/${request.id}` } };
  }
  return { status: 200, body: view };
}

export function actionRoutes(
  router: ReturnType<typeof createRouter>,
  deps: { requests: RequestService; publicUrl: string; maxWaitSeconds: number },
): void {
  const { requests, publicUrl } = deps;
  // Approvals counted as the gateway counts them now (request-approvers.ts).
  const viewOf = (request: ActionRequest) =>
    agentView(request, publicUrl, requests.countedGroups(request));
  const waitQuery = waitQuerySchema(deps.maxWaitSeconds);
  const readQuery = readQuerySchema(deps.maxWaitSeconds);

  router.route(
    {
      method: "POST",
      url: "/v1/actions",
      summary:
        "Submit an action. 200 with the result when allowed and executed; 403 when denied; 202 when it waits for review.",
      tag: "agents",
      auth: "agent",
      body: actionBodySchema,
      query: waitQuery,
      responses: {
        200: "Allowed and executed (see status: succeeded or failed), or final after waiting",
        202: "Waiting for review",
        403: "Denied by policy or by a reviewer",
        429: "Too many of the agent's requests wait for review (agents[].maxPending), or it submits too fast (agents[].rateLimit: see Retry-After)",
      },
    },
    async (ctx) => {
      const { principal, body, query } = ctx;
      let request = await requests.submit(principal.agent, body);
      // A replayed idempotency key can find the request approved or still running, too.
      if (query.wait && !isTerminal(request.status)) {
        request = await requests.waitForTerminal(request.id, query.wait * 1000, ctx.signal);
      }
      return actionReply(request, viewOf(request));
    },
  );

  router.route(
    {
      method: "GET",
      url: "/v1/actions",
      summary: "The agent's own requests, newest first, in every status unless status says.",
      tag: "agents",
      auth: "agent",
      query: actionListQuerySchema,
      responses: {
        200: "A page of requests, {actions, next?}: while more may follow (the limit reached, or a page cut past about 4 MiB), next is the before of the next page",
      },
    },
    async ({ principal, query }) => ({
      body: await agentActionPage(requests, principal.agent, query, viewOf),
    }),
  );

  router.route(
    {
      method: "GET",
      url: "/v1/actions/:id",
      summary: "The request's status, decision, reviews so far, and the masked result once done.",
      tag: "agents",
      auth: "agent",
      params: idParamsSchema,
      query: readQuery,
      responses: { 200: "The request", 404: "No such request for this agent" },
    },
    async (ctx) => {
      const { principal, params, query } = ctx;
      const request = await requests.getForAgent(
        principal.agent,
        params.id,
        (query.wait ?? 0) * 1000,
        query.wait ? ctx.signal : undefined,
        query.version,
      );
      return { body: viewOf(request) };
    },
  );

  router.route(
    {
      method: "POST",
      url: "/v1/actions/:id/cancel",
      summary: "Cancel a pending request of your own.",
      tag: "agents",
      auth: "agent",
      params: idParamsSchema,
      responses: {
        200: "Cancelled",
        409: "No longer pending",
        410: "It expired before enough approvals",
        404: "No such request for this agent",
      },
    },
    async ({ principal, params }) => {
      const request = await requests.cancel(principal.agent, params.id);
      return { body: viewOf(request) };
    },
  );
}
