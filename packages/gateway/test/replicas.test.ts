/**
 * Several gateways on one PostgreSQL database: a live replica's execution is never ended by
 * another, and a replica killed mid-execution leaves an outcome of "outcome unknown" once its
 * lease runs out, without a second run.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OUTCOME_UNKNOWN } from "../src/requests/request-transitions.js";
import { freePort, killed, startServe } from "./support/cli.js";
import { api, read, removeDir, SECRET, startGateway, until } from "./support/gateway.js";
import { postgresAvailable, type ScratchSchema, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

describe.skipIf(!postgresAvailable)("replicas on one PostgreSQL database", () => {
  let db: ScratchSchema;
  let upstream: Upstream;

  const config = (port: number) => `
server: { port: ${port}, publicUrl: "http://airlock.test", sweepInterval: 50ms, executionLease: 900ms }
storage: "${db.url}"
agents: [{ name: support-bot, owner: alice@example.com }]
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    timeout: 30s
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: reads pass
    when: http.method == "GET"
    decision: allow
  - name: nothing else
    decision: deny
`;

  beforeAll(async () => {
    db = await scratchSchema();
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream?.close();
    await db?.drop();
  });

  const calls = (path: string) => upstream.calls.filter((c) => c.url === `/api${path}`).length;

  it("leaves a live replica's long execution alone, however long it runs", async () => {
    const a = await startGateway(config(0));
    const agent = await a.token("agent", "support-bot");
    const held = upstream.hold("/api/slow");
    const pending = api(a.url, "POST", "/v1/actions", { token: agent, body: read("/slow") });
    await held.arrived;
    const b = await startGateway(config(0));
    try {
      // Three leases long: A's heartbeat keeps it, B's sweeps check it all the while.
      await new Promise((r) => setTimeout(r, 2700));
      held.release();
      const res = await pending;
      expect(res.body.status).toBe("succeeded");
      expect(calls("/slow")).toBe(1);
    } finally {
      await a.close();
      await b.close();
      removeDir(a.dir);
      removeDir(b.dir);
    }
  });

  it("ends a killed replica's execution as outcome unknown after its lease, never running it again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-replica-"));
    const port = await freePort();
    const path = join(dir, "replica.yaml");
    writeFileSync(path, config(port));
    const killedReplica = await startServe(path, port, { BILLING_API_TOKEN: SECRET });
    const survivor = await startGateway(config(0));
    try {
      const agent = await survivor.token("agent", "support-bot");
      const held = upstream.hold("/api/doomed");
      const pending = api(killedReplica.url, "POST", "/v1/actions", {
        token: agent,
        body: read("/doomed"),
      }).catch(() => undefined);
      await held.arrived;
      killedReplica.child.kill("SIGKILL");
      await killed(killedReplica.child);
      await pending;
      held.release();

      const executing = await db.query<{ id: string }>(
        "SELECT id FROM requests WHERE status = 'executing'",
      );
      expect(executing).toHaveLength(1);
      const id = executing[0]!.id;
      await until(async () => {
        const res = await api(survivor.url, "GET", `/v1/actions/${id}`, { token: agent });
        return res.body.status === "failed";
      }, 8000);
      const done = await api(survivor.url, "GET", `/v1/actions/${id}`, { token: agent });
      expect(done.body.outcome.reason).toBe(OUTCOME_UNKNOWN);
      await new Promise((r) => setTimeout(r, 500));
      expect(calls("/doomed")).toBe(1);
    } finally {
      await survivor.close();
      removeDir(survivor.dir);
      removeDir(dir);
    }
  });
});
