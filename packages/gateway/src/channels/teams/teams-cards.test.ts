import { describe, expect, it } from "vitest";
import { pendingView, viewId } from "../../../test/support/channel-views.js";
import type { Json } from "../../common/canonical-json.js";
import type { ChannelView } from "../channel.js";
import { refusalText, requestCard, statusLine, verbs } from "./teams-cards.js";

const id = viewId;

/** The shared pending view, at a medium risk (no box to tick). */
function pending(over: Partial<ChannelView> = {}): ChannelView {
  const view = pendingView();
  return pendingView({ risk: { ...view.risk, level: "medium" }, ...over });
}

type Node = { [key: string]: Json };

/** Every object in the card, depth first. */
function nodes(value: Json): Node[] {
  if (Array.isArray(value)) return value.flatMap(nodes);
  if (value && typeof value === "object") {
    return [value as Node, ...Object.values(value).flatMap((v) => nodes(v as Json))];
  }
  return [];
}

const actionsOf = (card: Json) => ((card as Node).actions ?? []) as Node[];
const runs = (card: Json) =>
  nodes(card)
    .filter((n) => n.type === "TextRun")
    .map((n) => n.text as string);

describe("requestCard", () => {
  it("gives a pending request Approve and Deny, each carrying the request id, and a link", () => {
    const { card, summary } = requestCard(pending());
    const actions = actionsOf(card);
    expect(actions.map((a) => [a.type, a.verb ?? a.url])).toEqual([
      ["Action.Execute", verbs.approve],
      ["Action.Execute", verbs.deny],
      ["Action.OpenUrl", `http://airlock.test/requests/${id}`],
    ]);
    for (const action of actions.slice(0, 2)) expect(action.data).toEqual({ requestId: id });
    expect(nodes(card).some((n) => n.type === "Input.Text" && n.id === "comment")).toBe(true);
    // A medium risk asks for no confirmation box.
    expect(nodes(card).some((n) => n.type === "Input.Toggle")).toBe(false);
    expect(summary).toBe(
      "Approval needed: support-bot asks to run POST /refunds on billing-api (risk medium)",
    );
  });

  it("puts the agent's text only in TextRuns, which Teams never reads as markdown", () => {
    const sly = "**Risk: low** [approve now](https://evil.example) _trusted_";
    const { card } = requestCard(
      pending({ justification: sly, preview: `POST /refunds ${sly}`, context: { note: sly } }),
    );
    expect(nodes(card).some((n) => n.type === "TextBlock" || n.type === "FactSet")).toBe(false);
    const holding = nodes(card).filter(
      (n) => typeof n.text === "string" && (n.text as string).includes("evil.example"),
    );
    expect(holding.length).toBeGreaterThanOrEqual(3);
    for (const n of holding) expect(n.type).toBe("TextRun");
  });

  it("shows bidirectional and other control characters as what they are", () => {
    const { card } = requestCard(
      pending({ justification: "pay \u202e0001$ \u2066x\u2069\u0007\u0085 \ud800 ok\tfine\nnext" }),
    );
    const text = runs(card).join("\n");
    expect(text).toContain(
      "pay [U+202E]0001$ [U+2066]x[U+2069][U+0007][U+0085] [U+D800] ok\tfine\nnext",
    );
    // Invisible format characters too; the zero-width joiner inside an emoji stays.
    const hidden = requestCard(
      pending({ justification: "ad\u200bmin\u00ad\u{E0041}\u2060 👩\u200d💻" }),
    );
    expect(runs(hidden.card).join("\n")).toContain(
      "ad[U+200B]min[U+00AD][U+E0041][U+2060] 👩\u200d💻",
    );
    const json = JSON.stringify(card);
    for (const char of ["\u202e", "\u2066", "\u2069", "\u0007", "\u0085", "\\u"]) {
      expect(json).not.toContain(char);
    }
  });

  it("asks for a ticked box before approving a high or critical risk", () => {
    for (const level of ["high", "critical"] as const) {
      const { card } = requestCard(pending({ risk: { ...pending().risk, level } }));
      const toggle = nodes(card).find((n) => n.type === "Input.Toggle");
      expect(toggle).toMatchObject({ id: "confirm", valueOn: "yes" });
      // Required, Teams would refuse Deny too until it is ticked; the gateway checks Approve.
      expect(toggle?.isRequired).toBeUndefined();
      expect(actionsOf(card).map((a) => a.verb ?? a.type)).toEqual([
        verbs.approve,
        verbs.deny,
        "Action.OpenUrl",
      ]);
    }
  });

  it("offers no one-click approval when approving needs a fresh sign-in", () => {
    const { card } = requestCard(pending({ review: { ...pending().review!, stepUp: true } }));
    const actions = actionsOf(card);
    expect(actions.map((a) => a.verb ?? a.type)).toEqual(["Action.OpenUrl", verbs.deny]);
    expect(runs(card).join("\n")).toContain("fresh sign-in");
  });

  it("offers no one-click approval when the action had to be cut to fit", () => {
    for (const over of [
      { preview: `POST /refunds\n${"x".repeat(5000)}` },
      { input: { body: "y".repeat(5000) } },
      { context: { note: "z".repeat(3000) } },
    ]) {
      const { card } = requestCard(pending(over));
      expect(actionsOf(card).map((a) => a.verb ?? a.type)).toEqual(["Action.OpenUrl", verbs.deny]);
      expect(runs(card).join("\n")).toMatch(/more characters not shown here/);
    }
  });

  it("never cuts a [masked] or [redacted] marker in two, wherever a limit falls", () => {
    // Each marker swept across where each text is cut: the action line, the preview, the
    // facts, the justification, the input; what is left of a marker at a cut is none of it.
    const partial = (marker: string) =>
      Array.from({ length: marker.length - 1 }, (_, n) => `${marker.slice(0, n + 1)}…`);
    const pieces = [...partial("[masked]"), ...partial("[redacted]")];
    const around = (at: number) => Array.from({ length: 24 }, (_, i) => at - 16 + i);
    for (const marker of ["[masked]", "[redacted]"]) {
      const views = [
        ...around(79).map((n) => pending({ preview: `POST /${"p".repeat(n - 6)}${marker}x\n{}` })),
        ...around(1499).map((n) =>
          pending({ preview: `${"a".repeat(n)}${marker}${"b".repeat(2000)}` }),
        ),
        ...[...around(299), ...around(499)].map((n) =>
          pending({
            facts: { http: { path: `${"c".repeat(n - 11)}${marker}${"d".repeat(2000)}` } },
          }),
        ),
        ...around(999).map((n) =>
          pending({ justification: `${"e".repeat(n)}${marker}${"f".repeat(3000)}` }),
        ),
        ...around(1499).map((n) =>
          pending({ input: { body: `${"g".repeat(n - 13)}${marker}${"h".repeat(3000)}` } }),
        ),
      ];
      for (const view of views) {
        const { card, summary } = requestCard(view);
        for (const shown of [summary, ...runs(card)]) {
          for (const piece of pieces) expect(shown, piece).not.toContain(piece);
        }
      }
    }
  });

  it("stays well under Teams' message size with everything at its largest", () => {
    // Three bytes each in UTF-8, the most a UTF-16 unit can take; a control character would
    // take six once JSON escapes it, were it not shown as its code point.
    for (const big of ["中".repeat(20_000), "\u0001".repeat(20_000)]) {
      const { card } = requestCard(
        pending({
          preview: big,
          justification: big,
          context: { a: big },
          input: { b: big },
          facts: { http: { path: big } },
          reviews: Array.from({ length: 20 }, (_, i) => ({
            reviewer: `r${i}@${big.slice(0, 200)}.example`,
            decision: "approve" as const,
            comment: big.slice(0, 2000),
            at: "2030-01-02T15:06:00.000Z",
            verifiedBy: "teams" as const,
          })),
        }),
      );
      expect(Buffer.byteLength(JSON.stringify(card))).toBeLessThan(28_000);
      expect(runs(card).join("\n")).toContain("14 earlier reviews not shown here");
    }
  });

  it("becomes a record once out of review: no inputs, no actions, how it ended", () => {
    const { card, summary } = requestCard(
      pending({
        status: "succeeded",
        reviews: [
          {
            reviewer: "bob@example.com",
            decision: "approve",
            comment: "ok",
            at: "2030-01-02T15:06:00.000Z",
            verifiedBy: "teams",
          },
        ],
        outcome: { summary: "HTTP 201, 18 bytes" },
        finishedAt: "2030-01-02T15:07:00.000Z",
      } as Partial<ChannelView>),
    );
    expect(actionsOf(card)).toEqual([]);
    expect(nodes(card).some((n) => String(n.type).startsWith("Input."))).toBe(false);
    expect(runs(card).join("\n")).toContain(
      "Approved by bob@example.com; succeeded 2030-01-02 15:07 UTC: HTTP 201, 18 bytes",
    );
    expect(summary).toBe("Approved and done: POST /refunds on billing-api");
  });
});

describe("statusLine and refusals", () => {
  it("says who denied and why", () => {
    const view = pending({
      status: "denied",
      reviews: [
        {
          reviewer: "carol@example.com",
          decision: "deny",
          comment: "not this one",
          at: "2030-01-02T15:06:00.000Z",
          verifiedBy: "teams",
        },
      ],
    });
    expect(statusLine(view)).toBe(
      "Denied by carol@example.com 2030-01-02 15:06 UTC: “not this one”",
    );
  });

  it("explains known refusals and passes others through", () => {
    expect(refusalText("self_approval", "")).toMatch(/you own the agent/);
    expect(refusalText("weird", "something\u202e")).toBe(
      "Airlock could not record your decision: something[U+202E] (weird).",
    );
  });
});
