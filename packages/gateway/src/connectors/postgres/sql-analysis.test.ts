import { beforeAll, describe, expect, it, vi } from "vitest";
import {
  analyzeSql,
  loadSqlParser,
  type SqlKind,
  SqlSyntaxError,
  sqlKindDanger,
} from "./sql-analysis.js";

beforeAll(async () => {
  await loadSqlParser();
});

const syntaxErrorOf = (sql: string): SqlSyntaxError => {
  try {
    analyzeSql(sql);
  } catch (error) {
    if (error instanceof SqlSyntaxError) return error;
    throw error;
  }
  throw new Error(`no syntax error for ${JSON.stringify(sql)}`);
};

describe("kind", () => {
  it.each<[SqlKind, string]>([
    ["select", "SELECT 1"],
    ["select", "VALUES (1), (2)"],
    ["select", "TABLE orders"],
    ["select", "SHOW search_path"],
    ["select", "EXPLAIN DELETE FROM t"],
    ["select", "EXPLAIN (ANALYZE false) DELETE FROM t"],
    ["select", "EXPLAIN (ANALYZE 0) DELETE FROM t"],
    ["select", "EXPLAIN (ANALYZE off, VERBOSE) DELETE FROM t"],
    ["select", "EXPLAIN WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"],
    ["select", "DECLARE c CURSOR FOR SELECT * FROM t"],
    ["select", "FETCH 10 FROM c"],
    ["select", "CLOSE c"],
    ["insert", "INSERT INTO t (a) VALUES (1)"],
    ["insert", "INSERT INTO t SELECT * FROM s"],
    ["insert", "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING"],
    ["update", "UPDATE t SET a = 1 WHERE id = 2"],
    ["update", "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2"],
    ["delete", "DELETE FROM t WHERE id = 1"],
    ["delete", "TRUNCATE t"],
    ["delete", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"],
    ["delete", "EXPLAIN ANALYZE DELETE FROM t"],
    ["delete", "EXPLAIN ANALYSE DELETE FROM t"],
    ["delete", "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM t"],
    ["delete", "EXPLAIN (ANALYZE true) DELETE FROM t"],
    ["delete", "EXPLAIN (ANALYZE false, ANALYZE) DELETE FROM t"],
    ["delete", "PREPARE p AS DELETE FROM t"],
    ["delete", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE"],
    ["merge", "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)"],
    ["copy", "COPY t TO STDOUT"],
    ["copy", "COPY t FROM STDIN"],
    ["copy", "COPY (SELECT * FROM t) TO '/tmp/t.csv'"],
    ["ddl", "CREATE TABLE t (a int)"],
    ["ddl", "ALTER TABLE t ADD COLUMN b int"],
    ["ddl", "DROP TABLE t"],
    ["ddl", "DROP SCHEMA s CASCADE"],
    ["ddl", "COMMENT ON TABLE t IS 'orders'"],
    ["ddl", "ALTER TABLE t RENAME TO u"],
    ["ddl", "SELECT * INTO n FROM t"],
    ["ddl", "CREATE TABLE n AS SELECT * FROM t"],
    ["ddl", "EXPLAIN ANALYZE CREATE TABLE n AS SELECT 1"],
    ["ddl", "CREATE INDEX ON t (a)"],
    ["ddl", "REINDEX TABLE t"],
    ["ddl", "CLUSTER t USING t_pkey"],
    ["ddl", "REFRESH MATERIALIZED VIEW v"],
    ["ddl", "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1"],
    ["ddl", "ALTER SYSTEM SET work_mem = '1MB'"],
    ["ddl", "CREATE DATABASE d"],
    ["ddl", "DROP OWNED BY bob"],
    ["ddl", "ALTER TABLE t OWNER TO bob"],
    ["grant", "GRANT SELECT ON t TO bob"],
    ["grant", "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bob"],
    ["grant", "GRANT admin TO bob"],
    ["grant", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob"],
    ["grant", "CREATE ROLE r LOGIN"],
    ["grant", "ALTER USER u WITH SUPERUSER"],
    ["grant", "DROP ROLE r"],
    ["grant", "SET ROLE admin"],
    ["grant", "SET SESSION AUTHORIZATION bob"],
    ["transaction", "BEGIN"],
    ["transaction", "START TRANSACTION READ ONLY"],
    ["transaction", "COMMIT"],
    ["transaction", "ROLLBACK"],
    ["transaction", "SAVEPOINT a"],
    ["transaction", "ROLLBACK TO SAVEPOINT a"],
    ["transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
    ["transaction", "SET CONSTRAINTS ALL DEFERRED"],
    ["transaction", "COMMIT PREPARED 'x'"],
    ["other", "SET search_path = app"],
    ["other", "RESET ALL"],
    ["other", "VACUUM t"],
    ["other", "ANALYZE t"],
    ["other", "LOCK TABLE t IN EXCLUSIVE MODE"],
    ["other", "LISTEN jobs"],
    ["other", "NOTIFY jobs"],
    ["other", "CHECKPOINT"],
    ["other", "DISCARD ALL"],
    ["other", "PREPARE p AS SELECT 1"],
    ["other", "DEALLOCATE p"],
    ["code", "DO $$ BEGIN PERFORM 1; END $$"],
    ["code", "CALL archive_orders(30)"],
    ["code", "EXECUTE p(1)"],
    ["code", "EXPLAIN ANALYZE EXECUTE p"],
    ["code", "LOAD 'auto_explain'"],
    ["code", "COPY t TO PROGRAM 'gzip > /tmp/t.gz'"],
    // SQL handed over as text runs unseen: `pg_terminate_backend` in it is a string here.
    ["code", "SELECT query_to_xml('SELECT pg_terminate_backend(pid) FROM s', true, true, '')"],
    ["code", "SELECT pg_catalog.query_to_xmlschema('SELECT 1', true, true, '')"],
    ["code", "SELECT query_to_xml_and_xmlschema('SELECT 1', true, true, '')"],
    ["code", "SELECT * FROM ts_stat('SELECT to_tsvector(pg_notify(''jobs'', ''run'')::text)')"],
    ["code", "SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')"],
    ["select", "SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)"],
    // tablefunc runs the query it is given, and connectby pastes its table and column names
    // into the query it builds: `'t, (SELECT nextval(''s'')) x'` as the table runs nextval.
    [
      "code",
      "SELECT * FROM crosstab('SELECT r, c, v FROM secrets ORDER BY 1') AS ct(r text, a int)",
    ],
    [
      "code",
      "SELECT * FROM public.crosstab('SELECT r, c, v FROM t', 'SELECT c FROM t') AS ct(r text)",
    ],
    ["code", "SELECT * FROM crosstab('SELECT r, c, v FROM t', 2) AS ct(r text, a int, b int)"],
    ["code", "SELECT * FROM crosstab2('SELECT r, c, v FROM t')"],
    ["code", "SELECT * FROM CROSSTAB4('SELECT r, c, v FROM t')"],
    [
      "code",
      "SELECT * FROM connectby('tree', 'id', 'parent', '1', 0) AS t(id text, p text, l int)",
    ],
    // XML exports that read tables the SQL cannot name: a schema's, the database's, or one
    // given otherwise than by a literal name.
    ["code", "SELECT schema_to_xml('public', true, false, '')"],
    ["code", "SELECT pg_catalog.schema_to_xmlschema('public', true, false, '')"],
    ["code", "SELECT schema_to_xml_and_xmlschema('public', true, false, '')"],
    ["code", "SELECT database_to_xml(true, false, '')"],
    ["code", "SELECT database_to_xmlschema(true, false, '')"],
    ["code", "SELECT database_to_xml_and_xmlschema(true, false, '')"],
    ["code", "SELECT table_to_xml(16384, true, false, '')"],
    ["code", "SELECT table_to_xml('16384', true, false, '')"],
    ["code", "SELECT table_to_xml($1, true, false, '')"],
    ["code", "SELECT table_to_xml(('sec' || 'rets')::regclass, true, false, '')"],
    ["code", "SELECT table_to_xml('secrets'::text::regclass, true, false, '')"],
    ["code", "SELECT table_to_xmlschema(c.oid, true, false, '') FROM pg_class c"],
    ["code", "SELECT table_to_xml(nulls => true, tableforest => false, targetns => '', tbl => r)"],
    ["select", "SELECT table_to_xml('secrets'::regclass, true, false, '')"],
    ["select", "SELECT table_to_xml_and_xmlschema('secrets', true, false, '')"],
  ])("is %s for %s", (kind, sql) => {
    expect(analyzeSql(sql).kind).toBe(kind);
  });

  it("takes the most dangerous statement and lists every kind by danger", () => {
    const analysis = analyzeSql("SELECT 1; DROP TABLE t");
    expect(analysis.kind).toBe("ddl");
    expect(analysis.statements).toBe(2);
    expect(analysis.kinds).toEqual(["ddl", "select"]);
    expect(analysis.parts.map((part) => [part.kind, part.text])).toEqual([
      ["select", "SELECT 1"],
      ["ddl", "DROP TABLE t"],
    ]);
  });

  it("lists writes nested in CTEs next to the statement's own kind", () => {
    const analysis = analyzeSql(
      "WITH moved AS (INSERT INTO archive SELECT * FROM t RETURNING id) " +
        "DELETE FROM t WHERE id IN (SELECT id FROM moved)",
    );
    expect(analysis.kind).toBe("delete");
    expect(analysis.kinds).toEqual(["delete", "insert"]);
    expect(analyzeSql("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x").kinds).toEqual([
      "delete",
    ]);
    expect(analyzeSql("EXPLAIN ANALYZE UPDATE t SET a = 1").kinds).toEqual(["update"]);
    // ORDER BY … USING names the operator it sorts with.
    expect(analyzeSql("SELECT id FROM t ORDER BY id USING <<<").reaches.operators).toContain("<<<");
  });

  it("finds writes in nested CTEs and in subqueries", () => {
    const nested = analyzeSql(
      "WITH outer_q AS (WITH inner_q AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM inner_q) " +
        "SELECT * FROM outer_q",
    );
    expect(nested.kind).toBe("update");
    expect(nested.hasWhere).toBe(false);
    const subquery = analyzeSql(
      "SELECT * FROM (WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT * FROM d) s",
    );
    expect(subquery.kind).toBe("delete");
  });

  it("names the row changes of MERGE's actions and of an upsert", () => {
    expect(
      analyzeSql(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a " +
          "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)",
      ).kinds,
    ).toEqual(["update", "merge", "insert"]);
    expect(
      analyzeSql("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1").kinds,
    ).toEqual(["update", "insert"]);
    expect(analyzeSql("COPY t FROM STDIN").kinds).toEqual(["copy", "insert"]);
  });

  it("names the relations whose rows its own writes insert, update or delete", () => {
    const writes = (sql: string) => analyzeSql(sql).writes;
    expect(writes("INSERT INTO a SELECT * FROM b")).toEqual({ adds: ['"a"'], changes: [] });
    expect(writes("UPDATE s.a SET x = 1 FROM b WHERE a.id = b.id")).toEqual({
      adds: ['"s"."a"'],
      changes: ['"s"."a"'],
    });
    expect(writes("DELETE FROM a USING b WHERE a.id = b.id")).toEqual({
      adds: [],
      changes: ['"a"'],
    });
    expect(writes("TRUNCATE a, ONLY b")).toEqual({ adds: [], changes: ['"a"', '"b"'] });
    expect(writes("INSERT INTO a VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1")).toEqual({
      adds: ['"a"'],
      changes: ['"a"'],
    });
    expect(writes("MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE")).toEqual({
      adds: [],
      changes: ['"a"'],
    });
    expect(
      writes("MERGE INTO a USING b ON a.id = b.id WHEN NOT MATCHED THEN INSERT VALUES (1)"),
    ).toEqual({ adds: ['"a"'], changes: [] });
    expect(writes("COPY a FROM STDIN")).toEqual({ adds: ['"a"'], changes: [] });
    expect(writes("COPY a TO STDOUT")).toEqual({ adds: [], changes: [] });
    // Nested writes run; a plain EXPLAIN's does not.
    expect(
      writes("WITH d AS (DELETE FROM a RETURNING *) INSERT INTO c SELECT * FROM d, b"),
    ).toEqual({ adds: ['"c"'], changes: ['"a"'] });
    expect(writes("EXPLAIN ANALYZE DELETE FROM a")).toEqual({ adds: [], changes: ['"a"'] });
    expect(writes("EXPLAIN DELETE FROM a")).toEqual({ adds: [], changes: [] });
    expect(writes("SELECT * FROM a FOR UPDATE")).toEqual({ adds: [], changes: [] });
    // Over statements.
    expect(writes("INSERT INTO a VALUES (1); DELETE FROM b")).toEqual({
      adds: ['"a"'],
      changes: ['"b"'],
    });
  });

  it("names the relations it names only with ONLY, but never a MERGE's target", () => {
    const only = (sql: string) => analyzeSql(sql).only;
    expect(only("SELECT * FROM ONLY a, b")).toEqual(['"a"']);
    expect(only("DELETE FROM ONLY s.a USING ONLY b WHERE a.id = b.id")).toEqual(['"b"', '"s"."a"']);
    expect(only("UPDATE ONLY a SET x = 1")).toEqual(['"a"']);
    expect(only("TRUNCATE ONLY a, b")).toEqual(['"a"']);
    expect(only("SELECT * FROM ONLY a, a")).toEqual([]);
    expect(only("SELECT * FROM ONLY a WHERE 'a'::regclass IS NOT NULL")).toEqual([]);
    expect(only("INSERT INTO a SELECT * FROM ONLY a")).toEqual([]);
    expect(only("MERGE INTO ONLY a USING ONLY b ON a.id = b.id WHEN MATCHED THEN DELETE")).toEqual([
      '"b"',
    ]);
    // Over statements: only what none names without ONLY.
    expect(only("SELECT * FROM ONLY a; SELECT * FROM ONLY b; SELECT * FROM b")).toEqual(['"a"']);
  });

  it("says a MERGE whose ON holds for every row, and that updates or deletes matches unconditionally, has no WHERE", () => {
    const where = (sql: string) => analyzeSql(sql).hasWhere;
    expect(where("MERGE INTO t USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE")).toBe(false);
    expect(
      where("MERGE INTO t USING (SELECT 1) s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1"),
    ).toBe(false);
    expect(where("MERGE INTO t USING s ON 't'::boolean WHEN MATCHED THEN DELETE")).toBe(false);
    expect(
      where("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE"),
    ).toBe(false);
    expect(
      where(
        "WITH x AS (MERGE INTO t USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE RETURNING *) SELECT * FROM x",
      ),
    ).toBe(false);
    // A condition on the join, or on the action, bounds it.
    expect(where("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE")).toBe(true);
    expect(
      where("MERGE INTO t USING (SELECT 1) s ON true WHEN MATCHED AND t.a > 1 THEN DELETE"),
    ).toBe(true);
    expect(
      where(
        "MERGE INTO t USING (SELECT 1 AS id) s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)",
      ),
    ).toBe(true);
  });

  it("names the writes nested in a statement, which its own count leaves out", () => {
    const inner = (sql: string) => analyzeSql(sql).innerWrites;
    expect(
      inner("WITH g AS (DELETE FROM t WHERE id > 0 RETURNING id) SELECT count(*) FROM g"),
    ).toEqual(["delete"]);
    expect(inner("WITH g AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM g")).toEqual([
      "delete",
    ]);
    expect(inner("EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE id = 1")).toEqual(["update"]);
    expect(inner("DELETE FROM t WHERE id = 1")).toEqual([]);
    expect(inner("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1")).toEqual([]);
    expect(inner("EXPLAIN DELETE FROM t")).toEqual([]);
  });

  it("says when a COPY streams to or from the client, whatever the statement ranks as", () => {
    const client = (sql: string) => analyzeSql(sql).clientCopy;
    expect(client("COPY t TO STDOUT")).toBe(true);
    expect(client("COPY t FROM STDIN")).toBe(true);
    expect(client("COPY (DELETE FROM t WHERE id = 1 RETURNING *) TO STDOUT")).toBe(true);
    expect(client("COPY (UPDATE t SET a = 1 WHERE id = 1 RETURNING *) TO STDOUT")).toBe(true);
    expect(
      client(
        "SELECT 1; COPY (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *) TO STDOUT",
      ),
    ).toBe(true);
    expect(client("COPY t TO '/tmp/t.csv'")).toBe(false);
    expect(client("COPY t TO PROGRAM 'gzip > /tmp/t.gz'")).toBe(false);
    expect(client("SELECT 1")).toBe(false);
  });

  it("orders kinds from most to least dangerous", () => {
    expect(sqlKindDanger).toEqual([
      "code",
      "ddl",
      "grant",
      "delete",
      "update",
      "merge",
      "copy",
      "other",
      "insert",
      "transaction",
      "select",
    ]);
    expect(analyzeSql("BEGIN; SELECT 1; INSERT INTO t VALUES (1); COMMIT").kinds).toEqual([
      "insert",
      "transaction",
      "select",
    ]);
  });
});

describe("classification comes from the text alone", () => {
  const facts = (sql: string) => {
    const { parts: _parts, params: _params, ...rest } = analyzeSql(sql);
    return rest;
  };

  it("knows the highest parameter the SQL refers to, wherever it sits", () => {
    expect(analyzeSql("SELECT 1").params).toBe(0);
    expect(analyzeSql("UPDATE t SET note = $1 WHERE id = $2").params).toBe(2);
    expect(analyzeSql("WITH x AS (SELECT $3::int AS n) SELECT n FROM x WHERE n > $1").params).toBe(
      3,
    );
    // In a literal it is text, not a parameter.
    expect(analyzeSql("SELECT '$4'").params).toBe(0);
  });

  it("is the same for a parameter as for any value it could carry", () => {
    const withParams = facts("UPDATE t SET note = $1 WHERE id = $2");
    expect(withParams).toMatchObject({ kind: "update", statements: 1, tables: ["t"] });
    expect(facts("UPDATE t SET note = 'x''; DROP TABLE t; --' WHERE id = 1")).toEqual(withParams);
    expect(facts("UPDATE t SET note = $$ DROP TABLE t; $$ WHERE id = 2")).toEqual(withParams);
  });

  it("reads SQL inside literals and comments as data", () => {
    expect(facts("SELECT 'DROP TABLE x; DELETE FROM y'")).toMatchObject({
      kind: "select",
      statements: 1,
      tables: [],
      readOnly: true,
    });
    expect(facts("SELECT 1 -- ; DROP TABLE x")).toMatchObject({ kind: "select", statements: 1 });
    expect(facts("/* ; DROP TABLE x; */ SELECT 1")).toMatchObject({
      kind: "select",
      statements: 1,
    });
    expect(facts('SELECT 1 AS "; DROP TABLE x"')).toMatchObject({ kind: "select", statements: 1 });
  });
});

describe("hasWhere", () => {
  it.each([
    ["UPDATE t SET a = 1 WHERE id = 2", true],
    ["UPDATE t SET a = 1", false],
    ["DELETE FROM t WHERE id = 2", true],
    ["DELETE FROM t", false],
    ["DELETE FROM t WHERE id = 1; DELETE FROM u", false],
    ["TRUNCATE t", false],
    ["UPDATE t SET a = 1 WHERE CURRENT OF c", true],
    ["WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false],
    ["EXPLAIN ANALYZE DELETE FROM t", false],
    ["EXPLAIN DELETE FROM t", true],
    ["SELECT * FROM t", true],
    ["INSERT INTO t VALUES (1)", true],
  ])("%s → %s", (sql, hasWhere) => {
    expect(analyzeSql(sql).hasWhere).toBe(hasWhere);
  });

  it("is kept per statement", () => {
    expect(
      analyzeSql("DELETE FROM t WHERE id = 1; DELETE FROM u").parts.map((part) => part.hasWhere),
    ).toEqual([true, false]);
  });
});

describe("tables", () => {
  it.each([
    ["SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN public.c USING (id)", ["a", "b", "public.c"]],
    [
      "SELECT * FROM a WHERE id IN (SELECT id FROM b) AND EXISTS (SELECT 1 FROM c)",
      ["a", "b", "c"],
    ],
    ["SELECT * FROM a, LATERAL (SELECT * FROM b) s", ["a", "b"]],
    ["SELECT (SELECT max(x) FROM b) FROM a", ["a", "b"]],
    ['SELECT * FROM "Orders" JOIN Sales."Q1" ON true', ["Orders", "sales.Q1"]],
    ["SELECT * FROM ORDERS", ["orders"]],
    ["SELECT * FROM db.s.t", ["db.s.t"]],
    ["SELECT * FROM t UNION SELECT * FROM u", ["t", "u"]],
    ["WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", ["orders"]],
    ["WITH orders AS (SELECT 1) SELECT * FROM public.orders", ["public.orders"]],
    ["WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b", ["b"]],
    ["WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", []],
    ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", []],
    ["WITH a AS (SELECT 1) INSERT INTO b SELECT * FROM a", ["b"]],
    ["WITH a AS (SELECT 1) INSERT INTO a SELECT * FROM a", ["a"]],
    ["WITH a AS (SELECT 1) DELETE FROM a", ["a"]],
    ["(WITH x AS (SELECT 1) SELECT * FROM x) UNION SELECT * FROM x", ["x"]],
    ["SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x", ["x"]],
    ["WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM x) s WHERE EXISTS (SELECT FROM x)", []],
    ["INSERT INTO t SELECT * FROM s", ["s", "t"]],
    ["UPDATE t SET a = s.a FROM s WHERE t.id = s.id", ["s", "t"]],
    ["DELETE FROM t USING u WHERE t.id = u.id", ["t", "u"]],
    [
      "WITH src AS (SELECT 1 AS id) MERGE INTO t USING src ON t.id = src.id WHEN MATCHED THEN DELETE",
      ["t"],
    ],
    ["MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", ["s", "t"]],
    ["COPY s.t TO STDOUT", ["s.t"]],
    ["COPY (SELECT * FROM s) TO STDOUT", ["s"]],
    ["DROP TABLE a, s.b", ["a", "s.b"]],
    ["DROP VIEW v", ["v"]],
    ["DROP TRIGGER tr ON s.t", ["s.t"]],
    ["DROP FUNCTION f(int)", []],
    ["ALTER TABLE t ADD COLUMN c int REFERENCES u", ["t", "u"]],
    ["ALTER TABLE t RENAME TO u", ["t", "u"]],
    ["ALTER TABLE s.t SET SCHEMA s2", ["s.t", "s2.t"]],
    ["ALTER TABLE t RENAME COLUMN a TO b", ["t"]],
    ["CREATE INDEX i ON t (a)", ["t"]],
    ["CREATE TABLE n AS SELECT * FROM t", ["n", "t"]],
    ["SELECT * INTO n FROM t", ["n", "t"]],
    ["CREATE VIEW v AS SELECT * FROM t", ["t", "v"]],
    ["COMMENT ON TABLE s.t IS 'x'", ["s.t"]],
    ["COMMENT ON COLUMN s.t.c IS 'x'", ["s.t"]],
    ["GRANT SELECT ON t, s.u TO bob", ["s.u", "t"]],
    ["GRANT SELECT ON ALL TABLES IN SCHEMA s TO bob", []],
    ["TRUNCATE a, ONLY b", ["a", "b"]],
    ["LOCK TABLE t", ["t"]],
    ["VACUUM t", ["t"]],
    ["EXPLAIN SELECT * FROM t", ["t"]],
    ["SHOW work_mem", []],
    // A table named by a string, as PostgreSQL reads the name (regclass's input).
    ["SELECT table_to_xml('secrets'::regclass, true, false, '')", ["secrets"]],
    ["SELECT table_to_xml(' Secrets ', true, false, '')", ["secrets"]],
    [
      `SELECT table_to_xml(targetns => '', tbl => 'Vault . "Secrets"', nulls => true, tableforest => false)`,
      ["vault.Secrets"],
    ],
    ["SELECT pg_relation_size(to_regclass('public.ORDERS'))", ["public.orders"]],
    ["SELECT pg_catalog.to_regclass('db.s.t')", ["db.s.t"]],
    [`SELECT CAST('"My ""Table"""' AS pg_catalog.regclass)::oid`, ['My "Table"']],
    ["SELECT regclass 't', regclass('u'), nextval('s'::regclass)", ["s", "t", "u"]],
    [`SELECT '${"x".repeat(70)}'::regclass`, ["x".repeat(63)]],
    [`SELECT '16384'::regclass, 'a.b.c.d'::regclass, '"open'::regclass, '""'::regclass`, []],
    ["SELECT 'secrets'::text, 'secrets'", []],
  ])("%s → %j", (sql, tables) => {
    expect(analyzeSql(sql).tables).toEqual(tables);
  });

  it("joins and deduplicates over statements", () => {
    expect(analyzeSql("SELECT * FROM b; SELECT * FROM a, b").tables).toEqual(["a", "b"]);
  });
});

describe("functions", () => {
  it("lists called functions, schema-qualified when written so", () => {
    expect(
      analyzeSql("SELECT pg_terminate_backend(pid), pg_catalog.now() FROM pg_stat_activity"),
    ).toMatchObject({
      functions: ["pg_catalog.now", "pg_terminate_backend"],
      tables: ["pg_stat_activity"],
      // Ending other sessions is no read, and READ ONLY would not stop it.
      kind: "other",
      readOnly: false,
    });
    expect(analyzeSql("CALL s.archive(30)").functions).toEqual(["s.archive"]);
  });

  it("lists a built-in called in attribute notation, which is a call like any other", () => {
    expect(
      analyzeSql("SELECT (pid).pg_terminate_backend, a.status FROM pg_stat_activity a"),
    ).toMatchObject({ functions: ["pg_terminate_backend"], kind: "other", readOnly: false });
    expect(analyzeSql("SELECT ('s'::regclass).nextval").functions).toEqual(["nextval"]);
    expect(analyzeSql("SELECT ('SELECT to_tsvector(''a'')').ts_stat").kind).toBe("code");
    // What names no such built-in is taken for a column, as it most likely is.
    expect(analyzeSql("SELECT o.status, (o.total).amount FROM orders o").functions).toEqual([]);
  });
});

describe("readOnly", () => {
  it.each([
    "SELECT 1",
    "VALUES (1)",
    "TABLE t",
    "SHOW work_mem",
    "WITH x AS (SELECT * FROM t) SELECT * FROM x",
    "EXPLAIN DELETE FROM t",
    "EXPLAIN ANALYZE SELECT * FROM t",
    "COPY t TO STDOUT",
    "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)",
    "FETCH 10 FROM c",
    "SELECT 1; SELECT 2",
  ])("is true for %s", (sql) => {
    expect(analyzeSql(sql).readOnly).toBe(true);
  });

  it.each([
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)",
    "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE",
    "SELECT * INTO n FROM t",
    "INSERT INTO t VALUES (1)",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "EXPLAIN ANALYZE DELETE FROM t",
    "COPY t TO '/tmp/t.csv'",
    "COPY t FROM STDIN",
    "SET search_path = app",
    "BEGIN",
    "VACUUM",
    "LOCK TABLE t",
    "DO $$ BEGIN END $$",
    "SELECT 1; INSERT INTO t VALUES (1)",
  ])("is false for %s", (sql) => {
    expect(analyzeSql(sql).readOnly).toBe(false);
  });

  // READ ONLY does not stop these: a large object written, a notification sent.
  it.each([
    "SELECT lo_put(16400, 0, 'x')",
    "SELECT lo_unlink(16400)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT pg_catalog.pg_notify('jobs', 'run')",
    "SELECT pg_logical_emit_message(true, 'p', 'x')",
    "SELECT set_config('role', 'admin', false)",
    "SELECT id FROM t WHERE pg_advisory_lock(id) IS NOT NULL",
    // Qualified by any schema or catalog, a function is still itself: an extension's live
    // wherever it was installed.
    "SELECT public.dblink_exec('host=x', 'DELETE FROM t')",
    "SELECT * FROM ext.dblink('host=x', 'SELECT 1') AS t(a int)",
    "SELECT db.pg_catalog.pg_terminate_backend($1)",
    "SELECT \"pg_catalog\".\"pg_notify\"('jobs', 'run')",
    "SELECT db.public.lo_unlink(16400)",
    // The server's own state: statistics, backups, replication, recovery, indexes, the log.
    "SELECT pg_stat_reset()",
    "SELECT pg_stat_reset_shared('bgwriter')",
    "SELECT pg_backup_start('nightly')",
    "SELECT pg_promote()",
    "SELECT pg_wal_replay_pause()",
    "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
    "SELECT pg_drop_replication_slot('s')",
    "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
    "SELECT pg_replication_origin_create('o')",
    "SELECT pg_log_backend_memory_contexts(pg_backend_pid())",
    "SELECT pg_import_system_collations('public')",
    "SELECT brin_summarize_new_values('t_brin')",
    "SELECT gin_clean_pending_list('t_gin')",
    // Attribute notation calls a function too, on a value of any type: (x).f is f(x).
    "SELECT (pid).pg_terminate_backend FROM pg_stat_activity",
    "SELECT a.pg_advisory_lock FROM (SELECT 7::bigint) a",
    "SELECT ((16400)::oid).lo_unlink",
  ])("is false, and the kind is not select, for %s", (sql) => {
    const analysis = analyzeSql(sql);
    expect(analysis.readOnly).toBe(false);
    expect(analysis.kind).toBe("other");
  });

  it.each([
    "SELECT lo_get(16400)",
    "SELECT current_setting('work_mem')",
    "SELECT upper('x')",
    "SELECT * FROM pg_logical_slot_peek_changes('s', NULL, NULL)",
    "SELECT pg_stat_get_numscans('t'::regclass)",
  ])("is still a read for %s", (sql) => {
    expect(analyzeSql(sql)).toMatchObject({ readOnly: true, kind: "select" });
  });
});

describe("rollbackable", () => {
  it.each([
    "VACUUM",
    "VACUUM FULL t",
    "CREATE INDEX CONCURRENTLY i ON t (a)",
    "DROP INDEX CONCURRENTLY i",
    "REINDEX TABLE CONCURRENTLY t",
    "REINDEX DATABASE d",
    "CLUSTER",
    "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
    "CREATE DATABASE d",
    "DROP DATABASE d",
    "ALTER DATABASE d SET TABLESPACE fast",
    "CREATE TABLESPACE fast LOCATION '/data'",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT a",
    "PREPARE TRANSACTION 'x'",
    "DISCARD ALL",
    "CHECKPOINT",
    "PREPARE p AS SELECT 1",
    "COPY t TO '/tmp/t.csv'",
    "COPY t FROM PROGRAM 'cat /etc/passwd'",
    "DO $$ BEGIN END $$",
    "CALL p()",
    "EXPLAIN ANALYZE EXECUTE p",
    "SELECT 1; VACUUM t",
  ])("is false for %s", (sql) => {
    expect(analyzeSql(sql).rollbackable).toBe(false);
  });

  it.each([
    "SELECT 1",
    "UPDATE t SET a = 1",
    "TRUNCATE t",
    "CREATE TABLE t (a int)",
    "CREATE INDEX i ON t (a)",
    "DROP TABLE t",
    "ANALYZE t",
    "CLUSTER t",
    "REINDEX TABLE t",
    "GRANT SELECT ON t TO bob",
    "SET search_path = app",
    "SET TRANSACTION READ ONLY",
    "LISTEN jobs",
    "NOTIFY jobs",
    "COPY t FROM STDIN",
    "EXPLAIN VERBOSE DELETE FROM t",
  ])("is true for %s", (sql) => {
    expect(analyzeSql(sql).rollbackable).toBe(true);
  });
});

describe("statement text", () => {
  it("slices by characters even where the input has multi-byte ones", () => {
    expect(analyzeSql("SELECT 'é😀'; SELECT 'ü' AS x ;").parts.map((part) => part.text)).toEqual([
      "SELECT 'é😀'",
      "SELECT 'ü' AS x",
    ]);
  });

  it("starts at the first token and keeps comments before the semicolon", () => {
    expect(
      analyzeSql("SELECT 1 /* one */; -- now clean up\nDELETE FROM t -- all of it\n").parts.map(
        (part) => part.text,
      ),
    ).toEqual(["SELECT 1 /* one */", "DELETE FROM t -- all of it"]);
  });
});

describe("syntax errors", () => {
  it.each([
    ["SELECT * FRM t", 10, 1, 10],
    ["SELECT * FROM", 14, 1, 14],
    ["SELECT 'abc", 8, 1, 8],
    ["SELECT 1;\nSELECT a\n  FRM t", 26, 3, 7],
    // 'é' is two bytes and '😀' four bytes (two UTF-16 units), yet one character each.
    ["SELECT 'é😀', a\n  FRM t", 22, 2, 7],
    ["SELECT '😀' FRM t", 16, 1, 16],
  ])("%j fails at position %i (line %i, column %i)", (sql, position, line, column) => {
    const error = syntaxErrorOf(sql);
    expect(error.message).toMatch(/syntax error|unterminated/);
    expect({ position: error.position, line: error.line, column: error.column }).toEqual({
      position,
      line,
      column,
    });
  });

  it.each(["", "   \n\t", "-- only a comment", "/* nothing */ ;"])(
    "reports no statement for %j",
    (sql) => {
      const error = syntaxErrorOf(sql);
      expect(error.message).toBe("the SQL contains no statement");
      expect([error.position, error.line, error.column]).toEqual([1, 1, 1]);
    },
  );

  it("refuses a NUL character, which would hide the rest of the input from the parser", () => {
    const error = syntaxErrorOf("SELECT 1\0; DROP TABLE t");
    expect(error.message).toMatch(/NUL/);
    expect(error.position).toBe(9);
  });

  it("refuses an unpaired surrogate", () => {
    expect(syntaxErrorOf("SELECT 'é\uD800'").position).toBe(10);
    expect(syntaxErrorOf("SELECT '\uDC00'").position).toBe(9);
  });
});

describe("loading", () => {
  it("is idempotent", async () => {
    await Promise.all([loadSqlParser(), loadSqlParser()]);
    expect(analyzeSql("SELECT 1").kind).toBe("select");
  });

  it("is required before analysis", async () => {
    vi.resetModules();
    const fresh = await import("./sql-analysis.js");
    expect(() => fresh.analyzeSql("SELECT 1")).toThrow(/await loadSqlParser\(\)/);
  });
});

describe("deep input", () => {
  it("analyzes subqueries nested 2000 deep without exhausting the call stack", () => {
    const depth = 2000;
    const sql = `SELECT ${"(SELECT ".repeat(depth)}x FROM deep${")".repeat(depth)}`;
    expect(analyzeSql(sql).tables).toEqual(["deep"]);
  });
});
