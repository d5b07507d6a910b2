/** A request waiting for two finance reviewers, as channels are shown it. */
import type { ChannelView } from "../../src/channels/channel.js";

export const viewId = "req_01hzz0000000000000000000000";

export function pendingView(over: Partial<ChannelView> = {}): ChannelView {
  return {
    id: viewId,
    status: "pending",
    agent: { name: "support-bot", owner: "alice@example.com", labels: { team: "support" } },
    connection: "billing-api",
    connectionType: "http",
    operation: "request",
    preview: "POST /refunds\n{ amount: 4200 }",
    facts: { http: { method: "POST", path: "/refunds" } },
    risk: {
      level: "high",
      reason: "set by rule refunds",
      hint: { level: "medium", reason: "a write" },
    },
    justification: "Customer was charged twice",
    context: { ticket: "T-1" },
    input: { method: "POST", path: "/refunds", body: { amount: 4200, card_number: "[masked]" } },
    maskedFields: ["body.card_number"],
    hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    decision: { decision: "review", rule: "refunds", reason: "refunds need two finance reviewers" },
    review: { approvers: ["finance"], quorum: 2, approvals: 0, stepUp: false },
    reviews: [],
    approvalUrl: `http://airlock.test/requests/${viewId}`,
    createdAt: "2030-01-02T15:04:05.000Z",
    updatedAt: "2030-01-02T15:04:05.000Z",
    expiresAt: "2030-01-02T15:19:05.000Z",
    finishedAt: null,
    ...over,
  };
}
