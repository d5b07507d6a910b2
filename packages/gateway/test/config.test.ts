/** The config file: the DESIGN example loads and behaves as its comments say; every error has a path. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, formatIssue } from "../src/config/config-errors.js";
import { loadConfigFile, loadConfigText } from "../src/config/config-load.js";
import { configJsonSchema } from "../src/config/json-schema.js";
import { runPolicyCases } from "../src/policy/policy-cases.js";
import { runCli } from "./support/cli.js";
import { removeDir } from "./support/gateway.js";

const example = fileURLToPath(new URL("../examples/airlock.yaml", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "airlock-config-"));
afterAll(() => removeDir(dir));

/** What is wrong with a config, or nothing when it loads. */
function issuesIn(text: string): string[] {
  try {
    loadConfigText(text, { env: {}, baseDir: dir });
    return [];
  } catch (error) {
    return (error as ConfigError).issues.map(formatIssue);
  }
}

function issuesOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    loadConfigText(text, { env, baseDir: dir });
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatIssue);
    throw error;
  }
  throw new Error("the config loaded");
}

describe("the example from DESIGN.md", () => {
  const loaded = loadConfigFile(example, { env: { BILLING_API_TOKEN: "tok_example_123" } });

  it("loads, with the credential resolved from the environment and remembered as a secret", () => {
    const connection = loaded.config.connections["billing-api"]!;
    expect(connection.type === "http" && connection.headers.authorization).toBe(
      "Bearer tok_example_123",
    );
    expect(loaded.secrets).toContain("tok_example_123");
    expect(loaded.config.server.port).toBe(7070);
    expect(loaded.policy.rules.map((r) => r.name)).toEqual([
      "reads pass",
      "refunds need two finance reviewers",
      "nothing else",
    ]);
    expect(loaded.warnings).toEqual([]);
    expect(Object.isFrozen(loaded.config.rules[0])).toBe(true);
  });

  it("behaves as its comments say", async () => {
    const base = { agent: "support-bot", connection: "billing-api", operation: "request" };
    const results = await runPolicyCases(loaded, [
      {
        ...base,
        input: { method: "GET", path: "/invoices" },
        justification: "",
        context: {},
        expect: "allow",
        rule: "reads pass",
      },
      {
        ...base,
        input: { method: "POST", path: "/refunds", body: { card_number: "4242" } },
        justification: "",
        context: {},
        expect: "review",
        rule: "refunds need two finance reviewers",
      },
      {
        ...base,
        input: { method: "POST", path: "/invoices" },
        justification: "",
        context: {},
        expect: "deny",
        rule: "nothing else",
      },
      {
        ...base,
        input: { method: "DELETE", path: "/refunds/1" },
        justification: "",
        context: {},
        expect: "deny",
        rule: "nothing else",
      },
    ]);
    expect(results.map((r) => [r.ok, r.got])).toEqual([
      [true, 'allow by rule "reads pass"'],
      [true, 'review by rule "refunds need two finance reviewers"'],
      [true, 'deny by rule "nothing else"'],
      [true, 'deny by rule "nothing else"'],
    ]);
    const refunds = loaded.policy.rules[1]!;
    expect(refunds.review).toMatchObject({
      approvers: ["finance"],
      quorum: 2,
      expiresInMs: 900_000,
    });
    expect(refunds.risk).toBe("high");
    expect(refunds.mask).toEqual(["body.card_number"]);
    expect(loaded.config.agents[0]!.owner).toBe("alice@example.com");
  });

  it("refuses to load without its credential, naming where it is needed", () => {
    expect(() => loadConfigFile(example, { env: {} })).toThrow(
      "connections.billing-api.headers.authorization: environment variable BILLING_API_TOKEN is not set",
    );
  });
});

