/**
 * Starts a real gateway in-process on loopback, on a real SQLite file in a temporary
 * directory, and gives tests an HTTP client for agents and reviewers.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import Database from "better-sqlite3";
import pg from "pg";
import { loadConfigText } from "../../src/config/config-load.js";
import { createGateway, type Gateway, type GatewayOptions } from "../../src/main.js";

export const SECRET = "s3cr3t-billing-credential-7f1c2a9e";

/**
 * Whether this run puts the gateways' stores on PostgreSQL (AIRLOCK_TEST_STORAGE=postgres):
 * the same scenarios then run against the real server, each gateway in a schema of its own.
 */
export const onPostgres = process.env.AIRLOCK_TEST_STORAGE === "postgres";

/**
 * The PostgreSQL schema a test gateway in `dir` uses when `onPostgres`, named for this run
 * (drop-test-schemas.ts) so that another checkout's run leaves it alone.
 */
export function testSchema(dir: string): string {
  const run = process.env.AIRLOCK_TEST_RUN ?? "0_0";
  return `airlock_t_${run}_${createHash("sha256").update(dir).digest("hex").slice(0, 16)}`;
}

/** The config as the test's store runs it: SQLite in `dir`, or a PostgreSQL schema of its own. */
export async function onTestStorage(configText: string, dir: string): Promise<string> {
  if (!onPostgres) return configText;
  const server = process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
  const schema = testSchema(dir);
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } finally {
    await client.end();
  }
  const url = new URL(server);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return configText.replace(/storage: sqlite:\.\/airlock\.db/, `storage: "${url}"`);
}

export function testConfig(upstreamUrl: string, extra = ""): string {
  return `
server: { port: 0, publicUrl: "http://airlock.test", sweepInterval: 50ms }
storage: sqlite:./airlock.db
agents:
  - { name: support-bot, owner: alice@example.com }
  - { name: ops-bot, owner: Dave@Example.com }
reviewers:
  - { email: alice@example.com, groups: [eng] }
  - { email: bob@example.com, groups: [finance, eng] }
  - { email: carol@example.com, groups: [finance] }
  - { email: erin@example.com, groups: [finance] }
  - { email: dave@example.com, groups: [finance, ops] }
connections:
  billing-api:
    type: http
    baseUrl: ${upstreamUrl}/api
    timeout: 2s
    headers:
      authorization: Bearer \${env:BILLING_API_TOKEN}
rules:
  - name: reads pass
    when: action.connection == "billing-api" && http.method == "GET"
    decision: allow
  - name: refunds need two finance reviewers
    when: action.connection == "billing-api" && http.method == "POST" && http.path.startsWith("/refunds")
    decision: review
    review: { approvers: [finance], quorum: 2, expiresIn: 15m, risk: high }
    mask: { input: [body.card_number] }
  - name: short-lived
    when: http.method == "POST" && http.path == "/short"
    decision: review
    review: { expiresIn: 300ms }
  - name: any reviewer
    when: http.method == "PUT"
    decision: review
${extra}
  - name: nothing else
    decision: deny
`;
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  dir: string;
  logs: string[];
  token(kind: "agent" | "reviewer", subject: string): Promise<string>;
  restart(): Promise<TestGateway>;
  close(): Promise<void>;
}

export async function startGateway(
  configText: string,
  options: { dir?: string; env?: Record<string, string>; gateway?: GatewayOptions } = {},
): Promise<TestGateway> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "airlock-test-"));
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const loaded = loadConfigText(await onTestStorage(configText, dir), {
    env: { BILLING_API_TOKEN: SECRET, ...options.env },
    baseDir: dir,
    source: "test.yaml",
  });
  const gateway = await createGateway(loaded, {
    port: 0,
    host: "127.0.0.1",
    logDestination: destination as never,
    logLevel: "debug",
    ...options.gateway,
  });
  const url = await gateway.start();
  const self: TestGateway = {
    gateway,
    url,
    dir,
    logs,
    token: async (kind, subject) =>
      (await gateway.identity.createToken(kind, subject, "test")).token,
    restart: async () => {
      await gateway.close();
      return startGateway(configText, { ...options, dir });
    },
    close: async () => {
      await gateway.close();
    },
  };
  return self;
}

/** Runs `fn` against a gateway of its own, which is closed and removed after, whatever happens. */
export async function withGateway<T>(
  configText: string,
  fn: (gw: TestGateway) => Promise<T>,
  options: Parameters<typeof startGateway>[1] = {},
): Promise<T> {
  const gw = await startGateway(configText, options);
  try {
    return await fn(gw);
  } finally {
    await gw.close();
    removeDir(gw.dir);
  }
}

/**
 * Runs one statement, in the SQL both stores speak, on a running test gateway's store: its
 * SQLite file, or its PostgreSQL schema. What time has done to stored rows is done this way
 * (a session's end moved into the past, say): on PostgreSQL the gateway judges by the
 * database's clock, which a test cannot move as it moves the gateway's `clock`.
 */
export async function storeSql(gw: Pick<TestGateway, "dir">, sql: string): Promise<void> {
  if (!onPostgres) {
    const db = new Database(join(gw.dir, "airlock.db"));
    try {
      db.exec(sql);
    } finally {
      db.close();
    }
    return;
  }
  const url = new URL(
    process.env.AIRLOCK_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test",
  );
  url.searchParams.set("options", `-c search_path=${testSchema(gw.dir)}`);
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  text: string;
  body: T;
}

/** A plain fetch against the gateway, returning status, headers, raw text and parsed body. */
// biome-ignore lint/suspicious/noExplicitAny: tests read whatever the API answers
export async function api<T = any>(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; rawBody?: string | Buffer; contentType?: string } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | Buffer | undefined;
  if (options.rawBody !== undefined) {
    body = options.rawBody;
    headers["content-type"] = options.contentType ?? "application/json";
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] = "application/json";
  }
  const response = await fetch(base + path, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, text, body: parsed as T };
}

/**
 * Text to search for a leaked run of digits, with what holds any six digits by chance taken
 * out: SHA-256 digests and millisecond times, thousands of them in an audit trail (CI runs
 * found 492983 in one, then in another). A leaked card is neither.
 */
export const withoutChanceDigits = (text: string): string =>
  text.replace(/\b[0-9a-f]{64}\b/g, "#").replace(/\b1\d{12}\b/g, "#");

/** A reviewer's vote over the API, as the console or the CLI would cast it. */
export function vote(
  base: string,
  id: string,
  token: string,
  decision: "approve" | "deny" = "approve",
) {
  return api(base, "POST", `/v1/requests/${id}/reviews`, { token, body: { decision } });
}

export const refund = (extra: Record<string, unknown> = {}) => ({
  connection: "billing-api",
  operation: "request",
  input: {
    method: "POST",
    path: "/refunds",
    body: { invoice: "inv_1001", amount: 4200, card_number: "4242424242424242" },
  },
  justification: "Customer was charged twice",
  ...extra,
});

export const read = (path = "/invoices") => ({
  connection: "billing-api",
  operation: "request",
  input: { method: "GET", path },
});

export async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
