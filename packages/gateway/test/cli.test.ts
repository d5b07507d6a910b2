/** The `airlock` command as operators and reviewers use it, against a running gateway. */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { printable } from "../src/cli/commands/requests.js";
import { openStore } from "../src/store/open-store.js";
import { airlockBin, type CliResult, runCli } from "./support/cli.js";
import {
  api,
  refund,
  removeDir,
  startGateway,
  type TestGateway,
  testConfig,
  withGateway,
} from "./support/gateway.js";
import { postgresAvailable, postgresUrl, scratchSchema } from "./support/postgres.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

// Each test starts several node processes, half a second each on a busy 2-core machine.
vi.setConfig({ testTimeout: 60_000 });

let upstream: Upstream;
let gw: TestGateway;
let config: string;
const env = { BILLING_API_TOKEN: "cli-test-credential" };

beforeAll(async () => {
  upstream = await startUpstream();
  const text = testConfig(upstream.url);
  gw = await startGateway(text, { env });
  config = join(gw.dir, "airlock.yaml");
  writeFileSync(config, text);
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  removeDir(gw.dir);
});

describe("airlock token", () => {
  it("creates a working token shown once, stored only as a hash, and revokes it", async () => {
    const created = await runCli(
      ["token", "create", "--agent", "support-bot", "--config", config],
      { env },
    );
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^alk_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain("shown once");
    const tokens = await gw.gateway.store.listTokens();
    const record = tokens.find((t) => token.startsWith(t.hint.replace("…", "")))!;
    expect(record.subject).toBe("support-bot");
    expect(JSON.stringify(tokens)).not.toContain(token);
    const works = await api(gw.url, "POST", "/v1/actions", { token, body: refund() });
    expect(works.status).toBe(202);

    const listed = await runCli(["token", "list", "--config", config], { env });
    expect(listed.stdout).toContain(record.id);
    expect(listed.stdout).not.toContain(token);
    const revoked = await runCli(["token", "revoke", record.id, "--config", config], { env });
    expect(revoked.code).toBe(0);
    const refused = await api(gw.url, "POST", "/v1/actions", { token, body: refund() });
    expect(refused.status).toBe(401);
  });

  it("says there are none yet, and how to make one, on stderr", async () => {
    const path = join(gw.dir, "no-tokens.db");
    await (await openStore(`sqlite:${path}`, gw.dir, { create: true })).close();
    const file = join(gw.dir, "no-tokens.yaml");
    writeFileSync(file, `storage: sqlite:${path}\n`);
    const listed = await runCli(["token", "list", "--config", file]);
    expect(listed).toEqual({
      code: 0,
      stdout: "",
      stderr: "No tokens. Make one with: airlock token create --agent NAME, or --reviewer EMAIL\n",
    });
  });

  it("refuses subjects the config does not know, with what to do", async () => {
    const agent = await runCli(["token", "create", "--agent", "nobody", "--config", config], {
      env,
    });
    expect(agent.code).toBe(1);
    expect(agent.stderr).toContain(
      "no agent named nobody in the config (known: support-bot, ops-bot)",
    );
    const reviewer = await runCli(
      ["token", "create", "--reviewer", "eve@example.com", "--config", config],
      { env },
    );
    expect(reviewer.stderr).toContain("not a configured reviewer");
    const both = await runCli(["token", "create", "--config", config], { env });
    expect(both.code).toBe(2);
  });
});

/** The commands that only read the store: they must find it as it is, and leave it so. */
/** The commands that act only on a store that is there: all but token create (and serve). */
const readOnly = [
  ["audit", "verify"],
  ["audit", "export"],
  ["audit", "checkpoint"],
  ["token", "list"],
  ["token", "revoke", "tok_0123456789abcdef"],
  ["outbox", "list"],
  ["outbox", "redeliver", "--all"],
  ["policy", "replay"],
];

/** Each of them on the config at once: they only read, and each is a process's start. */
function runReadOnly(file: string): Promise<(readonly [string[], CliResult])[]> {
  return Promise.all(
    readOnly.map(async (args) => [args, await runCli([...args, "--config", file])] as const),
  );
}

