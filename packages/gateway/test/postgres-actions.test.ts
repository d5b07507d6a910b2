/**
 * SQL actions end to end, on the real PostgreSQL: rules on the parser's facts, a reviewer's
 * dry-run preview, execution of exactly what was previewed, result masking, and a connection
 * string that never leaves Airlock.
 */

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { digest, keyedDigest } from "../src/common/canonical-json.js";
import {
  type ApiResponse,
  api,
  removeDir,
  startGateway,
  type TestGateway,
  vote,
} from "./support/gateway.js";
import { postgresAvailable, type ScratchSchema, scratchSchema } from "./support/postgres.js";

const PASSWORD = "crm-Pa55word-9d3e";

describe.skipIf(!postgresAvailable)("SQL actions through the gateway", () => {
  let db: ScratchSchema;
  let gw: TestGateway;
  let agent: string;
  let bob: string;
  // biome-ignore lint/suspicious/noExplicitAny: responses of every shape
  const seen: ApiResponse<any>[] = [];

  const sql = async (text: string, params?: unknown[]) => {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: {
        connection: "crm",
        operation: "query",
        input: params ? { sql: text, params } : { sql: text },
        justification: "ticket 4711",
      },
    });
    seen.push(res);
    return res;
  };
  const count = async (where = "true") =>
    (
      (await db.query(`SELECT count(*)::int AS n FROM customers WHERE ${where}`))[0] as {
        n: number;
      }
    ).n;

  beforeAll(async () => {
    db = await scratchSchema();
    // Trust authentication ignores the password, so a real secret can ride in the URL.
    const url = new URL(db.url);
    url.username = "postgres";
    url.password = PASSWORD;
    gw = await startGateway(
      `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents: [{ name: support-bot, owner: alice@example.com }]
reviewers: [{ email: bob@example.com, groups: [dba] }]
connections:
  crm:
    type: postgres
    url: \${env:CRM_DATABASE_URL}
    maxRows: 100
    mask: { result: [email] }
rules:
  - name: reads of no table, their parameters masked
    when: action.connection == "crm" && sql.kind == "select" && size(sql.tables) == 0
    decision: allow
    mask: { input: [params], result: [email] }
  - name: writes without WHERE are refused
    when: action.connection == "crm" && sql.kinds.exists(k, k in ["update", "delete"]) && !sql.hasWhere
    decision: deny
    reason: add a WHERE clause
  - name: small reads pass
    when: action.connection == "crm" && sql.kind == "select" && sql.estimatedRows <= 50
    decision: allow
  - name: exports above 50 rows need a DBA
    when: action.connection == "crm" && sql.kind == "select"
    decision: review
    review: { approvers: [dba] }
    mask: { result: [email, phone] }
  - name: other writes need a DBA
    when: action.connection == "crm" && sql.kind in ["insert", "update", "delete"]
    decision: review
    review: { approvers: [dba] }
  - name: nothing else
    decision: deny
`,
      { env: { CRM_DATABASE_URL: url.toString() } },
    );
    agent = await gw.token("agent", "support-bot");
    bob = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    if (gw) removeDir(gw.dir);
    await db?.drop();
  });
  beforeEach(async () => {
    await db.query(`DROP TABLE IF EXISTS customers;
      CREATE TABLE customers (id int PRIMARY KEY, tier text NOT NULL, email text NOT NULL, phone text);
      INSERT INTO customers SELECT g, CASE WHEN g % 5 = 0 THEN 'gold' ELSE 'basic' END,
        'person' || g || '@example.com', '+1 415 555 ' || lpad(g::text, 4, '0')
      FROM generate_series(1, 500) g;
      ANALYZE customers;`);
  });

  it("lets a small read through, with e-mails masked and the unmasked result's digest audited", async () => {
    const res = await sql("SELECT id, email FROM customers WHERE id <= $1 ORDER BY id", [3]);
    expect(res.status).toBe(200);
    expect(res.body.decision.rule).toBe("small reads pass");
    const statement = res.body.result.statements[0];
    expect(statement.columns).toEqual(["id", "email"]);
    expect(statement.rows).toEqual([
      [1, "p***@example.com"],
      [2, "p***@example.com"],
      [3, "p***@example.com"],
    ]);
    expect(res.text).not.toContain("person1@example.com");

    const audit = await api(gw.url, "GET", `/v1/audit?requestId=${res.body.id}`, { token: bob });
    const finished = audit.body.events.find(
      (e: { type: string }) => e.type === "execution.succeeded",
    );
    const unmasked = {
      statements: [
        {
          command: "SELECT",
          rowCount: 3,
          columns: ["id", "email"],
          rows: [1, 2, 3].map((id) => [id, `person${id}@example.com`]),
        },
      ],
    };
    // Keyed by the request's nonce, which only the database holds.
    const nonce = await gw.gateway.store.getRequest(res.body.id).then((r) => r!.nonce);
    expect(finished.data.resultDigest).toBe(keyedDigest(nonce, unmasked));
    expect(finished.data.resultDigest).not.toBe(digest(unmasked));
    expect(audit.text).not.toContain("person1@example.com");
    expect(gw.logs.join("")).not.toContain("person1@example.com");
  });

  it("holds a large export for review, with the estimate and the rule's own masks", async () => {
    const res = await sql("SELECT id, email, phone FROM customers");
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: bob });
    expect(view.body.facts.sql.estimatedRows).toBeGreaterThan(50);
    expect(view.body.risk.hint.reason).toMatch(/read/);
    expect(view.body.preview).toMatch(/^SELECT on customers; about 500 rows/);
    expect((await vote(gw.url, res.body.id, bob)).status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, { token: agent });
    seen.push(done);
    expect(done.body.status).toBe("succeeded");
    const statement = done.body.result.statements[0];
    expect(statement.rows).toHaveLength(100);
    expect(statement.truncated).toMatch(/cut at 100 rows/);
    expect(done.text).not.toMatch(/person\d+@example\.com|555 0\d{3}/);
  });

  it("shows the reviewer a dry run that changes nothing, then changes exactly those rows", async () => {
    const res = await sql("UPDATE customers SET tier = 'platinum' WHERE tier = $1", ["gold"]);
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: bob });
    expect(view.body.preview).toContain("Dry run (rolled back): UPDATE customers: 100 rows.");
    expect(await count("tier = 'platinum'")).toBe(0);
    expect(await count("tier = 'gold'")).toBe(100);

    await vote(gw.url, res.body.id, bob);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, { token: agent });
    expect(done.body.status).toBe("succeeded");
    expect(done.body.outcome.summary).toBe("UPDATE: 100 rows");
    expect(await count("tier = 'platinum'")).toBe(100);
    expect(await count("tier = 'platinum' AND id % 5 <> 0")).toBe(0);
  });

  it("denies a write without WHERE, even when hidden in a CTE, and runs nothing", async () => {
    const plain = await sql("DELETE FROM customers");
    expect(plain.status).toBe(403);
    expect(plain.body.error.message).toMatch(/add a WHERE clause/);
    const hidden = await sql(
      "WITH gone AS (DELETE FROM customers RETURNING id) SELECT count(*) FROM gone",
    );
    expect(hidden.status).toBe(403);
    const chained = await sql("SELECT 1; UPDATE customers SET tier = 'x'");
    expect(chained.status).toBe(403);
    expect(await count()).toBe(500);
    expect(await count("tier = 'x'")).toBe(0);
  });

  it("refuses unparseable SQL before any rule, storing nothing", async () => {
    const before = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: bob });
    const res = await sql("SELEC id FROM customers");
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "invalid_request", field: "input.sql" });
    expect(res.body.error.message).toMatch(/syntax error at or near "SELEC".*line 1, column 1/);
    const after = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: bob });
    expect(after.body.events.length).toBe(before.body.events.length);
  });

  it("records the outcome of a read whose result nests thousands deep, with the depth cut", async () => {
    // PostgreSQL returns jsonb nested 6,000 deep; walked whole, it overflowed the stack after
    // the statement ran, and the action was recorded as a connector error.
    const res = await sql(
      "SELECT (repeat('[', 6000) || '\"abyss' || '-leaf\"' || repeat(']', 6000))::jsonb AS deep",
    );
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("succeeded");
    expect(res.text).toContain("[nested deeper than 256 levels: not shown]");
    expect(res.text).not.toContain("abyss-leaf");
  });

  it("reads bytea as the bytes it holds: values in them are masked, and bytea that holds none comes back intact", async () => {
    const hex = (text: string) => `\\x${Buffer.from(text).toString("hex")}`;
    const res = await sql(
      "SELECT convert_to($1 || ' for ann@example.com', 'UTF8') AS note, decode('0250ff', 'hex') AS raw, $2::text AS amount",
      ["4929837150216347", "250"],
    );
    expect(res.body.decision.rule).toBe("reads of no table, their parameters masked");
    expect(res.body.status).toBe("succeeded");
    const [note, raw, amount] = res.body.result.statements[0].rows[0];
    // The card the bytes spell, and the e-mail, as the detectors and the mask hide them in text.
    expect(note).toBe(hex("[masked] for a***@example.com"));
    // 250 is a masked value, and its digits are in the hex of these bytes, which hold no 250.
    expect(raw).toBe("\\x0250ff");
    expect(amount).toBe("[masked]");
    const shown = [res.text, JSON.stringify(await gw.gateway.store.listAudit({ limit: 10_000 }))];
    expect(shown.join("\n")).not.toContain(Buffer.from("4929837150216347").toString("hex"));
  });

  it("never shows the connection string or its password", async () => {
    // A failing statement too: database errors are passed on, the URL never.
    seen.push(await sql("SELECT * FROM no_such_table WHERE id = 1"));
    const audit = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: bob });
    const everything = [...seen.map((r) => r.text), audit.text, gw.logs.join("")].join("\n");
    expect(everything).toContain("no_such_table");
    expect(everything).not.toContain(PASSWORD);
    expect(everything).not.toContain(db.name);
    expect(everything).not.toContain("postgres://");
  });
});
