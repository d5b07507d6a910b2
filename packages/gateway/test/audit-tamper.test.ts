/** Invariant 7: `airlock audit verify` catches an edit, a deletion, an insertion and a reordering. */
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashEvent } from "../src/audit/audit-chain.js";
import { canonicalJson } from "../src/common/canonical-json.js";
import { type AuditRow, tamperedCopy } from "./support/audit-db.js";
import { runCli } from "./support/cli.js";
import {
  api,
  read,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let gw: TestGateway;
let original: string;
const env = { BILLING_API_TOKEN: "tamper-test-credential" };
const copies: string[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  const config = testConfig(upstream.url);
  gw = await startGateway(config, { env });
  const agent = await gw.token("agent", "support-bot");
  const bob = await gw.token("reviewer", "bob@example.com");
  const carol = await gw.token("reviewer", "carol@example.com");
  await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
  await api(gw.url, "POST", "/v1/actions", {
    token: agent,
    body: { ...read(), input: { method: "DELETE", path: "/x" } },
  });
  const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
  await vote(gw.url, held.body.id, bob);
  await vote(gw.url, held.body.id, carol);
  await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
  await gw.close();
  writeFileSync(join(gw.dir, "airlock.yaml"), config);
  original = gw.dir;
});

afterAll(async () => {
  await upstream.close();
  for (const dir of [original, ...copies]) removeDir(dir);
});

/** A copy of the gateway's directory, changed by `edit` straight in SQLite. */
const tampered = (edit: (db: Database.Database) => void): string =>
  tamperedCopy(original, copies, edit);

const verify = (config: string) => runCli(["audit", "verify", "--config", config], { env });

/** The first vote's event, as stored in the untouched chain. */
function firstReview(): { seq: number; data: string } {
  const db = new Database(join(original, "airlock.db"), { readonly: true });
  try {
    return db
      .prepare(
        "SELECT seq, data FROM audit_events WHERE type = 'request.reviewed' ORDER BY seq LIMIT 1",
      )
      .get() as { seq: number; data: string };
  } finally {
    db.close();
  }
}

