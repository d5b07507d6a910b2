/**
 * Signed checkpoints: a chain rewritten whole by someone holding the database verifies as a
 * chain, but not against the checkpoints the gateway signed with a key the database never saw.
 */

import { generateKeyPairSync } from "node:crypto";
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashEvent } from "../src/audit/audit-chain.js";
import { keyIdOf, readKey, signCheckpoint } from "../src/audit/audit-checkpoints.js";
import { canonicalJson, type Json } from "../src/common/canonical-json.js";
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
/** A reviewer's token in the original chain, whose last event is a checkpoint by `keys`. */
let reviewerToken: string;
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
  reviewerToken = bob;
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

/** A copy of the gateway's directory (or `from`), changed by `edit` straight in SQLite. */
function tampered(edit: (db: Database.Database) => void): string;
function tampered(from: string, edit: (db: Database.Database) => void): string;
function tampered(
  from: string | ((db: Database.Database) => void),
  edit?: (db: Database.Database) => void,
): string {
  return typeof from === "string"
    ? tamperedCopy(from, dirs, edit!)
    : tamperedCopy(original, dirs, from);
}

/** Appends a checkpoint of the head signed with `privatePem`, as a holder of that key could. */
function signHeadWith(db: Database.Database, privatePem: string): void {
  appendCheckpoint(db, (head) => signCheckpoint(readKey(privatePem, "sign"), head, Date.now()));
}

/** Appends, as its next event, the checkpoint `sign` makes of the chain's head. */
function appendCheckpoint(
  db: Database.Database,
  sign: (head: AuditRow) => ReturnType<typeof signCheckpoint>,
): void {
  const head = db.prepare("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1").get() as AuditRow;
  const data = sign(head);
  const event = {
    seq: head.seq + 1,
    ts: data.signedAt,
    type: "audit.checkpoint",
    requestId: null,
    actor: { type: "system" as const, id: "airlock" },
    data: data as unknown as Json,
    prevHash: head.hash,
  };
  db.prepare(
    "INSERT INTO audit_events (seq, ts, type, request_id, actor_type, actor_id, data, prev_hash, hash) VALUES (?, ?, ?, NULL, 'system', 'airlock', ?, ?, ?)",
  ).run(event.seq, event.ts, event.type, canonicalJson(data), head.hash, hashEvent(event));
}

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

