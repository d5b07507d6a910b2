/** Verification and export of the audit chain, reading the store in chain order. */
import type { KeyObject } from "node:crypto";
import type { Store } from "../store/store.js";
import {
  type AuditEvent,
  type ChainProblem,
  createChainScan,
  createChainVerifier,
  hashEvent,
} from "./audit-chain.js";
import {
  CHECKPOINT_TYPE,
  type CheckpointData,
  checkpointProblem,
  keyIdOf,
} from "./audit-checkpoints.js";

export interface VerifyReport {
  ok: boolean;
  count: number;
  head: { seq: number; hash: string } | undefined;
  problem?: ChainProblem;
  /** With `all`: the first LISTED_PROBLEMS problems, in chain order (`problem` is the first). */
  problems?: ChainProblem[];
  /** With `all`: how many problems there were, listed or not. */
  problemCount?: number;
  /** With a public key: how far signed checkpoints vouch for the chain. */
  signed?: SignedReach;
}

export interface SignedReach {
  /** The last event a good checkpoint by the newest key vouches for (0: none). */
  through: number;
  /** When that checkpoint was signed. */
  signedAt: string | undefined;
  checkpoints: number;
  /** Events after `through` that no checkpoint vouches for yet. */
  unsigned: number;
  /** The keys that signed, oldest first: each replaced the one before at its first checkpoint. */
  keys: SigningKey[];
}

export interface SigningKey {
  keyId: string;
  /** Its first checkpoint: where it replaced the key before it. */
  first: number;
  checkpoints: number;
}

/** A head recorded earlier, outside the database (`airlock audit verify` prints it). */
export interface RecordedHead {
  seq: number;
  hash: string;
}

/** How often a long walk of the chain reports how far it got. */
export const PROGRESS_EVERY = 10_000;

/**
 * How many problems a verification with `all` lists. A table rewritten wholesale has one per
 * event: past these, they are only counted, so that memory stays bounded however many.
 */
export const LISTED_PROBLEMS = 100;

/**
 * Walks the whole chain and returns the first problem, with the count and the head; with
 * `all`, the first LISTED_PROBLEMS problems and how many there were. `progress` hears the
 * count every PROGRESS_EVERY events (a long chain takes minutes).
 */
