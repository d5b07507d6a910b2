/**
 * Whether a store holds the tables this version needs. Commands that only read open it as it
 * is: they must neither create tables where a mistyped path or URL points, and then report an
 * empty store as intact, nor migrate a database that older gateways still use. Nothing opens
 * a store a newer version has migrated: this one does not know what its tables now mean.
 */
import { AirlockError } from "../errors.js";

/**
 * The refusal for a store that a newer Airlock migrated (`applied` holds a version past the
 * last of `known`); none otherwise. Its tables may have changed in ways this version would
 * misread, or write past: the newer version's constraints, columns it must fill, data moved.
 */
export function newerSchema(
  where: string,
  applied: ReadonlySet<number>,
  known: readonly { version: number }[],
): AirlockError | undefined {
  const latest = known.at(-1)!.version;
  const newest = Math.max(...applied);
  if (newest <= latest) return undefined;
  return new AirlockError(
    "store_unavailable",
    `the Airlock tables ${where} are at schema version ${newest}, newer than this airlock knows (version ${latest}): a newer Airlock migrated them. Run that version or a later one; to go back to this one, restore a backup taken before that upgrade`,
  );
}

/**
 * The refusal for a store without Airlock's tables (`applied` undefined or empty: no
 * migration was ever applied), with an older schema than `known` reaches, or with a newer one;
 * none when every migration is applied, and no other. `where` names the place ("in
 * /srv/airlock.db"); `check` says what to look at when the tables are missing.
 */
export function unmigrated(
  where: string,
  applied: ReadonlySet<number> | undefined,
  known: readonly { version: number }[],
  check: string,
): AirlockError | undefined {
  if (applied === undefined || applied.size === 0) {
    return new AirlockError(
      "store_unavailable",
      `no Airlock tables ${where}; ${check} (airlock serve creates them on its first start)`,
    );
  }
  const newer = newerSchema(where, applied, known);
  if (newer) return newer;
  const missing = known.find((migration) => !applied.has(migration.version));
  if (!missing) return undefined;
  return new AirlockError(
    "store_unavailable",
    `the Airlock tables ${where} are at schema version ${missing.version - 1}, and this airlock needs version ${known.at(-1)!.version}: start this version's airlock serve once to migrate them, then run this again`,
  );
}
