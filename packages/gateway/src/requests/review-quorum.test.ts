import { describe, expect, it } from "vitest";
import { neededText, quorumStanding } from "./review-quorum.js";

describe("quorumStanding", () => {
  it("counts approvals against the quorum when no group is required", () => {
    expect(quorumStanding({ quorum: 2 }, [["eng"]])).toEqual({
      approvals: 1,
      quorum: 2,
      needed: {},
      left: 1,
      met: false,
    });
    expect(quorumStanding({ quorum: 2 }, [["eng"], []]).met).toBe(true);
    expect(quorumStanding(undefined, [[]]).met).toBe(true);
  });

  it("holds a request whose count is made but whose required group has not approved", () => {
    const review = { quorum: 2, require: { security: 1 } };
    const standing = quorumStanding(review, [["finance"], ["finance"]]);
    expect(standing).toMatchObject({ approvals: 2, needed: { security: 1 }, left: 1, met: false });
    expect(quorumStanding(review, [["finance"], ["finance"], ["security"]]).met).toBe(true);
  });

  it("lets one person stand for one group only, whichever order the votes came in", () => {
    const review = { quorum: 2, require: { finance: 1, security: 1 } };
    // Someone in both groups, and someone in security only: both places are filled.
    expect(quorumStanding(review, [["finance", "security"], ["security"]]).met).toBe(true);
    expect(quorumStanding(review, [["security"], ["finance", "security"]]).met).toBe(true);
    // Two people in both groups fill both places; one alone fills one.
    expect(
      quorumStanding(review, [
        ["finance", "security"],
        ["security", "finance"],
      ]).met,
    ).toBe(true);
    const alone = quorumStanding({ quorum: 1, require: { finance: 1, security: 1 } }, [
      ["finance", "security"],
    ]);
    expect(alone).toMatchObject({ met: false, left: 1 });
    expect(Object.values(alone.needed)).toEqual([1]);
  });

  it("moves an earlier approval to another group when that lets a later one count", () => {
    // The first approval could fill either place; matched greedily to finance, it would leave
    // security open although the second, in finance only, can take finance.
    const review = { quorum: 2, require: { finance: 1, security: 1 } };
    expect(quorumStanding(review, [["finance", "security"], ["finance"]]).met).toBe(true);
    const three = { quorum: 3, require: { a: 1, b: 1, c: 1 } };
    expect(quorumStanding(three, [["a", "b"], ["b", "c"], ["a"]]).met).toBe(true);
    expect(
      quorumStanding(three, [
        ["a", "b"],
        ["a", "b"],
        ["a", "b"],
      ]),
    ).toMatchObject({
      met: false,
      needed: { c: 1 },
      left: 1,
    });
  });

  it("counts what a group named like an Object property (constructor, toString) still needs", () => {
    const review = { quorum: 2, require: { constructor: 1, toString: 1 } };
    expect(quorumStanding(review, [["finance"]])).toEqual({
      approvals: 1,
      quorum: 2,
      needed: { constructor: 1, toString: 1 },
      left: 2,
      met: false,
    });
    expect(quorumStanding(review, [["toString"], ["constructor"]]).met).toBe(true);
  });

  it("asks for more than the quorum when the groups need it", () => {
    const standing = quorumStanding({ quorum: 3, require: { security: 2 } }, [["finance"]]);
    expect(standing).toMatchObject({ left: 2, needed: { security: 2 }, met: false });
    const more = quorumStanding({ quorum: 3, require: { security: 1 } }, [["finance"]]);
    expect(more).toMatchObject({ left: 2, needed: { security: 1 } });
  });
});

describe("neededText", () => {
  it("names what each group still needs", () => {
    expect(neededText({})).toBe("");
    expect(neededText({ security: 1 })).toBe("1 from security");
    expect(neededText({ security: 1, finance: 2, legal: 1 })).toBe(
      "1 from security, 2 from finance and 1 from legal",
    );
  });
});
