/**
 * The audit hash chain. Each event's hash covers its content and the previous event's hash,
 * so an edit, a deletion, an insertion or a reordering breaks the chain where it happened.
 */
import { canonicalJson, type Json, sha256Hex } from "../common/canonical-json.js";
import type { ActorType } from "../requests/request-types.js";

export const GENESIS_HASH = "0".repeat(64);

export interface AuditEvent {
  seq: number;
  /** ISO 8601, UTC, milliseconds. */
  ts: string;
  type: string;
  requestId: string | null;
  actor: { type: ActorType; id: string };
  data: Json;
  prevHash: string;
  hash: string;
}

export type UnhashedEvent = Omit<AuditEvent, "hash">;

export function hashEvent(event: UnhashedEvent): string {
  return hashWithData(event, canonicalJson(event.data));
}

/**
 * An event's canonical form, but for its data and the two fields that depend on its place in
 * the chain, is `{"actor":ACTOR,"data":DATA,"prevHash":"PREV` + `after` + SEQ + `rest`: the
 * keys of an event are fixed, so the form is assembled in their sorted order around the data,
 * which is encoded once and stored as is. A store that chains inside the database
 * (PostgreSQL, migration 3's `airlock_append_audit`) assembles and hashes it the same way.
 */
export function hashParts(event: Omit<UnhashedEvent, "seq" | "prevHash" | "data">): {
  actor: string;
  after: string;
  rest: string;
} {
  return {
    // The canonical form of {type, id}, written out: an actor is exactly these two fields (the
    // stores keep no others), and this runs for every event.
    actor: `{"id":${JSON.stringify(event.actor.id)},"type":${JSON.stringify(event.actor.type)}}`,
    after: `","requestId":${JSON.stringify(event.requestId)},"seq":`,
    rest: `,"ts":${JSON.stringify(event.ts)},"type":${JSON.stringify(event.type)}}`,
  };
}

function hashWithData(event: UnhashedEvent, dataJson: string): string {
  const { actor, after, rest } = hashParts(event);
  // prevHash is hex and seq a whole number: neither needs escaping in JSON.
  return sha256Hex(
    `{"actor":${actor},"data":${dataJson},"prevHash":"${event.prevHash}${after}${event.seq}${rest}`,
  );
}

/** Chains new events after the head (the last stored event, or none). */
export function chainEvents(
  head: { seq: number; hash: string } | undefined,
  events: readonly Omit<UnhashedEvent, "seq" | "prevHash">[],
): (AuditEvent & { dataJson: string })[] {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS_HASH;
  // Built field by field rather than spread: this runs for every event of every change.
  return events.map((event) => {
    const chained = {
      seq: ++seq,
      ts: event.ts,
      type: event.type,
      requestId: event.requestId,
      actor: event.actor,
      data: event.data,
      prevHash,
      hash: "",
      dataJson: canonicalJson(event.data),
    };
    chained.hash = hashWithData(chained, chained.dataJson);
    prevHash = chained.hash;
    return chained;
  });
}

export interface ChainProblem {
  seq: number;
  kind:
    | "edited"
    | "broken_link"
    | "gap"
    | "out_of_order"
    | "cut_off"
    | "rewritten"
    | "renumbered"
    | "bad_signature"
    | "retired_key"
    | "unsigned";
  message: string;
}

function sequenceProblem(
  event: AuditEvent,
  expectedSeq: number,
  previous: { seq: number } | undefined,
): ChainProblem {
  return event.seq > expectedSeq
    ? {
        seq: event.seq,
        kind: "gap",
        message: `event ${event.seq}: expected event ${expectedSeq} before it; ${event.seq - expectedSeq === 1 ? "an event was" : "events were"} deleted`,
      }
    : {
        seq: event.seq,
        kind: "out_of_order",
        message: previous
          ? `event ${event.seq}: appears after event ${previous.seq}; events were inserted or reordered`
          : `event ${event.seq}: the chain must start at event 1; the events were renumbered or forged`,
      };
}

function brokenLink(event: AuditEvent, expectedSeq: number): ChainProblem {
  return {
    seq: event.seq,
    kind: "broken_link",
    message: `event ${event.seq}: its previous-hash does not match event ${expectedSeq - 1}; an event before it was replaced, inserted or reordered`,
  };
}

function edited(event: AuditEvent): ChainProblem {
  return {
    seq: event.seq,
    kind: "edited",
    message: `event ${event.seq} (${event.type}): its content does not match its hash; it was edited`,
  };
}

/**
 * Walks events in stored order and returns the first problem. Feed it event by event; call
 * `finish` for the totals.
 */