export async function verifyAudit(
  store: Store,
  progress?: (events: number) => void,
  options: {
    /** The public halves of the signing keys the gateway has had (one, unless rotated). */
    publicKeys?: readonly KeyObject[];
    /** Goes on past problems, lists the first ones and counts them all (`verify --all`). */
    all?: boolean;
    /**
     * The keys that must have signed (default: every key in `publicKeys`). A gateway knows
     * its own key has; the next key, listed before a rotation, may not have yet.
     */
    mustHaveSigned?: readonly KeyObject[];
  } = {},
): Promise<VerifyReport> {
  const all = options.all === true;
  const verifier = all ? undefined : createChainVerifier();
  const scan = all ? createChainScan() : undefined;
  const publicKeys = options.publicKeys?.length ? options.publicKeys : undefined;
  // Recent events' hashes and how many non-checkpoint events came up to each, for the
  // checkpoints that follow them (a checkpoint vouches for the head it read, a few back).
  const recent = new Map<number, { hash: string; plain: number }>();
  // With all, recent events' numbers as hashed, by hash: a checkpoint of an event renumbered
  // since (which the scan lists once) still finds it, and does not fail too.
  const hashedUnder = new Map<string, number>();
  let plain = 0;
  let count = 0;
  // Keys in the order they first signed: a key's first checkpoint retires every key before it.
  const keys: (SigningKey & { through: number; signedAt?: string; plainThrough: number })[] = [];
  let signatureProblem: ChainProblem | undefined;
  // With all, the first problems in chain order, each with how many events were read when it
  // was found, and how many there were in all.
  const listed: { read: number; problem: ChainProblem }[] = [];
  let problemCount = 0;
  const list = (read: number, problem: ChainProblem) => {
    problemCount++;
    // Found in chain order, but for a far-back checkpoint's, checked on a second walk: each
    // goes after those read no later than it, as a stable sort by `read` would place it.
    let at = listed.length;
    while (at > 0 && listed[at - 1]!.read > read) at--;
    if (at >= LISTED_PROBLEMS) return;
    listed.splice(at, 0, { read, problem });
    if (listed.length > LISTED_PROBLEMS) listed.pop();
  };
  // Checkpoints that vouch for events further back than `recent` reaches, checked on a second
  // walk against the events the chain's walk reads, never a row read some other way (a table
  // changed by whoever holds the database may hold rows the walk never sees).
  const farBack: { at: number; seq: number; hash: string; read: number }[] = [];
  for await (const event of store.auditEvents()) {
    // With all, where the event belongs: the number it was hashed under, when known.
    let place = event.seq;
    if (scan) {
      const added = scan.add(event);
      for (const problem of added.problems) list(count + 1, problem);
      place = added.hashedAs ?? event.seq;
      hashedUnder.set(event.hash, place);
      if (hashedUnder.size > RECENT_KEPT) {
        hashedUnder.delete(hashedUnder.keys().next().value as string);
      }
    } else if (verifier?.add(event)) break;
    if (++count % PROGRESS_EVERY === 0) progress?.(count);
    if (!publicKeys) continue;
    if (event.type !== CHECKPOINT_TYPE) plain++;
    recent.set(event.seq, { hash: event.hash, plain });
    if (recent.size > RECENT_KEPT) recent.delete(recent.keys().next().value as number);
    if (event.type !== CHECKPOINT_TYPE) continue;
    const data = event.data as unknown as CheckpointData;
    let why = checkpointProblem(event, publicKeys);
    // With all: the walk read the event it vouches for, hashed under that number, wherever it sits.
    const held = all && hashedUnder.get(data.hash) === data.seq;
    if (!why && !held && data.seq < event.seq && !recent.has(data.seq)) {
      farBack.push({ at: event.seq, seq: data.seq, hash: data.hash, read: count });
    } else if (!held) {
      why ??= vouchedProblem(data, data.seq < event.seq ? recent.get(data.seq)?.hash : undefined);
    }
    let key = keys.findIndex((k) => k.keyId === data.keyId);
    if (!why && key === -1) {
      key =
        keys.push({
          keyId: data.keyId,
          first: place,
          checkpoints: 0,
          through: 0,
          plainThrough: 0,
        }) - 1;
    }
    const successor = keys[key + 1];
    let problem: ChainProblem | undefined;
    // A checkpoint the old key signed as the rotation happened (a replica that read the head
    // before the new key's first checkpoint) vouches for an event before that checkpoint.
    if (!why && successor && data.seq >= successor.first) {
      const retired = `it is signed with key ${data.keyId}, which key ${successor.keyId} replaced at event ${successor.first} (its first checkpoint), yet it vouches for event ${data.seq}: a replaced key vouches for no event from its successor's first checkpoint on (a replica still signing with the old key, or the old key in someone else's hands)`;
      problem = badCheckpoint(event.seq, retired, "retired_key");
    } else if (why) {
      problem = badCheckpoint(event.seq, why);
    }
    if (problem) {
      if (!all) {
        signatureProblem = problem;
        break;
      }
      list(count, problem);
      continue;
    }
    const signer = keys[key]!;
    signer.checkpoints++;
    if (data.seq >= signer.through) {
      signer.through = data.seq;
      signer.signedAt = data.signedAt;
      signer.plainThrough = recent.get(data.seq)?.plain ?? signer.plainThrough;
    }
  }
  const finished = verifier ? verifier.finish() : scan!.finish();
  const result = { count: finished.count, head: finished.head };
  const chainProblem = verifier?.finish().problem;
  const listing = (
    extra: ChainProblem[] = [],
  ): Pick<VerifyReport, "problem" | "problems" | "problemCount"> => {
    const problems = [...listed.map((entry) => entry.problem), ...extra].slice(0, LISTED_PROBLEMS);
    return {
      ...(problems[0] ? { problem: problems[0] } : {}),
      problems,
      problemCount: problemCount + extra.length,
    };
  };
  if (!publicKeys) {
    if (all) return { ...result, ...listing(), ok: problemCount === 0 };
    return { ok: !chainProblem, ...result, ...(chainProblem ? { problem: chainProblem } : {}) };
  }
  if (chainProblem) return { ok: false, ...result, problem: chainProblem };
  if (farBack.length > 0) {
    const wanted = new Map(farBack.map((claim) => [claim.seq, undefined as string | undefined]));
    // With all, a claim's event may sit elsewhere, renumbered: found by its hash.
    const byHash = new Map(farBack.map((claim) => [claim.hash, claim.seq]));
    const renumbered = new Set<string>();
    for await (const event of store.auditEvents()) {
      if (wanted.has(event.seq)) wanted.set(event.seq, event.hash);
      const seq = all ? byHash.get(event.hash) : undefined;
      if (seq !== undefined && hashEvent({ ...event, seq }) === event.hash) {
        renumbered.add(event.hash);
      }
      if (event.seq >= farBack[farBack.length - 1]!.at) break;
    }
    for (const claim of farBack) {
      if (signatureProblem && claim.at > signatureProblem.seq) break;
      const why = vouchedProblem(
        claim,
        renumbered.has(claim.hash) ? claim.hash : wanted.get(claim.seq),
      );
      if (!why) continue;
      if (all) {
        list(claim.read, badCheckpoint(claim.at, why));
        continue;
      }
      signatureProblem = badCheckpoint(claim.at, why);
      break;
    }
  }
  if (signatureProblem) return { ok: false, ...result, problem: signatureProblem };
  // Only the newest key vouches: the others were replaced, so their word past its first
  // checkpoint (as far as a checkpoint signed as the rotation happened reaches) counts for nothing.
  const newest = keys[keys.length - 1];
  const reach: SignedReach = {
    through: newest?.through ?? 0,
    signedAt: newest?.signedAt,
    checkpoints: keys.reduce((sum, k) => sum + k.checkpoints, 0),
    unsigned: plain - (newest?.plainThrough ?? 0),
    keys: keys.map(({ keyId, first, checkpoints }) => ({ keyId, first, checkpoints })),
  };
  let unsigned: ChainProblem | undefined;
  if (reach.checkpoints === 0 && plain > 0) {
    unsigned = {
      seq: 1,
      kind: "unsigned",
      message:
        "no checkpoint signed with this key vouches for any event: the gateway never had audit.signingKey, or its checkpoints were removed",
    };
  } else {
    // The newest key cannot be known from the chain alone: a chain cut back to before its
    // first checkpoint and signed again with an older key shows only the older one.
    const silent =
      reach.checkpoints === 0
        ? undefined
        : (options.mustHaveSigned ?? publicKeys)
            .map(keyIdOf)
            .find((id) => !keys.some((k) => k.keyId === id));
    if (silent) {
      unsigned = {
        seq: result.head?.seq ?? 0,
        kind: "unsigned",
        message: `key ${silent} signed no checkpoint in this chain: each key given must have, since a chain cut back to before the newest key's first checkpoint and signed again with an older key looks like this; give only the keys this gateway has signed with`,
      };
    }
  }
  if (all) {
    const ok = problemCount === 0 && !unsigned;
    return { ok, ...result, ...listing(unsigned ? [unsigned] : []), signed: reach };
  }
  if (unsigned) return { ok: false, ...result, signed: reach, problem: unsigned };
  return { ok: true, ...result, signed: reach };
}

