/** The console's live feed: changes as server-sent events, for reviewers only, in bounded numbers. */
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  api,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
} from "./support/gateway.js";
import { postgresAvailable, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let reviewer: string;
let agent: string;

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startGateway(testConfig(upstream.url));
  reviewer = await gw.token("reviewer", "bob@example.com");
  agent = await gw.token("agent", "support-bot");
});
afterAll(async () => {
  await gw?.close();
  if (gw) removeDir(gw.dir);
  await upstream?.close();
});

const open = (token: string, signal: AbortSignal) =>
  fetch(`${gw.url}/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal });

it("streams each committed change to a reviewer", async () => {
  const controller = new AbortController();
  const res = await open(reviewer, controller.signal);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const reader = res.body!.getReader();
  const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
  let text = "";
  while (!text.includes(held.body.id)) {
    const { value } = await reader.read();
    text += new TextDecoder().decode(value);
  }
  expect(text).toContain(
    `event: change\ndata: {"id":"${held.body.id}","status":"pending","version":1}`,
  );
  controller.abort();
});

it("is for reviewers only, and bounded per reviewer", async () => {
  const controller = new AbortController();
  expect((await open(agent, controller.signal)).status).toBe(403);
  const streams = [];
  for (let i = 0; i < 20; i++) streams.push(await open(reviewer, controller.signal));
  expect(streams.every((s) => s.status === 200)).toBe(true);
  const refused = await open(reviewer, controller.signal);
  expect(refused.status).toBe(429);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
  controller.abort();
  // Closed streams free their places.
  const again = new AbortController();
  await new Promise((r) => setTimeout(r, 200));
  expect((await open(reviewer, again.signal)).status).toBe(200);
  again.abort();
});

it("ends every open stream at a stop, so that an open console tab cannot hold it", async () => {
  const stopping = await startGateway(testConfig(upstream.url));
  try {
    const token = await stopping.token("reviewer", "bob@example.com");
    const res = await fetch(`${stopping.url}/v1/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("retry:");
    // Before, the stop waited for the browser to leave, for good.
    await stopping.close();
    let ended = false;
    while (!ended) ended = (await reader.read()).done;
    expect(ended).toBe(true);
  } finally {
    await stopping.close();
    removeDir(stopping.dir);
  }
});

it.skipIf(!postgresAvailable)(
  "tells the console to read again when a replica's change feed was cut",
  async () => {
    const db = await scratchSchema();
    const url = new URL(db.url);
    const name = `airlock_console_${process.pid}`;
    url.searchParams.set("application_name", name);
    const replica = await startGateway(
      testConfig(upstream.url).replace("storage: sqlite:./airlock.db", `storage: "${url}"`),
    );
    const controller = new AbortController();
    try {
      const token = await replica.token("reviewer", "bob@example.com");
      const res = await fetch(`${replica.url}/v1/events`, {
        headers: { authorization: `Bearer ${token}` },
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [name],
      );
      let text = "";
      const deadline = Date.now() + 10_000;
      while (!text.includes("event: resync") && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      expect(text).toContain("event: resync\ndata: {}");
    } finally {
      controller.abort();
      await replica.close();
      removeDir(replica.dir);
      await db.drop();
    }
  },
);