export function createChainVerifier() {
  let previous: { seq: number; hash: string } | undefined;
  let count = 0;
  let problem: ChainProblem | undefined;
  return {
    add(event: AuditEvent): ChainProblem | undefined {
      if (problem) return problem;
      count++;
      const expectedSeq = (previous?.seq ?? 0) + 1;
      const expectedPrev = previous?.hash ?? GENESIS_HASH;
      if (event.seq !== expectedSeq) problem = sequenceProblem(event, expectedSeq, previous);
      else if (event.prevHash !== expectedPrev) problem = brokenLink(event, expectedSeq);
      else if (hashEvent(event) !== event.hash) problem = edited(event);
      previous = { seq: event.seq, hash: event.hash };
      return problem;
    },
    finish(): {
      count: number;
      head: { seq: number; hash: string } | undefined;
      problem?: ChainProblem;
    } {
      return { count, head: previous, ...(problem ? { problem } : {}) };
    },
  };
}

/** How many numbers past its place a scan tries for an event cut off from the events before it. */
const RENUMBER_SEARCH = 64;
/** How many recent events' hashes a scan keeps, to place an event that links to one of them. */
const SCAN_KEPT = 4096;

/**
 * Walks events in stored order and lists every problem, for an auditor who must see past the
 * first (`verify --all`). After a break it goes on from the stored event, so that one edit,
 * deletion or insertion is one problem, not one for every event after it. Events renumbered
 * to hide a deletion or an insertion no longer match their hashes: the scan finds the number
 * each was hashed under (after the event it links to, or a few past its place) and lists the
 * first of a run renumbered alike. `add` also says under which number the event was hashed,
 * when that is known. The scan keeps no list: a table rewritten wholesale has a problem per
 * event, and its caller keeps what it shows.
 */
export function createChainScan() {
  /** The last event in place, and how far its number is from the one it was hashed under. */
  let previous: { seq: number; hash: string; shift: number } | undefined;
  // Recent events' hashes, with the numbers they were hashed under: whatever links to one of
  // them was hashed as the next number.
  const hashedUnder = new Map<string, number>([[GENESIS_HASH, 0]]);
  let count = 0;
  return {
    add(event: AuditEvent): { problems: ChainProblem[]; hashedAs: number | undefined } {
      count++;
      const found: ChainProblem[] = [];
      const expectedSeq = (previous?.seq ?? 0) + 1;
      const expectedPrev = previous?.hash ?? GENESIS_HASH;
      const runShift = previous?.shift ?? 0;
      const linkedTo = hashedUnder.get(event.prevHash);
      const hashedAs = numberHashedUnder(event, linkedTo, runShift);
      // An edited event is taken to belong to the run it sits in.
      const shift = hashedAs === undefined ? runShift : hashedAs - event.seq;
      const renumbered = hashedAs !== undefined && shift !== 0 && shift !== runShift;
      if (event.seq !== expectedSeq) {
        found.push(sequenceProblem(event, expectedSeq, previous));
      } else if (
        event.prevHash !== expectedPrev &&
        !renumbered &&
        // It links to the event hashed just before it, listed where it sits as moved.
        linkedTo !== event.seq + shift - 1
      ) {
        found.push(brokenLink(event, expectedSeq));
      }
      if (hashedAs === undefined) found.push(edited(event));
      else if (renumbered) {
        found.push({
          seq: event.seq,
          kind: "renumbered",
          message: `event ${event.seq} (${event.type}): numbered ${event.seq}, but hashed as event ${hashedAs}: it was moved, or events before it were ${hashedAs > event.seq ? "deleted" : "inserted"} and the rest renumbered (later events renumbered alike are not listed)`,
        });
      }
      // An event numbered below its place is extra: the chain goes on from the one before it.
      if (!(event.seq < expectedSeq)) previous = { seq: event.seq, hash: event.hash, shift };
      hashedUnder.set(event.hash, event.seq + shift);
      if (hashedUnder.size > SCAN_KEPT) {
        hashedUnder.delete(hashedUnder.keys().next().value as string);
      }
      return { problems: found, hashedAs };
    },
    finish(): { count: number; head: { seq: number; hash: string } | undefined } {
      return { count, head: previous && { seq: previous.seq, hash: previous.hash } };
    },
  };
}

/**
 * The number `event` was hashed under, or undefined when its content was edited: its own, the
 * one after the event it links to, its run's, or, cut off from the events before it (they were
 * deleted, or it was moved), one a little past its place.
 */
function numberHashedUnder(
  event: AuditEvent,
  linkedTo: number | undefined,
  runShift: number,
): number | undefined {
  if (hashEvent(event) === event.hash) return event.seq;
  if (!Number.isSafeInteger(event.seq)) return undefined;
  const dataJson = canonicalJson(event.data);
  const tried = new Set([event.seq]);
  const hashesAs = (seq: number): boolean => {
    if (seq < 1 || tried.has(seq)) return false;
    tried.add(seq);
    return hashWithData({ ...event, seq }, dataJson) === event.hash;
  };
  if (linkedTo !== undefined) {
    if (hashesAs(linkedTo + 1)) return linkedTo + 1;
  } else {
    for (let ahead = 1; ahead <= RENUMBER_SEARCH; ahead++) {
      if (hashesAs(event.seq + ahead)) return event.seq + ahead;
    }
  }
  return hashesAs(event.seq + runShift) ? event.seq + runShift : undefined;
}
