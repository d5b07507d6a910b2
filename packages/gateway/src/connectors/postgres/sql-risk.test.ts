import { beforeAll, describe, expect, it } from "vitest";
import { analyzeSql, loadSqlParser } from "./sql-analysis.js";
import { sqlRisk } from "./sql-risk.js";

beforeAll(() => loadSqlParser());

const level = (sql: string, rows?: number) => sqlRisk(analyzeSql(sql), rows).level;

describe("sqlRisk", () => {
  it("calls schema changes, grants and writes without WHERE critical, whatever the size", () => {
    expect(level("DROP TABLE orders", 0)).toBe("critical");
    expect(level("SELECT 1; ALTER TABLE orders ADD COLUMN x int", 1)).toBe("critical");
    expect(level("GRANT SELECT ON orders TO intern", 0)).toBe("critical");
    expect(level("DELETE FROM orders", 1)).toBe("critical");
    expect(level("TRUNCATE orders", 1)).toBe("critical");
    expect(level("WITH x AS (UPDATE orders SET a = 1 RETURNING id) SELECT * FROM x", 1)).toBe(
      "critical",
    );
  });

  it("grades writes with WHERE by their estimated size", () => {
    expect(level("UPDATE orders SET a = 1 WHERE id = 1", 1)).toBe("medium");
    expect(level("UPDATE orders SET a = 1 WHERE id > 1", 50_000)).toBe("high");
    expect(level("DELETE FROM orders WHERE id = 1", undefined)).toBe("high");
  });

  it("grades reads by size: small low, bulk exports high, unknown medium", () => {
    expect(level("SELECT * FROM orders WHERE id = 1", 1)).toBe("low");
    expect(level("SELECT * FROM orders", 250_000)).toBe("high");
    expect(level("SELECT * FROM orders", undefined)).toBe("medium");
    expect(sqlRisk(analyzeSql("SELECT * FROM orders"), 250_000).reason).toMatch(
      /bulk read \(about 250,000 rows\)/,
    );
  });

  it("rates high what reaches a foreign table, below what is critical anyway", () => {
    const reached = { foreignTables: ["public.remote"], triggerFunctions: [] };
    const risk = sqlRisk(analyzeSql("SELECT * FROM remote WHERE id = 1"), 1, reached);
    expect(risk).toEqual({
      level: "high",
      reason: "acts on another system through the foreign table public.remote",
    });
    expect(sqlRisk(analyzeSql("DELETE FROM remote"), 1, reached).level).toBe("critical");
    expect(sqlRisk(analyzeSql("SELECT * FROM remote WHERE id = 1"), 1).level).toBe("low");
  });

  it("rates high a write whose triggers run user code, below what is critical anyway", () => {
    const reached = { foreignTables: [], triggerFunctions: ["audit.log_change"] };
    const write = analyzeSql("UPDATE orders SET a = 1 WHERE id = 1");
    expect(sqlRisk(write, 1, reached)).toEqual({
      level: "high",
      reason: "fires triggers that run code the SQL does not show: audit.log_change",
    });
    expect(sqlRisk(write, 1).level).toBe("medium");
    expect(sqlRisk(analyzeSql("TRUNCATE orders"), 1, reached).level).toBe("critical");
  });

  it("treats COPY and statements it cannot classify further as high", () => {
    expect(level("COPY orders TO STDOUT", 10)).toBe("high");
    expect(level("VACUUM orders", undefined)).toBe("high");
  });

  it("calls code it cannot see into critical, and reads with side effects high", () => {
    expect(level("DO $$ BEGIN PERFORM 1; END $$", undefined)).toBe("critical");
    expect(level("CALL archive_orders()", undefined)).toBe("critical");
    expect(level("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", 3)).toBe("high");
    expect(level("SELECT set_config('role', 'admin', false)", 1)).toBe("high");
    expect(level("SELECT lower(email) FROM orders WHERE id = 1", 1)).toBe("low");
    // However the function is qualified: by its schema, or its catalog too.
    expect(level("SELECT db.pg_catalog.pg_read_file('/etc/passwd')", 1)).toBe("high");
    expect(level("SELECT * FROM public.dblink('host=x', 'SELECT 1') AS t(a int)", 1)).toBe("high");
    expect(level("SELECT ext.txid_current()", 1)).toBe("high");
  });
});