/** How many recent events' hashes a verification keeps for the checkpoints after them. */
const RECENT_KEPT = 4096;

function badCheckpoint(
  seq: number,
  why: string,
  kind: "bad_signature" | "retired_key" = "bad_signature",
): ChainProblem {
  return { seq, kind, message: `event ${seq} (${CHECKPOINT_TYPE}): ${why}` };
}

/**
 * Why the event a checkpoint vouches for is not in the chain as it says, or undefined;
 * `stored` is that event's hash as the walk read it, if the chain holds it before the checkpoint.
 */
function vouchedProblem(
  data: { seq: number; hash: string },
  stored: string | undefined,
): string | undefined {
  if (stored === data.hash) return undefined;
  return stored === undefined
    ? `it vouches for event ${data.seq}, which the chain does not hold before it`
    : `it vouches for event ${data.seq} with hash ${data.hash.slice(0, 12)}…, but the chain holds ${stored.slice(0, 12)}…: the chain was rewritten at or before event ${data.seq}`;
}

/**
 * The chain alone cannot show that its last events were cut off, or that all of it was
 * rewritten by someone holding the database; a head recorded earlier can: the chain, once
 * verified (`report`), must still hold that event with that hash.
 */
export async function checkRecordedHead(
  store: Store,
  report: VerifyReport,
  expected: RecordedHead,
): Promise<VerifyReport> {
  // With all, the recorded head is checked past other problems, and listed with them.
  if (!report.ok && !report.problems) return report;
  const [event] = await store.listAudit({ afterSeq: expected.seq - 1, limit: 1 });
  const found = event?.seq === expected.seq ? event.hash : undefined;
  if (found === expected.hash) return report;
  const problem: ChainProblem =
    found === undefined
      ? {
          seq: expected.seq,
          kind: "cut_off",
          message: `event ${expected.seq}, recorded as the head earlier, is missing: the chain ends at ${report.head?.seq ?? 0}; events were cut off its end`,
        }
      : {
          seq: expected.seq,
          kind: "rewritten",
          message: `event ${expected.seq} does not have the hash recorded earlier (${expected.hash.slice(0, 12)}…); the chain was rewritten at or before it`,
        };
  if (report.problems) {
    return {
      ...report,
      ok: false,
      problem: report.problem ?? problem,
      problems:
        report.problems.length < LISTED_PROBLEMS ? [...report.problems, problem] : report.problems,
      problemCount: (report.problemCount ?? report.problems.length) + 1,
    };
  }
  return { ...report, ok: false, problem };
}

