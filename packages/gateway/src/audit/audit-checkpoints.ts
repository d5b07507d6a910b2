/**
 * Signed checkpoints of the audit chain. The chain shows an edit, a deletion or a reordering,
 * but someone holding the database can rewrite all of it, hashes included. With
 * `audit.signingKey` (an Ed25519 private key, kept out of the database), the gateway appends
 * an `audit.checkpoint` event every `audit.checkpointEvery` while the chain grows: a signature
 * over the event before it (its number and hash) and the time. `airlock audit verify
 * --public-key` checks every one, so a chain rewritten at or before a signed event no longer
 * verifies, whoever holds the database, unless they also hold the private key.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import type { Json } from "../common/canonical-json.js";
import type { Logger } from "../observability/logger.js";
import type { AuditEventInput } from "../requests/request-types.js";
import type { Store } from "../store/store.js";
import type { AuditEvent } from "./audit-chain.js";

export const CHECKPOINT_TYPE = "audit.checkpoint";

/** What a checkpoint event's data holds. */
export interface CheckpointData {
  /** The event it vouches for: every event up to it, through the chain's hashes. */
  seq: number;
  hash: string;
  /** When it was signed (ISO 8601), under the signature too. */
  signedAt: string;
  /** The first 16 hex digits of the SHA-256 of the public key (SPKI, DER). */
  keyId: string;
  /** Ed25519, base64. */
  signature: string;
}

function message(seq: number, hash: string, signedAt: string): Buffer {
  return Buffer.from(`airlock audit checkpoint v1\n${seq}\n${hash}\n${signedAt}`);
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 16);
}

/**
 * An Ed25519 key from PEM text: the private key for signing, or either key for checking,
 * since a private key holds its public one. Throws saying what is wrong.
 */
export function readKey(pem: string, use: "sign" | "check"): KeyObject {
  let key: KeyObject;
  try {
    key = use === "sign" ? createPrivateKey(pem) : publicKeyOf(pem);
  } catch {
    if (pem.includes("ENCRYPTED")) {
      throw new Error(
        "is encrypted; give the key unencrypted (openssl pkey -in KEY -out PLAIN), in a file only the gateway can read",
      );
    }
    throw new Error(
      use === "sign"
        ? "is not a PEM private key; make one with: openssl genpkey -algorithm ed25519"
        : "is not a PEM public (or private) key; derive it with: openssl pkey -in KEY -pubout",
    );
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(`is a ${key.asymmetricKeyType ?? "symmetric"} key; checkpoints are Ed25519`);
  }
  return key;
}

function publicKeyOf(pem: string): KeyObject {
  return pem.includes("PRIVATE KEY")
    ? createPublicKey(createPrivateKey(pem))
    : createPublicKey(pem);
}

export function signCheckpoint(
  privateKey: KeyObject,
  head: { seq: number; hash: string },
  now: number,
): CheckpointData {
  const signedAt = new Date(now).toISOString();
  return {
    seq: head.seq,
    hash: head.hash,
    signedAt,
    keyId: keyIdOf(createPublicKey(privateKey)),
    signature: sign(null, message(head.seq, head.hash, signedAt), privateKey).toString("base64"),
  };
}

/** Signs `head` and appends the checkpoint to the chain, by `actor`. */
export async function appendCheckpoint(
  store: Store,
  privateKey: KeyObject,
  head: { seq: number; hash: string },
  now: number,
  actor: AuditEventInput["actor"],
): Promise<CheckpointData> {
  const data = signCheckpoint(privateKey, head, now);
  await store.appendAudit([
    { at: now, type: CHECKPOINT_TYPE, requestId: null, actor, data: data as unknown as Json },
  ]);
  return data;
}

const FIELDS: readonly string[] = ["seq", "hash", "signedAt", "keyId", "signature"];
/** Who appends checkpoints: the gateway, and `airlock audit checkpoint`. */
const SIGNERS = ["system:airlock", "operator:airlock audit checkpoint"];

/** How a checkpoint event differs from what Airlock writes, or undefined. */
function unwritten(
  event: Pick<AuditEvent, "ts" | "requestId" | "actor">,
  data: CheckpointData,
): string | undefined {
  const extra = Object.keys(data).find((field) => !FIELDS.includes(field));
  if (extra) return `field ${extra} is not one it writes`;
  if (event.requestId !== null) return "it names a request";
  if (event.ts !== data.signedAt) return "its time is not its signedAt";
  if (!SIGNERS.includes(`${event.actor.type}:${event.actor.id}`)) {
    return "its actor is neither the gateway nor airlock audit checkpoint";
  }
  // Buffer.from skips what is not base64, so other text could carry the same signature.
  const signature = Buffer.from(data.signature, "base64");
  if (signature.length !== 64 || signature.toString("base64") !== data.signature) {
    return "its signature is not 64 bytes in base64";
  }
  return undefined;
}

