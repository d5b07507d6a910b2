import { describe, expect, it } from "vitest";
import { canonicalJson, sha256Hex } from "../common/canonical-json.js";
import {
  type AuditEvent,
  type ChainProblem,
  chainEvents,
  createChainScan,
  createChainVerifier,
  GENESIS_HASH,
  hashEvent,
} from "./audit-chain.js";

const draft = (n: number) => ({
  ts: `2030-01-01T00:00:0${n}.000Z`,
  type: `test.event${n}`,
  requestId: `req_${n}`,
  actor: { type: "system" as const, id: "airlock" },
  data: { n, note: `event ${n}` },
});

/** A well-formed chain of `count` events, seq 1..count. */
const chain = (count: number): AuditEvent[] =>
  chainEvents(
    undefined,
    Array.from({ length: count }, (_, i) => draft(i + 1)),
  );

/** Feeds every event to a fresh verifier and returns the first problem, if any. */
const verify = (events: readonly AuditEvent[]): ChainProblem | undefined => {
  const verifier = createChainVerifier();
  for (const event of events) verifier.add(event);
  return verifier.finish().problem;
};

describe("chainEvents", () => {
  it("hashes an event's whole canonical form, the same as every chain already stored", () => {
    const event = {
      ts: "2030-01-01T00:00:01.000Z",
      type: "test.event1",
      requestId: "req_1",
      actor: { type: "system" as const, id: "airlock" },
      data: { n: 1, note: "event 1", 'ü"q': ["x", null, true, 1.5] },
    };
    const [chained] = chainEvents({ seq: 41, hash: "ab".repeat(32) }, [event]);
    expect(chained).toMatchObject({ ...event, seq: 42, prevHash: "ab".repeat(32) });
    expect(chained!.hash).toBe(
      sha256Hex(canonicalJson({ ...event, seq: 42, prevHash: "ab".repeat(32) })),
    );
    // Pinned: a change to the encoding would leave every chain written before unverifiable.
    expect(chained!.hash).toBe("ec2d42a030c6cf507ba9c07c67287f1b1a25fb2e3b6b8a5abd02af80ea0a3537");
  });

  it("links the first event to GENESIS_HASH and numbers from 1", () => {
    const [first] = chain(1);
    expect(first?.seq).toBe(1);
    expect(first?.prevHash).toBe(GENESIS_HASH);
    expect(GENESIS_HASH).toMatch(/^0{64}$/);
  });

  it("links each event to the hash of the one before", () => {
    const events = chain(3);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(events[1]?.prevHash).toBe(events[0]?.hash);
    expect(events[2]?.prevHash).toBe(events[1]?.hash);
  });

  it("stores a hash that covers the event's content", () => {
    for (const event of chain(3)) {
      expect(event.hash).toMatch(/^[0-9a-f]{64}$/);
      const { hash, ...unhashed } = event;
      expect(hashEvent(unhashed)).toBe(hash);
    }
  });

  it("continues the sequence and the links from a head", () => {
    const first = chain(2);
    const head = first[1]!;
    const more = chainEvents({ seq: head.seq, hash: head.hash }, [draft(3), draft(4)]);
    expect(more.map((e) => e.seq)).toEqual([3, 4]);
    expect(more[0]?.prevHash).toBe(head.hash);
    // Appending in two batches gives exactly the chain written in one.
    expect([...first, ...more]).toEqual(chain(4));
  });

  it("changes the hash when any hashed field changes", () => {
    const [event] = chain(1);
    const { hash: _hash, ...base } = event!;
    const original = hashEvent(base);
    expect(hashEvent({ ...base, data: { n: 1, note: "event 1!" } })).not.toBe(original);
    expect(hashEvent({ ...base, ts: "2030-01-01T00:00:09.000Z" })).not.toBe(original);
    expect(hashEvent({ ...base, type: "other" })).not.toBe(original);
    expect(hashEvent({ ...base, requestId: null })).not.toBe(original);
    expect(hashEvent({ ...base, actor: { type: "agent", id: "airlock" } })).not.toBe(original);
    expect(hashEvent({ ...base, seq: 2 })).not.toBe(original);
    expect(hashEvent({ ...base, prevHash: "1".repeat(64) })).not.toBe(original);
  });
});