/** Reads `SEQ:HASH` (or `SEQ HASH`, as `audit verify` prints it); events count from 1. */
export function parseRecordedHead(text: string): RecordedHead | undefined {
  const match = /^\s*([1-9]\d{0,14})[\s:]+([0-9a-f]{64})\s*$/.exec(text);
  return match ? { seq: Number(match[1]), hash: match[2]! } : undefined;
}

export const csvColumns = [
  "seq",
  "ts",
  "type",
  "requestId",
  "actorType",
  "actorId",
  "data",
  "prevHash",
  "hash",
] as const;

function csvCell(value: string): string {
  // Cells starting with = + - @ would run as formulas in a spreadsheet; a quote keeps them text.
  const guarded = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(guarded) ? `"${guarded.replace(/"/g, '""')}"` : guarded;
}

export function eventToCsv(event: AuditEvent): string {
  return [
    String(event.seq),
    event.ts,
    event.type,
    event.requestId ?? "",
    event.actor.type,
    event.actor.id,
    JSON.stringify(event.data),
    event.prevHash,
    event.hash,
  ]
    .map(csvCell)
    .join(",");
}

/**
 * Streams the chain as JSON lines or CSV, one event per line, from `since` (a time) and after
 * `afterSeq` (the last event an earlier export held); `progress` as for verifying, and `last`
 * hears the last event's number once done.
 */
export async function* exportAudit(
  store: Store,
  format: "jsonl" | "csv",
  from: { since?: number | undefined; afterSeq?: number | undefined } = {},
  progress?: (events: number) => void,
  last?: (seq: number | undefined, events: number) => void,
): AsyncIterable<string> {
  if (format === "csv") yield `${csvColumns.join(",")}\n`;
  let count = 0;
  let seq: number | undefined;
  const options = {
    ...(from.since === undefined ? {} : { since: from.since }),
    ...(from.afterSeq === undefined ? {} : { afterSeq: from.afterSeq }),
  };
  for await (const event of store.auditEvents(options)) {
    yield format === "csv" ? `${eventToCsv(event)}\n` : `${JSON.stringify(event)}\n`;
    if (typeof event.seq === "number") seq = event.seq;
    if (++count % PROGRESS_EVERY === 0) progress?.(count);
  }
  last?.(seq, count);
}
