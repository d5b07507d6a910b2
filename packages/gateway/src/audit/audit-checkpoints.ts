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

/** Why a checkpoint's data does not hold a good signature by `publicKey`, or undefined. */
export function checkpointProblem(
  data: Json,
  publicKeys: readonly KeyObject[],
): string | undefined {
  const d = data as Partial<Record<keyof CheckpointData, unknown>> | null;
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

/**
 * Signs the chain's head whenever it has moved since the last checkpoint: at start (events a
 * stopped gateway left unsigned), every `everyMs`, and at stop. Several replicas may each
 * sign; a checkpoint at the head is not signed again. It signs nothing more once the chain no
 * longer holds the last event it signed: whoever cut or rewrote the chain there, dropping the
 * checkpoints that no longer agree, would otherwise have their version signed.
 */
export function createCheckpointer(deps: {
  store: Store;
  privateKey: KeyObject;
  everyMs: number;
  clock: () => number;
  logger: Logger;
}) {
  const { store, privateKey, clock, logger } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let signed: { seq: number; hash: string } | undefined;

  const checkpoint = (): Promise<void> => {
    running ??= (async () => {
      try {
        const head = await store.lastAuditEvent();
        if (!head || head.type === CHECKPOINT_TYPE) return;
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
