/**
 * Command templates end to end: rules on `exec` facts, a refused argument that runs nothing,
 * shell syntax kept literal, the exact argv shown to the reviewer, and the output masked by
 * the result detectors everywhere it goes.
 */
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ApiResponse,
  api,
  removeDir,
  startGateway,
  type TestGateway,
  vote,
} from "./support/gateway.js";

const TOKEN = "deploy-token-77c1e0f9b2";
// Valid by their checksums: a Visa test card and a Stripe-shaped live key.
const CARD = "4111 1111 1111 1111";
const STRIPE = "sk_live_51HxT9cKz8Qe0aBcDeFgHiJk";

describe("exec actions through the gateway", () => {
  let gw: TestGateway;
  let agent: string;
  let oncall: string;
  let scratch: string;
  // biome-ignore lint/suspicious/noExplicitAny: responses of every shape
  const seen: ApiResponse<any>[] = [];

  const ask = async (operation: string, input: Record<string, unknown>) => {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { connection: "ops", operation, input, justification: "deploy 2026.11" },
    });
    seen.push(res);
    return res;
  };

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "airlock-exec-scenario-"));
    gw = await startGateway(
      `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents: [{ name: deploy-bot, owner: alice@example.com }]
reviewers: [{ email: bob@example.com, groups: [oncall] }]
connections:
  ops:
    type: exec
    env: { DEPLOY_TOKEN: "\${env:DEPLOY_TOKEN}" }
    timeout: 5s
    mask: { result: [card, secret] }
    commands:
      say:
        argv: [/bin/echo, "{text}"]
        args: { text: { pattern: "[^\\\\n]{1,200}" } }
        risk: low
      touch:
        argv: [/usr/bin/touch, "${scratch}/{name}"]
        args: { name: { pattern: "[a-z]{1,20}" } }
      deploy:
        argv: [/bin/echo, "--token=\${env:DEPLOY_TOKEN}", "{service}"]
        args: { service: { enum: [api, worker] } }
        risk: high
      billing-report:
        argv: [/bin/sh, -c, 'echo "card ${CARD} key ${STRIPE} token $DEPLOY_TOKEN"']
        risk: high
rules:
  - name: echo passes
    when: action.connection == "ops" && exec.command == "say"
    decision: allow
  - name: touching files needs on-call
    when: action.connection == "ops" && exec.program == "/usr/bin/touch"
    decision: review
    review: { approvers: [oncall] }
  - name: deploys need on-call
    when: action.connection == "ops" && exec.command == "deploy"
    decision: review
    review: { approvers: [oncall] }
  - name: reports pass, masked
    when: action.connection == "ops" && exec.command == "billing-report"
    decision: allow
  - name: nothing else
    decision: deny
`,
      { env: { DEPLOY_TOKEN: TOKEN } },
    );
    agent = await gw.token("agent", "deploy-bot");
    oncall = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    removeDir(scratch);
  });

  it("keeps shell syntax a literal argument", async () => {
    const marker = join(scratch, "pwned");
    for (const text of [`; touch ${marker}`, `$(touch ${marker})`, `\`touch ${marker}\``]) {
      const res = await ask("say", { text });
      expect(res.status).toBe(200);
      expect(res.body.result.stdout).toBe(`${text}\n`);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses an argument outside its pattern before anything runs or is stored", async () => {
    const before = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: oncall });
    const res = await ask("touch", { name: "../../etc/passwd" });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "invalid_request", field: "input.name" });
    const unknown = await ask("reboot", {});
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe("unknown_operation");
    const after = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: oncall });
    expect(after.body.events.length).toBe(before.body.events.length);
  });

  it("shows the reviewer the exact argv, and runs it once approved", async () => {
    const res = await ask("touch", { name: "approved" });
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: oncall });
    expect(view.body.preview).toBe(`/usr/bin/touch ${scratch}/approved`);
    expect(view.body.facts.exec).toMatchObject({ command: "touch", args: { name: "approved" } });
    expect(existsSync(join(scratch, "approved"))).toBe(false);
    await vote(gw.url, res.body.id, oncall);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(existsSync(join(scratch, "approved"))).toBe(true);
  });

  it("shows reviewers a command whose template holds a secret with the secret redacted", async () => {
    const res = await ask("deploy", { service: "api" });
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: oncall });
    seen.push(view);
    expect(view.body.preview).toBe("/bin/echo --token=[redacted] api");
    expect(view.body.facts.exec.argv).toEqual(["/bin/echo", "--token=[redacted]", "api"]);
    expect(view.text).not.toContain(TOKEN);
    // The command itself still gets the real value (its output is scrubbed on the way back).
    await vote(gw.url, res.body.id, oncall);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, { token: agent });
    seen.push(done);
    expect(done.body.status).toBe("succeeded");
    expect(done.body.result.stdout).toBe("--token=[redacted] api\n");
  });

  it("masks cards and keys in the output, scrubs the credential, and keeps neither anywhere", async () => {
    const res = await ask("billing-report", {});
    expect(res.status).toBe(200);
    const stdout: string = res.body.result.stdout;
    expect(stdout).toContain("**** 1111");
    expect(stdout).toMatch(/sk_live_\*+/);
    expect(stdout).not.toContain(TOKEN);
    const audit = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: oncall });
    const everything = [...seen.map((r) => r.text), audit.text, gw.logs.join("")].join("\n");
    for (const leaked of [CARD, CARD.replaceAll(" ", ""), STRIPE, TOKEN]) {
      expect(everything).not.toContain(leaked);
    }
  });
});

describe("a masked argument that a command prints", () => {
  const ACCOUNT = "K7q2x9ZpL4mW8tRv";
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startGateway(`
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents: [{ name: deploy-bot, owner: alice@example.com }]
reviewers: [{ email: bob@example.com, groups: [oncall] }]
connections:
  ops:
    type: exec
    timeout: 5s
    maxOutputBytes: 1024
    commands:
      lookup:
        argv: [/usr/bin/printf, "%s%s%s", "{pad}", "{account}", "{tail}"]
        args:
          pad: { pattern: "a{0,2000}", maxLength: 2000 }
          account: { pattern: "[a-zA-Z0-9]{1,64}" }
          tail: { pattern: "z{0,200}" }
        risk: low
rules:
  - name: lookups pass, the account masked
    when: action.connection == "ops" && exec.command == "lookup"
    decision: allow
    mask: { input: [account] }
  - name: nothing else
    decision: deny
`);
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
  });

  it("leaves no start of it where the output is cut", async () => {
    const agent = await gw.token("agent", "deploy-bot");
    const outputs: string[] = [];
    // The output is cut at 1024 bytes: the account before, across and after that.
    for (let pad = 990; pad <= 1030; pad++) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "ops",
          operation: "lookup",
          input: { pad: "a".repeat(pad), account: ACCOUNT, tail: "z".repeat(100) },
        },
      });
      expect(res.body.status).toBe("succeeded");
      expect(res.body.result.truncated.stdout).toMatch(/^cut at 1024 of \d+ bytes$/);
      outputs.push(res.body.result.stdout);
    }
    expect(outputs.some((stdout) => stdout.includes("[masked]"))).toBe(true);
    const all = [
      ...outputs,
      JSON.stringify(await gw.gateway.store.listAudit({ limit: 10_000 })),
      gw.logs.join(""),
    ].join("\n");
    expect(all).not.toContain(ACCOUNT.slice(0, 4));
    for (const stdout of outputs) {
      for (let size = 1; size < ACCOUNT.length; size++) {
        expect(stdout.endsWith(`a${ACCOUNT.slice(0, size)}`)).toBe(false);
      }
    }
  });
});
