/**
 * What a failure of SQLite's means to callers. `store_unavailable`: the file cannot be used
 * for now (locked, a full, failing or read-only disk, out of memory), and trying again later
 * may succeed. `internal`: SQLite refused the work itself (a constraint, a bug's SQL, a
 * damaged file), and trying again fails alike. An `internal` error's message holds nothing
 * SQLite said: that stays with its cause, for the log.
 */
import Database from "better-sqlite3";
import { AirlockError, errorMessage } from "../../errors.js";

/** Primary result codes of failures that pass (extended codes, SQLITE_IOERR_WRITE, share them). */
const TRANSIENT = new Set([
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_IOERR",
  "SQLITE_FULL",
  "SQLITE_NOMEM",
  "SQLITE_READONLY",
  "SQLITE_CANTOPEN",
  "SQLITE_PERM",
  "SQLITE_PROTOCOL",
  "SQLITE_INTERRUPT",
  "SQLITE_ABORT",
]);

/** Primary result codes that say the file itself is damaged. */
const DAMAGED = new Set(["SQLITE_CORRUPT", "SQLITE_NOTADB"]);

/** Whether SQLite found the file damaged (the failure itself, or its cause once wrapped). */
export function damaged(error: unknown): boolean {
  const said = error instanceof AirlockError ? error.cause : error;
  return said instanceof Database.SqliteError && DAMAGED.has(primaryCode(said.code));
}

function primaryCode(code: string): string {
  return code.split("_").slice(0, 2).join("_");
}

/** A driver failure as the error callers get. Anything else but SQLite's own is a bug's. */
export function storeFailure(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  if (error instanceof Database.SqliteError && TRANSIENT.has(primaryCode(error.code))) {
    return unusable(error);
  }
  return new AirlockError(
    "internal",
    "the store (SQLite) refused what was asked, and would again; the log has the details",
    { cause: error },
  );
}

/**
 * The store cannot be used, with what SQLite said; the file's path when opening (for the
 * operator starting the gateway or a command, who is told whatever the failure).
 */
export function unusable(error: unknown, path?: string): AirlockError {
  if (error instanceof AirlockError) return error;
  const where = path === undefined ? "the store" : `the store (SQLite at ${path})`;
  return new AirlockError("store_unavailable", `${where} cannot be used: ${errorMessage(error)}`, {
    cause: error,
  });
}
