import { realpathSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { AirlockError } from "../errors.js";
import { openPostgresStore } from "./postgres/postgres-store.js";
import { lockDatabase } from "./sqlite/sqlite-lock.js";
import { openSqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./store.js";

export interface OpenOptions {
  /**
   * The gateway itself, not a CLI command: it must be the only one serving this store, and
   * it creates a SQLite file that is not there yet. A command refuses a missing one.
   */
  serving?: boolean;
  /**
   * A command that writes (token create) may make the SQLite file too, so tokens can be
   * made before the first start; commands that only read refuse a missing one, so a
   * mistyped path is not reported as an empty, intact audit trail.
   */
  create?: boolean;
  /**
   * False for a command that only reads: it opens the store as it is, and refuses one without
   * Airlock's tables or at an older schema version rather than create or migrate them (a
   * mistyped URL would otherwise get tables, and be reported on as an empty, intact store).
   */
  migrate?: boolean;
  /**
   * This process's clock (default Date.now): the store's time where the process owns the
   * store (SQLite). A shared one (PostgreSQL) keeps the database's instead.
   */
  clock?: () => number;
  /**
   * Hears of failures no caller waits on (PostgreSQL: a dropped idle connection, the change
   * feed lost): the gateway logs them, or an outage's first sign would be its callers'.
   */
  onError?: (error: unknown) => void;
}

/** Opens the store a `storage:` URL names; relative SQLite paths resolve against `baseDir`. */
export async function openStore(
  url: string,
  baseDir: string,
  options: OpenOptions = {},
): Promise<Store> {
  if (url.startsWith("sqlite:")) {
    const raw = url.slice("sqlite:".length);
    const path = raw === ":memory:" ? raw : realPath(isAbsolute(raw) ? raw : resolve(baseDir, raw));
    const store = openSqliteStore(path, {
      backgroundCheckpoints: options.serving === true,
      mustExist: options.serving !== true && options.create !== true,
      migrate: options.migrate !== false,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    if (!options.serving || path === ":memory:") return store;
    let unlock: () => void;
    try {
      unlock = lockDatabase(path);
    } catch (error) {
      await store.close();
      throw error;
    }
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      unlock();
    };
    return store;
  }
  // Any number of gateways may share one PostgreSQL database: no lock file here.
  if (/^postgres(ql)?:\/\//.test(url)) {
    return openPostgresStore(url, {
      migrate: options.migrate !== false,
      ...(options.onError ? { onError: options.onError } : {}),
    });
  }
  throw new AirlockError("store_unavailable", `unsupported storage URL ${url}`);
}

/**
 * The file a path names, through symlinks: SQLite names the WAL after the file a link points
 * to, and the lock that keeps a second gateway off must be one per file, not one per name.
 */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path; // not there yet: made by this name
  }
}