/**
 * Why a checkpoint event does not hold a good signature by one of `publicKeys`, or undefined.
 * The signature covers only what it vouches for and when; the event around it must be exactly
 * what Airlock writes, since nothing vouches for the last checkpoint's own fields.
 */
export function checkpointProblem(
  event: Pick<AuditEvent, "ts" | "requestId" | "actor" | "data">,
  publicKeys: readonly KeyObject[],
): string | undefined {
  const d = event.data as Partial<Record<keyof CheckpointData, unknown>> | null;
  if (
    !d ||
    typeof d.seq !== "number" ||
    typeof d.hash !== "string" ||
    typeof d.signedAt !== "string" ||
    typeof d.keyId !== "string" ||
    typeof d.signature !== "string"
  ) {
    return "it is not a checkpoint Airlock wrote (fields missing)";
  }
  const why = unwritten(event, d as CheckpointData);
  if (why) return `it is not a checkpoint Airlock wrote (${why})`;
  // Several keys: one per signing key the gateway has had, rotated.
  const ids = publicKeys.map(keyIdOf);
  const publicKey = publicKeys[ids.indexOf(d.keyId)];
  if (!publicKey) return `it was signed with another key (${d.keyId}, not ${ids.join(" or ")})`;
  const good = verify(
    null,
    message(d.seq, d.hash, d.signedAt),
    publicKey,
    Buffer.from(d.signature, "base64"),
  );
  return good ? undefined : "its signature does not match what it says it signs";
}

/** How many events back a signer that starts reads checkpoints, for the keys that signed before. */
export const KEYS_LOOKBACK = 50_000;

/**
 * Tells a signer whether its key was replaced, as `verify` reads a rotation: another key signed
 * a checkpoint after this key's first one without having signed before it. Reads the chain's
 * checkpoints from KEYS_LOOKBACK events before the head it is first given, then only the new
 * ones. When this key signed none of those, it is new or was replaced longer ago than that (a
 * replica started from an old config), and only the whole chain tells which: it reads the
 * checkpoints from the start, once.
 */
export function createKeyWatch(
  /** The public half of the signer's key. */
  ownKey: KeyObject,
  options: {
    /**
     * The other keys that may sign this chain (audit.publicKeys). Given, a checkpoint under
     * another key is a rotation only if one of these signed it; else any other key's counts,
     * which lets whoever can write to the database stop every signer with one forged event.
     */
    publicKeys?: readonly KeyObject[];
    /** Hears, once per key, of a key that signed before this one vouching for what came after. */
    late?: (other: { keyId: string; seq: number }) => void;
    /** Hears, once per key id, of a checkpoint taken for no rotation, and why. */
    forged?: (checkpoint: { keyId: string; seq: number; why: string }) => void;
  } = {},
) {
  const { late, forged } = options;
  const keyId = keyIdOf(ownKey);
  // Its own checkpoints it can always check; other keys' only with audit.publicKeys.
  const checkable = [ownKey, ...(options.publicKeys ?? [])];
  const checksOthers = options.publicKeys !== undefined;
  const before = new Set<string>();
  const heard = new Set<string>();
  const refused = new Set<string>();
  let first: number | undefined;
  let read: number | undefined;
  let replacedBy: { keyId: string; seq: number } | undefined;
  return {
    async replaced(
      store: Store,
      head: { seq: number },
    ): Promise<{ keyId: string; seq: number } | undefined> {
      const from = read ?? Math.max(0, head.seq - KEYS_LOOKBACK);
      let last = await readFrom(store, from);
      if (read === undefined && first === undefined && from > 0 && !replacedBy) {
        before.clear();
        last = await readFrom(store, 0);
      }
      // Every event up to the head was in the table when it was read.
      read = Math.max(last, head.seq);
      return replacedBy;
    },
  };

  /** Reads the checkpoints after event `from`; returns the number of the last one read. */
  async function readFrom(store: Store, from: number): Promise<number> {
    let after = from;
    while (!replacedBy) {
      const page = await store.listAudit({ afterSeq: after, type: CHECKPOINT_TYPE, limit: 500 });
      for (const event of page) {
        const data = event.data as { keyId?: unknown; seq?: unknown } | null;
        const other = data?.keyId;
        if (typeof other !== "string") continue;
        const why =
          other === keyId || checksOthers ? checkpointProblem(event, checkable) : undefined;
        if (why) {
          if (!refused.has(other)) {
            refused.add(other);
            forged?.({ keyId: other, seq: event.seq, why });
          }
          continue;
        }
        if (other === keyId) first ??= event.seq;
        else if (first === undefined) before.add(other);
        else if (!before.has(other)) replacedBy = { keyId: other, seq: event.seq };
        // A key that signed before this one may still sign as the rotation happens, of an
        // event before it; verify rejects one that vouches for more: a replica started with
        // the old key, or the old key in someone else's hands.
        else if (typeof data?.seq === "number" && data.seq >= first && !heard.has(other)) {
          heard.add(other);
          late?.({ keyId: other, seq: event.seq });
        }
        if (replacedBy) break;
      }
      after = page[page.length - 1]?.seq ?? after;
      if (page.length < 500) break;
    }
    return after;
  }
}