describe("createChainVerifier", () => {
  it("passes a good chain and counts its events", () => {
    const events = chain(5);
    const verifier = createChainVerifier();
    for (const event of events) expect(verifier.add(event)).toBeUndefined();
    expect(verifier.finish()).toEqual({ count: 5, head: { seq: 5, hash: events[4]?.hash } });
  });

  it("passes an empty chain", () => {
    expect(createChainVerifier().finish()).toEqual({ count: 0, head: undefined });
  });

  it("reports an event whose data was edited as edited, at that event", () => {
    const events = chain(4);
    events[2] = { ...events[2]!, data: { n: 3, note: "changed" } };
    expect(verify(events)).toMatchObject({ seq: 3, kind: "edited" });
  });

  it("reports a deleted middle event as a gap at the event after it", () => {
    const events = chain(5);
    events.splice(2, 1);
    expect(verify(events)).toMatchObject({ seq: 4, kind: "gap" });
  });

  it("reports a deleted first event as a gap", () => {
    const events = chain(3).slice(1);
    expect(verify(events)).toMatchObject({ seq: 2, kind: "gap" });
  });

  it("reports a first event numbered 0 or less as out of order, without a missing predecessor", () => {
    for (const seq of [0, -3]) {
      const events = chain(2);
      events[0] = { ...events[0]!, seq };
      expect(verify(events)).toEqual({
        seq,
        kind: "out_of_order",
        message: `event ${seq}: the chain must start at event 1; the events were renumbered or forged`,
      });
    }
  });

  it("detects an inserted, correctly hashed event with the tail renumbered", () => {
    const events = chain(4);
    // The forger hashes the new event properly after event 2 and renumbers the tail.
    const [inserted] = chainEvents({ seq: 2, hash: events[1]!.hash }, [draft(9)]);
    const tampered = [
      events[0]!,
      events[1]!,
      inserted!,
      { ...events[2]!, seq: 4 },
      { ...events[3]!, seq: 5 },
    ];
    // The inserted event itself links correctly; the next one no longer does.
    expect(verify(tampered)).toMatchObject({ seq: 4, kind: "broken_link" });
  });

  it("detects an inserted event that kept its own sequence number as out of order", () => {
    const events = chain(3);
    const [inserted] = chainEvents({ seq: 1, hash: events[0]!.hash }, [draft(9)]);
    const tampered = [events[0]!, events[1]!, inserted!, events[2]!];
    expect(verify(tampered)).toMatchObject({ seq: 2, kind: "out_of_order" });
  });

  it("detects two events whose contents were swapped, at the first swapped position", () => {
    const events = chain(5);
    const second = events[1]!;
    const third = events[2]!;
    const swapped = [
      events[0]!,
      { ...third, seq: 2 },
      { ...second, seq: 3 },
      events[3]!,
      events[4]!,
    ];
    const problem = verify(swapped);
    expect(problem?.seq).toBe(2);
    expect(problem?.kind).toBe("broken_link");
  });

  it("detects two events swapped along with their sequence numbers, at the first misplaced one", () => {
    const events = chain(4);
    const swapped = [events[0]!, events[2]!, events[1]!, events[3]!];
    expect(verify(swapped)).toMatchObject({ seq: 3, kind: "gap" });
  });

  it("reports an edit whose hash was recomputed as a broken link at the next event", () => {
    const events = chain(4);
    const { hash: _old, ...edited } = { ...events[1]!, data: { n: 2, note: "rewritten" } };
    events[1] = { ...edited, hash: hashEvent(edited) };
    expect(verify(events)).toMatchObject({ seq: 3, kind: "broken_link" });
  });

  it("reports a forged first event that does not start from GENESIS_HASH", () => {
    const events = chain(2);
    const { hash: _old, ...forged } = { ...events[0]!, prevHash: "f".repeat(64) };
    events[0] = { ...forged, hash: hashEvent(forged) };
    expect(verify(events)).toMatchObject({ seq: 1, kind: "broken_link" });
  });

  it("keeps returning the first problem and stops counting after it", () => {
    const events = chain(5);
    events[1] = { ...events[1]!, data: "edited" };
    events[3] = { ...events[3]!, data: "edited too" };
    const verifier = createChainVerifier();
    const problems = events.map((event) => verifier.add(event));
    expect(problems[0]).toBeUndefined();
    expect(problems.slice(1).map((p) => p?.seq)).toEqual([2, 2, 2, 2]);
    const finish = verifier.finish();
    expect(finish.problem).toMatchObject({ seq: 2, kind: "edited" });
    expect(finish.count).toBe(2);
  });

  it("names the event in its message", () => {
    const events = chain(3);
    events[2] = { ...events[2]!, data: null };
    expect(verify(events)?.message).toContain("event 3 (test.event3)");
  });
});

