import { z } from "zod";
import { connectionMaskSchema, duration, resultByteCap } from "../../config/config-types.js";

export const postgresConnectionSchema = z.strictObject({
  type: z.literal("postgres"),
  /** Airlock's own credentials for this database; agents never see them. */
  url: z
    .string()
    .max(4096)
    .refine(
      (url) => /^postgres(ql)?:\/\/[^\s]+$/.test(url),
      "must be a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL",
    ),
  /** Applies to every statement Airlock runs here, previews included. */
  statementTimeout: duration({ min: 100, max: 86_400_000 }).default(30_000),
  /**
   * How long one action's statements may take together. Unset: two minutes, or the
   * statementTimeout when that is longer, so that many statements cannot hold a connection
   * for their timeouts added up.
   */
  executionTimeout: duration({ min: 100, max: 86_400_000 }).optional(),
  /** How long a preview's dry run may take, and wait for locks, before it is skipped. */
  previewTimeout: duration({ min: 100, max: 600_000 }).default(5_000),
  /** Rows returned to the agent per statement; the rest are cut, and the result says so. */
  maxRows: z.number().int().min(1).max(1_000_000).default(1000),
  /** Bytes of rows (as JSON) returned to the agent in all. */
  maxResultBytes: resultByteCap,
  /** Whether reviewers' previews of writes run them in a transaction that is rolled back. */
  dryRun: z.boolean().default(true),
  /**
   * How many relations beyond those the SQL names (through views, rules, foreign keys,
   * partitions and inheritance) are listed in sql.tables; a statement that reaches more counts as code, since
   * a rule on a partition left off the list would be bypassed through its parent. Unbounded,
   * every request would store two names per partition. 10,000 is past what PostgreSQL serves
   * untuned: its default lock table holds about 6,400 relation locks in all, and a statement
   * over unpruned partitions locks each.
   */
  maxReachedTables: z.number().int().min(1).max(1_000_000).default(10_000),
  poolSize: z.number().int().min(1).max(100).default(4),
  mask: connectionMaskSchema.optional(),
});

export type PostgresConnectionConfig = z.output<typeof postgresConnectionSchema>;