/** Every vote bob cast, rewritten as mallory's. */
const bobToMallory = (rows: AuditRow[]): AuditRow[] =>
  rows.map((row) =>
    row.type === "request.reviewed"
      ? { ...row, data: row.data.replaceAll("bob@example.com", "mallory@example.com") }
      : row,
  );

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
    const rewritten = tampered((db) => rewrite(db, bobToMallory));
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
    expect(foreign.stdout).toMatch(
      /it was signed with another key \([0-9a-f]{16}, not [0-9a-f]{16}\)/,
    );
    // A key given beside the gateway's that never signed: it could be the newest key, whose
    // checkpoints were cut off, so the chain is not vouched for.
    const extra = await verify(
      join(original, "airlock.yaml"),
      "--public-key",
      otherPath,
      "--public-key",
      publicPath,
    );
    expect(extra.code).toBe(1);
    expect(extra.stdout).toContain(
      `key ${keyIdOf(readKey(other.publicPem, "check"))} signed no checkpoint in this chain`,
    );
  });

  it("after a key rotation, take both keys, and refuse the old key's signature past the rotation", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-signed-"));
    dirs.push(dir);
    cpSync(original, dir, { recursive: true });
    const next = keyPair();
    const nextPrivate = join(keyDir, "next.key");
    const nextPublic = join(keyDir, "next.pub");
    writeFileSync(nextPrivate, next.privatePem);
    writeFileSync(nextPublic, next.publicPem);
    const configPath = join(dir, "airlock.yaml");
    writeFileSync(configPath, config.replace(privatePath, nextPrivate));
    // The new key signs: its first checkpoint is the rotation.
    for (let i = 0; i < 2; i++) {
      const made = await runCli(
        ["token", "create", "--agent", "support-bot", "--config", configPath],
        { env },
      );
      expect(made.code).toBe(0);
      expect((await runCli(["audit", "checkpoint", "--config", configPath], { env })).code).toBe(0);
    }
    const [oldId, newId] = [keys.publicPem, next.publicPem].map((pem) =>
      keyIdOf(readKey(pem, "check")),
    );
    const rows = () => {
      const db = new Database(join(dir, "airlock.db"), { readonly: true });
      try {
        return db.prepare("SELECT * FROM audit_events ORDER BY seq").all() as AuditRow[];
      } finally {
        db.close();
      }
    };
    const rotation = rows().find((row) => JSON.parse(row.data).keyId === newId)!.seq;
    // The old config, still somewhere, signs nothing now.
    const oldConfig = join(dir, "old.yaml");
    writeFileSync(oldConfig, config);
    expect(
      (await runCli(["token", "create", "--agent", "support-bot", "--config", oldConfig], { env }))
        .code,
    ).toBe(0);
    const refused = await runCli(["audit", "checkpoint", "--config", oldConfig], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `audit.signingKey (key ${oldId}) was replaced by key ${newId} (its checkpoint at event ${rotation}): a checkpoint signed with it now would fail airlock audit verify; sign with the new key`,
    );
    expect((await runCli(["audit", "checkpoint", "--config", configPath], { env })).code).toBe(0);
    const both = ["--public-key", publicPath, "--public-key", nextPublic];
    const rotated = await verify(configPath, ...both);
    expect(rotated.stderr).toBe("");
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(
      new RegExp(
        `\nsigning keys, oldest first: ${oldId} \\(\\d+ checkpoint\\(s\\) from event \\d+\\), ${newId} \\(3 checkpoint\\(s\\) from event ${rotation}\\); each key replaced the one before it at its first checkpoint, and only the newest vouches for what came after\n$`,
      ),
    );

    // Someone holding the old key and the database rewrites what came after the rotation and
    // signs it with the old key: the checkpoints before the rewrite still agree.
    const forgedToken = (row: AuditRow): AuditRow =>
      row.seq > rotation && row.type === "token.created"
        ? { ...row, data: row.data.replace("support-bot", "mallory-bot") }
        : row;
    const afterRotation = tampered(dir, (db) => {
      rewrite(db, (all) =>
        all
          .filter((row) => row.seq <= rotation || row.type !== "audit.checkpoint")
          .map(forgedToken),
      );
      signHeadWith(db, keys.privatePem);
    });
    const late = await verify(afterRotation, ...both);
    expect(late.code).toBe(1);
    expect(late.stdout).toMatch(
      new RegExp(
        `^audit chain NOT vouched for by its signatures\nevent \\d+ \\(audit\\.checkpoint\\): it is signed with key ${oldId}, which key ${newId} replaced at event ${rotation} \\(its first checkpoint\\), yet it vouches for event \\d+`,
      ),
    );
    // Or cuts back to before the rotation, the new key's checkpoints and all.
    const beforeRotation = tampered(dir, (db) => {
      rewrite(db, (all) =>
        all.filter((row) => row.type !== "audit.checkpoint" || row.seq < rotation).map(forgedToken),
      );
      signHeadWith(db, keys.privatePem);
    });
    const cut = await verify(beforeRotation, ...both);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain(`key ${newId} signed no checkpoint in this chain`);
  });

  it("with audit.publicKeys, a checkpoint forged under an unknown key stops no signer, and verify names it", async () => {
    // Someone with write access to the database appends a checkpoint under a key no one has.
    const forged = tampered((db) =>
      appendCheckpoint(db, (head) => ({
        ...signCheckpoint(readKey(keyPair().privatePem, "sign"), head, Date.now()),
        keyId: "0123456789abcdef",
      })),
    );
    const forgedAt = (() => {
      const db = new Database(join(forged, "..", "airlock.db"), { readonly: true });
      try {
        return (db.prepare("SELECT max(seq) AS seq FROM audit_events").get() as { seq: number })
          .seq;
      } finally {
        db.close();
      }
    })();
    const made = await runCli(["token", "create", "--agent", "support-bot", "--config", forged], {
      env,
    });
    expect(made.code).toBe(0);
    // Without audit.publicKeys, any other key's checkpoint reads as a rotation.
    const stopped = await runCli(["audit", "checkpoint", "--config", forged], { env });
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toContain("was replaced by key 0123456789abcdef");
    // With the next key's public half listed, it is no rotation: the signer goes on.
    const next = keyPair();
    const nextPublic = join(keyDir, "forged-next.pub");
    writeFileSync(nextPublic, next.publicPem);
    const listing = join(forged, "..", "listing.yaml");
    writeFileSync(listing, `${config}  publicKeys: ["\${file:${nextPublic}}"]\n`);
    const signed = await runCli(["audit", "checkpoint", "--config", listing], { env });
    expect(signed.stderr).toContain(
      `the audit checkpoint at event ${forgedAt} is no rotation: it was signed with another key (0123456789abcdef, not ${keyIdOf(readKey(keys.publicPem, "check"))} or ${keyIdOf(readKey(next.publicPem, "check"))})`,
    );
    expect(signed.code).toBe(0);
    expect(signed.stdout).toMatch(/^signed a checkpoint of event \d+/);
    const result = await verify(listing, "--public-key", publicPath);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `event ${forgedAt} (audit.checkpoint): it was signed with another key (0123456789abcdef, not`,
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

  it("are checked over the API with the gateway's keys: a chain rewritten whole fails there too", async () => {
    const next = keyPair();
    const nextPath = join(keyDir, "next.pub");
    writeFileSync(nextPath, next.publicPem);
    // The next key listed before a rotation has signed nothing yet: that is no problem.
    const withNext = `${config}  publicKeys: ["\${file:${nextPath}}"]\n`;
    const check = async (dir: string) => {
      const gw = await startGateway(withNext, { dir, env });
      try {
        const bob = await gw.token("reviewer", "bob@example.com");
        return (await api(gw.url, "GET", "/v1/audit/verify?all=true", { token: bob })).body;
      } finally {
        await gw.close();
      }
    };
    const intact = await check(dirname(tampered(() => {})));
    expect(intact).toMatchObject({
      ok: true,
      signed: { keys: [{ keyId: keyIdOf(readKey(keys.publicPem, "check")) }] },
    });
    expect(intact.signed.through).toBeGreaterThan(1);
    expect(intact.signed.checkpoints).toBeGreaterThanOrEqual(2);

    const rewritten = tampered((db) => rewrite(db, bobToMallory));
    const caught = await check(dirname(rewritten));
    expect(caught.ok).toBe(false);
    expect(caught.problem).toMatchObject({ kind: "bad_signature" });
    expect(caught.problem.message).toMatch(/it vouches for event \d+ with hash/);
  });

  it("after a rotation, sign with the new key at once, though the chain ends in the old key's checkpoint", async () => {
    // The original chain ends in the checkpoint the old key signed as its gateway stopped.
    const next = keyPair();
    const nextPrivate = join(keyDir, "rotated.key");
    const nextPublic = join(keyDir, "rotated.pub");
    writeFileSync(nextPrivate, next.privatePem);
    writeFileSync(nextPublic, next.publicPem);
    const rotated = `${config.replace(privatePath, nextPrivate)}  publicKeys: ["\${file:${publicPath}}"]\n`;
    const [oldId, newId] = [keys.publicPem, next.publicPem].map((pem) =>
      keyIdOf(readKey(pem, "check")),
    );
    // A gateway restarted with the new key vouches for the chain as it starts: its console and
    // API, which require its own key's word, do not call an intact chain unsigned meanwhile.
    const served = dirname(tampered(() => {}));
    const gw = await startGateway(rotated, { dir: served, env });
    try {
      const verified = await api(gw.url, "GET", "/v1/audit/verify", { token: reviewerToken });
      expect(verified.body).toMatchObject({
        ok: true,
        signed: { keys: [{ keyId: oldId }, { keyId: newId }], unsigned: 0 },
      });
    } finally {
      await gw.close();
    }
    // So does `airlock audit checkpoint` with the new key.
    const configPath = join(dirname(tampered(() => {})), "airlock.yaml");
    writeFileSync(configPath, rotated);
    const signed = await runCli(["audit", "checkpoint", "--config", configPath], { env });
    expect(signed.stdout).toMatch(
      new RegExp(`^signed a checkpoint of event \\d+ \\(key ${newId}\\)\n$`),
    );
    expect(signed.code).toBe(0);
    // Once: the new key's checkpoint at the head is not signed again.
    const again = await runCli(["audit", "checkpoint", "--config", configPath], { env });
    expect(again.stdout).toMatch(/^event \d+ is a checkpoint already\n$/);
    const result = await verify(configPath, "--public-key", publicPath, "--public-key", nextPublic);
    expect(result.code).toBe(0);
  });

  it("refuse a signing key that is not an Ed25519 private key, and a public key in audit.publicKeys that is not Ed25519, naming the field", async () => {
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
    writeFileSync(join(dir, "rsa.pub"), rsa);
    const listed = join(dir, "listed.yaml");
    writeFileSync(
      listed,
      `${testConfig(upstream.url)}\naudit:\n  signingKey: \${file:${privatePath}}\n  publicKeys: ["\${file:${publicPath}}", "\${file:${join(dir, "rsa.pub")}}"]\n`,
    );
    const result = await runCli(["config", "check", "--config", listed], { env });
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toContain(
      "audit.publicKeys[1]: is a rsa key; checkpoints are Ed25519",
    );
  });
});
