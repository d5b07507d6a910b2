/**
 * The stored requests decided again by a policy, as they came: same agent, action, facts and
 * risk hint, at the time they were made. What a rule change would have done to the traffic
 * already seen, before it is loaded. Nothing is run, stored or described again: the facts are
 * those recorded at submission (a table's estimate then, not now).
 */
import type { Json } from "../common/canonical-json.js";
import type { ActionRequest } from "../requests/request-types.js";
import type { Store } from "../store/store.js";
import type { Policy } from "./policy-compile.js";
import { decisionText, evaluatePolicy } from "./policy-evaluate.js";

export interface ReplayedRequest {
  request: ActionRequest;
  /** "review by rule "refunds need finance"", as recorded. */
  was: string;
  /** The same, as the policy decides now. */
  now: string;
  /** The evaluation error, when the policy failed closed. */
  error?: string;
}

export interface ReplaySummary {
  replayed: number;
  changed: number;
  /** "allow → deny": how many moved each way. */
  moves: Map<string, number>;
}

/** Decides one stored request again, as it was submitted. */
export function replayRequest(policy: Policy, request: ActionRequest): ReplayedRequest {
  const decision = evaluatePolicy(policy, {
    action: {
      connection: request.connection,
      operation: request.operation,
      input: request.input,
      justification: request.justification,
      context: request.context as Record<string, Json>,
    },
    agent: {
      name: request.agent.name,
      owner: request.agent.owner,
      labels: request.agent.labels,
    },
    now: new Date(request.createdAt),
    facts: request.description.facts,
    risk: request.description.risk,
  });
  return {
    request,
    was: decisionText(request.decision),
    now: decisionText(decision),
    ...(decision.error ? { error: decision.error } : {}),
  };
}

/**
 * Replays the requests created at or after `since`, newest first, a page at a time, and hands
 * each one decided differently to `changed`; `progress` hears how many were replayed so far.
 */
export async function replayPolicy(
  store: Pick<Store, "listRequests">,
  policy: Policy,
  since: number,
  changed: (replayed: ReplayedRequest) => void,
  progress: (replayed: number) => void = () => {},
): Promise<ReplaySummary> {
  const summary: ReplaySummary = { replayed: 0, changed: 0, moves: new Map() };
  let before: string | undefined;
  for (;;) {
    const page = await store.listRequests({ limit: 500, ...(before ? { before } : {}) });
    for (const request of page) {
      if (request.createdAt < since) return summary;
      summary.replayed++;
      const replayed = replayRequest(policy, request);
      if (replayed.was !== replayed.now) {
        summary.changed++;
        const move = `${request.decision.decision} → ${replayed.now.split(" ")[0]}`;
        summary.moves.set(move, (summary.moves.get(move) ?? 0) + 1);
        changed(replayed);
      }
    }
    progress(summary.replayed);
    if (page.length < 500) return summary;
    before = page[page.length - 1]!.id;
  }
}
