/**
 * Whether the approvals make the quorum a rule asks for. Beyond a count, a rule may require
 * some of them from named groups (`require: {security: 1}`: separation of duties), and each
 * approval fills at most one group's place: someone in both finance and security stands for
 * one of them, never for both. Which place each approval fills is a bipartite matching, kept
 * maximal so that the order of the votes never matters.
 */
import { names } from "../common/word-list.js";
import type { ReviewRequirements } from "../policy/policy-types.js";

export interface QuorumStanding {
  /** Approvals that count. */
  approvals: number;
  quorum: number;
  /** What each required group still needs, for the groups that still need any. */
  needed: Record<string, number>;
  /** Approvals still needed in all: at least what the groups need. */
  left: number;
  met: boolean;
}

/**
 * Where a review stands, given the groups of each approval that counts (as the caller judges
 * them now: a vote whose reviewer no longer qualifies is left out before this).
 */
export function quorumStanding(
  review: Pick<ReviewRequirements, "quorum" | "require"> | undefined,
  approvals: readonly (readonly string[])[],
): QuorumStanding {
  const quorum = review?.quorum ?? 1;
  const required = Object.entries(review?.require ?? {});
  // One place per approval a group requires; `holder[i]` is the approval filling place i.
  const places = required.flatMap(([group, count]) => Array<string>(count).fill(group));
  const holder = new Array<number | undefined>(places.length).fill(undefined);
  const tryPlace = (approval: number, seen: Set<number>): boolean => {
    for (let place = 0; place < places.length; place++) {
      if (seen.has(place) || !approvals[approval]!.includes(places[place]!)) continue;
      seen.add(place);
      const current = holder[place];
      if (current === undefined || tryPlace(current, seen)) {
        holder[place] = approval;
        return true;
      }
    }
    return false;
  };
  if (places.length > 0) for (let a = 0; a < approvals.length; a++) tryPlace(a, new Set());
  const needed: Record<string, number> = {};
  for (const [group] of required) {
    // Counted, not added to what `needed` holds: a group named "constructor" would start
    // from Object's own.
    const open = places.filter((g, place) => g === group && holder[place] === undefined).length;
    if (open > 0) needed[group] = open;
  }
  const groupsShort = Object.values(needed).reduce((sum, n) => sum + n, 0);
  const left = Math.max(quorum - approvals.length, groupsShort);
  return { approvals: approvals.length, quorum, needed, left, met: left === 0 };
}

/** "1 from security and 2 from finance": what the groups still need, for people to read. */
export function neededText(needed: Record<string, number>): string {
  return names(Object.entries(needed).map(([group, n]) => `${n} from ${group}`));
}
