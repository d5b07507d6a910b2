/**
 * Three `airlock serve` processes on one PostgreSQL database, agents and reviewers spread
 * across them, one replica killed with SIGKILL midway: nothing runs twice, nothing is lost,
 * every long-poll on a survivor completes, and the audit chain still verifies.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, killed, runCli, startServe } from "./support/cli.js";
import { api, removeDir, SECRET, startGateway } from "./support/gateway.js";
import { postgresAvailable, type ScratchSchema, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

const REQUESTS = 30;
const terminal = new Set(["succeeded", "failed", "denied", "expired", "cancelled"]);

describe.skipIf(!postgresAvailable)("three replicas under load, one killed", () => {
  let db: ScratchSchema;
  let upstream: Upstream;
  let dir: string;

  beforeAll(async () => {
    db = await scratchSchema();
    upstream = await startUpstream();
    dir = mkdtempSync(join(tmpdir(), "airlock-replicas-"));
  });
  afterAll(async () => {
    await upstream?.close();
    await db?.drop();
    removeDir(dir);
  });

  it("runs each approved action at most once and ends every request", async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const config = (port: number) => `
server: { port: ${port}, publicUrl: "http://airlock.test", sweepInterval: 50ms, executionLease: 1s }
storage: "${db.url}"
agents: [{ name: support-bot, owner: alice@example.com }]
reviewers:
  - { email: bob@example.com, groups: [finance] }
  - { email: carol@example.com, groups: [finance] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstream.url}/api
    headers: { authorization: "Bearer \${env:BILLING_API_TOKEN}" }
rules:
  - name: refunds need two finance reviewers
    when: http.method == "POST"
    decision: review
    review: { approvers: [finance], quorum: 2, expiresIn: 5m }
  - name: nothing else
    decision: deny
`;
    const paths = ports.map((port, i) => {
      const path = join(dir, `replica-${i}.yaml`);
      writeFileSync(path, config(port));
      return path;
    });
    // Tokens live in the shared database: one in-process gateway makes them.
    const maker = await startGateway(config(0));
    const agent = await maker.token("agent", "support-bot");
    const bob = await maker.token("reviewer", "bob@example.com");
    const carol = await maker.token("reviewer", "carol@example.com");
    await maker.close();
    removeDir(maker.dir);

    const env = { BILLING_API_TOKEN: SECRET };
    const replicas = await Promise.all(paths.map((path, i) => startServe(path, ports[i]!, env)));
    const alive = new Set([0, 1, 2]);
    const urlOf = (i: number) => replicas[i % 3]!.url;
    /** Tries the replica asked for, then the others, as a load balancer would. */
    const call = async (
      first: number,
      method: string,
      path: string,
      token: string,
      body?: unknown,
    ) => {
      for (let k = 0; k < 3; k++) {
        const i = (first + k) % 3;
        if (!alive.has(i)) continue;
        try {
          return await api(urlOf(i), method, path, { token, ...(body ? { body } : {}) });
        } catch {
          // that replica just died: the next one takes it
        }
      }
      throw new Error(`no replica answered ${method} ${path}`);
    };

    try {
      const ids: string[] = [];
      let finished = 0;
      let finishedAtKill = -1;
      const work = Array.from({ length: REQUESTS }, async (_, n) => {
        const submitted = await call(n, "POST", "/v1/actions", agent, {
          connection: "billing-api",
          operation: "request",
          input: { method: "POST", path: `/refunds/${n}`, body: { n } },
          idempotencyKey: `refund-${n}`,
        });
        expect(submitted.status).toBe(202);
        const id = submitted.body.id as string;
        ids.push(id);
        // The two votes go to two other replicas at the same time.
        const votes = await Promise.all([
          call(n + 1, "POST", `/v1/requests/${id}/reviews`, bob, { decision: "approve" }),
          call(n + 2, "POST", `/v1/requests/${id}/reviews`, carol, { decision: "approve" }),
        ]);
        for (const vote of votes) expect([200, 409]).toContain(vote.status);
        for (;;) {
          const polled = await call(n, "GET", `/v1/actions/${id}?wait=10`, agent);
          if (terminal.has(polled.body.status)) {
            finished++;
            return polled.body.status as string;
          }
        }
      });
      // Midway, replica 0 dies without a word.
      setTimeout(() => {
        finishedAtKill = finished;
        alive.delete(0);
        replicas[0]!.child.kill("SIGKILL");
      }, 150);
      const statuses = await Promise.all(work);
      await killed(replicas[0]!.child);

      // The kill really came midway: some requests were still under way.
      expect(finishedAtKill).toBeGreaterThanOrEqual(0);
      expect(finishedAtKill).toBeLessThan(REQUESTS);
      expect(ids).toHaveLength(REQUESTS);
      expect(statuses.every((s) => s === "succeeded" || s === "failed")).toBe(true);
      expect(statuses.filter((s) => s === "succeeded").length).toBeGreaterThan(REQUESTS / 2);
      for (let n = 0; n < REQUESTS; n++) {
        expect(
          upstream.calls.filter((c) => c.url === `/api/refunds/${n}`).length,
        ).toBeLessThanOrEqual(1);
      }
      const rows = await db.query<{ status: string; n: string }>(
        "SELECT status, count(*) AS n FROM requests GROUP BY status",
      );
      expect(rows.filter((r) => !terminal.has(r.status))).toEqual([]);
      const verified = await runCli(["audit", "verify", "--config", paths[1]!], { env });
      expect(verified.code).toBe(0);
      expect(verified.stdout).toMatch(/audit chain OK/);
    } finally {
      for (const replica of replicas) replica.child.kill("SIGTERM");
      await Promise.all(replicas.map((r) => killed(r.child)));
    }
  }, 120_000);
});
