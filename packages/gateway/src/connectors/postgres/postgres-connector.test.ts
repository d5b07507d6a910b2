import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  postgresAvailable,
  postgresUrl,
  type ScratchSchema,
  scratchSchema,
} from "../../../test/support/postgres.js";
import type { Json } from "../../common/canonical-json.js";
import { ruleSchema } from "../../config/config-schema.js";
import { AirlockError } from "../../errors.js";
import { compilePolicy, type Policy } from "../../policy/policy-compile.js";
import { evaluatePolicy } from "../../policy/policy-evaluate.js";
import type { Connector } from "../connector.js";
import { postgresConnectorType } from "./postgres-connector.js";

const never = new AbortController().signal;

describe.skipIf(!postgresAvailable)("postgres connector (real PostgreSQL)", () => {
  let db: ScratchSchema;
  let crm: Connector;

  const connect = (extra: Record<string, unknown> = {}) =>
    postgresConnectorType.create(
      "crm",
      postgresConnectorType.configSchema.parse({ type: "postgres", url: db.url, ...extra }),
      { logger: undefined as never, secrets: [] },
    );
  const query = (sql: string, params?: Json[]) =>
    crm.parse("query", params === undefined ? { sql } : { sql, params });
  const rows = async (sql: string, params?: unknown[]) =>
    (await db.query(sql, params)) as Record<string, unknown>[];

  beforeAll(async () => {
    db = await scratchSchema();
    crm = connect();
  });
  afterAll(async () => {
    await crm?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await db.query(`DROP TABLE IF EXISTS orders, audit_copy CASCADE;
      CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, email text);
      INSERT INTO orders SELECT g, CASE WHEN g % 4 = 0 THEN 'stale' ELSE 'open' END, 'user' || g || '@example.com'
      FROM generate_series(1, 200) g;
      ANALYZE orders;`);
  });

  it("refuses unparseable SQL with the parser's message and position, naming input.sql", () => {
    let error: unknown;
    try {
      query("SELECT id FROM orders\nWHERE id = = 3");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AirlockError);
    const e = error as AirlockError;
    expect(e.code).toBe("invalid_request");
    expect(e.field).toBe("input.sql");
    expect(e.message).toMatch(/syntax error at or near "="/);
    expect(e.message).toMatch(/line 2, column 12/);
  });

  it("refuses params that the server would refuse only at run time", () => {
    const refusal = (sql: string, params?: unknown[]) => {
      try {
        crm.parse("query", params === undefined ? { sql } : { sql, params });
      } catch (error) {
        return { field: (error as AirlockError).field, message: (error as Error).message };
      }
      return undefined;
    };
    expect(refusal("SELECT $1::text, $2::text", ["a"])).toEqual({
      field: "input.params",
      message: "input.params: the SQL uses parameters up to $2, so params needs 2 values, not 1",
    });
    expect(refusal("SELECT $1::text")?.field).toBe("input.params");
    expect(refusal("SELECT 1", [1])?.message).toBe(
      "input.params: the SQL uses no parameters, but 1 was given",
    );
    expect(refusal("SELECT $1::text", ["a\u0000b"])).toMatchObject({ field: "input.params.0" });
    expect(refusal("SELECT $1::text", ["ok"])).toBeUndefined();
    expect(refusal("SELECT 1", [])).toBeUndefined();
  });

  it("refuses params with several statements, and unknown fields", () => {
    expect(() => query("SELECT $1; SELECT 2", ["x"])).toThrow(/input\.params/);
    expect(() => crm.parse("query", { sql: "SELECT 1", values: [] })).toThrow(/values/);
    expect(() => crm.parse("drop", { sql: "SELECT 1" })).toThrow(/no operation "drop"/);
  });

  it("derives facts, an estimate and a risk hint without running anything", async () => {
    const read = await crm.describe(
      "query",
      query("SELECT id, email FROM orders WHERE id < $1", [50]),
    );
    expect(read.facts).toMatchObject({
      sql: { kind: "select", kinds: ["select"], tables: ["orders"], statements: 1, hasWhere: true },
    });
    const estimated = (read.facts.sql as { estimatedRows: number }).estimatedRows;
    expect(estimated).toBeGreaterThan(0);
    expect(estimated).toBeLessThan(200);
    expect(read.risk.level).toBe("low");
    expect(read.notes?.join("\n")).toMatch(/columns: id, email/);
    // The planner folds parameters and literals into its output; reviewers get no values.
    const folded = await crm.describe(
      "query",
      query(
        "SELECT upper($1) AS who, '4111-1111-1111-1111'::text AS card, 123456789.50 AS n, o.id FROM orders o WHERE o.id < 2",
        ["O'Brien 4111111111111111"],
      ),
    );
    const notes = folded.notes?.join("\n") ?? "";
    expect(notes).toContain("columns: (expression), (expression), (expression), id");
    for (const value of ["BRIEN", "4111", "123456789", "50"]) expect(notes).not.toContain(value);

    const drop = await crm.describe("query", query("SELECT 1; DROP TABLE orders"));
    expect(drop.facts).toMatchObject({ sql: { kind: "ddl", statements: 2 } });
    expect(drop.risk).toEqual({ level: "critical", reason: "DDL changes the schema" });
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);

    const everything = await crm.describe("query", query("UPDATE orders SET status = 'x'"));
    expect(everything.facts).toMatchObject({ sql: { kind: "update", hasWhere: false } });
    expect(everything.risk.level).toBe("critical");
    expect(await rows("SELECT count(*)::int AS n FROM orders WHERE status = 'x'")).toEqual([
      { n: 0 },
    ]);
  });

  /** The rule of `policy` that decides `sql`, by the facts crm describes it with. */
  const ruleFor = async (policy: Policy, sql: string) => {
    const described = await crm.describe("query", query(sql));
    return evaluatePolicy(policy, {
      action: { connection: "crm", operation: "query", input: {}, justification: "", context: {} },
      agent: { name: "a", owner: "o@example.com", labels: {} },
      now: new Date(),
      facts: described.facts,
      risk: described.risk,
    }).rule;
  };

  it("lists a qualified table and function by its bare name too, so rules see every spelling", async () => {
    const { policy } = compilePolicy(
      [
        { name: "no orders", when: '"orders" in sql.tables', decision: "deny" },
        { name: "no dblink", when: '"dblink" in sql.functions', decision: "deny" },
        { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
      ].map((r) => ruleSchema.parse(r)),
    );
    const decide = (sql: string) => ruleFor(policy, sql);
    for (const sql of [
      "SELECT * FROM orders",
      `SELECT * FROM ${db.name}.orders`,
      `SELECT * FROM "${db.name}"."orders"`,
    ]) {
      expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "no orders" });
    }
    expect(await decide("SELECT public.dblink('x')")).toBe("no dblink");
    const described = await crm.describe("query", query("SELECT s.f() FROM db.public.orders"));
    expect(described.facts).toMatchObject({
      sql: { tables: ["db.public.orders", "orders", "public.orders"], functions: ["f", "s.f"] },
    });
  });

  it("lists a table named by a string as PostgreSQL reads it, and what reads unnamed tables is no select", async () => {
    const { policy } = compilePolicy(
      [
        { name: "no orders", when: '"orders" in sql.tables', decision: "deny" },
        { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
      ].map((r) => ruleSchema.parse(r)),
    );
    const decide = (sql: string) => ruleFor(policy, sql);
    // Each spelling reads the orders table on the server, and the rule on orders sees it.
    for (const sql of [
      "SELECT table_to_xml('orders'::regclass, true, false, '')",
      "SELECT table_to_xml(' ORDERS ', true, false, '')",
      `SELECT table_to_xml_and_xmlschema(tbl => '${db.name} . "orders"', nulls => true, tableforest => false, targetns => '')`,
      `SELECT table_to_xml(to_regclass('"${db.name}".Orders'), true, false, '')`,
    ]) {
      expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "no orders" });
      const outcome = await crm.execute("query", query(sql), never);
      expect(JSON.stringify(outcome.result)).toContain("user1@example.com");
    }
    // What reads tables that cannot be listed is kind code: no rule on reads lets it through.
    for (const sql of [
      `SELECT schema_to_xml('${db.name}', true, false, '')`,
      "SELECT database_to_xmlschema(true, false, '')",
      "SELECT table_to_xml(c.oid, true, false, '') FROM pg_class c WHERE c.relname = 'orders'",
    ]) {
      const described = await crm.describe("query", query(sql));
      expect({ sql, kind: described.facts.sql }).toMatchObject({ sql, kind: { kind: "code" } });
      expect(await decide(sql)).toBeNull();
    }
  });

  it("lists the tables that the views and rules a statement names read, in their schemas", async () => {
    const other = `${db.name}_other`;
    await db.query(`CREATE TABLE salaries (id int, amount int);
      CREATE TABLE pay_log (id int); CREATE TABLE pay_copy (amount int);
      CREATE VIEW salaries_v AS SELECT id FROM salaries;
      CREATE VIEW salaries_vv AS SELECT count(*) AS n FROM salaries_v;
      CREATE VIEW via_regclass AS SELECT 'salaries'::regclass AS r;
      CREATE MATERIALIZED VIEW salaries_mv AS SELECT amount FROM salaries;
      CREATE RULE copy_pay AS ON INSERT TO pay_log
        DO ALSO INSERT INTO pay_copy SELECT amount FROM salaries;
      CREATE VIEW v AS SELECT id FROM orders;
      CREATE SCHEMA ${other}; CREATE VIEW ${other}.v AS SELECT id FROM salaries;`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "salaries", when: '"salaries" in sql.tables', decision: "review" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
          { name: "writes", when: 'sql.kind == "insert"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      const decide = (sql: string) => ruleFor(policy, sql);
      for (const sql of [
        "SELECT * FROM salaries_v",
        "SELECT n FROM salaries_vv",
        "SELECT * FROM orders WHERE id IN (SELECT id FROM salaries_v)",
        "SELECT r FROM via_regclass",
        "SELECT * FROM salaries_mv",
        "REFRESH MATERIALIZED VIEW salaries_mv",
        "INSERT INTO pay_log VALUES (1)",
        `SELECT * FROM ${other}.v`,
        // The name is resolved by the search_path the statements leave, not the one at hand.
        `SET search_path = ${other}; SELECT * FROM v`,
        `SELECT set_config('search_path', '${other}', false); SELECT * FROM v`,
      ]) {
        expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "salaries" });
      }
      // This schema's v reads orders only; a read of the view alone passes.
      expect(await decide("SELECT * FROM v")).toBe("reads");
      expect(await decide(`SELECT * FROM ${db.name}.v`)).toBe("reads");
      expect(await decide("SELECT * FROM v; SELECT 1")).toBe("reads");
      const described = await crm.describe("query", query("SELECT n FROM salaries_vv"));
      expect(described.facts).toMatchObject({
        sql: {
          kind: "select",
          tables: [
            `${db.name}.salaries`,
            `${db.name}.salaries_v`,
            "salaries",
            "salaries_v",
            "salaries_vv",
          ],
          namedTables: ["salaries_vv"],
        },
      });
      expect(described.notes?.join("\n")).toContain(
        `through views and rules: ${db.name}.salaries, ${db.name}.salaries_v`,
      );
      // A view meant as the way in passes by what the SQL names itself, and no other view does.
      const { policy: wayIn } = compilePolicy(
        [
          {
            name: "way in",
            when: 'sql.kind == "select" && sql.namedTables.size() > 0 && sql.namedTables.all(t, t in ["salaries_v"])',
            decision: "allow",
          },
          { name: "salaries", when: '"salaries" in sql.tables', decision: "review" },
        ].map((r) => ruleSchema.parse(r)),
      );
      expect(await ruleFor(wayIn, "SELECT * FROM salaries_v")).toBe("way in");
      expect(await ruleFor(wayIn, "SELECT * FROM salaries_vv")).toBe("salaries");
      expect(await ruleFor(wayIn, "SELECT * FROM salaries_v, salaries")).toBe("salaries");
    } finally {
      await db.query(`DROP SCHEMA ${other} CASCADE; DROP VIEW v, salaries_vv, salaries_v, via_regclass;
        DROP MATERIALIZED VIEW salaries_mv; DROP TABLE salaries, pay_log, pay_copy;`);
    }
  });

  it("lists the tables a partition or child table belongs to, and a parent's partitions and children", async () => {
    await db.query(`CREATE TABLE payments (id int, at date) PARTITION BY RANGE (at);
      CREATE TABLE payments_2026 PARTITION OF payments
        FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (id);
      CREATE TABLE payments_2026_a PARTITION OF payments_2026 FOR VALUES FROM (0) TO (1000);
      CREATE TABLE payments_2025 PARTITION OF payments
        FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE cities (name text); CREATE TABLE capitals (state text) INHERITS (cities);
      CREATE VIEW payments_now AS SELECT id FROM payments_2026;`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "payments", when: '"payments" in sql.tables', decision: "review" },
          { name: "capitals", when: '"capitals" in sql.tables', decision: "deny" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
          { name: "writes", when: 'sql.kind in ["insert", "update", "delete"]', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      const decide = (sql: string) => ruleFor(policy, sql);
      // A partition's rows are its parent's: a rule on the parent holds for them.
      for (const sql of [
        "SELECT * FROM payments_2026",
        "SELECT * FROM payments_2026_a",
        "SELECT * FROM payments_now",
        "DELETE FROM payments_2025 WHERE id = 1",
        "INSERT INTO payments_2026_a VALUES (1, '2026-05-01')",
      ]) {
        expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "payments" });
      }
      // A parent read or written without ONLY reads or writes its children's rows too.
      for (const sql of [
        "SELECT * FROM cities",
        "UPDATE cities SET name = 'x' WHERE name = 'y'",
        "DELETE FROM cities WHERE name = 'y'",
      ]) {
        expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "capitals" });
      }
      const { policy: onPartition } = compilePolicy(
        [
          { name: "2026", when: '"payments_2026_a" in sql.tables', decision: "deny" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      expect(await ruleFor(onPartition, "SELECT * FROM payments WHERE id = 1")).toBe("2026");
      // Up from a partition and down from it, but not across to its siblings.
      const described = await crm.describe("query", query("SELECT * FROM payments_2026"));
      expect(described.facts).toMatchObject({
        sql: {
          kind: "select",
          tables: [
            `${db.name}.payments`,
            `${db.name}.payments_2026_a`,
            "payments",
            "payments_2026",
            "payments_2026_a",
          ],
          namedTables: ["payments_2026"],
        },
      });
      const notes = described.notes?.join("\n") ?? "";
      expect(notes).toContain(`partitions and child tables: ${db.name}.payments_2026_a`);
      expect(notes).toContain(`parent tables: ${db.name}.payments`);
      expect(notes).not.toContain("payments_2025");
    } finally {
      await db.query("DROP VIEW payments_now; DROP TABLE payments, capitals, cities;");
    }
  });

  it("takes ONLY at its word, but for MERGE, which routes the rows it inserts to partitions all the same", async () => {
    await db.query(`CREATE TABLE o_parted (id int, v int) PARTITION BY LIST (id);
      CREATE TABLE o_p1 PARTITION OF o_parted FOR VALUES IN (1);
      CREATE TABLE o_cities (name text); CREATE TABLE o_capitals () INHERITS (o_cities);
      CREATE FUNCTION o_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
      CREATE FUNCTION o_kept() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
      CREATE TRIGGER o_cities_audit AFTER DELETE OR UPDATE ON o_cities
        FOR EACH STATEMENT EXECUTE FUNCTION o_audit();
      CREATE TRIGGER o_capitals_kept AFTER DELETE OR UPDATE ON o_capitals
        FOR EACH ROW EXECUTE FUNCTION o_kept();
      CREATE TRIGGER o_p1_kept BEFORE INSERT ON o_p1 FOR EACH ROW EXECUTE FUNCTION o_kept();`);
    try {
      const facts = async (sql: string) =>
        (await crm.describe("query", query(sql))).facts.sql as {
          kind: string;
          tables: string[];
          functions: string[];
        };
      // The rows of the table itself only; its own triggers still fire.
      for (const [sql, table] of [
        ["SELECT * FROM ONLY o_parted", "o_parted"],
        ["SELECT * FROM ONLY o_cities WHERE name = 'x'", "o_cities"],
        ["DELETE FROM ONLY o_parted WHERE id = 1", "o_parted"],
        ["DELETE FROM ONLY o_cities WHERE name = 'x'", "o_cities"],
        ["UPDATE ONLY o_cities SET name = 'y' WHERE name = 'x'", "o_cities"],
        ["TRUNCATE ONLY o_cities", "o_cities"],
      ] as const) {
        const listed = await facts(sql);
        expect({ sql, tables: listed.tables }).toEqual({ sql, tables: [table] });
        expect({ sql, functions: listed.functions }).toEqual({
          sql,
          functions:
            listed.kind === "select" || table === "o_parted"
              ? []
              : [`${db.name}.o_audit`, "o_audit"],
        });
      }
      // MERGE INTO ONLY inserts into the partition the row belongs to, firing its triggers.
      expect(
        await facts(
          "MERGE INTO ONLY o_parted t USING (SELECT 1 AS id) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (1, 1)",
        ),
      ).toMatchObject({
        tables: [`${db.name}.o_p1`, "o_p1", "o_parted"],
        functions: [`${db.name}.o_kept`, "o_kept"],
      });
      // Named without ONLY too, in the same statement or another, or where what runs is not
      // all seen (LOCK is kind other), its children are reached.
      for (const sql of [
        "SELECT * FROM ONLY o_cities, o_cities",
        "SELECT * FROM ONLY o_cities; DELETE FROM o_cities WHERE name = 'x'",
        "LOCK TABLE ONLY o_cities",
        "SELECT 'o_cities'::regclass FROM ONLY o_cities",
      ]) {
        expect({ sql, tables: (await facts(sql)).tables }).toEqual({
          sql,
          tables: expect.arrayContaining([`${db.name}.o_capitals`, "o_capitals"]),
        });
      }
    } finally {
      await db.query(`DROP TABLE o_parted, o_capitals, o_cities;
        DROP FUNCTION o_audit(), o_kept()`);
    }
  });

  it("counts as code what reaches more tables than the connection lists, its parents always listed", async () => {
    const narrow = connect({ maxReachedTables: 1 });
    await db.query(`CREATE TABLE payments (id int, at date) PARTITION BY RANGE (at);
      CREATE TABLE payments_2026 PARTITION OF payments
        FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (id);
      CREATE TABLE payments_2026_a PARTITION OF payments_2026 FOR VALUES FROM (0) TO (1000);
      CREATE TABLE payments_2026_b PARTITION OF payments_2026 FOR VALUES FROM (1000) TO (2000);
      CREATE TABLE cities (name text); CREATE TABLE capitals () INHERITS (cities);`);
    try {
      const facts = async (sql: string) =>
        (await narrow.describe("query", narrow.parse("query", { sql }))) as unknown as {
          facts: { sql: { kind: string; tables: string[] } };
          risk: { level: string; reason: string };
          notes?: string[];
        };
      // Two partitions below it and one table above: three, past the one it may list.
      const cut = await facts("SELECT * FROM payments_2026");
      expect(cut.facts.sql.kind).toBe("code");
      expect(cut.risk.level).toBe("critical");
      expect(cut.risk.reason).toMatch(/more than 1 table\b/);
      expect(cut.notes?.join("\n")).toMatch(/maxReachedTables/);
      // The table it belongs to is listed whatever is cut below it.
      expect(cut.facts.sql.tables).toContain("payments");
      expect(cut.facts.sql.tables).not.toContain("payments_2026_a");
      // One is listed in full.
      const listed = await facts("SELECT * FROM capitals");
      expect(listed.facts.sql).toMatchObject({
        kind: "select",
        tables: [`${db.name}.cities`, "capitals", "cities"],
      });
      expect(listed.risk.level).not.toBe("critical");
    } finally {
      await narrow.close();
      await db.query("DROP TABLE payments, capitals, cities");
    }
  });

  it("lists the foreign tables a statement reaches, and rates it high: it acts on another system", async () => {
    // Wrappers are per database, not per schema: a name of this run's own.
    const fdw = `k_fdw_${process.pid}_${Date.now()}`;
    await db.query(`CREATE FOREIGN DATA WRAPPER ${fdw};
      CREATE SERVER ${fdw}_srv FOREIGN DATA WRAPPER ${fdw};
      CREATE FOREIGN TABLE k_remote (id int) SERVER ${fdw}_srv;
      CREATE VIEW k_remote_v AS SELECT id FROM k_remote;
      CREATE TABLE k_parted (id int) PARTITION BY RANGE (id);
      CREATE FOREIGN TABLE k_part PARTITION OF k_parted FOR VALUES FROM (0) TO (10)
        SERVER ${fdw}_srv;`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "remote", when: "sql.foreignTables.size() > 0", decision: "review" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
          { name: "writes", when: 'sql.kind in ["insert", "update", "delete"]', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      for (const [sql, foreign] of [
        ["SELECT * FROM k_remote WHERE id = 1", "k_remote"],
        ["DELETE FROM k_remote WHERE id = 1", "k_remote"],
        ["SELECT * FROM k_remote_v", "k_remote"],
        // A partition of the table it names is foreign.
        ["UPDATE k_parted SET id = 2 WHERE id = 1", "k_part"],
      ] as const) {
        const described = await crm.describe("query", query(sql));
        expect({ sql, foreign: described.facts.sql }).toMatchObject({
          sql,
          foreign: { foreignTables: [`${db.name}.${foreign}`, foreign] },
        });
        expect({ sql, risk: described.risk.level }).toEqual({ sql, risk: "high" });
        expect(described.risk.reason).toContain(`${db.name}.${foreign}`);
        expect(described.notes?.join("\n")).toContain(
          `foreign tables: ${db.name}.${foreign} (server ${fdw}_srv)`,
        );
        expect({ sql, rule: await ruleFor(policy, sql) }).toEqual({ sql, rule: "remote" });
      }
      const plain = await crm.describe("query", query("SELECT * FROM orders WHERE id = 7"));
      expect(plain.facts).toMatchObject({ sql: { foreignTables: [] } });
      expect(plain.risk.level).toBe("low");
    } finally {
      await db.query(`DROP VIEW k_remote_v; DROP TABLE k_parted;
        DROP FOREIGN DATA WRAPPER ${fdw} CASCADE`);
    }
  });

  it("lists the functions a write's triggers run in sql.functions, and rates a write that runs user code high", async () => {
    await db.query(`CREATE TABLE t_log (what text);
      CREATE FUNCTION t_audit() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN INSERT INTO t_log VALUES (TG_OP); RETURN NEW; END $$;
      CREATE FUNCTION t_instead() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN INSERT INTO t_log VALUES ('instead'); RETURN NEW; END $$;
      CREATE TABLE t_items (id int PRIMARY KEY, note text);
      INSERT INTO t_items SELECT g, 'n' FROM generate_series(1, 100) g; ANALYZE t_items;
      CREATE TRIGGER t_items_audit AFTER UPDATE ON t_items
        FOR EACH ROW EXECUTE FUNCTION t_audit();
      CREATE TRIGGER t_items_truncate AFTER TRUNCATE ON t_items
        FOR EACH STATEMENT EXECUTE FUNCTION t_audit();
      CREATE VIEW t_items_v AS SELECT id, note FROM t_items;
      CREATE TRIGGER t_items_v_insert INSTEAD OF INSERT ON t_items_v
        FOR EACH ROW EXECUTE FUNCTION t_instead();
      CREATE TABLE t_parted (id int) PARTITION BY LIST (id);
      CREATE TABLE t_p1 PARTITION OF t_parted FOR VALUES IN (1);
      CREATE TRIGGER t_p1_audit BEFORE INSERT ON t_p1 FOR EACH ROW EXECUTE FUNCTION t_audit();
      CREATE TABLE t_plain (id int PRIMARY KEY, note text);
      INSERT INTO t_plain SELECT g, 'n' FROM generate_series(1, 100) g; ANALYZE t_plain;
      CREATE TRIGGER t_plain_same BEFORE UPDATE ON t_plain
        FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "no instead", when: '"t_instead" in sql.functions', decision: "deny" },
          { name: "no audit", when: '"t_audit" in sql.functions', decision: "deny" },
          { name: "writes", when: 'sql.kind in ["insert", "update", "delete"]', decision: "allow" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      for (const [sql, fn] of [
        ["UPDATE t_items SET note = 'x' WHERE id = 1", "t_audit"],
        ["TRUNCATE t_items", "t_audit"],
        // The trigger is on the partition the row is routed to.
        ["INSERT INTO t_parted VALUES (1)", "t_audit"],
        ["INSERT INTO t_items_v VALUES (1, 'x')", "t_instead"],
      ] as const) {
        const described = await crm.describe("query", query(sql));
        const functions = (described.facts.sql as { functions: string[] }).functions;
        expect({ sql, functions }).toEqual({
          sql,
          functions: expect.arrayContaining([`${db.name}.${fn}`, fn]),
        });
        expect(described.notes?.join("\n")).toMatch(
          new RegExp(`may fire triggers: [^;]*\\b${db.name}\\.${fn}\\b`),
        );
        expect({ sql, rule: await ruleFor(policy, sql) }).toEqual({
          sql,
          rule: fn === "t_audit" ? "no audit" : "no instead",
        });
      }
      // A small write with a WHERE clause is medium, but not when user code runs with it.
      const write = await crm.describe(
        "query",
        query("UPDATE t_items SET note = 'x' WHERE id = 1"),
      );
      expect(write.risk).toEqual({
        level: "high",
        reason: `fires triggers that run code the SQL does not show: ${db.name}.t_audit`,
      });
      // A built-in's trigger is listed, and is no user code.
      const builtIn = await crm.describe(
        "query",
        query("UPDATE t_plain SET note = 'x' WHERE id = 1"),
      );
      expect(builtIn.facts).toMatchObject({
        sql: {
          functions: [
            "pg_catalog.suppress_redundant_updates_trigger",
            "suppress_redundant_updates_trigger",
          ],
        },
      });
      expect(builtIn.risk.level).toBe("medium");
      // A read fires no trigger.
      const read = await crm.describe("query", query("SELECT * FROM t_items WHERE id = 1"));
      expect(read.facts).toMatchObject({ sql: { functions: [] } });
      expect(read.risk.level).toBe("low");
    } finally {
      await db.query(`DROP VIEW t_items_v; DROP TABLE t_items, t_parted, t_plain, t_log;
        DROP FUNCTION t_audit(), t_instead();`);
    }
  });

  it("lists the triggers a partition takes from its table, which PostgreSQL 13 and 14 mark internal, but not a constraint's own", async () => {
    await db.query(`CREATE TABLE x_vault (id int PRIMARY KEY);
      CREATE TABLE x_parted (id int, vault int REFERENCES x_vault) PARTITION BY LIST (id);
      CREATE TABLE x_p1 PARTITION OF x_parted FOR VALUES IN (1);
      CREATE FUNCTION x_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
      CREATE FUNCTION x_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
      CREATE TRIGGER x_parted_audit AFTER INSERT ON x_parted
        FOR EACH ROW EXECUTE FUNCTION x_audit();
      CREATE CONSTRAINT TRIGGER x_parted_check AFTER INSERT ON x_parted
        DEFERRABLE FOR EACH ROW EXECUTE FUNCTION x_check();
      CREATE TABLE x_unique (id int UNIQUE DEFERRABLE);
      -- The catalog as PostgreSQL 13 and 14 write it: a partition's copies of its table's
      -- triggers are internal (from 15 on they are not). The foreign key's own triggers on the
      -- partition are internal and copies in 15 too.
      UPDATE pg_catalog.pg_trigger SET tgisinternal = true
        WHERE tgrelid = 'x_p1'::regclass AND tgparentid <> 0;`);
    try {
      const described = await crm.describe("query", query("INSERT INTO x_p1 VALUES (1, 1)"));
      // Not RI_FKey_check_ins, the foreign key's check, which is no user's trigger.
      expect(described.facts).toMatchObject({
        sql: {
          functions: [`${db.name}.x_audit`, `${db.name}.x_check`, "x_audit", "x_check"],
        },
      });
      expect(described.risk.level).toBe("high");
      // Nor unique_key_recheck, a deferrable unique constraint's.
      const unique = await crm.describe("query", query("INSERT INTO x_unique VALUES (1)"));
      expect(unique.facts).toMatchObject({ sql: { functions: [] } });
    } finally {
      await db.query(`DROP TABLE x_parted, x_vault, x_unique;
        DROP FUNCTION x_audit(), x_check()`);
    }
  });

  it("lists the tables whose foreign keys refer to what a statement writes, and what their triggers run", async () => {
    await db.query(`CREATE TABLE f_notes (id int PRIMARY KEY);
      CREATE TABLE f_links (id int UNIQUE, note int REFERENCES f_notes ON DELETE CASCADE);
      CREATE TABLE f_marks (note int REFERENCES f_notes ON UPDATE SET NULL);
      CREATE TABLE f_kept (note int REFERENCES f_notes ON DELETE RESTRICT);
      CREATE TABLE f_deeper (link int REFERENCES f_links (id) ON DELETE CASCADE);
      CREATE TABLE f_other (id int PRIMARY KEY);
      CREATE TABLE f_refers (other int REFERENCES f_other, note int);
      CREATE FUNCTION f_audit() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RETURN OLD; END $$;
      CREATE TRIGGER f_links_audit AFTER DELETE ON f_links
        FOR EACH ROW EXECUTE FUNCTION f_audit();
      CREATE VIEW f_notes_v AS SELECT id FROM f_notes;`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "links", when: '"f_links" in sql.tables', decision: "review" },
          { name: "kept", when: '"f_kept" in sql.tables', decision: "review" },
          { name: "writes", when: 'sql.kind in ["insert", "update", "delete"]', decision: "allow" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      // A cascade deletes the links; TRUNCATE … CASCADE empties every referring table.
      expect(await ruleFor(policy, "DELETE FROM f_notes WHERE id = 1")).toBe("links");
      expect(await ruleFor(policy, "TRUNCATE f_notes CASCADE")).toBe("links");
      expect(await ruleFor(policy, "DELETE FROM f_notes_v WHERE id = 1")).toBe("links");
      expect(
        await ruleFor(
          policy,
          "INSERT INTO f_notes VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
        ),
      ).toBe("links");
      // A plain insert changes no row a key refers to.
      expect(await ruleFor(policy, "INSERT INTO f_notes VALUES (3)")).toBe("writes");
      const described = await crm.describe("query", query("DELETE FROM f_notes WHERE id = 1"));
      expect(described.facts).toMatchObject({
        sql: {
          // On to what the links' own keys cascade to; RESTRICT reads the table to refuse.
          tables: [
            `${db.name}.f_deeper`,
            `${db.name}.f_kept`,
            `${db.name}.f_links`,
            `${db.name}.f_marks`,
            "f_deeper",
            "f_kept",
            "f_links",
            "f_marks",
            "f_notes",
          ],
          functions: [`${db.name}.f_audit`, "f_audit"],
          namedTables: ["f_notes"],
        },
      });
      expect(described.risk.level).toBe("high");
      expect(described.notes?.join("\n")).toContain(
        `tables whose foreign keys refer to it: ${db.name}.f_deeper, ${db.name}.f_kept, ${db.name}.f_links, ${db.name}.f_marks`,
      );
      // A read changes nothing through a foreign key, and a key of the table written is no
      // reference to it (what the key refers to is listed as read, below).
      expect(await ruleFor(policy, "SELECT * FROM f_notes WHERE id = 1")).toBe("reads");
      const referring = await crm.describe(
        "query",
        query("UPDATE f_refers SET note = 1 WHERE note = 2"),
      );
      expect(referring.facts).toMatchObject({
        sql: { tables: [`${db.name}.f_other`, "f_other", "f_refers"] },
      });
    } finally {
      await db.query(`DROP VIEW f_notes_v;
        DROP TABLE f_deeper, f_links, f_marks, f_kept, f_notes, f_refers, f_other;
        DROP FUNCTION f_audit()`);
    }
  });

  it("lists the tables that the foreign keys of what a statement inserts or updates refer to: the keys' checks read them", async () => {
    await db.query(`CREATE TABLE r_vault (id int PRIMARY KEY);
      CREATE TABLE r_ledger (id int, at int) PARTITION BY RANGE (at);
      CREATE TABLE r_ledger_1 PARTITION OF r_ledger FOR VALUES FROM (0) TO (10);
      ALTER TABLE r_ledger ADD PRIMARY KEY (id, at);
      CREATE TABLE r_claims (id int PRIMARY KEY, vault int REFERENCES r_vault,
        entry int, at int, FOREIGN KEY (entry, at) REFERENCES r_ledger);
      CREATE TABLE r_claims_x () INHERITS (r_claims);
      CREATE VIEW r_claims_v AS SELECT id, vault FROM r_claims;
      CREATE FUNCTION r_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
      CREATE TRIGGER r_vault_audit AFTER INSERT OR UPDATE ON r_vault
        FOR EACH ROW EXECUTE FUNCTION r_audit();`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "vault", when: '"r_vault" in sql.tables', decision: "review" },
          { name: "writes", when: 'sql.kind in ["insert", "update", "delete"]', decision: "allow" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      // Whether a key exists in r_vault can be learnt by writing one that refers to it.
      for (const sql of [
        "INSERT INTO r_claims (id, vault) VALUES (1, 7)",
        "UPDATE r_claims SET vault = 7 WHERE id = 1",
        "INSERT INTO r_claims (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET vault = 7",
        "INSERT INTO r_claims_v VALUES (1, 7)",
        "MERGE INTO r_claims c USING (SELECT 1 AS id) s ON c.id = s.id WHEN NOT MATCHED THEN INSERT (id, vault) VALUES (1, 7)",
      ]) {
        expect({ sql, rule: await ruleFor(policy, sql) }).toEqual({ sql, rule: "vault" });
      }
      // A delete checks nothing it refers to, and a read changes nothing.
      expect(await ruleFor(policy, "DELETE FROM r_claims WHERE id = 1")).toBe("writes");
      expect(await ruleFor(policy, "SELECT * FROM r_claims WHERE id = 1")).toBe("reads");
      const described = await crm.describe(
        "query",
        query("INSERT INTO r_claims VALUES (1, 7, 1, 1)"),
      );
      expect(described.facts).toMatchObject({
        sql: {
          // A partitioned table referred to is read in its partitions; a child's rows are
          // written when named without ONLY.
          tables: [
            `${db.name}.r_claims_x`,
            `${db.name}.r_ledger`,
            `${db.name}.r_ledger_1`,
            `${db.name}.r_vault`,
            "r_claims",
            "r_claims_x",
            "r_ledger",
            "r_ledger_1",
            "r_vault",
          ],
          // The table referred to is only read: its triggers do not fire.
          functions: [],
          namedTables: ["r_claims"],
        },
      });
      expect(described.notes?.join("\n")).toContain(
        `tables its foreign keys refer to: ${db.name}.r_ledger, ${db.name}.r_ledger_1, ${db.name}.r_vault`,
      );
    } finally {
      await db.query(`DROP VIEW r_claims_v; DROP TABLE r_claims_x, r_claims, r_ledger, r_vault;
        DROP FUNCTION r_audit()`);
    }
  });

  it("lists the triggers, rules and referring keys of what a statement writes, not of what it only reads", async () => {
    await db.query(`CREATE TABLE w_src (id int PRIMARY KEY, note text);
      CREATE TABLE w_links (src int REFERENCES w_src ON DELETE CASCADE);
      CREATE TABLE w_log (what text);
      CREATE TABLE w_copy (id int PRIMARY KEY, note text);
      CREATE FUNCTION w_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
      CREATE FUNCTION w_copy_audit() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RETURN NEW; END $$;
      CREATE FUNCTION w_touch(s w_src) RETURNS int LANGUAGE sql AS $$ SELECT s.id $$;
      CREATE TRIGGER w_src_audit AFTER INSERT OR UPDATE OR DELETE ON w_src
        FOR EACH ROW EXECUTE FUNCTION w_audit();
      CREATE TRIGGER w_copy_audit AFTER INSERT OR UPDATE OR DELETE ON w_copy
        FOR EACH ROW EXECUTE FUNCTION w_copy_audit();
      CREATE RULE w_src_log AS ON DELETE TO w_src DO ALSO INSERT INTO w_log VALUES ('gone');`);
    try {
      const facts = async (sql: string) =>
        (await crm.describe("query", query(sql))).facts.sql as {
          tables: string[];
          functions: string[];
        };
      // What it reads fires nothing of its own, and its rows change in no other table.
      for (const sql of [
        "INSERT INTO w_copy SELECT * FROM w_src",
        "DELETE FROM w_copy USING w_src WHERE w_copy.id = w_src.id",
        "UPDATE w_copy SET note = 'x' WHERE id IN (SELECT id FROM w_src)",
        "WITH gone AS (DELETE FROM w_copy RETURNING id) SELECT * FROM w_src, gone",
        "SELECT * FROM w_src; DELETE FROM w_copy WHERE id = 1",
      ]) {
        expect({ sql, facts: await facts(sql) }).toEqual({
          sql,
          facts: expect.objectContaining({
            tables: ["w_copy", "w_src"],
            functions: [`${db.name}.w_copy_audit`, "w_copy_audit"],
          }),
        });
      }
      // What it writes does.
      expect(await facts("DELETE FROM w_src WHERE id = 1")).toMatchObject({
        tables: [`${db.name}.w_links`, `${db.name}.w_log`, "w_links", "w_log", "w_src"],
        functions: [`${db.name}.w_audit`, "w_audit"],
      });
      // A user's function that a write calls may write what the statement only names to
      // read, by name or after a dot, and what DDL does is not seen: then all of it counts
      // as written.
      for (const sql of [
        "INSERT INTO w_copy SELECT w_touch(s), note FROM w_src s",
        "INSERT INTO w_copy SELECT s.w_touch, note FROM w_src s",
        "CREATE TABLE w_new AS SELECT * FROM w_src",
      ]) {
        expect({ sql, functions: (await facts(sql)).functions }).toEqual({
          sql,
          functions: expect.arrayContaining([`${db.name}.w_audit`, "w_audit"]),
        });
        expect({ sql, tables: (await facts(sql)).tables }).toEqual({
          sql,
          tables: expect.arrayContaining(["w_links", "w_log"]),
        });
      }
    } finally {
      await db.query(`DROP TABLE w_links, w_log, w_copy, w_src CASCADE;
        DROP FUNCTION w_audit(), w_copy_audit()`);
    }
  });

  it("lists a user's function called in attribute notation in sql.functions", async () => {
    await db.query(`CREATE FUNCTION notify_customer(o orders) RETURNS text LANGUAGE sql
      AS $$ SELECT 'notified ' || o.email $$;`);
    try {
      const { policy } = compilePolicy(
        [
          { name: "no notify", when: '"notify_customer" in sql.functions', decision: "deny" },
          { name: "reads", when: 'sql.kind == "select"', decision: "allow" },
        ].map((r) => ruleSchema.parse(r)),
      );
      const decide = (sql: string) => ruleFor(policy, sql);
      for (const sql of [
        "SELECT notify_customer(o) FROM orders o WHERE id = 1",
        "SELECT o.notify_customer FROM orders o WHERE id = 1",
        "SELECT orders.notify_customer FROM orders WHERE id = 1",
        "SELECT (o).notify_customer FROM orders o WHERE id = 1",
        "SELECT id FROM orders o WHERE o.notify_customer <> '' AND id = 1",
      ]) {
        expect({ sql, rule: await decide(sql) }).toEqual({ sql, rule: "no notify" });
      }
      // It is a call: the server runs it.
      const outcome = await crm.execute(
        "query",
        query("SELECT o.notify_customer FROM orders o WHERE id = 1"),
        never,
      );
      expect(JSON.stringify(outcome.result)).toContain("notified user1@example.com");
      // A column is no call, and no function is listed for it.
      const plain = await crm.describe("query", query("SELECT o.status FROM orders o"));
      expect(plain.facts).toMatchObject({ sql: { functions: [] } });
      expect(await decide("SELECT o.status FROM orders o")).toBe("reads");
    } finally {
      await db.query("DROP FUNCTION notify_customer(orders)");
    }
  });

  it("a value passed as a param is data, whatever it says", async () => {
    const input = query("SELECT count(*) AS n FROM orders WHERE email = $1", [
      "x'; DROP TABLE orders; --",
    ]);
    const described = await crm.describe("query", input);
    expect(described.facts).toMatchObject({ sql: { kind: "select", statements: 1 } });
    const outcome = await crm.execute("query", input, never);
    expect(outcome.ok).toBe(true);
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
  });

  it("says where bytea sits in the result, in arrays too, for the rows it keeps", async () => {
    const small = connect({ maxRows: 2 });
    try {
      const outcome = await small.execute(
        "query",
        query(
          "SELECT 1 AS n; SELECT g AS n, 'ab'::bytea AS b, ARRAY['\\x01'::bytea, NULL, 'c'::bytea] AS list FROM generate_series(1, 3) g",
        ),
        never,
      );
      expect(outcome.ok).toBe(true);
      const rows = (outcome.result as { statements: { rows: Json[][] }[] }).statements[1]!.rows;
      expect(rows[0]).toEqual([1, "\\x6162", ["\\x01", null, "\\x63"]]);
      expect(outcome.hex).toEqual(
        [0, 1].flatMap((row) => [
          ["statements", 1, "rows", row, 1],
          ["statements", 1, "rows", row, 2, 0],
          ["statements", 1, "rows", row, 2, 2],
        ]),
      );
      // None, and no list, when there is none.
      expect((await small.execute("query", query("SELECT 1 AS n"), never)).hex).toBeUndefined();
    } finally {
      await small.close();
    }
  });

  it("keeps a jsonb key named __proto__ as a key in the rows", async () => {
    const outcome = await crm.execute(
      "query",
      query(`SELECT '{"__proto__": {"role": "admin"}, "a": 1}'::jsonb AS doc`),
      never,
    );
    expect(outcome.ok).toBe(true);
    expect(JSON.stringify(outcome.result)).toContain('"__proto__":{"role":"admin"}');
  });

  it("a dry run counts the rows a write would touch and leaves the table unchanged", async () => {
    const before = await rows("SELECT id, status FROM orders ORDER BY id");
    const line = await crm.dryRun!(
      "query",
      query("UPDATE orders SET status = 'closed' WHERE status = $1", ["stale"]),
    );
    expect(line).toBe("Dry run (rolled back): UPDATE orders: 50 rows.");
    expect(await rows("SELECT id, status FROM orders ORDER BY id")).toEqual(before);
    // Rows a write returns are read a few at a time and dropped; all of them are counted.
    const returning = await crm.dryRun!(
      "query",
      query("UPDATE orders SET status = 'closed' WHERE id <= 137 RETURNING id, status"),
    );
    expect(returning).toBe("Dry run (rolled back): UPDATE orders: 137 rows.");
    expect(await rows("SELECT id, status FROM orders ORDER BY id")).toEqual(before);

    const hidden = await crm.dryRun!(
      "query",
      query(
        "WITH gone AS (DELETE FROM orders WHERE id <= 3 RETURNING id) SELECT count(*) FROM gone",
      ),
    );
    // The SELECT's one row is not the DELETE's count, and is not passed off as it.
    expect(hidden).toBe(
      "Dry run (rolled back): SELECT orders: 1 row from the SELECT itself, rows changed by the DELETE within it not counted.",
    );
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
  });

  it("estimates a write in a WITH by the rows it changes, not the rows the statement returns", async () => {
    const facts = async (sql: string) => {
      const described = await crm.describe("query", query(sql));
      return {
        rows: (described.facts.sql as { estimatedRows: number }).estimatedRows,
        risk: described.risk.level,
        notes: described.notes?.join("\n") ?? "",
      };
    };
    await db.query(`DROP TABLE IF EXISTS ledger; CREATE TABLE ledger (id int PRIMARY KEY);
      INSERT INTO ledger SELECT generate_series(1, 20000); ANALYZE ledger;`);
    const hidden = await facts(
      "WITH gone AS (DELETE FROM ledger WHERE id > 0 RETURNING id) SELECT count(*) FROM gone",
    );
    expect(hidden.rows).toBeGreaterThanOrEqual(19_000);
    expect(hidden.risk).toBe("high");
    expect(hidden.notes).not.toMatch(/about 1 row\b/);
    expect(await rows("SELECT count(*)::int AS n FROM ledger")).toEqual([{ n: 20_000 }]);
    // Two writes: both count.
    const both = await facts(
      "WITH a AS (UPDATE orders SET status = 'x' WHERE id <= 150 RETURNING id) " +
        "DELETE FROM orders WHERE id > 150 AND id IN (SELECT id FROM a)",
    );
    expect(both.rows).toBeGreaterThanOrEqual(150);
    // An INSERT fed by a DELETE in its WITH.
    const moved = await facts(
      "WITH gone AS (DELETE FROM orders WHERE id > 0 RETURNING *) INSERT INTO orders SELECT id + 1000, status, email FROM gone LIMIT 1",
    );
    expect(moved.rows).toBeGreaterThanOrEqual(190);
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
  });

  it("skips the dry run, saying why, for what a rollback cannot undo or what locks the schema", async () => {
    expect(await crm.dryRun!("query", query("VACUUM orders"))).toMatch(/rollback could not undo/);
    expect(await crm.dryRun!("query", query("DROP TABLE orders"))).toMatch(/skipped for DDL/);
    expect(await crm.dryRun!("query", query("SELECT 1"))).toBe("");
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
  });

  it("runs a write in one transaction and reports what it changed", async () => {
    const outcome = await crm.execute(
      "query",
      query("UPDATE orders SET status = 'closed' WHERE status = 'stale' RETURNING id"),
      never,
    );
    expect(outcome.ok).toBe(true);
    expect(outcome.summary).toBe("UPDATE: 50 rows");
    const result = outcome.result as { statements: { rowCount: number; rows: Json[][] }[] };
    expect(result.statements[0]!.rowCount).toBe(50);
    expect(result.statements[0]!.rows).toHaveLength(50);
    expect(await rows("SELECT count(*)::int AS n FROM orders WHERE status = 'closed'")).toEqual([
      { n: 50 },
    ]);

    // A failing second statement undoes the first.
    const failed = await crm.execute(
      "query",
      query("UPDATE orders SET status = 'gone'; SELECT 1/0"),
      never,
    );
    expect(failed.ok).toBe(false);
    expect(failed.reason).toMatch(/division by zero.*nothing was changed/);
    expect(await rows("SELECT count(*)::int AS n FROM orders WHERE status = 'gone'")).toEqual([
      { n: 0 },
    ]);
  });

  it("runs reads in a read-only transaction", async () => {
    await db.query("CREATE SEQUENCE IF NOT EXISTS ticket");
    const outcome = await crm.execute("query", query("SELECT nextval('ticket')"), never);
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/read-only transaction/);
  });

  it("counts every row of a result read in several portions", async () => {
    const wide = connect({ maxRows: 5000 });
    try {
      const outcome = await wide.execute(
        "query",
        query("SELECT n FROM generate_series(1, 1234) AS n"),
        never,
      );
      const statement = (outcome.result as { statements: Record<string, Json>[] }).statements[0]!;
      expect(statement.rowCount).toBe(1234);
      expect(statement.rows).toHaveLength(1234);
      expect(outcome.summary).toBe("SELECT: 1,234 rows");
    } finally {
      await wide.close();
    }
  });

  it("cuts results at maxRows and maxResultBytes, and says so", async () => {
    const small = connect({ maxRows: 10 });
    try {
      const outcome = await small.execute(
        "query",
        query("SELECT * FROM orders ORDER BY id"),
        never,
      );
      const statement = (outcome.result as { statements: Record<string, Json>[] }).statements[0]!;
      expect(statement.rows).toHaveLength(10);
      expect(statement.truncated).toMatch(/cut at 10 rows/);
      expect(statement.rowCount).toBeNull();
      expect(outcome.summary).toMatch(/cut/);
    } finally {
      await small.close();
    }
    const narrow = connect({ maxResultBytes: 2048 });
    try {
      const outcome = await narrow.execute(
        "query",
        query("SELECT * FROM orders ORDER BY id"),
        never,
      );
      const statement = (outcome.result as { statements: Record<string, Json>[] }).statements[0]!;
      expect(JSON.stringify(statement.rows).length).toBeLessThanOrEqual(2048 + 100);
      expect((statement.rows as Json[]).length).toBeGreaterThan(10);
      expect(statement.truncated).toMatch(/maxResultBytes/);
    } finally {
      await narrow.close();
    }
  });

  it("refuses COPY to or from the client, which would need a streaming protocol", () => {
    expect(() => query("COPY orders TO STDOUT")).toThrow(/COPY … TO STDOUT/);
    expect(() => query("COPY orders FROM STDIN")).toThrow(/COPY … TO STDOUT/);
    // A write inside ranks above COPY, and the COPY still streams to the client.
    for (const sql of [
      "COPY (DELETE FROM orders WHERE id = 1 RETURNING *) TO STDOUT",
      "COPY (UPDATE orders SET status = 'x' WHERE id = 1 RETURNING *) TO STDOUT",
      "COPY (INSERT INTO orders VALUES (999, 'x') RETURNING *) TO STDOUT",
      "SELECT 1; COPY (DELETE FROM orders RETURNING id) TO STDOUT (FORMAT csv)",
    ]) {
      expect(() => query(sql), sql).toThrow(
        expect.objectContaining({ code: "invalid_request", field: "input.sql" }),
      );
    }
  });

  it("refuses SQL that changes how the server reads the SQL after it", () => {
    const refusal = (sql: string) => {
      try {
        query(sql);
      } catch (error) {
        return { code: (error as AirlockError).code, field: (error as AirlockError).field };
      }
      return undefined;
    };
    for (const sql of [
      // In SJIS the string below swallows its closing quote, and the DELETE is code.
      "SET client_encoding = 'SJIS';\n" +
        "WITH a AS (SELECT E'\u00c1\\'), b AS (DELETE FROM orders RETURNING 1) SELECT 1 -- ') SELECT * FROM a",
      "SET NAMES 'SJIS'; SELECT 1",
      "SET LOCAL client_encoding TO 'BIG5'",
      "SET \"Client_Encoding\" = 'GBK'",
      "SET standard_conforming_strings = off; SELECT 'a\\'",
      "SET backslash_quote = on",
      "RESET client_encoding",
      "RESET standard_conforming_strings",
      "RESET ALL; SELECT 1",
      "DISCARD ALL",
      "SELECT set_config('client_encoding', 'SJIS', false)",
      "SELECT pg_catalog.set_config('Standard_Conforming_Strings', 'off', true)",
      "SELECT set_config(name, 'x', false) FROM (VALUES ('backslash_quote')) v(name)",
      "SELECT set_config($1, 'x', false)",
      "PREPARE p AS SELECT set_config('client_encoding', 'SJIS', false)",
    ]) {
      const params = sql.includes("$1") ? ["client_encoding"] : undefined;
      let refused: unknown;
      try {
        query(sql, params);
      } catch (error) {
        refused = error;
      }
      expect(refused, sql).toBeInstanceOf(AirlockError);
      expect(refused, sql).toMatchObject({ code: "invalid_request", field: "input.sql" });
      expect((refused as Error).message, sql).toMatch(/changes how the server reads SQL/);
    }
    expect(refusal("SET work_mem = '8MB'; SELECT 1")).toBeUndefined();
    expect(refusal("SELECT set_config('work_mem', '8MB', true)")).toBeUndefined();
  });

  it("sends nothing more once code it cannot see into changed how the server reads SQL", async () => {
    const outcome = await crm.execute(
      "query",
      query(
        "DO $$ BEGIN PERFORM set_config('client_encoding', 'SJIS', false); END $$; DELETE FROM orders WHERE id = 1",
      ),
      never,
    );
    expect(outcome).toMatchObject({ ok: false });
    expect((outcome as { reason: string }).reason).toMatch(
      /changed how the server reads what follows \(client_encoding is SJIS\)/,
    );
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
    // The session was reset: the next request on it is read as UTF-8 again.
    const after = await crm.execute("query", query("SELECT 'é' AS e"), never);
    expect(after).toMatchObject({ ok: true, result: { statements: [{ rows: [["é"]] }] } });
  });

  it("cuts the connection, and keeps running, should a COPY to or from the client reach the server", async () => {
    // parse refuses these; the connector is called here without it, as no caller should.
    const rehearsal = await crm.dryRun!("query", {
      sql: "COPY (DELETE FROM orders WHERE id = 1 RETURNING *) TO STDOUT",
    });
    expect(rehearsal).toBe("Dry run: the database refused it.");
    for (const sql of ["COPY orders TO STDOUT", "COPY orders FROM STDIN"]) {
      const outcome = await crm.execute("query", { sql }, never);
      expect(outcome, sql).toMatchObject({ ok: false });
    }
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
    // The pool still serves.
    const after = await crm.execute("query", query("SELECT count(*)::int AS n FROM orders"), never);
    expect(after).toMatchObject({ ok: true, result: { statements: [{ rows: [[200]] }] } });
  });

  it("runs a locking select read-only too, so nothing it calls can write", async () => {
    await db.query(`CREATE OR REPLACE FUNCTION wipe() RETURNS int LANGUAGE sql AS
      'DELETE FROM orders WHERE id > 100 RETURNING 1'`);
    const outcome = await crm.execute(
      "query",
      query("SELECT wipe() FROM orders WHERE id = 1 FOR UPDATE"),
      never,
    );
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/read-only transaction/);
    expect(await rows("SELECT count(*)::int AS n FROM orders")).toEqual([{ n: 200 }]);
  });

  it("keeps its own deadline when the SQL lifts the statement timeout", async () => {
    const quick = connect({ statementTimeout: "300ms" });
    try {
      const outcome = await quick.execute(
        "query",
        quick.parse("query", {
          sql: "SELECT set_config('statement_timeout', '0', false); SELECT pg_sleep(5)",
        }),
        never,
      );
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toMatch(/time limit/);
    } finally {
      await quick.close();
    }
  });

  it("gives an action's statements one deadline together, not their timeouts added up", async () => {
    const quick = connect({ statementTimeout: "400ms", executionTimeout: "500ms" });
    try {
      // Each statement is within its own timeout; together they are not.
      const sql = Array.from({ length: 8 }, () => "SELECT pg_sleep(0.25)").join("; ");
      const outcome = await quick.execute("query", quick.parse("query", { sql }), never);
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toMatch(/time limit \(1500 ms.*executionTimeout/);
    } finally {
      await quick.close();
    }
  });

  it("stops waiting for SQL that shrugs off the cancel, and ends its backend", async () => {
    const quick = connect({ statementTimeout: "300ms" });
    try {
      const started = Date.now();
      const marker = `stubborn_${process.pid}_${started}`;
      const outcome = await quick.execute(
        "query",
        quick.parse("query", {
          sql: `DO $$ BEGIN -- ${marker}
            SET LOCAL statement_timeout = 0;
            FOR i IN 1..60 LOOP
              BEGIN PERFORM pg_sleep(1); EXCEPTION WHEN query_canceled THEN NULL; END;
            END LOOP;
          END $$`,
        }),
        never,
      );
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toMatch(/time limit/);
      expect(Date.now() - started).toBeLessThan(15_000);
      // Its backend was ended, not left to loop for a minute.
      await expect
        .poll(
          async () =>
            (
              await rows(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                [`%${marker}%`],
              )
            )[0],
          { timeout: 5000 },
        )
        .toEqual({ n: 0 });
    } finally {
      await quick.close();
    }
  });

  it("does not rehearse functions that could act outside the transaction", async () => {
    const line = await crm.dryRun!(
      "query",
      query("UPDATE orders SET status = 'x' WHERE id = 1 AND pg_notify('chan', 'x') IS NOT NULL"),
    );
    expect(line).toMatch(/skipped, because it calls pg_notify/);
    // Called in attribute notation, (x).f is f(x): a built-in is no purer for it.
    await db.query("DROP SEQUENCE IF EXISTS called; CREATE SEQUENCE called");
    expect(
      await crm.dryRun!(
        "query",
        query("UPDATE orders SET status = 'x' WHERE id = ('called'::regclass).nextval"),
      ),
    ).toMatch(/skipped, because it calls nextval/);
    expect(await rows("SELECT is_called FROM called")).toEqual([{ is_called: false }]);
    await db.query("DROP SEQUENCE called");
  });

  it("does not rehearse a statement that may reach user code its calls do not name", async () => {
    // A sequence is not rolled back: each call of the user's code below leaves a mark.
    await db.query(`DROP SEQUENCE IF EXISTS called; CREATE SEQUENCE called;
      CREATE OR REPLACE FUNCTION notify_customer(orders) RETURNS boolean LANGUAGE sql
        AS $$ SELECT nextval('called') > 0 $$;
      CREATE OR REPLACE FUNCTION loud_eq(int, int) RETURNS boolean LANGUAGE sql
        AS $$ SELECT nextval('called') > 0 AND $1 = $2 $$;
      DROP OPERATOR IF EXISTS === (int, int);
      CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = loud_eq);
      CREATE OR REPLACE FUNCTION initcap(varchar) RETURNS text LANGUAGE sql
        AS $$ SELECT nextval('called')::text $$;
      DROP TYPE IF EXISTS tally CASCADE; CREATE TYPE tally AS (n bigint);
      CREATE OR REPLACE FUNCTION to_tally(int) RETURNS tally LANGUAGE sql
        AS $$ SELECT ROW(nextval('called'))::tally $$;
      CREATE CAST (int AS tally) WITH FUNCTION to_tally(int);`);
    const rehearse = (sql: string) => crm.dryRun!("query", query(sql));
    // Attribute notation: orders.notify_customer is notify_customer(orders).
    expect(
      await rehearse("UPDATE orders SET status = 'x' WHERE id = 7 AND orders.notify_customer"),
    ).toMatch(/^Dry run: skipped, because it may reach function notify_customer, /);
    expect(
      await rehearse("UPDATE orders o SET status = 'x' WHERE id = 7 AND (o).notify_customer"),
    ).toMatch(/function notify_customer/);
    expect(await rehearse("UPDATE orders SET status = 'x' WHERE id === 7")).toMatch(
      /skipped, because it may reach operator ===/,
    );
    // An overload of a built-in's name that fits the argument better is the one called.
    expect(
      await rehearse("UPDATE orders SET status = initcap(status::varchar) WHERE id = 7"),
    ).toMatch(/function initcap/);
    expect(await rehearse("UPDATE orders SET status = (7::tally).n::text WHERE id = 7")).toMatch(
      /cast to tally/,
    );
    expect(await rows("SELECT is_called FROM called")).toEqual([{ is_called: false }]);
    // Names are matched, not signatures: initcap(text) is not rehearsed either, while a user's
    // initcap exists. What names no user code is.
    expect(await rehearse("UPDATE orders SET status = upper(status) WHERE id = 7")).toBe(
      "Dry run (rolled back): UPDATE orders: 1 row.",
    );
    await db.query(`DROP CAST (int AS tally); DROP TYPE tally CASCADE;
      DROP FUNCTION notify_customer(orders), initcap(varchar);
      DROP OPERATOR === (int, int); DROP FUNCTION loud_eq(int, int); DROP SEQUENCE called;`);
  });

  it("neither rehearses nor estimates what names a type whose checks are user code", async () => {
    // A domain's CHECK runs whenever a value becomes one: here it ends the victim's session.
    const victim = new pg.Client({ connectionString: db.url });
    victim.on("error", () => {});
    await victim.connect();
    const { pid } = (await victim.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"))
      .rows[0]!;
    await db.query(`CREATE OR REPLACE FUNCTION end_session(int) RETURNS boolean LANGUAGE sql
        AS $$ SELECT pg_terminate_backend($1) $$;
      DROP DOMAIN IF EXISTS session_pid CASCADE;
      CREATE DOMAIN session_pid AS int CHECK (end_session(VALUE));
      CREATE TYPE boxed_pid AS (pid session_pid);`);
    try {
      // Cast to it, or given as the type of an XMLTABLE column: the check is not named.
      for (const sql of [
        `UPDATE orders SET status = 'x' WHERE id = '${pid}'::session_pid`,
        `UPDATE orders SET status = 'x' WHERE id IN (SELECT v FROM XMLTABLE('/a' PASSING '<a>${pid}</a>' COLUMNS v session_pid PATH '.'))`,
      ]) {
        expect(await crm.dryRun!("query", query(sql))).toMatch(
          /^Dry run: skipped, because it may reach type session_pid, /,
        );
      }
      // A composite's literal is read when the statement is, EXPLAIN's included.
      const described = await crm.describe("query", query(`SELECT ('(${pid})'::boxed_pid).pid`));
      expect((described.facts as { sql: { estimatedRows: number } }).sql.estimatedRows).toBe(
        Number.MAX_SAFE_INTEGER,
      );
      expect((await victim.query("SELECT 1 AS alive")).rows).toEqual([{ alive: 1 }]);
    } finally {
      await victim.end().catch(() => {});
      await db.query(
        "DROP TYPE boxed_pid; DROP DOMAIN session_pid; DROP FUNCTION end_session(int)",
      );
    }
  });

  it("does not rehearse a write to a table that runs user code, nor estimate what calls it", async () => {
    // A sequence is not rolled back: each call of the user's code below leaves a mark.
    await db.query(`DROP SEQUENCE IF EXISTS called; CREATE SEQUENCE called;
      CREATE OR REPLACE FUNCTION orders_audit() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN PERFORM nextval('called'); RETURN NEW; END $$;
      CREATE OR REPLACE FUNCTION pick() RETURNS int LANGUAGE plpgsql STABLE
        AS $$ BEGIN PERFORM nextval('called'); RETURN 7; END $$;
      DROP TABLE IF EXISTS notes; CREATE TABLE notes (id int PRIMARY KEY, body text);
      DROP TABLE IF EXISTS note_links;
      CREATE TABLE note_links (note int REFERENCES notes ON DELETE CASCADE);
      CREATE TRIGGER links_audit AFTER DELETE ON note_links
        FOR EACH ROW EXECUTE FUNCTION orders_audit();
      INSERT INTO notes VALUES (1, 'a'); INSERT INTO note_links VALUES (1);`);
    const rehearse = (sql: string) => crm.dryRun!("query", query(sql));
    // Rehearsed before the trigger exists; not once it does.
    expect(await rehearse("UPDATE orders SET status = 'x' WHERE id = 7")).toBe(
      "Dry run (rolled back): UPDATE orders: 1 row.",
    );
    await db.query(`CREATE TRIGGER orders_audit AFTER UPDATE ON orders
      FOR EACH ROW EXECUTE FUNCTION orders_audit()`);
    expect(await rehearse("UPDATE orders SET status = 'x' WHERE id = 7")).toMatch(
      /^Dry run: skipped, because it may reach user code on (\w+\.)?orders/,
    );
    // Deleting a note deletes its links, whose trigger is user code.
    expect(await rehearse("DELETE FROM notes WHERE id = 1")).toMatch(
      /may reach user code on (\w+\.)?note_links/,
    );
    // Planning would run the stable function on its constant arguments: no estimate.
    const described = await crm.describe("query", query("SELECT * FROM orders WHERE id = pick()"));
    expect((described.facts as { sql: { estimatedRows: number } }).sql.estimatedRows).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(await rows("SELECT is_called FROM called")).toEqual([{ is_called: false }]);
    await db.query(`DROP TRIGGER orders_audit ON orders; DROP TABLE note_links, notes;
      DROP FUNCTION orders_audit(), pick(); DROP SEQUENCE called;`);
  });

  it("finds user code in what a table carries: types, operators, operator classes, a view's body", async () => {
    await db.query(`DROP SEQUENCE IF EXISTS called; CREATE SEQUENCE called;
      CREATE OR REPLACE FUNCTION k_ok(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
        AS $$ BEGIN PERFORM nextval('called'); RETURN true; END $$;
      CREATE OR REPLACE FUNCTION k_tg() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN PERFORM nextval('called'); RETURN NEW; END $$;
      CREATE DOMAIN k_d1 AS int CHECK (k_ok(VALUE)); CREATE DOMAIN k_d2 AS k_d1;
      CREATE TABLE k_dom (x k_d2); CREATE TABLE k_arr (x k_d1[]);
      CREATE OR REPLACE FUNCTION k_eq(int, int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
        AS $$ BEGIN PERFORM nextval('called'); RETURN $1 = $2; END $$;
      CREATE OPERATOR ==== (leftarg = int, rightarg = int, function = k_eq);
      CREATE TABLE k_op (id int CHECK (id ==== id));
      CREATE OR REPLACE FUNCTION k_cmp(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE
        AS $$ BEGIN PERFORM nextval('called'); RETURN btint4cmp($1, $2); END $$;
      CREATE OPERATOR CLASS k_ops FOR TYPE int USING btree AS OPERATOR 1 <, OPERATOR 2 <=,
        OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 k_cmp(int, int);
      CREATE TABLE k_idx (id int); CREATE INDEX ON k_idx (id k_ops);
      CREATE TABLE "k.dot" (id int);
      CREATE TRIGGER k_t BEFORE INSERT ON "k.dot" FOR EACH ROW EXECUTE FUNCTION k_tg();
      CREATE VIEW k_view AS SELECT id FROM orders WHERE k_ok(1);`);
    const rehearse = (sql: string) => crm.dryRun!("query", query(sql));
    for (const [table, sql] of [
      ["k_dom", "INSERT INTO k_dom VALUES (1)"],
      ["k_arr", "INSERT INTO k_arr VALUES ('{1}')"],
      ["k_op", "INSERT INTO k_op VALUES (1)"],
      ["k_idx", "INSERT INTO k_idx VALUES (3)"],
      ['"k.dot"', 'INSERT INTO "k.dot" VALUES (1)'],
    ] as const) {
      expect(await rehearse(sql), sql).toMatch(
        new RegExp(
          `^Dry run: skipped, because it may reach user code on (\\w+\\.)?${table.replace(".", "\\.")}`,
        ),
      );
    }
    // Planning a read of the view would evaluate its body's immutable call: no estimate.
    const described = await crm.describe("query", query("SELECT * FROM k_view"));
    expect((described.facts as { sql: { estimatedRows: number } }).sql.estimatedRows).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    // A plain table's read keeps its estimate, and its write is rehearsed.
    const plain = await crm.describe("query", query("SELECT * FROM orders WHERE id = 7"));
    expect((plain.facts as { sql: { estimatedRows: number } }).sql.estimatedRows).toBe(1);
    expect(await rows("SELECT is_called FROM called")).toEqual([{ is_called: false }]);
    await db.query(`DROP VIEW k_view; DROP TABLE k_dom, k_arr, k_op, k_idx, "k.dot";
      DROP OPERATOR CLASS k_ops USING btree; DROP OPERATOR FAMILY k_ops USING btree;
      DROP OPERATOR ==== (int, int); DROP DOMAIN k_d2; DROP DOMAIN k_d1;
      DROP FUNCTION k_ok(int), k_tg(), k_eq(int, int), k_cmp(int, int); DROP SEQUENCE called;`);
  });

  it("neither rehearses nor estimates what reaches a foreign table, whose wrapper may act elsewhere", async () => {
    // Wrappers are per database, not per schema: a name of this run's own.
    const fdw = `k_fdw_${process.pid}_${Date.now()}`;
    await db.query(`CREATE FOREIGN DATA WRAPPER ${fdw};
      CREATE SERVER ${fdw}_srv FOREIGN DATA WRAPPER ${fdw};
      CREATE FOREIGN TABLE k_remote (id int) SERVER ${fdw}_srv;
      CREATE TABLE k_parted (id int) PARTITION BY RANGE (id);
      CREATE FOREIGN TABLE k_part PARTITION OF k_parted FOR VALUES FROM (0) TO (10)
        SERVER ${fdw}_srv;`);
    try {
      const rehearse = (sql: string) => crm.dryRun!("query", query(sql));
      expect(await rehearse("DELETE FROM k_remote WHERE id = 1")).toMatch(
        /^Dry run: skipped, because it may reach a foreign table, (\w+\.)?k_remote/,
      );
      // Through a partitioned table whose partition is foreign.
      expect(await rehearse("UPDATE k_parted SET id = 2 WHERE id = 1")).toMatch(
        /may reach a foreign table, (\w+\.)?k_part\b/,
      );
      const described = await crm.describe("query", query("SELECT * FROM k_remote WHERE id = 1"));
      expect((described.facts as { sql: { estimatedRows: number } }).sql.estimatedRows).toBe(
        Number.MAX_SAFE_INTEGER,
      );
    } finally {
      await db.query(`DROP TABLE k_parted; DROP FOREIGN DATA WRAPPER ${fdw} CASCADE`);
    }
  });

  it("reports only the SQLSTATE when a dry run fails, never the data in the message", async () => {
    const line = await crm.dryRun!(
      "query",
      query(
        "UPDATE orders SET status = 'x' WHERE id = (SELECT email FROM orders WHERE id = 7)::int",
      ),
    );
    expect(line).toBe("Dry run: the database refused it (SQLSTATE 22P02).");
    expect(line).not.toContain("user7@example.com");
  });

  it("leaves no session state behind for the next request on the same connection", async () => {
    const one = connect({ poolSize: 1 });
    try {
      const polluted = await one.execute(
        "query",
        one.parse("query", {
          sql: "SET statement_timeout = 0; SET search_path = pg_catalog; CREATE TEMP TABLE stash (x int); SELECT pg_advisory_lock(42)",
        }),
        never,
      );
      expect(polluted.ok).toBe(true);
      const after = await one.execute(
        "query",
        one.parse("query", {
          sql: "SELECT current_setting('statement_timeout') AS t, current_setting('search_path') AS p, to_regclass('stash') AS stash, (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks",
        }),
        never,
      );
      const row = (after.result as { statements: { rows: Json[][] }[] }).statements[0]!.rows[0];
      expect(row).toEqual(["30s", expect.stringContaining("airlock_test_"), null, "0"]);
    } finally {
      await one.close();
    }
  });

  it("leaves no seed for random() behind, which DISCARD ALL keeps", async () => {
    const one = connect({ poolSize: 1 });
    const random = async () => {
      const outcome = await one.execute(
        "query",
        one.parse("query", { sql: "SELECT random()" }),
        never,
      );
      return (outcome.result as { statements: { rows: Json[][] }[] }).statements[0]!.rows[0]![0];
    };
    try {
      // What random() gives right after setseed(0.5), on a session of its own.
      await db.query("SELECT setseed(0.5)");
      const { seeded } = (await db.query<{ seeded: number }>("SELECT random() AS seeded"))[0]!;
      const seed = one.parse("query", { sql: "SELECT setseed(0.5)" });
      expect((await one.execute("query", seed, never)).ok).toBe(true);
      expect(await random()).not.toBe(seeded);
    } finally {
      await one.close();
    }
  });

  it("closes a session that may hold what DISCARD ALL keeps, and reuses one after plain SQL", async () => {
    const one = connect({ poolSize: 1 });
    // dblink is a contrib extension, installed here for this test unless it already is.
    const installed = await rows(
      "SELECT extnamespace::regnamespace::text AS schema FROM pg_extension WHERE extname = 'dblink'",
    );
    if (installed.length === 0) await db.query(`CREATE EXTENSION dblink SCHEMA ${db.name}`);
    const dblink = installed[0]?.schema ?? db.name;
    const run = async (sql: string) => {
      const outcome = await one.execute("query", one.parse("query", { sql }), never);
      expect(outcome.reason).toBeUndefined();
      return (outcome.result as { statements: { rows?: Json[][] }[] }).statements;
    };
    // The session this runs on, told apart by its backend's start as well as its pid (reused).
    const session = async (also = "") =>
      (
        await run(
          `SELECT pid, backend_start${also} FROM pg_stat_activity WHERE query LIKE '%which session is this%'`,
        )
      ).at(-1)!.rows![0]!;
    try {
      const first = await session();
      // Plain reads and writes stay on the pooled connection, whose reset is enough for them
      // (DISCARD ALL closes a cursor held past its transaction).
      await run(
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1; UPDATE orders SET status = 'open' WHERE id = 1",
      );
      expect(await session(", (SELECT count(*) FROM pg_cursors WHERE name = 'held')")).toEqual([
        ...first,
        "0",
      ]);
      // So do reads through built-ins that only compute: aggregates, window and JSON functions.
      await run(
        "SELECT json_agg(x), string_agg(x::text, ','), format('%s', count(*)) FROM generate_series(1, 3) AS x",
      );
      await run("SELECT row_number() OVER (), unnest(ARRAY[1, 2])");
      expect(await session()).toEqual(first);

      // Each of these outlives DISCARD ALL: a library loaded into the backend, and a named
      // dblink connection (to this very database).
      await run("LOAD 'auto_explain'");
      await run(`SELECT ${dblink}.dblink_connect('stash', '${postgresUrl}')`);
      const [pid, started, library, links] = await session(
        `, current_setting('auto_explain.log_min_duration', true), ${dblink}.dblink_get_connections()`,
      );
      expect([library, links]).toEqual([null, null]);
      expect([pid, started]).not.toEqual(first);
    } finally {
      await one.close();
      if (installed.length === 0) await db.query("DROP EXTENSION IF EXISTS dblink");
    }
  });

  it("never keeps a transaction the SQL began and did not end", async () => {
    const outcome = await crm.execute(
      "query",
      query("BEGIN; UPDATE orders SET status = 'limbo' WHERE id = 1"),
      never,
    );
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/left a transaction open/);
    expect(await rows("SELECT count(*)::int AS n FROM orders WHERE status = 'limbo'")).toEqual([
      { n: 0 },
    ]);
  });

  it("stops a statement at the connection's statement timeout", async () => {
    const quick = connect({ statementTimeout: "200ms" });
    try {
      const outcome = await quick.execute("query", query("SELECT pg_sleep(5)"), never);
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toMatch(/statement timeout/);
    } finally {
      await quick.close();
    }
  });

  it("says the database is unreachable without naming where it is", async () => {
    const away = postgresConnectorType.create(
      "away",
      postgresConnectorType.configSchema.parse({
        type: "postgres",
        url: "postgres://airlock:pa55-w0rd-secret@127.0.0.1:1/nowhere",
      }),
      { logger: undefined as never, secrets: [] },
    );
    try {
      expect(away.secrets).toContain("pa55-w0rd-secret");
      const outcome = await away.execute("query", away.parse("query", { sql: "SELECT 1" }), never);
      expect(outcome.ok).toBe(false);
      expect(outcome.reason).toMatch(/could not be reached/);
      expect(JSON.stringify(outcome)).not.toMatch(/127\.0\.0\.1|nowhere|pa55/);
      const described = await away.describe("query", away.parse("query", { sql: "SELECT 1" }));
      // Unknown counts as huge, so size limits in rules fail closed.
      expect(described.facts).toMatchObject({ sql: { estimatedRows: Number.MAX_SAFE_INTEGER } });
      // What the relations it names read cannot be looked up: no rule on tables could hold
      // it, so it ranks as code, like a read of tables the SQL does not name.
      const named = await away.describe(
        "query",
        away.parse("query", { sql: "SELECT * FROM salaries_v" }),
      );
      expect(named.facts).toMatchObject({
        sql: { kind: "code", kinds: ["code"], tables: ["salaries_v"] },
      });
      expect(named.risk.level).toBe("critical");
      expect(named.notes?.join("\n")).toMatch(/could not be looked up/);
    } finally {
      await away.close();
    }
  });
});