function tablesOf(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all()
      .map((row) => (row as { name: string }).name);
  } finally {
    db.close();
  }
}

describe("commands other than serve", () => {
  it("refuse a storage path with no database, and create nothing there", async () => {
    const file = join(gw.dir, "typo.yaml");
    writeFileSync(file, "storage: sqlite:./typo/airlock.db\n");
    for (const [args, run] of await runReadOnly(file)) {
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr).toBe(
        `airlock: no database at ${join(gw.dir, "typo", "airlock.db")}; check storage: in the config (airlock serve creates it on its first start)\n`,
      );
      expect(run.stdout).toBe("");
    }
    expect(existsSync(join(gw.dir, "typo"))).toBe(false);
  });

  it("but token create neither create nor migrate tables in a SQLite file that is not Airlock's, or is older", async () => {
    const path = join(gw.dir, "other.db");
    const other = new Database(path);
    other.exec("CREATE TABLE notes (body TEXT)");
    other.close();
    const file = join(gw.dir, "other.yaml");
    writeFileSync(file, `storage: sqlite:${path}\n`);
    for (const [args, run] of await runReadOnly(file)) {
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr).toBe(
        `airlock: no Airlock tables in ${path}; check storage: in the config (airlock serve creates them on its first start)\n`,
      );
      expect(run.stdout).toBe("");
    }
    expect(tablesOf(path)).toEqual(["notes"]);
    const untouched = new Database(path, { readonly: true });
    expect(untouched.pragma("journal_mode", { simple: true })).toBe("delete");
    untouched.close();

    // A database an older Airlock made: the migrations this one adds are not run by a reader.
    const older = join(gw.dir, "older.db");
    writeFileSync(
      file,
      `storage: sqlite:${older}\nagents:\n  - { name: x, owner: o@example.com }\n`,
    );
    expect((await runCli(["token", "create", "--agent", "x", "--config", file])).code).toBe(0);
    const db = new Database(older);
    const latest = db.prepare("SELECT max(version) AS v FROM schema_migrations").get() as {
      v: number;
    };
    db.prepare("DELETE FROM schema_migrations WHERE version = ?").run(latest.v);
    db.close();
    for (const [args, run] of await runReadOnly(file)) {
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr).toBe(
        `airlock: the Airlock tables in ${older} are at schema version ${latest.v - 1}, and this airlock needs version ${latest.v}: start this version's airlock serve once to migrate them, then run this again\n`,
      );
    }
    const after = new Database(older, { readonly: true });
    expect(after.prepare("SELECT max(version) AS v FROM schema_migrations").get()).toEqual({
      v: latest.v - 1,
    });
    after.close();
  });

  it("nor any command, serve and token create too, a database a newer Airlock migrated", async () => {
    const newer = join(gw.dir, "newer.db");
    const file = join(gw.dir, "newer.yaml");
    writeFileSync(
      file,
      `storage: sqlite:${newer}\nagents:\n  - { name: x, owner: o@example.com }\nserver: { port: 0 }\n`,
    );
    expect((await runCli(["token", "create", "--agent", "x", "--config", file])).code).toBe(0);
    const db = new Database(newer);
    const { v: known } = db.prepare("SELECT max(version) AS v FROM schema_migrations").get() as {
      v: number;
    };
    db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', '')",
    ).run(known + 1);
    db.close();
    for (const args of [...readOnly, ["token", "create", "--agent", "x"], ["serve"]]) {
      const run = await runCli([...args, "--config", file]);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr).toBe(
        `airlock: the Airlock tables in ${newer} are at schema version ${known + 1}, newer than this airlock knows (version ${known}): a newer Airlock migrated them. Run that version or a later one; to go back to this one, restore a backup taken before that upgrade\n`,
      );
    }
  });

  it.skipIf(!postgresAvailable)(
    "but token create neither create nor migrate tables in a PostgreSQL schema without Airlock's, or an older one",
    async () => {
      const schema = await scratchSchema();
      try {
        const file = join(gw.dir, "pg.yaml");
        const server = `${new URL(postgresUrl).host}${new URL(postgresUrl).pathname}`;
        const where = `schema ${schema.name} of PostgreSQL at ${server}`;
        writeFileSync(
          file,
          `storage: "${schema.url}"\nagents:\n  - { name: x, owner: o@example.com }\n`,
        );
        const tables = async () =>
          (
            await schema.query<{ name: string }>(
              "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1",
              [schema.name],
            )
          ).map((row) => row.name);
        for (const [args, run] of await runReadOnly(file)) {
          expect(run.code, args.join(" ")).toBe(1);
          expect(run.stderr).toBe(
            `airlock: no Airlock tables in ${where}; check storage: in the config: its database, user and search_path (airlock serve creates them on its first start)\n`,
          );
          expect(run.stdout).toBe("");
        }
        expect(await tables()).toEqual([]);
        const nowhere = new URL(schema.url);
        nowhere.searchParams.set("options", `-c search_path=${schema.name}_typo`);
        writeFileSync(file, `storage: "${nowhere}"\n`);
        const run = await runCli(["audit", "verify", "--config", file]);
        expect(run.stderr).toBe(
          `airlock: no Airlock tables in PostgreSQL at ${server} (no schema on its search_path exists, or the role may not use it); check storage: in the config: its database, user and search_path (airlock serve creates them on its first start)\n`,
        );
        writeFileSync(
          file,
          `storage: "${schema.url}"\nagents:\n  - { name: x, owner: o@example.com }\n`,
        );

        expect((await runCli(["token", "create", "--agent", "x", "--config", file])).code).toBe(0);
        const [latest] = await schema.query<{ v: number }>(
          "SELECT max(version) AS v FROM schema_migrations",
        );
        await schema.query("DELETE FROM schema_migrations WHERE version = $1", [latest!.v]);
        for (const [args, run] of await runReadOnly(file)) {
          expect(run.code, args.join(" ")).toBe(1);
          expect(run.stderr).toBe(
            `airlock: the Airlock tables in ${where} are at schema version ${latest!.v - 1}, and this airlock needs version ${latest!.v}: start this version's airlock serve once to migrate them, then run this again\n`,
          );
        }
        expect(await schema.query("SELECT max(version) AS v FROM schema_migrations")).toEqual([
          { v: latest!.v - 1 },
        ]);
      } finally {
        await schema.drop();
      }
    },
  );

  it("but token create makes the database, so tokens can be made before the first start", async () => {
    const file = join(gw.dir, "fresh.yaml");
    writeFileSync(
      file,
      "storage: sqlite:./fresh/airlock.db\nagents:\n  - { name: x, owner: o@example.com }\n",
    );
    const made = await runCli(["token", "create", "--agent", "x", "--config", file]);
    expect(made.code).toBe(0);
    expect(existsSync(join(gw.dir, "fresh", "airlock.db"))).toBe(true);
    const list = await runCli(["token", "list", "--config", file]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/agent +x/);
  });
});

