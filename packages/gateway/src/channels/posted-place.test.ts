import { describe, expect, it } from "vitest";
import { createLogger } from "../observability/logger.js";
import { postedPlaceCheck } from "./posted-place.js";

/** A check over `refs` (by request and channel), with the lines it logs. */
function checkOver(refs: Record<string, string>) {
  const lines: Record<string, unknown>[] = [];
  const reads: string[] = [];
  const check = postedPlaceCheck({
    channel: "chat",
    postedRef: async (requestId, channel) => {
      reads.push(`${requestId}/${channel}`);
      return refs[`${requestId}/${channel}`];
    },
    placeOf: (ref) => ref.split(":")[0]!,
    logger: createLogger({ destination: { write: (line) => lines.push(JSON.parse(line)) } }),
    refused: "refused a click from elsewhere",
  });
  return { check, lines, reads };
}

describe("postedPlaceCheck", () => {
  it("takes a click from the place the ref names, under the channel's own name", async () => {
    const { check, lines, reads } = checkOver({ "r1/chat": "C1:100.1", "r1/other": "C2:1" });
    expect(await check("r1", "C1", { user: "U1" })).toBe(true);
    expect(reads).toEqual(["r1/chat"]);
    expect(lines).toEqual([]);
  });

  it("refuses a click from elsewhere, from no place, or on a request not posted, and logs it", async () => {
    const { check, lines } = checkOver({ "r1/chat": "C1:100.1", "r2/other": "C1:1" });
    expect(await check("r1", "C2", { user: "U1" })).toBe(false);
    expect(await check("r1", undefined, { user: "U2" })).toBe(false);
    expect(await check("r2", "C1", { user: "U3" })).toBe(false);
    expect(
      lines.map(({ requestId, user, from, postedTo, msg }) => ({
        requestId,
        user,
        from,
        postedTo,
        msg,
      })),
    ).toEqual([
      {
        requestId: "r1",
        user: "U1",
        from: "C2",
        postedTo: "C1",
        msg: "refused a click from elsewhere",
      },
      {
        requestId: "r1",
        user: "U2",
        from: null,
        postedTo: "C1",
        msg: "refused a click from elsewhere",
      },
      {
        requestId: "r2",
        user: "U3",
        from: "C1",
        postedTo: null,
        msg: "refused a click from elsewhere",
      },
    ]);
  });
});
