/** Tampering with a stopped gateway's audit trail straight in SQLite, as its holder could. */
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";

/** A stored audit event, as its row reads. */
export type AuditRow = {
  seq: number;
  ts: string;
  type: string;
  request_id: string | null;
  actor_type: string;
  actor_id: string;
  data: string;
  prev_hash: string;
  hash: string;
};

/**
 * A copy of a gateway's directory (`original`, holding airlock.db and airlock.yaml), changed
 * by `edit`; its path goes on `copies`, for removal. Returns the copy's config path.
 */
export function tamperedCopy(
  original: string,
  copies: string[],
  edit: (db: Database.Database) => void,
): string {
  const dir = mkdtempSync(join(tmpdir(), "airlock-tamper-"));
  copies.push(dir);
  cpSync(original, dir, { recursive: true });
  const db = new Database(join(dir, "airlock.db"));
  edit(db);
  db.close();
  return join(dir, "airlock.yaml");
}
