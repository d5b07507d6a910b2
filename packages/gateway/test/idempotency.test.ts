/**
 * Replaying an idempotency key answers with the request as it stands now: expired once its
 * time is up (even before a sweep gets to it), and, with `?wait=`, held until it ends when
 * the first call is still running.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  read,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let agent: string;
// The gateway's own clock, moved by the tests; the sweeps are an hour apart, so only the
// request path itself can notice that time has passed.
let now = Date.UTC(2026, 10, 30, 12);

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(
    testConfig(upstream.url).replace("sweepInterval: 50ms", "sweepInterval: 1h"),
    {
      gateway: { clock: () => now },
    },
  );
  agent = await gw.token("agent", "support-bot");
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

const submit = (body: unknown, query = "") =>
  api(gw.url, "POST", `/v1/actions${query}`, { token: agent, body });

describe("replaying an idempotency key", () => {
  it("shows a request whose time ran out as expired, not pending", async () => {
    const put = {
      connection: "billing-api",
      operation: "request",
      input: { method: "PUT", path: "/idem-expiry" },
      idempotencyKey: "put-expiry-1",
    };
    const first = await submit(put);
    expect(first.status).toBe(202);
    expect(first.body.status).toBe("pending");
    now += 2 * 3_600_000; // past the rule's default expiry of an hour
    const replay = await submit(put);
    expect(replay.body.id).toBe(first.body.id);
    expect(replay.body.status).toBe("expired");
    const polled = await api(gw.url, "GET", `/v1/actions/${first.body.id}`, { token: agent });
    expect(polled.body.status).toBe("expired");
  });

  it("waits, when asked to, for a request the first call is still running", async () => {
    const held = upstream.hold("/api/idem-running");
    const action = { ...read("/idem-running"), idempotencyKey: "read-running-1" };
    const first = submit(action);
    await held.arrived;
    const replay = submit(action, "?wait=10");
    // The replay must still be waiting when the upstream answers.
    let replayed = false;
    void replay.then(() => {
      replayed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(replayed).toBe(false);
    held.release();
    const [a, b] = await Promise.all([first, replay]);
    expect(a.body.status).toBe("succeeded");
    expect(b.status).toBe(200);
    expect(b.body.status).toBe("succeeded");
    expect(b.body.id).toBe(a.body.id);
    expect(upstream.calls.filter((c) => c.url === "/api/idem-running")).toHaveLength(1);
  });
});
