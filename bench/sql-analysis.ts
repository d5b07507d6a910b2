/**
 * What classifying a statement costs: PostgreSQL's parser alone (the baseline) and Airlock's
 * whole analysis (parse, then kinds, tables and WHERE checks), for a short and a long query.
 */
import { analyzeSql, loadSqlParser } from "@airlock/gateway";
import { parseSync } from "libpg-query";

const short = "SELECT id, email FROM customers WHERE id = $1";

const long = `WITH recent AS (
  SELECT o.id, o.customer_id, o.total, o.created_at
  FROM sales.orders o
  JOIN sales.order_items i ON i.order_id = o.id
  WHERE o.created_at > now() - interval '30 days' AND i.sku IN (SELECT sku FROM catalog.products WHERE discontinued)
), ranked AS (
  SELECT r.*, row_number() OVER (PARTITION BY r.customer_id ORDER BY r.total DESC) AS n FROM recent r
)
SELECT c.id, c.email, c.phone, c.country, sum(r.total) AS spent, count(*) AS orders,
  max(r.created_at) AS last_order, array_agg(DISTINCT p.category) AS categories
FROM crm.customers c
JOIN ranked r ON r.customer_id = c.id AND r.n <= 10
LEFT JOIN catalog.products p ON p.sku = ANY (SELECT sku FROM sales.order_items WHERE order_id = r.id)
WHERE c.country IN ('DE', 'FR', 'NL', 'BE', 'AT') AND c.status <> 'closed'
  AND EXISTS (SELECT 1 FROM crm.consents k WHERE k.customer_id = c.id AND k.kind = 'marketing')
GROUP BY c.id, c.email, c.phone, c.country
HAVING sum(r.total) > 1000
ORDER BY spent DESC
LIMIT 500`;

function perCall(fn: () => unknown, iterations: number): number {
  for (let i = 0; i < Math.min(1000, iterations); i++) fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - start) / 1000 / iterations;
}

export async function benchSqlAnalysis(write: (line: string) => void): Promise<void> {
  await loadSqlParser();
  write(`SQL statement analysis (per statement, ${short.length} and ${long.length} characters)\n`);
  for (const [name, sql, n] of [
    ["short", short, 20_000],
    ["long", long, 2_000],
  ] as const) {
    const parse = perCall(() => parseSync(sql), n);
    const analyse = perCall(() => analyzeSql(sql), n);
    write(
      `  ${`${name} query`.padEnd(12)} parser alone ${parse.toFixed(1).padStart(7)} µs   Airlock's analysis ${analyse.toFixed(1).padStart(7)} µs   ratio ${(analyse / parse).toFixed(2)}x\n`,
    );
  }
}
