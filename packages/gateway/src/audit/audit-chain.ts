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
    | "bad_signature"
    | "retired_key"
    | "unsigned";
  message: string;
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
      if (event.seq !== expectedSeq) {
        problem =
          event.seq > expectedSeq
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
      } else if (event.prevHash !== expectedPrev) {
        problem = {
          seq: event.seq,
          kind: "broken_link",
          message: `event ${event.seq}: its previous-hash does not match event ${expectedSeq - 1}; an event before it was replaced, inserted or reordered`,
        };
      } else if (hashEvent(event) !== event.hash) {
        problem = {
          seq: event.seq,
          kind: "edited",
          message: `event ${event.seq} (${event.type}): its content does not match its hash; it was edited`,
        };
      }
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