describe("airlock audit verify", () => {
  it("passes an untouched chain and prints its head", async () => {
    const result = await verify(join(original, "airlock.yaml"));
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/audit chain OK: (\d+) events, head \1 [0-9a-f]{64}/);
    const count = Number(/OK: (\d+)/.exec(result.stdout)![1]);
    expect(count).toBeGreaterThanOrEqual(14);
  });

  it("names an edited event", async () => {
    const review = firstReview();
    expect(review.data).toContain("bob@example.com");
    const config = tampered((t) =>
      t
        .prepare(
          "UPDATE audit_events SET data = replace(data, 'bob@example.com', 'mallory@example.com') WHERE seq = ?",
        )
        .run(review.seq),
    );
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `event ${review.seq} (request.reviewed): its content does not match its hash; it was edited`,
    );
  });

  it("names an event whose data was edited into something that is not JSON", async () => {
    const config = tampered((db) =>
      db.prepare("UPDATE audit_events SET data = '{broken' WHERE seq = 4").run(),
    );
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(
      /event 4 \([a-z.]+\): its content does not match its hash; it was edited/,
    );
  });

  it("names an event whose data was edited to hold a number past JSON's range, and still exports it", async () => {
    // JSON.parse reads 1e999 as Infinity, which canonical JSON cannot encode at all.
    const config = tampered((db) =>
      db
        .prepare(
          `UPDATE audit_events SET data = '{"amount":1e999,' || substr(data, 2) WHERE seq = 4`,
        )
        .run(),
    );
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(
      /event 4 \([a-z.]+\): its content does not match its hash; it was edited/,
    );
    const exported = await runCli(["audit", "export", "--format", "jsonl", "--config", config], {
      env,
    });
    expect(exported.code).toBe(0);
    const events = exported.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[3]).toMatchObject({
      seq: 4,
      data: { noncanonical: expect.stringContaining("1e999") },
    });
    expect(events.length).toBeGreaterThan(4);
  });

  it("names an event whose data was given a key twice, which JSON.parse would read back as before", async () => {
    const review = firstReview();
    const forged = review.data.replace(/^\{/, '{"comment":"approved by mallory",');
    expect(JSON.parse(forged)).toEqual(JSON.parse(review.data));
    const config = tampered((t) =>
      t.prepare("UPDATE audit_events SET data = ? WHERE seq = ?").run(forged, review.seq),
    );
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `event ${review.seq} (request.reviewed): its content does not match its hash; it was edited`,
    );
  });

  it("names the place of a deleted event", async () => {
    const config = tampered((db) => db.prepare("DELETE FROM audit_events WHERE seq = 6").run());
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("event 7: expected event 6 before it; an event was deleted");
  });

  it("names the place of an inserted event, even one with a correct hash of its own", async () => {
    const config = tampered((db) => {
      const rows = db.prepare("SELECT * FROM audit_events ORDER BY seq").all() as AuditRow[];
      db.prepare("DELETE FROM audit_events WHERE seq >= 6").run();
      const insert = db.prepare(
        "INSERT INTO audit_events (seq, ts, type, request_id, actor_type, actor_id, data, prev_hash, hash) VALUES (@seq, @ts, @type, @request_id, @actor_type, @actor_id, @data, @prev_hash, @hash)",
      );
      const previous = rows[4]!; // seq 5
      const forged = {
        seq: 6,
        ts: previous.ts,
        type: "request.approved",
        requestId: previous.request_id,
        actor: { type: "system" as const, id: "airlock" },
        data: { forged: true },
        prevHash: previous.hash,
      };
      insert.run({
        seq: 6,
        ts: forged.ts,
        type: forged.type,
        request_id: forged.requestId,
        actor_type: "system",
        actor_id: "airlock",
        data: JSON.stringify(forged.data),
        prev_hash: forged.prevHash,
        hash: hashEvent(forged),
      });
      for (const row of rows.slice(5)) insert.run({ ...row, seq: row.seq + 1 });
    });
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(
      /event 7: its previous-hash does not match event 6|event 7 \([a-z.]+\): its content does not match its hash/,
    );
  });

  it("names the place of two events swapped", async () => {
    const config = tampered((db) => {
      const a = db.prepare("SELECT * FROM audit_events WHERE seq = 8").get() as AuditRow;
      const b = db.prepare("SELECT * FROM audit_events WHERE seq = 9").get() as AuditRow;
      const put = db.prepare(
        "UPDATE audit_events SET ts = @ts, type = @type, request_id = @request_id, actor_type = @actor_type, actor_id = @actor_id, data = @data, prev_hash = @prev_hash, hash = @hash WHERE seq = @seq",
      );
      put.run({ ...b, seq: 8 });
      put.run({ ...a, seq: 9 });
    });
    const result = await verify(config);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^event 8[ :]/m);
  });

  it("with --all, lists every problem with its event, one for each change, and still fails", async () => {
    const count = Number(
      /OK: (\d+)/.exec((await verify(join(original, "airlock.yaml"))).stdout)![1],
    );
    // An edit investigated last quarter, then later ones: a deletion hidden by renumbering the
    // events after it, and an edit past that.
    const config = tampered((db) => {
      db.prepare(`UPDATE audit_events SET data = '{"edited":true}' WHERE seq = 3`).run();
      db.prepare("DELETE FROM audit_events WHERE seq = 6").run();
      db.prepare("UPDATE audit_events SET seq = -(seq - 1) WHERE seq > 6").run();
      db.prepare("UPDATE audit_events SET seq = -seq WHERE seq < 0").run();
      db.prepare("UPDATE audit_events SET ts = '2020-01-01T00:00:00.000Z' WHERE seq = 9").run();
    });
    const first = await verify(config);
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(
      /^audit chain BROKEN after 2 good event\(s\)\nevent 3 \([a-z.]+\): its content does not match its hash; it was edited\n$/,
    );
    const all = await runCli(["audit", "verify", "--all", "--config", config], { env });
    expect(all.code).toBe(1);
    const lines = all.stdout.trim().split("\n");
    expect(lines[0]).toBe(`audit chain NOT OK: 3 problem(s) in ${count - 1} events`);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(
        /^event 3 \([a-z.]+\): its content does not match its hash; it was edited$/,
      ),
      expect.stringMatching(
        /^event 6 \([a-z.]+\): numbered 6, but hashed as event 7: it was moved, or events before it were deleted and the rest renumbered/,
      ),
      expect.stringMatching(/^event 9 \([a-z.]+\): its content does not match its hash/),
    ]);
    // A head recorded earlier is checked past them, and listed with them.
    const head = /head (\d+ [0-9a-f]{64})/.exec(
      (await verify(join(original, "airlock.yaml"))).stdout,
    )![1]!;
    const withHead = await runCli(
      ["audit", "verify", "--all", "--expect-head", head, "--config", config],
      { env },
    );
    expect(withHead.code).toBe(1);
    expect(withHead.stdout.trim().split("\n")).toEqual([
      `audit chain NOT OK: 4 problem(s) in ${count - 1} events`,
      ...lines.slice(1),
      `event ${count}, recorded as the head earlier, is missing: the chain ends at ${count - 1}; events were cut off its end`,
    ]);
    // An untouched chain passes as without it.
    const ok = await runCli(
      ["audit", "verify", "--all", "--config", join(original, "airlock.yaml")],
      { env },
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^audit chain OK: \d+ events, head \d+ [0-9a-f]{64}\n$/);
  });

  it("with --all, lists the first hundred problems of a table rewritten wholesale, and counts them all", async () => {
    let stored = 0;
    const config = tampered((db) => {
      // 150 more events, each linked to the one before, then every event's data edited: one
      // problem per event.
      const last = db
        .prepare("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1")
        .get() as AuditRow;
      stored = last.seq;
      const insert = db.prepare(
        "INSERT INTO audit_events VALUES (@seq, @ts, @type, @request_id, @actor_type, @actor_id, @data, @prev_hash, @hash)",
      );
      let previous = last;
      for (let i = 1; i <= 150; i++) {
        const row = {
          ...last,
          seq: last.seq + i,
          prev_hash: previous.hash,
          hash: `${i}`.padStart(64, "a"),
        };
        insert.run(row);
        previous = row;
      }
      db.prepare(`UPDATE audit_events SET data = '{"edited":true}'`).run();
    });
    const all = await runCli(["audit", "verify", "--all", "--config", config], { env });
    expect(all.code).toBe(1);
    const lines = all.stdout.trim().split("\n");
    const total = Number(
      /^audit chain NOT OK: (\d+) problem\(s\) in \1 events$/.exec(lines[0]!)?.[1],
    );
    expect(total).toBe(stored + 150);
    expect(lines).toHaveLength(1 + 100 + 1);
    expect(lines[1]).toMatch(/^event 1 \([a-z.]+\): its content does not match its hash/);
    expect(lines[100]).toMatch(/^event 100 \([a-z.]+\): its content does not match its hash/);
    expect(lines[101]).toBe(`and ${total - 100} more after these, not listed (the first 100 are)`);
  });

  it("lists every problem over the API with all=true, and at most a hundred of them", async () => {
    const config = tampered((db) => {
      db.prepare(`UPDATE audit_events SET data = '{"edited":true}' WHERE seq = 3`).run();
      db.prepare(`UPDATE audit_events SET data = '{"edited":true}' WHERE seq = 7`).run();
    });
    const dir = dirname(config);
    const copy = await startGateway(testConfig(upstream.url), { dir, env });
    try {
      const bob = await copy.token("reviewer", "bob@example.com");
      const ask = (query: string) =>
        api(copy.url, "GET", `/v1/audit/verify${query}`, { token: bob });
      const first = await ask("");
      expect(first.body).toMatchObject({ ok: false, problem: { seq: 3, kind: "edited" } });
      expect(first.body.problems).toBeUndefined();
      const all = await ask("?all=true");
      expect(all.status).toBe(200);
      expect(all.body).toMatchObject({
        ok: false,
        problem: { seq: 3, kind: "edited" },
        problems: [
          { seq: 3, kind: "edited" },
          { seq: 7, kind: "edited" },
        ],
        problemCount: 2,
      });
      expect((await ask("?all=false")).body.problems).toBeUndefined();
      const bad = await ask("?all=yes");
      expect(bad.status).toBe(400);
      expect(bad.body.error.field).toBe("all");

      // Every event edited: the answer lists a hundred, and counts them all.
      copy.gateway.store.auditEvents = async function* () {
        for (let seq = 1; seq <= 250; seq++) {
          yield {
            seq,
            type: "test.filler",
            requestId: null,
            actor: { type: "system" as const, id: "test" },
            ts: "2026-01-01T00:00:00.000Z",
            data: { seq },
            prevHash: "0".repeat(64),
            hash: "f".repeat(64),
          };
        }
      };
      const many = await ask("?all=true");
      expect(many.body.problemCount).toBeGreaterThanOrEqual(250);
      expect(many.body.problems).toHaveLength(100);
      expect(many.body.problems[0].seq).toBe(1);
    } finally {
      await copy.close();
    }
  });

  it("checks a head recorded earlier: the chain cut off its end, or rewritten whole, fails", async () => {
    const ok = await verify(join(original, "airlock.yaml"));
    const [, seq, hash] = /head (\d+) ([0-9a-f]{64})/.exec(ok.stdout)!;
    const config = join(original, "airlock.yaml");
    const withHead = (config: string, head: string) =>
      runCli(["audit", "verify", "--expect-head", head, "--config", config], { env });
    // Both spellings: as verify prints it, and SEQ:HASH.
    expect((await withHead(config, `${seq} ${hash}`)).code).toBe(0);
    const passed = await withHead(config, `${seq}:${hash}`);
    expect(passed.code).toBe(0);
    expect(passed.stdout).toContain("audit chain OK");

    // The last two events deleted: a chain that is valid in itself, but shorter.
    const cut = tampered((db) =>
      db.prepare("DELETE FROM audit_events WHERE seq > ?").run(Number(seq) - 2),
    );
    expect((await verify(cut)).code).toBe(0);
    const cutResult = await withHead(cut, `${seq}:${hash}`);
    expect(cutResult.code).toBe(1);
    expect(cutResult.stdout).toContain(`event ${seq}, recorded as the head earlier, is missing`);

    // Everything rehashed after an edit of event 3: valid in itself, but not the chain it was.
    const rewritten = tampered((db) => {
      const rows = db.prepare("SELECT * FROM audit_events ORDER BY seq").all() as AuditRow[];
      const put = db.prepare(
        "UPDATE audit_events SET data = @data, prev_hash = @prev_hash, hash = @hash WHERE seq = @seq",
      );
      let prevHash = "0".repeat(64);
      for (const row of rows) {
        const data = JSON.parse(row.data);
        const event = {
          seq: row.seq,
          ts: row.ts,
          type: row.type,
          requestId: row.request_id,
          actor: { type: row.actor_type as "system", id: row.actor_id },
          data: row.seq === 3 ? { ...data, rewritten: true } : data,
          prevHash,
        };
        const hash = hashEvent(event);
        // Stored as the gateway stores it: the canonical encoding that was hashed.
        put.run({ seq: row.seq, data: canonicalJson(event.data), prev_hash: prevHash, hash });
        prevHash = hash;
      }
    });
    expect((await verify(rewritten)).code).toBe(0);
    const rewrittenResult = await withHead(rewritten, `${seq}:${hash}`);
    expect(rewrittenResult.code).toBe(1);
    expect(rewrittenResult.stdout).toContain(
      `event ${seq} does not have the hash recorded earlier`,
    );

    for (const wrong of ["latest", `0:${hash}`]) {
      const bad = await withHead(config, wrong);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("--expect-head must be");
    }
  });

  it("exports the chain as JSON lines and as CSV", async () => {
    const config = join(original, "airlock.yaml");
    const jsonl = await runCli(["audit", "export", "--format", "jsonl", "--config", config], {
      env,
    });
    expect(jsonl.code).toBe(0);
    const events = jsonl.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[0]).toMatchObject({ seq: 1, prevHash: "0".repeat(64) });
    for (let i = 1; i < events.length; i++) expect(events[i].prevHash).toBe(events[i - 1].hash);
    const csv = await runCli(["audit", "export", "--format", "csv", "--config", config], { env });
    const lines = csv.stdout.trim().split("\n");
    expect(lines[0]).toBe("seq,ts,type,requestId,actorType,actorId,data,prevHash,hash");
    expect(lines).toHaveLength(events.length + 1);
    const future = await runCli(["audit", "export", "--since", "2999-01-01", "--config", config], {
      env,
    });
    expect(future.stdout).toBe("");
    const bad = await runCli(["audit", "export", "--format", "xml", "--config", config], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--format must be jsonl or csv");
  });

  it("goes on from the last event an earlier export held, by its number", async () => {
    const config = join(original, "airlock.yaml");
    const all = await runCli(["audit", "export", "--config", config], { env });
    const events = all.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { seq: number });
    const last = events[events.length - 1]!.seq;
    expect(all.stderr).toBe(
      `exported ${events.length} events, up to event ${last}: next time, --after-seq ${last} exports only what came since\n`,
    );
    // From the middle: exactly the events after it, in order.
    const middle = events[2]!.seq;
    const rest = await runCli(
      ["audit", "export", "--after-seq", String(middle), "--config", config],
      {
        env,
      },
    );
    expect(rest.code).toBe(0);
    expect(
      rest.stdout
        .trim()
        .split("\n")
        .map((line) => (JSON.parse(line) as { seq: number }).seq),
    ).toEqual(events.slice(3).map((e) => e.seq));
    const none = await runCli(
      ["audit", "export", "--after-seq", String(last), "--config", config],
      {
        env,
      },
    );
    expect(none.stdout).toBe("");
    expect(none.stderr).toBe(`exported no events after event ${last}\n`);
    for (const wrong of ["0x10", "1.5", "last"]) {
      const bad = await runCli(["audit", "export", "--after-seq", wrong, "--config", config], {
        env,
      });
      expect(bad.code, wrong).toBe(2);
      expect(bad.stderr).toContain("--after-seq must be an event's number");
    }
  });
});
