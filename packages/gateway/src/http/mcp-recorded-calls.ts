/**
 * MCP tool calls held for review, recorded in the store with the request each waits on, so
 * that the client's `notifications/cancelled` withdraws the request whichever replica it
 * reaches; the replica holding the call hears the request end through the store's change
 * feed. A cancel that comes before the call has its request leaves a mark the call finds:
 * before it submits, so that it makes no request, or, landing meanwhile, as it records one.
 */
import { createHash } from "node:crypto";
import type { RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { Store } from "../store/store.js";

/**
 * How long past its wait a call stays recorded, and a cancel's mark waits for its call: a
 * cancel may overtake the call's own POST, still on its way or being submitted on another
 * replica. A call answered is forgotten at once; this bounds what a stopped replica leaves.
 */
const SLACK_MS = 60_000;

export interface RecordedCalls {
  /**
   * The key a client's call is recorded under. None without a session id: clients that share
   * a token number their calls alike, and a cancel could not tell theirs apart.
   */
  key(agent: string, session: string | undefined, id: RequestId): string | undefined;
  /** Whether the call's cancel came first, asked before the call submits anything. */
  cancelledFirst(key: string): Promise<boolean>;
  /** Records the request the call waits on; true when its cancel came first. */
  hold(key: string, requestId: string): Promise<boolean>;
  /** Marks the call cancelled; the request it waits on, if it has one yet. */
  cancel(key: string): Promise<string | undefined>;
  release(key: string, requestId: string): Promise<void>;
}

export type RecordedCallStore = Pick<
  Store,
  "holdMcpCall" | "cancelMcpCall" | "releaseMcpCall" | "mcpCallCancelled"
>;

export function createRecordedCalls(
  store: RecordedCallStore,
  toolWaitMs: number,
  clock: () => number,
): RecordedCalls {
  const ttlMs = toolWaitMs + SLACK_MS;
  return {
    // Hashed: the session id is a client's label, kept nowhere as it is.
    key: (agent, session, id) =>
      session === undefined
        ? undefined
        : createHash("sha256")
            .update(JSON.stringify([agent, session, id]))
            .digest("base64url"),
    cancelledFirst: (key) => store.mcpCallCancelled(key, clock()),
    hold: (key, requestId) => store.holdMcpCall(key, requestId, ttlMs, clock()),
    cancel: (key) => store.cancelMcpCall(key, ttlMs, clock()),
    release: (key, requestId) => store.releaseMcpCall(key, requestId),
  };
}