describe("the event hash", () => {
  it("is SHA-256 over the canonical JSON of the whole event, however it is assembled", async () => {
    const { canonicalJson, sha256Hex } = await import("../common/canonical-json.js");
    const event = {
      seq: 7,
      ts: "2026-11-22T00:00:00.000Z",
      type: "request.reviewed",
      requestId: null,
      actor: { type: "reviewer" as const, id: "bob@example.com" },
      data: { z: [1, "é", { b: true, a: null }], comment: 'said "ok"' },
      prevHash: "a".repeat(64),
    };
    expect(hashEvent(event)).toBe(sha256Hex(canonicalJson(event)));
    const [chained] = chainEvents({ seq: 6, hash: "a".repeat(64) }, [event]);
    expect(chained!.hash).toBe(sha256Hex(canonicalJson(event)));
  });
});

describe("createChainScan (verify --all)", () => {
  /** Every problem a scan of `events` finds, as `seq kind`. */
  const scan = (events: readonly AuditEvent[]): string[] => {
    const chainScan = createChainScan();
    return events.flatMap((event) =>
      chainScan.add(event).problems.map((p) => `${p.seq} ${p.kind}`),
    );
  };
  /** The events from `from` on, numbered `by` more than they were hashed with. */
  const renumber = (events: AuditEvent[], from: number, by: number): AuditEvent[] =>
    events.map((e) => (e.seq >= from ? { ...e, seq: e.seq + by } : e));

  it("finds nothing in a good chain, and counts it as the verifier does", () => {
    const events = chain(6);
    const chainScan = createChainScan();
    for (const event of events) expect(chainScan.add(event).problems).toEqual([]);
    expect(chainScan.finish()).toEqual({ count: 6, head: { seq: 6, hash: events[5]!.hash } });
  });

  it("lists one problem for one edit, and goes on to find the next", () => {
    const events = chain(8);
    events[2] = { ...events[2]!, data: "edited" };
    events[5] = { ...events[5]!, data: "edited too" };
    expect(scan(events)).toEqual(["3 edited", "6 edited"]);
  });

  it("resynchronises on the stored hash after a broken link: an edit with its hash recomputed is one problem", () => {
    const events = chain(6);
    const { hash: _old, ...edited } = { ...events[1]!, data: "rewritten" };
    events[1] = { ...edited, hash: hashEvent(edited) };
    expect(scan(events)).toEqual(["3 broken_link"]);
  });

  it("lists a deleted event once, at the event after it", () => {
    const events = chain(6);
    events.splice(2, 1);
    expect(scan(events)).toEqual(["4 gap"]);
  });

  it("lists events deleted and the rest renumbered to close the gap once, not every later event", () => {
    for (const deleted of [1, 3]) {
      const events = chain(9);
      events.splice(3, deleted);
      const problems = scan(renumber(events, 4 + deleted, -deleted));
      expect(problems).toEqual(["4 renumbered"]);
    }
    const events = chain(6);
    events.splice(3, 1);
    const chainScan = createChainScan();
    const [moved] = renumber(events, 5, -1).flatMap((event) => chainScan.add(event).problems);
    expect(moved?.message).toBe(
      "event 4 (test.event5): numbered 4, but hashed as event 5: it was moved, or events before it were deleted and the rest renumbered (later events renumbered alike are not listed)",
    );
  });

  it("lists an event inserted with the rest renumbered once, at the first renumbered event", () => {
    const events = chain(6);
    const [inserted] = chainEvents({ seq: 3, hash: events[2]!.hash }, [draft(9)]);
    const tampered = [...events.slice(0, 3), inserted!, ...renumber(events.slice(3), 4, 1)];
    expect(scan(tampered)).toEqual(["5 renumbered"]);
  });

  it("lists the two events of a swap, and nothing after them", () => {
    const events = chain(6);
    const swapped = [
      ...events.slice(0, 2),
      { ...events[3]!, seq: 3 },
      { ...events[2]!, seq: 4 },
      ...events.slice(4),
    ];
    expect(scan(swapped)).toEqual(["3 renumbered", "4 renumbered"]);
  });

  it("lists an inserted event that kept its own number once", () => {
    const events = chain(4);
    const [inserted] = chainEvents({ seq: 1, hash: events[0]!.hash }, [draft(9)]);
    expect(scan([events[0]!, events[1]!, inserted!, events[2]!, events[3]!])).toEqual([
      "2 out_of_order",
    ]);
  });

  it("lists an edit inside a renumbered stretch, and each separate problem", () => {
    const events = chain(10);
    events.splice(2, 1);
    const tampered = renumber(events, 4, -1);
    tampered[5] = { ...tampered[5]!, data: "edited" };
    tampered.splice(7, 1);
    expect(scan(tampered)).toEqual(["3 renumbered", "6 edited", "9 gap"]);
  });
});
