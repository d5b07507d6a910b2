/**
 * A page of an agent's own actions, newest first, as both doors list them: `GET /v1/actions`
 * and the `airlock__list` tool on /mcp.
 */
import type { AgentConfig } from "../config/config-schema.js";
import type { RequestService } from "../requests/request-service.js";
import type { ActionRequest, RequestStatus } from "../requests/request-types.js";
import type { AgentView } from "../requests/request-views.js";
import { createPageBudget } from "./page-budget.js";

export interface AgentActionQuery {
  status?: RequestStatus[] | undefined;
  connection?: string | undefined;
  before?: string | undefined;
  limit: number;
}

/** While more may follow (the limit reached, or a page cut at its budget), `next` is where. */
export interface AgentActionPage {
  actions: AgentView[];
  next?: string;
}

export async function agentActionPage(
  requests: Pick<RequestService, "listForAgent">,
  agent: AgentConfig,
  query: AgentActionQuery,
  viewOf: (request: ActionRequest) => AgentView,
): Promise<AgentActionPage> {
  const statuses = query.status;
  const found = await requests.listForAgent(agent, {
    ...(statuses ? { statuses } : {}),
    ...(query.connection ? { connection: query.connection } : {}),
    ...(query.before ? { before: query.before } : {}),
    limit: query.limit,
  });
  const budget = createPageBudget();
  const actions: AgentView[] = [];
  let last: string | undefined;
  let cut = false;
  for (const request of found) {
    // Found pending, it may have expired as it was read.
    if (!statuses || statuses.includes(request.status)) {
      const view = viewOf(request);
      if (!budget.fits(view)) {
        cut = true;
        break;
      }
      actions.push(view);
    }
    last = request.id;
  }
  const more = cut || found.length === query.limit;
  return { actions, ...(more && last ? { next: last } : {}) };
}