describe("errors", () => {
  it("names every bad path of a malformed config at once", () => {
    const issues = issuesOf(`
server: { port: 99999, publicUrl: "not a url", trustProxy: [10.0.0.0/8, "10.0.0.0/33", proxy.example.com, loopback] }
storage: mysql://x
agents:
  - { name: "bad name!", owner: not-an-email }
  - { name: ok-bot, owner: a@b.c, team: x }
reviewers:
  - { email: a@b.c, groups: [x] }
  - { email: A@B.C }
connections:
  api: { type: http, baseUrl: "ftp://x" }
  db: { type: mongo }
rules:
  - { name: r1, when: "action.conection == 1", decision: allow }
  - { name: r2, when: "action.connection ==", decision: allow }
  - { name: r3, decision: maybe }
  - { name: r1, decision: deny, review: { quorum: 0 } }
  - { name: r5, decision: allow, mask: { input: ["input.body", "a..b"] } }
surprise: true
`);
    const expected = [
      "server.port:",
      "server.publicUrl:",
      "server.trustProxy[1]: must be an IP address, a CIDR range",
      "server.trustProxy[2]: must be an IP address, a CIDR range",
      "storage: must be sqlite:PATH or postgres://USER@HOST/DB",
      "agents[0].name:",
      "agents[0].owner: must be an e-mail address",
      'agents[1]: unknown key "team"',
      "reviewers[1].email:",
      "connections.api.baseUrl: must be an http:// or https:// URL",
      "connections.db.type:",
      'rules[0].when: rule "r1": No such key: conection',
      'rules[1].when: rule "r2":',
      "rules[2].decision:",
      "rules[3].name:",
      "rules[3].review.quorum:",
      "rules[4].mask.input[0]:",
      "rules[4].mask.input[1]:",
      '(root): unknown key "surprise"',
    ];
    for (const prefix of expected)
      expect(
        issues.some((i) => i.startsWith(prefix)),
        `${prefix}\n${issues.join("\n")}`,
      ).toBe(true);
    // The good entries are not reported.
    expect(issues.filter((i) => i.startsWith("server.trustProxy"))).toHaveLength(2);
  });

  it("lists every URL that cannot be parsed at its path, with the other errors", () => {
    const issues = issuesOf(`
server: { publicUrl: "not a url", port: -1 }
connections:
  api: { type: http, baseUrl: "not a url" }
  tools: { type: mcp, url: nope, tools: { t: {} } }
identity:
  oidc: { issuer: "http//sso", clientId: airlock, clientSecret: s3cr3t-client }
channels:
  webhooks: [{ url: "::", secret: "whsec_x" }]
`);
    const url = "must be an http:// or https:// URL";
    expect(issues).toEqual(
      expect.arrayContaining([
        `server.publicUrl: ${url}`,
        expect.stringMatching(/^server\.port: /),
        `connections.api.baseUrl: ${url}`,
        `connections.tools.url: ${url}`,
        `identity.oidc.issuer: ${url}`,
        `channels.webhooks[0].url: ${url}`,
        expect.stringMatching(/^channels\.webhooks\[0\]\.secret: /),
      ]),
    );
    expect(issues).toHaveLength(7);
  });

  it("refuses credentials in a base URL and durations out of bounds", () => {
    const issues = issuesOf(`
server: { sweepInterval: 30d }
connections:
  api: { type: http, baseUrl: "https://user:pass@api.example.com", timeout: 0ms }
rules:
  - { name: r, decision: review, review: { expiresIn: 100000d } }
`);
    expect(issues).toContain(
      "connections.api.baseUrl: must not hold credentials; put them in headers, e.g. authorization: Basic ${env:API_BASIC_AUTH}",
    );
    expect(issues).toContain("server.sweepInterval: must be between 10ms and 1h");
    expect(issues).toContain("connections.api.timeout: must be between 100ms and 1h");
    expect(issues).toContain("rules[0].review.expiresIn: must be between 100ms and 90d");
  });

  it("reports a directory, and YAML built to expand without end, as config errors", () => {
    expect(() => loadConfigFile(dir)).toThrow(ConfigError);
    try {
      loadConfigFile(dir);
    } catch (error) {
      expect((error as ConfigError).issues.map(formatIssue).join("\n")).toContain(
        "is a directory; pass the config file itself",
      );
    }
    // Each level doubles the one before: 2^30 strings once expanded.
    const levels = Array.from({ length: 30 }, (_, i) =>
      i === 0 ? "a0: &a0 [x, x]" : `a${i}: &a${i} [*a${i - 1}, *a${i - 1}]`,
    );
    const issues = issuesOf(`${levels.join("\n")}\nrules: []\n`);
    expect(issues.join("\n")).toContain("cannot be read as YAML");
  });

  it("never quotes a value that came from a secret reference in an error", () => {
    const issues = issuesOf(
      `connections:
  api:
    type: http
    baseUrl: http://127.0.0.1:1
    timeout: \${env:API_TIMEOUT}
rules: []
`,
      { API_TIMEOUT: "hunter2-secret-value" },
    );
    expect(issues).toEqual([
      'connections.api.timeout: "[redacted]" is not a duration; write it like 500ms, 30s, 15m, 2h or 7d',
    ]);
    expect(issues.join("\n")).not.toContain("hunter2");
  });

  it("withholds CEL's detail for a condition built from a reference, which it could quote", () => {
    const issues = issuesOf(
      `rules:
  - { name: leaky, decision: allow, when: "action.input.x == \${env:SEC}" }
  - { name: plain, decision: allow, when: "action.input.x == AbcDEF" }
`,
      { SEC: "AbcDEF.ghijkl" },
    );
    expect(issues).toEqual([
      'rules[0].when: rule "leaky": the condition, built with a ${env:} or ${file:} reference, is not valid CEL (the details are withheld: they may quote the secret); check the value it refers to and the text around it',
      expect.stringMatching(/^rules\[1\]\.when: rule "plain": .*AbcDEF/),
    ]);
    expect(issues[0]).not.toMatch(/AbcDEF|ghijkl/);
  });

  it("refuses __proto__ as a key wherever it is, rather than read what it holds as settings", () => {
    const message =
      "__proto__ cannot be a key; remove it, and move any settings under it up a level";
    expect(
      issuesOf(`__proto__:
  rules: [{ name: hidden, decision: allow }]
agents: [{ name: a, owner: a@b.c, labels: { __proto__: x } }]
connections:
  __proto__: { type: http, baseUrl: "http://x" }
  c: { type: http, baseUrl: "http://x", headers: { __proto__: y } }
`),
    ).toEqual([
      `__proto__: ${message}`,
      `agents[0].labels.__proto__: ${message}`,
      `connections.__proto__: ${message}`,
      `connections.c.headers.__proto__: ${message}`,
    ]);
  });

  it("takes a plain-http identity provider only on loopback", () => {
    const withIssuer = (issuer: string) =>
      issuesIn(
        `identity:\n  oidc: { issuer: "${issuer}", clientId: airlock, clientSecret: s3cr3t-client }\nrules: []\n`,
      );
    expect(withIssuer("http://sso.example.com/realms/acme")).toEqual([
      "identity.oidc.issuer: must be https:// (plain http is accepted only on loopback, for development): over http anyone on the way could hand Airlock forged sign-ins",
    ]);
    for (const ok of [
      "https://sso.example.com/realms/acme",
      "http://127.0.0.1:8080/",
      "http://localhost:8080/",
      "http://[::1]:8080/",
    ]) {
      expect(withIssuer(ok), ok).toEqual([]);
    }
  });

  it("signs reviewers in over plain http only on loopback", () => {
    const withPublicUrl = (publicUrl: string) =>
      issuesIn(
        `server: { publicUrl: "${publicUrl}" }\nidentity:\n  oidc: { issuer: "https://sso.example.com", clientId: airlock, clientSecret: s3cr3t-client }\nrules: []\n`,
      );
    expect(withPublicUrl("http://airlock.corp.example")).toEqual([
      "server.publicUrl: must be https:// when identity.oidc is set (plain http is accepted only on loopback, for development): over http the session cookie and sign-in codes travel in clear",
    ]);
    for (const ok of ["https://airlock.corp.example", "http://localhost:7070"]) {
      expect(withPublicUrl(ok), ok).toEqual([]);
    }
  });

  it("refuses two webhooks of one name, and one named as a chat channel", () => {
    const hook = (name: string) =>
      `    - { url: "https://a.example/h", secret: "whsec_${"A".repeat(43)}=", name: ${name} }`;
    expect(
      issuesOf(
        `channels:\n  webhooks:\n${hook("ops")}\n${hook("ops")}\n${hook("slack")}\nrules: []\n`,
      ),
    ).toEqual([
      'channels.webhooks[1].name: webhook "ops" is already defined at channels.webhooks[0]',
      'channels.webhooks[2].name: "slack" is the slack channel\'s name; give the webhook another',
    ]);
  });

  it("reports a YAML syntax error with its line", () => {
    const issues = issuesOf("rules:\n  - name: a\n    decision: [allow\n");
    expect(issues[0]).toMatch(/line \d+/);
  });

  it("reports a rule with a review block on an allow, and an unreadable file reference", () => {
    const issues = issuesOf(`
connections:
  api: { type: http, baseUrl: "http://x", headers: { authorization: "\${file:./missing-token}" } }
rules:
  - { name: a, decision: allow, review: { quorum: 2 } }
  - { name: b, decision: deny, when: "1 + 1" }
  - { name: c, when: 'http.method == "GET"', decision: deny }
`);
    expect(issues).toContain(
      "rules[0].review: only a rule with decision: review takes a review block (this one is allow)",
    );
    expect(
      issues.some(
        (i) =>
          i.startsWith("connections.api.headers.authorization: cannot read") &&
          i.includes("missing-token"),
      ),
    ).toBe(true);
    expect(
      issues.some((i) => i.startsWith('rules[1].when: rule "b": the condition must be a bool')),
    ).toBe(true);
    expect(issues.some((i) => i.startsWith("rules[2]"))).toBe(false);
  });

  it("resolves ${file:} relative to the config and $${ as a literal", () => {
    writeFileSync(join(dir, "token.txt"), "file-secret-value\n");
    writeFileSync(
      join(dir, "airlock.yaml"),
      'connections:\n  api: { type: http, baseUrl: "http://x", headers: { authorization: "${file:token.txt}", x-lit: "$${env:NOT_A_REF}" } }\n',
    );
    const loaded = loadConfigFile(join(dir, "airlock.yaml"), { env: {} });
    const api = loaded.config.connections.api!;
    const headers = api.type === "http" ? api.headers : {};
    expect(headers.authorization).toBe("file-secret-value");
    expect(headers["x-lit"]).toBe("${env:NOT_A_REF}");
    expect(loaded.secrets).toEqual(["file-secret-value"]);
  });

  it("refuses a ${file:} reference to an empty file, as it refuses an empty ${env:}", () => {
    writeFileSync(join(dir, "empty-token"), "\n");
    expect(
      issuesOf(
        'connections:\n  api: { type: http, baseUrl: "http://x", headers: { authorization: "Bearer ${file:empty-token}", x-key: "${env:EMPTY}" } }\n',
        { EMPTY: "" },
      ),
    ).toEqual([
      `connections.api.headers.authorization: ${join(dir, "empty-token")} is empty`,
      "connections.api.headers.x-key: environment variable EMPTY is not set",
    ]);
  });

  it("refuses a reference in a key, which would be taken as it is written", () => {
    expect(
      issuesOf(
        "agents:\n  - name: a\n    owner: a@b.co\n    labels: { '${env:TEAM}': x, '$${literal}': y }\n",
        { TEAM: "payments" },
      ),
    ).toEqual([
      "agents[0].labels.${env:TEAM}: references are resolved in values only, not in keys; write the key out as it is",
    ]);
  });

  it("refuses a ${ that starts no reference, and a reference that names nothing", () => {
    const bad =
      "${ starts no reference: write ${env:NAME} or ${file:PATH}, in lower case and closed by }; write $${ for a literal ${";
    expect(
      issuesOf(
        `connections:
  c:
    type: http
    baseUrl: http://x
    headers: { a: "Bearer \${ENV:T}", b: "Bearer \${env:T", c: "\${ env:T}", d: "\${env:}", e: "\${file:}", ok: "$\${x} \${env:T}" }
`,
        { T: "abcdefgh12" },
      ),
    ).toEqual([
      `connections.c.headers.a: ${bad}`,
      `connections.c.headers.b: ${bad}`,
      `connections.c.headers.c: ${bad}`,
      "connections.c.headers.d: ${env:} names nothing; write ${env:NAME}, like ${env:API_TOKEN}",
      "connections.c.headers.e: ${file:} names nothing; write ${file:PATH}, like ${file:/run/secrets/api-token}",
    ]);
  });

  it("warns about rules that can never match and quorums nobody configured can meet", () => {
    const loaded = loadConfigText(`
reviewers: [{ email: a@b.c, groups: [ops] }]
rules:
  - { name: everything, decision: deny }
  - { name: never, decision: allow }
  - { name: two, decision: review, when: "true", review: { approvers: [ops], quorum: 2 } }
`);
    const warnings = loaded.warnings.map(formatIssue);
    expect(warnings[0]).toContain('rules[1]: unreachable: rule "everything" has no condition');
    expect(
      warnings.some((w) => w.startsWith("rules[2].review.quorum: needs 2 approvers but only 1")),
    ).toBe(true);
  });

  it("checks approvals required from groups against the quorum and the approver groups", () => {
    expect(
      issuesIn(`
rules:
  - { name: a, decision: review, review: { approvers: [finance], quorum: 1, require: { finance: 1, security: 1 } } }
  - { name: b, decision: review, review: { require: { ops: 15, eng: 6 } } }
  - { name: c, decision: review, review: { require: { ops: 0, "two words": 1 } } }
`),
    ).toEqual([
      "rules[0].review.quorum: is 1, fewer than the 2 approvals require asks for; raise it to at least 2, or leave it out",
      "rules[0].review.require.security: is not one of this rule's approver groups (finance), so none of its members could vote; add it to approvers",
      "rules[1].review.require: asks for 21 approvals in all; a quorum is at most 20",
      expect.stringMatching(/^rules\[2\]\.review\.require\.ops: /),
      expect.stringMatching(/^rules\[2\]\.review\.require\.two words: .*no spaces or commas/),
    ]);
    const loaded = loadConfigText(`
reviewers: [{ email: a@b.c, groups: [ops] }, { email: d@b.c, groups: [finance] }]
rules:
  - { name: r, decision: review, review: { approvers: [finance, ops], require: { ops: 2, finance: 1 } } }
`);
    // Without a quorum of its own, the rule asks for what its groups add up to.
    expect(loaded.policy.rules[0]!.review).toMatchObject({
      quorum: 3,
      require: { ops: 2, finance: 1 },
    });
    expect(loaded.warnings.map(formatIssue)).toEqual([
      "rules[0].review.quorum: needs 3 approvers but only 2 configured reviewers are in finance, ops; members from the identity provider may make up the rest",
      "rules[0].review.require.ops: needs 2 approvals from ops but only 1 configured reviewer is in it; members from the identity provider may make up the rest",
    ]);
  });

  it("warns about a rule that names an http header with capitals, which never matches", () => {
    const loaded = loadConfigText(`
rules:
  - { name: env, decision: allow, when: '"X-Env" in action.input.headers' }
  - { name: admin, decision: deny, when: 'action.input.headers.X_Admin == "1"' }
  - { name: lower, decision: deny, when: '"x-env" in action.input.headers' }
`);
    expect(loaded.warnings.map(formatIssue)).toEqual([
      'rules[0].when: rule "env" names a header with capitals, which never matches: http header names are lower-cased as the input is read (write headers["x-env"])',
      'rules[1].when: rule "admin" names a header with capitals, which never matches: http header names are lower-cased as the input is read (write headers["x-env"])',
    ]);
  });

  it("warns where a reference resolves to a secret too short to be scrubbed, and never quotes it", () => {
    writeFileSync(join(dir, "short.token"), "k9\n");
    const loaded = loadConfigText(
      `
connections:
  billing-api:
    type: http
    baseUrl: http://127.0.0.1:9090
    headers:
      authorization: Bearer \${env:SHORT_TOKEN}
      x-key: \${file:short.token}
      x-long: \${env:LONG_TOKEN}
`,
      { env: { SHORT_TOKEN: "z7q", LONG_TOKEN: "long-enough-token" }, baseDir: dir },
    );
    const warnings = loaded.warnings.map(formatIssue);
    expect(warnings).toEqual([
      "connections.billing-api.headers.authorization: ${env:SHORT_TOKEN} is shorter than 6 characters, too short to look for in text without blanking out ordinary words: it is not scrubbed from responses, logs or audit events; use a longer one",
      "connections.billing-api.headers.x-key: ${file:short.token} is shorter than 6 characters, too short to look for in text without blanking out ordinary words: it is not scrubbed from responses, logs or audit events; use a longer one",
    ]);
    expect(warnings.join("\n")).not.toMatch(/z7q|k9/);
  });

  it("warns about an operation that gets no MCP tool name of its own", () => {
    const long = "a".repeat(60);
    const loaded = loadConfigText(`
connections:
  ops:
    type: exec
    commands:
      re.start: { argv: [/bin/true] }
      re_start: { argv: [/bin/true] }
      stop: { argv: [/bin/true] }
  ${long}: { type: http, baseUrl: "http://127.0.0.1:9" }
  airlock: { type: exec, commands: { status: { argv: [/bin/true] }, list: { argv: [/bin/true] } } }
`);
    expect(loaded.warnings.map(formatIssue)).toEqual([
      "connections.ops: operation re_start has no MCP tool of its own: its name ops__re_start is already the name of operation re.start of connection ops; agents on /mcp do not see it (POST /v1/actions still takes it), so rename the connection or the operation",
      `connections.${long}: operation request has no MCP tool of its own: its name ${long}__request is longer than 64 characters; agents on /mcp do not see it (POST /v1/actions still takes it), so rename the connection or the operation`,
      "connections.airlock: operation status has no MCP tool of its own: its name airlock__status is already the name of Airlock's own tool; agents on /mcp do not see it (POST /v1/actions still takes it), so rename the connection or the operation",
      "connections.airlock: operation list has no MCP tool of its own: its name airlock__list is already the name of Airlock's own tool; agents on /mcp do not see it (POST /v1/actions still takes it), so rename the connection or the operation",
    ]);
  });
});

