/**
 * Signed checkpoints: a chain rewritten whole by someone holding the database verifies as a
 * chain, but not against the checkpoints the gateway signed with a key the database never saw.
 */

import { generateKeyPairSync } from "node:crypto";
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Database from "better-sqlite3";
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
  testConfig,
  until,
  vote,
} from "./support/gateway.js";
import { startUpstream, type Upstream } from "./support/upstream.js";

let upstream: Upstream;
let original: string;
let config: string;
const env = { BILLING_API_TOKEN: "signed-test-credential" };
const dirs: string[] = [];

function keyPair(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

const keys = keyPair();
const keyDir = mkdtempSync(join(tmpdir(), "airlock-keys-"));
const privatePath = join(keyDir, "audit.key");
const publicPath = join(keyDir, "audit.pub");
writeFileSync(privatePath, keys.privatePem);
writeFileSync(publicPath, keys.publicPem);

beforeAll(async () => {
  upstream = await startUpstream();
  config = `${testConfig(upstream.url)}
audit:
  signingKey: \${file:${privatePath}}
  checkpointEvery: 100ms
`;
  const gw = await startGateway(config, { env });
  const agent = await gw.token("agent", "support-bot");
  const bob = await gw.token("reviewer", "bob@example.com");
  const carol = await gw.token("reviewer", "carol@example.com");
  await api(gw.url, "POST", "/v1/actions", { token: agent, body: read() });
  const checkpoints = async () =>
    (await api(gw.url, "GET", "/v1/audit?type=audit.checkpoint", { token: bob })).body.events
      .length as number;
  await until(async () => (await checkpoints()) >= 1);
  const held = await api(gw.url, "POST", "/v1/actions", { token: agent, body: refund() });
  await vote(gw.url, held.body.id, bob);
  await vote(gw.url, held.body.id, carol);
  await api(gw.url, "GET", `/v1/actions/${held.body.id}?wait=5`, { token: agent });
  // The last events are signed as the gateway stops.
  await gw.close();
  writeFileSync(join(gw.dir, "airlock.yaml"), config);
  original = gw.dir;
  dirs.push(original);
});

afterAll(async () => {
  await upstream.close();
  for (const dir of [...dirs, keyDir]) removeDir(dir);
});

/** A copy of the gateway's directory, changed by `edit` straight in SQLite. */
const tampered = (edit: (db: Database.Database) => void): string =>
  tamperedCopy(original, dirs, edit);

/** Rehashes the whole chain after `change`, as someone holding the database could. */
function rewrite(db: Database.Database, change: (rows: AuditRow[]) => AuditRow[]): void {
  const rows = change(db.prepare("SELECT * FROM audit_events ORDER BY seq").all() as AuditRow[]);
  db.prepare("DELETE FROM audit_events").run();
  const insert = db.prepare(
    "INSERT INTO audit_events (seq, ts, type, request_id, actor_type, actor_id, data, prev_hash, hash) VALUES (@seq, @ts, @type, @request_id, @actor_type, @actor_id, @data, @prev_hash, @hash)",
  );
  let prevHash = "0".repeat(64);
  rows.forEach((row, i) => {
    const event = {
      seq: i + 1,
      ts: row.ts,
      type: row.type,
      requestId: row.request_id,
      actor: { type: row.actor_type as "system", id: row.actor_id },
      data: JSON.parse(row.data),
      prevHash,
    };
    const hash = hashEvent(event);
    insert.run({ ...row, seq: i + 1, data: canonicalJson(event.data), prev_hash: prevHash, hash });
    prevHash = hash;
  });
}

const verify = (configPath: string, ...extra: string[]) =>
  runCli(["audit", "verify", "--config", configPath, ...extra], { env });

// Each test runs the CLI a few times: on a busy machine that is slower than the default allows.
describe("signed audit checkpoints", { timeout: 120_000 }, () => {
  it("vouch for the whole chain the gateway wrote", async () => {
    const result = await verify(join(original, "airlock.yaml"), "--public-key", publicPath);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("audit chain OK");
    // Signed at the stop: nothing after the last checkpoint.
    expect(result.stdout).toMatch(
      /signatures OK: \d+ checkpoint\(s\); events up to \d+ are vouched for, signed \S+Z\n$/,
    );
    // The private key's file serves as the public key too.
    expect((await verify(join(original, "airlock.yaml"), "--public-key", privatePath)).code).toBe(
      0,
    );
  });

  it("catch a chain rewritten whole, which the hashes alone cannot", async () => {
    const rewritten = tampered((db) =>
      rewrite(db, (rows) =>
        rows.map((row) =>
          row.type === "request.reviewed"
            ? { ...row, data: row.data.replaceAll("bob@example.com", "mallory@example.com") }
            : row,
        ),
      ),
    );
    expect((await verify(rewritten)).code).toBe(0);
    const result = await verify(rewritten, "--public-key", publicPath);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("audit chain NOT vouched for by its signatures");
    expect(result.stdout).toMatch(
      /event \d+ \(audit\.checkpoint\): it vouches for event \d+ with hash/,
    );
  });

  it("catch a rewrite that drops every checkpoint, and one signed with another key", async () => {
    const dropped = tampered((db) =>
      rewrite(db, (rows) => rows.filter((row) => row.type !== "audit.checkpoint")),
    );
    const result = await verify(dropped, "--public-key", publicPath);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("no checkpoint signed with this key vouches for any event");

    const other = keyPair();
    const otherPath = join(keyDir, "other.pub");
    writeFileSync(otherPath, other.publicPem);
    const foreign = await verify(join(original, "airlock.yaml"), "--public-key", otherPath);
    expect(foreign.code).toBe(1);
    // After a key rotation, each key the gateway has had is given.
    const rotated = await verify(
      join(original, "airlock.yaml"),
      "--public-key",
      otherPath,
      "--public-key",
      publicPath,
    );
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain("signatures OK");
    expect(foreign.stdout).toMatch(
      /it was signed with another key \([0-9a-f]{16}, not [0-9a-f]{16}\)/,
    );
  });

  it("say what is not signed yet, and `audit checkpoint` signs it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-signed-"));
    dirs.push(dir);
    cpSync(original, dir, { recursive: true });
    const configPath = join(dir, "airlock.yaml");
    // token create appends a token.created event, which no running gateway is there to sign.
    const made = await runCli(
      ["token", "create", "--agent", "support-bot", "--config", configPath],
      { env },
    );
    expect(made.code).toBe(0);
    const before = await verify(configPath, "--public-key", publicPath);
    expect(before.code).toBe(0);
    expect(before.stdout).toContain("; 1 later event(s) not signed yet");
    const signed = await runCli(["audit", "checkpoint", "--config", configPath], { env });
    expect(signed.code).toBe(0);
    expect(signed.stdout).toMatch(/^signed a checkpoint of event \d+ \(key [0-9a-f]{16}\)\n$/);
    const after = await verify(configPath, "--public-key", publicPath);
    expect(after.stdout).not.toContain("not signed yet");
  });

  it("refuse a signing key that is not an Ed25519 private key, naming audit.signingKey", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-signed-"));
    dirs.push(dir);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    const encrypted = generateKeyPairSync("ed25519")
      .privateKey.export({
        type: "pkcs8",
        format: "pem",
        cipher: "aes-256-cbc",
        passphrase: "unused",
      })
      .toString();
    for (const [name, pem, why] of [
      ["rsa.key", rsa, "is a rsa key; checkpoints are Ed25519"],
      ["public.key", keys.publicPem, "is not a PEM private key"],
      ["encrypted.key", encrypted, "is encrypted; give the key unencrypted"],
    ] as const) {
      writeFileSync(join(dir, name), pem);
      const path = join(dir, `${name}.yaml`);
      writeFileSync(
        path,
        `${testConfig(upstream.url)}\naudit:\n  signingKey: \${file:${join(dir, name)}}\n`,
      );
      const result = await runCli(["config", "check", "--config", path], { env });
      expect(result.code).toBe(1);
      expect(result.stdout + result.stderr).toContain(`audit.signingKey: ${why}`);
      expect(result.stdout + result.stderr).not.toContain("BEGIN");
    }
  });
});
