/**
 * One gateway per SQLite file: two would each believe they own the executions in flight.
 * A lock file holds the serving process's pid; a lock left by a dead process is taken over.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { AirlockError } from "../../errors.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function lockDatabase(dbPath: string): () => void {
  const lockPath = `${dbPath}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockPath, String(process.pid), { flag: "wx" });
      return () => rmSync(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number(readFileSync(lockPath, "utf8").trim());
      if (holder === process.pid || !Number.isInteger(holder) || holder <= 0 || !alive(holder)) {
        rmSync(lockPath, { force: true });
        continue;
      }
      throw new AirlockError(
        "store_unavailable",
        `another gateway (pid ${holder}) is serving ${dbPath}; SQLite supports one gateway per file. Stop it, or use PostgreSQL to run several replicas`,
      );
    }
  }
  throw new AirlockError("store_unavailable", `could not take the lock ${lockPath}`);
}