/**
 * Whether the chain's head is a checkpoint by `keyId` already, and so needs no other. One by
 * another key does: after a rotation, the chain ends in the old key's last checkpoint until
 * something happens, and a verify that asks for the new key's word (the gateway's own, over
 * its API) would call the chain unsigned all that while. Reads the head again only when it
 * is a checkpoint.
 */
export async function signedHead(
  store: Store,
  head: { seq: number; type: string },
  keyId: string,
): Promise<boolean> {
  if (head.type !== CHECKPOINT_TYPE) return false;
  const [event] = await store.listAudit({ afterSeq: head.seq - 1, limit: 1 });
  // Gone since (cut off): nothing is signed on what cannot be read.
  if (event?.seq !== head.seq) return true;
  return (event.data as { keyId?: unknown } | null)?.keyId === keyId;
}

/**
 * Signs the chain's head whenever it has moved since the last checkpoint: at start (events a
 * stopped gateway left unsigned, or a chain that ends in the checkpoint of the key this one
 * replaced), every `everyMs`, and at stop. Several replicas may each sign; a checkpoint by
 * this key at the head is not signed again. It signs nothing more once the chain no
 * longer holds the last event it signed: whoever cut or rewrote the chain there, dropping the
 * checkpoints that no longer agree, would otherwise have their version signed. Nor once another
 * key has replaced its own: `verify` rejects a replaced key's checkpoint of what came after, so
 * a replica still running with the old key during a rolling rotation stops by itself.
 */
export function createCheckpointer(deps: {
  store: Store;
  privateKey: KeyObject;
  /** audit.publicKeys: the other keys whose checkpoints may replace this one's. */
  publicKeys?: readonly KeyObject[] | undefined;
  everyMs: number;
  /** The store's time (Store.now): a checkpoint's signedAt, and its event's. */
  clock: () => number;
  logger: Logger;
}) {
  const { store, privateKey, clock, logger } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let signed: { seq: number; hash: string } | undefined;
  const publicKey = createPublicKey(privateKey);
  const ownKey = keyIdOf(publicKey);
  const keys = createKeyWatch(publicKey, {
    ...(deps.publicKeys ? { publicKeys: deps.publicKeys } : {}),
    late: (other) =>
      logger.error(
        { seq: other.seq },
        `the audit checkpoint at event ${other.seq} is signed with key ${other.keyId}, which this gateway's key ${ownKey} replaced, and vouches for what came after: airlock audit verify rejects it; a replica runs with the old key, or someone else holds it`,
      ),
    forged: (checkpoint) =>
      logger.error(
        { seq: checkpoint.seq },
        `the audit checkpoint at event ${checkpoint.seq} is no rotation: ${checkpoint.why}; this gateway goes on signing with key ${ownKey}. Unless a replica runs with a key audit.publicKeys does not list, someone with write access to the database appended it; airlock audit verify rejects it`,
      ),
  });
  let replaced = false;

  const checkpoint = (): Promise<void> => {
    running ??= (async () => {
      try {
        const head = await store.lastAuditEvent();
        if (!head || replaced || (await signedHead(store, head, ownKey))) return;
        const successor = await keys.replaced(store, head);
        if (successor) {
          replaced = true;
          logger.error(
            { seq: successor.seq },
            `the audit signing key ${ownKey} was replaced by key ${successor.keyId} (its checkpoint at event ${successor.seq}): this gateway signs no more checkpoints; restart it with the new key${deps.publicKeys ? "" : ". If no one rotated the key, someone with write access to the database appended that checkpoint to stop the signers (airlock audit verify rejects it): list the keys that may sign in audit.publicKeys, and checkpoints under any other are ignored"}`,
          );
          return;
        }
        if (signed) {
          const [event] = await store.listAudit({ afterSeq: signed.seq - 1, limit: 1 });
          if (event?.seq !== signed.seq || event.hash !== signed.hash) {
            logger.error(
              { seq: signed.seq },
              "the audit chain no longer holds an event this gateway signed: it was cut off or rewritten in the database; no more checkpoints are signed",
            );
            return;
          }
        }
        await appendCheckpoint(store, privateKey, head, clock(), {
          type: "system",
          id: "airlock",
        });
        signed = { seq: head.seq, hash: head.hash };
      } catch (error) {
        logger.warn({ err: error }, "could not sign an audit checkpoint; will try again");
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  return {
    checkpoint,
    async start(): Promise<void> {
      await checkpoint();
      timer = setInterval(checkpoint, deps.everyMs);
      timer.unref();
    },
    /** Signs what the chain holds now; the store must still be open. */
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      await running;
      await checkpoint();
    },
  };
}
