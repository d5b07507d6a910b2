import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Json } from "../common/canonical-json.js";
import { loadConfigText } from "../config/config-load.js";
import { createLiveConfig } from "../config/live-config.js";
import type { Connector, ExecutionOutcome } from "../connectors/connector.js";
import { createRedactor } from "../masking/secret-redactor.js";
import { createLogger } from "../observability/logger.js";
import { createMetrics } from "../observability/metrics.js";
import { openSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { OutboxPlanner } from "../store/store.js";
import { createApprovers } from "./request-approvers.js";
import { createExecutor } from "./request-executor.js";
import { requestHash } from "./request-hash.js";
import { submit } from "./request-transitions.js";
import type { ActionRequest } from "./request-types.js";
import { createWaiters } from "./request-waiters.js";

const loaded = loadConfigText(`
storage: sqlite:./airlock.db
agents: [{ name: support-bot, owner: alice@example.com }]
connections: { billing: { type: http, baseUrl: "http://127.0.0.1:9" } }
rules: [{ name: everything, decision: allow }]
`);

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A store on a real SQLite file, holding one allowed request already claimed for execution. */
async function claimed(): Promise<{ store: SqliteStore; request: ActionRequest }> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-executor-"));
  dirs.push(dir);
  const store = openSqliteStore(join(dir, "airlock.db"));
  stores.push(store);
  const proposal = {
    agent: "support-bot",
    connection: "billing",
    operation: "request",
    input: { method: "POST", path: "/refunds" },
    justification: "",
    context: {},
  };
  const nonce = "n".repeat(32);
  const change = submit({
    id: "req_1",
    proposal,
    agent: { name: "support-bot", owner: "alice@example.com", labels: {} },
    connectionType: "http",
    idempotencyKey: null,
    hash: requestHash(proposal, nonce),
    nonce,
    decision: {
      decision: "allow",
      rule: "everything",
      reason: 'rule "everything" allows it',
      risk: "medium",
      riskReason: "POST changes data upstream",
      mask: [],
      policyDigest: "d".repeat(64),
    },
    description: {
      preview: "POST /refunds",
      facts: {},
      risk: { level: "medium", reason: "" },
    },
    now: Date.now(),
  });
  await store.insertRequest(change, []);
  expect(change.request.status).toBe("executing");
  return { store, request: change.request };
}

function connectorAnswering(answer: ExecutionOutcome): Connector & { calls: number } {
  const connector = {
    type: "http",
    name: "billing",
    secrets: [],
    calls: 0,
    parse: (_operation: string, input: unknown) => input as Json,
    describe: async () => ({ preview: "", facts: {}, risk: { level: "low" as const, reason: "" } }),
    preview: () => "",
    execute: async () => {
      connector.calls++;
      return answer;
    },
    operations: async () => [],
    close: async () => {},
  };
  return connector;
}

describe("the executor", () => {
  it("records how an action that ran went, even when its result cannot be processed", async () => {
    const { store, request } = await claimed();
    // A value no JSON holds, which the result's digest refuses after the action ran.
    const connector = connectorAnswering({
      ok: true,
      result: { refunded: 10n } as unknown as Json,
      summary: "HTTP 200, 20 bytes",
    });
    const executor = createExecutor({
      store,
      connectors: new Map([["billing", connector]]),
      approvers: createApprovers(createLiveConfig(loaded)),
      redactor: createRedactor([]),
      plan: () => [],
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics(),
      clock: Date.now,
    });
    const finished = await executor.runClaimed(request);
    expect(connector.calls).toBe(1);
    // Not "connector error": told the connector failed, an agent would submit it again.
    expect(finished.status).toBe("succeeded");
    expect(finished.outcome?.summary).toBe("ran, result not kept");
    expect(finished.outcome?.result).toBeNull();
    expect((await store.getRequest(request.id))?.status).toBe("succeeded");
  });

  it("ends a request whose outcome the store refuses, not for being down, failed at once: never left executing, never run again", async () => {
    const { store, request } = await claimed();
    const connector = connectorAnswering({
      ok: true,
      result: { refunded: 10 },
      summary: "HTTP 200, 15 bytes",
    });
    // A channel that cannot plan its message about how a request ended: the store is up, so
    // trying again fails the same way.
    const plan: OutboxPlanner = (change) => {
      if (change.request.status !== "executing") throw new Error("no message for this request");
      return [];
    };
    const waiters = createWaiters(store);
    const longPoll = waiters.watch(request.id);
    const executor = createExecutor({
      store,
      connectors: new Map([["billing", connector]]),
      approvers: createApprovers(createLiveConfig(loaded)),
      redactor: createRedactor([]),
      plan,
      logger: createLogger({ level: "silent" }),
      metrics: createMetrics(),
      clock: Date.now,
      retryDelays: [1],
    });
    const finished = await executor.runClaimed(request);
    expect(connector.calls).toBe(1);
    expect(finished.status).toBe("failed");
    expect(finished.outcome?.summary).toBe("outcome not recorded");
    expect(finished.outcome?.reason).toContain("the action succeeded (HTTP 200, 15 bytes)");
    expect(finished.outcome?.reason).toContain("Airlock will not run it again");
    expect((await store.getRequest(request.id))?.status).toBe("failed");
    const events = await store.listAudit({ requestId: request.id, limit: 10 });
    expect(events.map((e) => e.type)).toContain("execution.failed");
    // The long-poll on it was woken by the change.
    expect(await longPoll.next(0)).toBe(true);
    longPoll.close();
    waiters.close();
    // Nothing is left for a restart to end, and nothing runs again.
    expect(await executor.recover({ all: true })).toEqual({ interrupted: 0, resumed: 0 });
    await executor.drain();
    expect(connector.calls).toBe(1);
  });
});