describe("airlock audit export", () => {
  it("ends quietly, but not as a success, when its reader stops, and names an --output it cannot write", async () => {
    // An event to export, whatever ran before.
    await runCli(["token", "create", "--agent", "ops-bot", "--config", config], { env });
    const child = spawn(process.execPath, [airlockBin, "audit", "export", "--config", config], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.destroy(); // the reader is gone before the first line is written
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const [code] = (await once(child, "exit")) as [number];
    expect(stderr).toBe("");
    // As a program the closed pipe stopped: quiet, but not success.
    expect(code).toBe(141);

    const directory = await runCli(["audit", "export", "--config", config, "--output", gw.dir], {
      env,
    });
    expect(directory.code).toBe(1);
    expect(directory.stderr).toBe(
      `airlock: cannot write --output ${gw.dir}: it is a directory; name a file, like --output audit.jsonl\n`,
    );
    const nowhere = join(gw.dir, "missing", "audit.jsonl");
    const missing = await runCli(["audit", "export", "--config", config, "--output", nowhere], {
      env,
    });
    expect(missing.stderr).toBe(
      `airlock: cannot write --output ${nowhere}: its directory does not exist; create it first\n`,
    );
    const file = join(gw.dir, "audit.jsonl");
    const written = await runCli(["audit", "export", "--config", config, "--output", file], {
      env,
    });
    expect(written.code).toBe(0);
    expect(readFileSync(file, "utf8")).toContain('"type":"token.created"');
  });

  it("takes --since as a time ago (12h, 7d) as well as a date", async () => {
    await runCli(["token", "create", "--agent", "ops-bot", "--config", config], { env });
    const all = await runCli(["audit", "export", "--config", config], { env });
    const seqs = (out: string) =>
      out
        .split("\n")
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { seq: number }).seq);
    const last = Math.max(...seqs(all.stdout));
    // Every event of this test's gateway was written within the hour (the gateway, still
    // running, may add one after the first export: kept too, after the others)...
    const hour = await runCli(["audit", "export", "--since", "1h", "--config", config], { env });
    expect(hour.code).toBe(0);
    expect(hour.stdout).toContain('"type":"token.created"');
    expect(hour.stdout.startsWith(all.stdout)).toBe(true);
    const week = await runCli(["audit", "export", "--since", "7d", "--config", config], { env });
    expect(week.stdout.startsWith(all.stdout)).toBe(true);
    // ...and none of them in the millisecond before the export began: it counts back from now.
    const none = await runCli(["audit", "export", "--since", "1ms", "--config", config], { env });
    expect(none.code).toBe(0);
    expect(seqs(none.stdout).filter((seq) => seq <= last)).toEqual([]);
    const bad = await runCli(["audit", "export", "--since", "last week", "--config", config], {
      env,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--since must be a duration like 7d or 12h, or it must be a date");
    const help = await runCli(["audit", "--help"]);
    expect(help.stdout).toContain("[--since 7d|DATE]");
  });
});

describe("airlock serve", () => {
  it("says what is wrong, without a stack, for a misspelt review channel and a port in use", async () => {
    const file = join(gw.dir, "serve.yaml");
    writeFileSync(
      file,
      "storage: sqlite:./serve.db\nreviewers: [{ email: a@b.c }]\nrules:\n  - { name: r, decision: review, review: { channels: [slak] } }\n",
    );
    const misspelt = await runCli(["serve", "--config", file]);
    expect(misspelt.code).toBe(1);
    expect(misspelt.stderr).toBe(
      `airlock: ${file} has 1 error:\n  rules[0].review.channels[0]: no approval channel named "slak" is configured (configure channels.slack or channels.teams, or leave this list empty for the console and API only)\n`,
    );

    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      writeFileSync(file, `storage: sqlite:./serve.db\nserver: { port: ${port} }\n`);
      const inUse = await runCli(["serve", "--config", file]);
      expect(inUse.code).toBe(1);
      expect(inUse.stderr).toBe(
        `airlock: port ${port} on 127.0.0.1 is in use; stop what listens there (another airlock serve?) or set server.port in ${file}\n`,
      );
    } finally {
      taken.close();
    }
  });
});