describe("airlock config check", () => {
  it("exits 0 for the example and 1 listing each error for a broken config", async () => {
    const good = await runCli(["config", "check", "--config", example], {
      env: { BILLING_API_TOKEN: "x".repeat(10) },
    });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(
      "is valid: 1 agent(s), 3 reviewer(s), 1 connection(s), 3 rule(s)",
    );
    const broken = join(dir, "broken.yaml");
    writeFileSync(
      broken,
      "agents: [{ name: x }]\nrules: [{ name: a, decision: allow, when: 'agent.nme == \"x\"' }]\n",
    );
    const bad = await runCli(["config", "check", "--config", broken]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("2 error(s)");
    expect(bad.stdout).toContain("agents[0].owner:");
    expect(bad.stdout).toContain('rules[0].when: rule "a": No such key: nme');
    // A rule's review channel that is not configured would leave its reviews unseen.
    const channels = join(dir, "channels.yaml");
    const rules = `
rules:
  - { name: a, decision: review, review: { channels: [slak] } }
  - { name: b, decision: review, review: { channels: [] } }
`;
    writeFileSync(channels, rules);
    const unseen = await runCli(["config", "check", "--config", channels]);
    expect(unseen.code).toBe(1);
    expect(unseen.stdout).toContain(
      'rules[0].review.channels[0]: no approval channel named "slak" is configured (configure channels.slack or channels.teams, or leave this list empty for the console and API only)',
    );
    writeFileSync(
      channels,
      `channels:\n  slack: { botToken: xoxb-test-token, signingSecret: test-signing-secret, channel: "#approvals" }\n${rules}  - { name: c, decision: review, review: { channels: [slack] } }\n`,
    );
    const withSlack = await runCli(["config", "check", "--config", channels]);
    expect(withSlack.stdout).toContain("1 error(s)");
    expect(withSlack.stdout).toContain(
      'rules[0].review.channels[0]: no approval channel named "slak" is configured (configured: slack)',
    );
    const missing = await runCli(["config", "check", "--config", join(dir, "nope.yaml")]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain("no such file");
  });
});

describe("secrets in what config check prints", () => {
  it("are redacted from warnings and from review channel errors", async () => {
    const env = { RULE_NAME: "Hunter2secret" };
    const file = join(dir, "secret-names.yaml");
    writeFileSync(
      file,
      `reviewers: [{ email: a@b.c, groups: [ops] }]
rules:
  - { name: "\${env:RULE_NAME}", decision: deny }
  - { name: b, decision: review, review: { approvers: ["\${env:RULE_NAME}"], quorum: 2 } }
`,
    );
    const warned = await runCli(["config", "check", "--config", file], { env });
    expect(warned.code).toBe(0);
    expect(warned.stdout).toContain('rules[1]: unreachable: rule "[redacted]" has no condition');
    expect(warned.stdout).toContain(
      "rules[1].review.quorum: needs 2 approvers but only 0 configured reviewers are in [redacted]",
    );
    expect(warned.stdout + warned.stderr).not.toContain("Hunter2secret");
    writeFileSync(
      file,
      'rules: [{ name: c, decision: review, review: { channels: ["${env:RULE_NAME}"] } }]\n',
    );
    const refused = await runCli(["config", "check", "--config", file], { env });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(
      'rules[0].review.channels[0]: no approval channel named "[redacted]" is configured',
    );
    expect(refused.stdout + refused.stderr).not.toContain("Hunter2secret");
  });
});

describe("the shipped JSON Schema", () => {
  it("is the one generated from the zod schema (run `npm run schema` after changing it)", () => {
    const shipped = JSON.parse(
      readFileSync(fileURLToPath(new URL("../airlock.schema.json", import.meta.url)), "utf8"),
    );
    expect(shipped).toEqual(JSON.parse(JSON.stringify(configJsonSchema())));
    expect(Object.keys(shipped.properties)).toEqual(
      expect.arrayContaining(["server", "storage", "agents", "reviewers", "connections", "rules"]),
    );
  });
});
