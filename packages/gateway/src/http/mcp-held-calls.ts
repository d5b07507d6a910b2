/**
 * The tool calls this process is answering, by the client that sent them, so that the
 * client's `notifications/cancelled` can reach one: the notification comes in a POST of its
 * own, to an MCP server built for that POST, which knows nothing of the call it names. A
 * cancel landing on another replica finds the call's request through the store instead
 * (mcp-recorded-calls.ts).
 */
import type { RequestId } from "@modelcontextprotocol/sdk/types.js";

export interface HeldCall {
  /** Aborts when the client cancels the call. */
  readonly signal: AbortSignal;
  release(): void;
}

export interface HeldCalls {
  /**
   * `caller` is who may cancel the call: its agent and, when the client sends one, the
   * session id it was given at `initialize`.
   */
  hold(caller: string, id: RequestId): HeldCall;
  /**
   * Whether the cancel reached a call: `held` when it did, `none` when no call of the caller
   * has that id here, `two` when several do (it reached none of them).
   */
  cancel(caller: string, id: RequestId, reason: string): CancelReach;
}

export type CancelReach = "held" | "none" | "two";

export function createHeldCalls(): HeldCalls {
  const held = new Map<string, Set<AbortController>>();
  // A string id and a number id are two ids ("1" is not 1).
  const keyOf = (caller: string, id: RequestId) => JSON.stringify([caller, id]);
  return {
    hold(caller, id) {
      const key = keyOf(caller, id);
      const controller = new AbortController();
      let calls = held.get(key);
      if (!calls) {
        calls = new Set();
        held.set(key, calls);
      }
      calls.add(controller);
      return {
        signal: controller.signal,
        release() {
          calls.delete(controller);
          if (calls.size === 0 && held.get(key) === calls) held.delete(key);
        },
      };
    },
    cancel(caller, id, reason) {
      const calls = held.get(keyOf(caller, id));
      if (calls === undefined) return "none";
      // Two calls under one id (clients that share a token and send no session id): which one
      // was meant cannot be told, and the spec lets a receiver ignore a cancel.
      if (calls.size > 1) return "two";
      for (const controller of calls) controller.abort(reason);
      return "held";
    },
  };
}