describe("airlock requests", () => {
  it("lets a reviewer list, show, approve and deny from a terminal", async () => {
    const agent = await gw.token("agent", "support-bot");
    const bob = await gw.token("reviewer", "bob@example.com");
    const carol = await gw.token("reviewer", "carol@example.com");
    const alice = await gw.token("reviewer", "alice@example.com");
    const held = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: "from the cli" }),
    });
    const other = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: "to deny" }),
    });
    const as = (token: string) => ({ env: { AIRLOCK_TOKEN: token, AIRLOCK_URL: gw.url } });

    const list = await runCli(["requests", "list"], as(bob));
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(held.body.id);
    expect(list.stdout).toMatch(/high\s+support-bot\s+0\/2/);

    const show = await runCli(["requests", "show", held.body.id], as(bob));
    expect(show.stdout).toContain("justification (the agent's claim):\n  | from the cli\n");
    expect(show.stdout).toContain('"card_number": "[masked]"');
    expect(show.stdout).not.toContain("4242424242424242");

    const selfApproval = await runCli(["requests", "approve", held.body.id], as(alice));
    expect(selfApproval.code).toBe(1);
    expect(selfApproval.stderr).toContain("(self_approval)");

    // A hash binds the vote to the request read: another request's is refused, and counts nothing.
    const otherHash = JSON.parse(
      (await runCli(["requests", "show", other.body.id, "--json"], as(bob))).stdout,
    ).hash;
    const mismatch = await runCli(
      ["requests", "approve", held.body.id, "--hash", otherHash],
      as(bob),
    );
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain("requestHash: does not match this request");
    const malformed = await runCli(["requests", "approve", held.body.id, "--hash", "abc"], as(bob));
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain("--hash must be the request's hash");
    const shownHash = /^hash: ([0-9a-f]{64})$/m.exec(show.stdout)![1]!;

    const first = await runCli(
      ["requests", "approve", held.body.id, "--comment", "looks right", "--hash", shownHash],
      as(bob),
    );
    expect(first.stdout).toContain("(1 of 2 approvals): still waiting");
    const second = await runCli(["requests", "approve", held.body.id], as(carol));
    expect(second.stdout).toContain("(2 of 2 approvals)");
    const done = await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(done.body.reviews[0].comment).toBe("looks right");

    const denied = await runCli(["requests", "deny", other.body.id, "-m", "no"], as(carol));
    expect(denied.stdout).toContain(`Denied ${other.body.id}`);
    const json = await runCli(["requests", "list", "--status", "denied", "--json"], as(bob));
    expect(JSON.parse(json.stdout).requests.map((r: { id: string }) => r.id)).toContain(
      other.body.id,
    );
  });

  it("shows an agent's escape sequences as text, so they cannot rewrite the terminal", async () => {
    const agent = await gw.token("agent", "support-bot");
    const bob = await gw.token("reviewer", "bob@example.com");
    // Moves the cursor up and rewrites the first line as a harmless one, then hides the rest.
    const forged =
      "charged twice\u001b7\u001b[6A\r\u001b[2Krisk low (a small refund)\u001b8\u001b[8m";
    const held = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: forged }),
    });
    const as = { env: { AIRLOCK_TOKEN: bob, AIRLOCK_URL: gw.url } };
    const show = await runCli(["requests", "show", held.body.id], as);
    expect(show.code).toBe(0);
    expect(show.stdout).not.toContain("\u001b");
    expect(show.stdout).toContain(
      "charged twice\\u001b7\\u001b[6A\\u000d\\u001b[2Krisk low (a small refund)\\u001b8\\u001b[8m",
    );
    const list = await runCli(["requests", "list"], as);
    expect(list.stdout).not.toContain("\u001b");

    // Lines of its own, after the preview, set apart: none reads as the command's.
    const fake = "double charge\n\n\n\n\nyou: can approve\nhash: 0000";
    const faked = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: refund({ justification: fake }),
    });
    const shown = (await runCli(["requests", "show", faked.body.id], as)).stdout;
    expect(shown).toContain(
      "justification (the agent's claim):\n  | double charge\n  | \n  | you: can approve\n  | hash: 0000\n",
    );
    expect(shown.indexOf("justification")).toBeGreaterThan(shown.indexOf("preview:"));
    expect(shown.match(/^you: /gm)).toHaveLength(1);
    expect(shown.match(/^hash: /gm)).toHaveLength(1);
    // Bidirectional controls reorder the text after them; shown as escapes too.
    expect(printable("refund \u202e001")).toBe("refund \\u202e001");
  });

  it("keeps the path of a gateway served under one (--url https://host/airlock)", async () => {
    const bob = await gw.token("reviewer", "bob@example.com");
    // A reverse proxy that serves the gateway under /airlock, and something else at its root.
    const seen: string[] = [];
    const proxy = createServer(async (request, response) => {
      seen.push(request.url ?? "");
      if (!request.url?.startsWith("/airlock/")) {
        response.statusCode = 404;
        response.setHeader("content-type", "text/html");
        response.end("<html>not here</html>");
        return;
      }
      const answer = await fetch(gw.url + request.url.slice("/airlock".length), {
        headers: { authorization: request.headers.authorization ?? "" },
      });
      response.statusCode = answer.status;
      response.setHeader("content-type", "application/json");
      response.end(await answer.text());
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/airlock`;
    try {
      for (const base of [url, `${url}/`]) {
        const list = await runCli(["requests", "list", "--url", base], {
          env: { AIRLOCK_TOKEN: bob },
        });
        expect(list.stderr).toBe("");
        expect(list.code).toBe(0);
      }
      expect(seen).toEqual(["/airlock/v1/requests", "/airlock/v1/requests"]);
    } finally {
      proxy.close();
    }
  });

  it("refuses a mangled AIRLOCK_TOKEN, and a URL with a password, without printing them", async () => {
    for (const token of ["alk_SeCrEt1\nalk_SeCrEt2", "alk_SeCrEt1\u20ac"]) {
      const bad = await runCli(["requests", "list"], {
        env: { AIRLOCK_TOKEN: token, AIRLOCK_URL: gw.url },
      });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("AIRLOCK_TOKEN has a character a token cannot have");
      expect(bad.stderr).not.toContain("SeCrEt");
    }
    const withPassword = await runCli(["requests", "list"], {
      env: { AIRLOCK_TOKEN: "alk_x", AIRLOCK_URL: "http://bob:pAsSwOrD@127.0.0.1:9" },
    });
    expect(withPassword.code).toBe(2);
    expect(withPassword.stderr).toContain("must not hold a user name or password");
    expect(withPassword.stderr).not.toContain("pAsSwOrD");
    // Spaces around it, as a copy often brings, are not part of it.
    const bob = await gw.token("reviewer", "bob@example.com");
    const padded = await runCli(["requests", "list"], {
      env: { AIRLOCK_TOKEN: ` ${bob}\r\n`, AIRLOCK_URL: gw.url },
    });
    expect(padded.code).toBe(0);
  });

  it("says what to do without a token or a gateway", async () => {
    const noToken = await runCli(["requests", "list"], {
      env: { AIRLOCK_TOKEN: "", AIRLOCK_URL: gw.url },
    });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("set AIRLOCK_TOKEN");
    const noGateway = await runCli(["requests", "list", "--url", "http://127.0.0.1:9"], {
      env: { AIRLOCK_TOKEN: "alk_x" },
    });
    expect(noGateway.code).toBe(1);
    expect(noGateway.stderr).toContain("cannot reach the gateway at http://127.0.0.1:9");

    // Something else at the URL (a web page, a JSON API of another kind): said, not a stack.
    const other = createServer((request, response) => {
      const json = request.url?.startsWith("/v1/requests/req_");
      response.setHeader("content-type", json ? "application/json" : "text/html");
      response.end(json ? '{"ok":true}' : "<html>a wiki</html>");
    });
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      for (const args of [
        ["requests", "list"],
        ["requests", "show", "req_1"],
        ["requests", "approve", "req_1"],
      ]) {
        const wrong = await runCli([...args, "--url", url], { env: { AIRLOCK_TOKEN: "alk_x" } });
        expect(wrong.code).toBe(1);
        expect(wrong.stderr).toMatch(/did not answer as an Airlock gateway \(HTTP (200|404), /);
        expect(wrong.stderr).not.toContain("unexpected error");
      }
    } finally {
      other.close();
    }
  });
});

describe("airlock policy test", () => {
  it("passes matching cases and exits 1 printing each mismatch", async () => {
    const cases = join(gw.dir, "cases.yaml");
    writeFileSync(
      cases,
      `cases:
  - name: reads pass
    agent: support-bot
    connection: billing-api
    operation: request
    input: { method: GET, path: /invoices }
    expect: allow
  - name: refunds wait
    agent: support-bot
    connection: billing-api
    operation: request
    input: { method: POST, path: /refunds }
    expect: review
    rule: refunds need two finance reviewers
  - name: wrong on purpose
    agent: support-bot
    connection: billing-api
    operation: request
    input: { method: DELETE, path: /invoices/1 }
    expect: allow
  - name: unknown agent
    agent: ghost
    connection: billing-api
    operation: request
    expect: deny
`,
    );
    const result = await runCli(["policy", "test", cases, "--config", config], { env });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('ok    reads pass: allow by rule "reads pass"');
    expect(result.stdout).toContain(
      'ok    refunds wait: review by rule "refunds need two finance reviewers"',
    );
    expect(result.stdout).toContain(
      'FAIL  wrong on purpose: expected allow, got deny by rule "nothing else"',
    );
    expect(result.stdout).toContain(
      "FAIL  unknown agent: expected deny, got error: no agent named ghost",
    );
    expect(result.stdout).toContain("2 passed, 2 failed");
    writeFileSync(
      cases,
      "cases:\n  - { agent: support-bot, connection: billing-api, operation: request, input: { method: GET, path: /x }, expect: allow }\n",
    );
    const passing = await runCli(["policy", "test", cases, "--config", config], { env });
    expect(passing.code).toBe(0);
    writeFileSync(
      cases,
      "cases:\n  - { agent: support-bot, expect: perhaps, expected: allow }\nextra: 1\n",
    );
    const invalid = await runCli(["policy", "test", cases, "--config", config], { env });
    expect(invalid.code).toBe(1);
    // Paths and words read as config errors write them: cases[0].expect, not cases.0.expect.
    expect(invalid.stderr).toContain("cases[0].connection:");
    expect(invalid.stderr).toContain("cases[0].expect:");
    expect(invalid.stderr).not.toContain("cases.0");
    expect(invalid.stderr).toContain('cases[0]: unknown key "expected"');
    expect(invalid.stderr).toContain('(root): unknown key "extra"');
    expect(invalid.stderr).not.toContain("Unrecognized");
  });

  it("refuses the cases the API would refuse, and redacts secrets from evaluation errors", async () => {
    const cases = join(gw.dir, "refused-cases.yaml");
    writeFileSync(
      cases,
      `cases:
  - { agent: support-bot, connection: billing-api, input: { method: GET, path: /x }, expect: allow }
  - agent: support-bot
    connection: billing-api
    operation: request
    input: { method: POST, path: /refunds, body: { amount: 9007199254740993 } }
    justification: "\\ud800"
    expect: review
`,
    );
    const refused = await runCli(["policy", "test", cases, "--config", config], { env });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toContain("cases[0].operation:");
    expect(refused.stderr).toContain(
      "cases[1].input.body.amount: is an integer beyond ±2^53, which JSON numbers cannot carry exactly",
    );
    expect(refused.stderr).toContain("cases[1].justification:");

    const secretConfig = join(gw.dir, "secret-rule.yaml");
    writeFileSync(
      secretConfig,
      `agents: [{ name: bot, owner: a@b.c }]
connections: { api: { type: http, baseUrl: "http://127.0.0.1:1" } }
rules:
  - { name: r, decision: allow, when: '{"k": 1}["\${env:RULE_SECRET}"] > 0' }
`,
    );
    writeFileSync(
      cases,
      "cases:\n  - { agent: bot, connection: api, operation: request, input: { method: GET, path: / }, expect: allow }\n",
    );
    const run = await runCli(["policy", "test", cases, "--config", secretConfig], {
      env: { RULE_SECRET: "Sup3rSecretValue" },
    });
    expect(run.stdout).toContain("evaluation error: No such key: [redacted]");
    expect(run.stdout + run.stderr).not.toContain("Sup3rSecretValue");
  });
});

describe("airlock policy replay", () => {
  it("decides the stored requests again by a changed file, lists those decided otherwise, and exits 1", async () => {
    const text = testConfig(upstream.url);
    await withGateway(
      text,
      async (own) => {
        const agent = await own.token("agent", "support-bot");
        const submit = async (body: unknown) =>
          (await api(own.url, "POST", "/v1/actions", { token: agent, body })).body.id as string;
        const read = await submit({
          connection: "billing-api",
          operation: "request",
          input: { method: "GET", path: "/invoices" },
        });
        const held = await submit(refund());
        const denied = await submit({
          connection: "billing-api",
          operation: "request",
          input: { method: "DELETE", path: "/invoices/1" },
        });
        const same = join(own.dir, "airlock.yaml");
        writeFileSync(same, text);
        const unchanged = await runCli(["policy", "replay", "--config", same], { env });
        expect(unchanged.stderr).toBe("");
        expect(unchanged.code).toBe(0);
        expect(unchanged.stdout).toMatch(
          /^3 request\(s\) since .* replayed: 3 decided as before, 0 otherwise\n$/,
        );

        // Reads now wait for a person.
        const changed = join(own.dir, "next.yaml");
        writeFileSync(
          changed,
          text.replace(
            'http.method == "GET"\n    decision: allow',
            'http.method == "GET"\n    decision: review',
          ),
        );
        const replayed = await runCli(["policy", "replay", "--config", changed], { env });
        expect(replayed.code).toBe(1);
        expect(replayed.stdout).toContain(`${read}  `);
        expect(replayed.stdout).toContain(
          '  was allow by rule "reads pass"\n  now review by rule "reads pass"\n',
        );
        expect(replayed.stdout).not.toContain(held);
        expect(replayed.stdout).not.toContain(denied);
        expect(replayed.stdout).toMatch(
          /3 request\(s\) since .* replayed: 2 decided as before, 1 otherwise \(1 allow → review\)\n$/,
        );

        // Only what came since the time asked.
        const later = await runCli(
          ["policy", "replay", "--since", "2099-01-01", "--config", changed],
          { env },
        );
        expect(later.code).toBe(0);
        expect(later.stdout).toMatch(/^0 request\(s\) since 2099-01-01T00:00:00.000Z replayed/);
        const bad = await runCli(
          ["policy", "replay", "--since", "last week", "--config", changed],
          {
            env,
          },
        );
        expect(bad.code).toBe(2);
        expect(bad.stderr).toContain("--since must be a duration like 7d or 12h");
      },
      { env },
    );
  });
});

describe("help", () => {
  it("prints usage for the command and each subcommand", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    for (const word of [
      "serve",
      "demo",
      "token create",
      "requests list",
      "policy test",
      "policy replay",
      "audit verify",
      "audit export",
      "audit checkpoint",
      "config check",
      // Each option the README's summary of the commands lists.
      "--data DIR",
      "--json",
      "--hash HASH",
      "--all",
      "--after ID",
    ]) {
      expect(top.stdout).toContain(word);
    }
    for (const command of [
      ["serve"],
      ["demo"],
      ["token"],
      ["requests"],
      ["policy"],
      ["audit"],
      ["outbox"],
      ["config"],
      ["config", "check"],
    ]) {
      const help = await runCli([...command, "--help"]);
      expect(help.code, command.join(" ")).toBe(0);
      expect(help.stdout).toMatch(/^Usage/);
      // More than the usage line: what the command does.
      expect(help.stdout.trim().split("\n").length, command.join(" ")).toBeGreaterThan(1);
    }
    const unknown = await runCli(["launch"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command launch");
  });

  it("says what is wrong with a command line, and what to do", async () => {
    const said = async (args: string[]) => {
      const run = await runCli(args, { env });
      return [run.code, run.stderr.split("\n")[0]];
    };
    expect(await said(["token", "--config", config])).toEqual([
      2,
      `airlock: options come after the subcommand: airlock token create|list|revoke --config ${config}`,
    ]);
    expect(await said(["requests", "frob"])).toEqual([
      2,
      'airlock: unknown subcommand "frob": airlock requests takes list, show, approve or deny',
    ]);
    expect(await said(["audit"])).toEqual([
      2,
      "airlock: say what to do: airlock audit verify, export or checkpoint",
    ]);
    expect(await said(["token", "revoke", "nope", "--config", config])).toEqual([
      1,
      "airlock: no active token nope; see the tokens and their ids with: airlock token list",
    ]);
    expect(await said(["token", "create", "--agent", "", "--config", config])).toEqual([
      2,
      "airlock: --agent needs the name of an agent in the config, like --agent support-bot",
    ]);
  });
});
