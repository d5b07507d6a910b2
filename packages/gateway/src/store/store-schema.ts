/**
 * Whether a store opened as it is holds the tables this version needs. Commands that only
 * read open it so: they must neither create tables where a mistyped path or URL points, and
 * then report an empty store as intact, nor migrate a database that older gateways still use.
 */
import { AirlockError } from "../errors.js";

/**
 * The refusal for a store without Airlock's tables (`applied` undefined or empty: no
 * migration was ever applied) or with an older schema than `known` reaches; none when every
 * migration is applied. `where` names the place ("in /srv/airlock.db"); `check` says what to
 * look at when the tables are missing.
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
  const missing = known.find((migration) => !applied.has(migration.version));
  if (!missing) return undefined;
  return new AirlockError(
    "store_unavailable",
    `the Airlock tables ${where} are at schema version ${missing.version - 1}, and this airlock needs version ${known.at(-1)!.version}: start this version's airlock serve once to migrate them, then run this again`,
  );
}
