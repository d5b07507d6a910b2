/**
 * One gateway per SQLite file: two would each believe they own the executions in flight.
 * The serving gateway holds an exclusive SQLite lock on a side file for as long as it runs;
 * the operating system releases it when the process ends, however it ends.
 */
import { rmSync } from "node:fs";
import Database from "better-sqlite3";
import { AirlockError } from "../../errors.js";

export function lockDatabase(dbPath: string): () => void {
  const lockPath = `${dbPath}.lock`;
  for (let attempt = 0; ; attempt++) {
    let lock: Database.Database | undefined;
    try {
      lock = new Database(lockPath);
      lock.pragma("busy_timeout = 0");
      lock.pragma("locking_mode = EXCLUSIVE");
      lock.exec("BEGIN EXCLUSIVE");
      const held = lock;
      return () => held.close();
    } catch (error) {
      lock?.close();
      const code = (error as { code?: string }).code;
      if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED") {
        throw new AirlockError(
          "store_unavailable",
          `another gateway is serving ${dbPath} (it holds ${lockPath}); SQLite supports one gateway per file. Stop it, or use PostgreSQL to run several replicas`,
        );
      }
      // A lock file from an older version, or garbage: it guards nothing, so start afresh.
      if (code === "SQLITE_NOTADB" && attempt === 0) {
        rmSync(lockPath, { force: true });
        continue;
      }
      throw error;
    }
  }
}
