import type { KnownBlock } from "@slack/types";
import { describe, expect, it } from "vitest";
import { pendingView, viewId } from "../../../test/support/channel-views.js";
import { wellFormed } from "../../common/storable-text.js";
import {
  actionIds,
  escalationText,
  escapeMrkdwn,
  modalCallbackId,
  outcomeReply,
  parseModalMetadata,
  refusalText,
  reminderText,
  requestMessage,
  reviewModal,
} from "./slack-messages.js";

const id = viewId;

const approval = (reviewer: string, at = "2030-01-02T15:06:00.000Z") => ({
  reviewer,
  decision: "approve" as const,
  comment: "",
  at,
  verifiedBy: "slack" as const,
});

/** Every interactive element in the message, wherever it sits. */
function elements(blocks: KnownBlock[]): { action_id?: string; value?: string; url?: string }[] {
  return blocks.flatMap((b) => (b.type === "actions" ? b.elements : [])) as {
    action_id?: string;
    value?: string;
    url?: string;
  }[];
}

/** Every text Slack would render, from sections, fields, contexts and headers. */
function texts(blocks: KnownBlock[]): string[] {
  return blocks.flatMap((b) => {
    if (b.type === "section") return [b.text?.text ?? "", ...(b.fields ?? []).map((f) => f.text)];
    if (b.type === "context") return b.elements.map((e) => ("text" in e ? e.text : ""));
    if (b.type === "header") return [b.text.text];
    return [];
  });
}

describe("requestMessage", () => {
  it("gives a pending request the four buttons, each carrying the request id", () => {
    const { blocks, text } = requestMessage(pendingView());
    const buttons = elements(blocks);
    expect(buttons.map((b) => b.action_id).sort()).toEqual(
      [
        actionIds.approve,
        actionIds.approveWithComment,
        actionIds.deny,
        actionIds.denyWithReason,
      ].sort(),
    );
    for (const b of buttons) expect(b.value).toBe(id);
    expect(text).toContain("support-bot");
    const all = texts(blocks).join("\n");
    expect(all).toContain("Customer was charged twice");
    expect(all).toContain("alice@example.com");
    expect(all).toContain("agent's own claim");
    expect(all).toContain("0 of 2 approvals; 2 more approvals needed from finance");
    expect(all).toContain("<!date^1893597545^{date_short_pretty} {time}|2030-01-02 15:19 UTC>");
    expect(all).toContain("a write");
  });

  it("offers no approve action at all for a step-up request, only the link to Airlock", () => {
    const view = pendingView({ review: { approvers: [], quorum: 1, approvals: 0, stepUp: true } });
    const { blocks } = requestMessage(view);
    const ids = elements(blocks).map((b) => b.action_id);
    expect(ids).not.toContain(actionIds.approve);
    expect(ids).not.toContain(actionIds.approveWithComment);
    expect(JSON.stringify(blocks)).not.toContain(`"${actionIds.approve}"`);
    const link = elements(blocks).find((b) => b.action_id === actionIds.openConsole);
    expect(link).toMatchObject({ url: view.approvalUrl, value: id });
    expect(ids).toContain(actionIds.deny);
    expect(texts(blocks).join("\n")).toContain(`airlock requests approve ${id}`);
  });

  it("offers no approve action for an action too long to show whole, only the link", () => {
    // Padding pushes what matters (the amount) past what the message can show.
    const view = pendingView({
      input: { method: "POST", path: "/refunds", body: { memo: "x".repeat(4000), amount: 999999 } },
    });
    const { blocks } = requestMessage(view);
    expect(texts(blocks).join("\n")).not.toContain("999999");
    const ids = elements(blocks).map((b) => b.action_id);
    expect(ids).not.toContain(actionIds.approve);
    expect(ids).not.toContain(actionIds.approveWithComment);
    expect(elements(blocks).find((b) => b.action_id === actionIds.openConsole)).toMatchObject({
      url: view.approvalUrl,
    });
    expect(ids).toContain(actionIds.deny);
    expect(texts(blocks).join("\n")).toContain("too long to show whole here");
    // Shown whole, the usual buttons.
    expect(elements(requestMessage(pendingView()).blocks).map((b) => b.action_id)).toContain(
      actionIds.approve,
    );
  });

  it("marks every text verbatim, so a bare URL the agent wrote is not made a link", () => {
    const { blocks } = requestMessage(
      pendingView({ justification: "see https://evil.example/login for the invoice" }),
    );
    const objects = blocks.flatMap((b) => {
      if (b.type === "section") return [b.text, ...(b.fields ?? [])];
      if (b.type === "context") return b.elements;
      return [];
    }) as { type: string; verbatim?: boolean }[];
    const mrkdwn = objects.filter((o) => o?.type === "mrkdwn");
    expect(mrkdwn.length).toBeGreaterThan(5);
    for (const o of mrkdwn) expect(o.verbatim).toBe(true);
  });

  it("keeps a preview inside its code block however many backticks it holds", () => {
    for (const run of [3, 4, 5, 6, 9]) {
      const fence = "`".repeat(run);
      const view = pendingView({
        preview: `SELECT 1 -- ${fence}\n*Risk*: :large_green_circle: low`,
      });
      const block = texts(requestMessage(view).blocks).find((t) =>
        t.startsWith("*What will run*"),
      )!;
      const inside = block.slice(block.indexOf("```") + 3, block.lastIndexOf("```"));
      expect(inside, `${run} backticks`).not.toContain("```");
      expect(inside).toContain("*Risk*: :large_green_circle: low");
    }
  });

  it("shows a resolved request without buttons, saying who decided and how it ran", () => {
    const view = pendingView({
      status: "succeeded",
      review: { approvers: ["finance"], quorum: 2, approvals: 2, stepUp: false },
      reviews: [approval("bob@example.com"), approval("carol@example.com")],
      outcome: { summary: "HTTP 200, 512 bytes", result: { ok: true } },
      finishedAt: "2030-01-02T15:07:00.000Z",
    });
    const { blocks } = requestMessage(view);
    expect(elements(blocks)).toEqual([]);
    expect(blocks.some((b) => b.type === "actions")).toBe(false);
    const all = texts(blocks).join("\n");
    expect(all).toContain("bob@example.com and carol@example.com");
    expect(all).toContain("HTTP 200, 512 bytes");
    expect(all).toContain(id);

    const denied = requestMessage(
      pendingView({
        status: "denied",
        reviews: [{ ...approval("bob@example.com"), decision: "deny", comment: "duplicate" }],
      }),
    );
    expect(elements(denied.blocks)).toEqual([]);
    expect(texts(denied.blocks).join("\n")).toMatch(/Denied\* by bob@example\.com.*duplicate/);
  });

  it("escapes mentions and links the agent writes, wherever they would appear", () => {
    const evil = "Routine <!channel> see <https://evil.example|the ticket> & <@U123>";
    const view = pendingView({
      justification: evil,
      preview: evil,
      context: { note: evil },
      facts: { http: { method: "POST", path: evil } },
      agent: { name: "support-bot", owner: "alice@example.com", labels: { x: evil } },
      input: { body: evil },
      operation: `<!here>`,
    });
    const { blocks, text } = requestMessage(view);
    const json = JSON.stringify({ blocks, text });
    expect(json).not.toContain("<!channel>");
    expect(json).not.toContain("<!here>");
    expect(json).not.toContain("<https://evil");
    expect(json).not.toContain("<@U123>");
    expect(texts(blocks).join("\n")).toContain("&lt;!channel&gt;");
    expect(outcomeReply(pendingView({ status: "denied", reviews: [] }))).not.toContain("<");
  });

  it("cuts a huge input, and keeps every text and the block count within Slack's limits", () => {
    const huge = "x&<".repeat(40_000);
    const view = pendingView({
      input: { body: huge, more: Array.from({ length: 50 }, (_, i) => ({ i, huge })) },
      preview: huge,
      justification: `${huge}\n`.repeat(200),
      context: { huge },
      facts: { http: { path: huge }, sql: { tables: Array(2000).fill("t") } },
      agent: { name: "a".repeat(5000), owner: "o".repeat(5000), labels: { l: huge } },
      reviews: Array.from({ length: 60 }, (_, i) => ({
        ...approval(`r${i}@example.com`),
        comment: huge,
      })),
    });
    const { blocks, text } = requestMessage(view);
    expect(blocks.length).toBeLessThanOrEqual(50);
    for (const b of blocks) {
      if (b.type === "section") {
        expect(b.text?.text.length ?? 0).toBeLessThanOrEqual(3000);
        for (const f of b.fields ?? []) expect(f.text.length).toBeLessThanOrEqual(2000);
        expect(b.fields?.length ?? 0).toBeLessThanOrEqual(10);
      }
      if (b.type === "context") {
        for (const e of b.elements)
          if ("text" in e) expect(e.text.length).toBeLessThanOrEqual(3000);
      }
      if (b.type === "header") expect(b.text.text.length).toBeLessThanOrEqual(150);
    }
    expect(text.length).toBeLessThanOrEqual(3000);
    const input = texts(blocks).find((t) => t.startsWith("*Input*")) ?? "";
    expect(input).toMatch(/more characters not shown/);
    // Cut between whole entities, never inside one.
    expect(JSON.stringify(blocks)).not.toMatch(/&(a|am|amp|l|lt|g|gt)?…/);
  });

  it("shows masked input fields as [masked] and names what was masked", () => {
    const { blocks } = requestMessage(pendingView());
    const input = texts(blocks).find((t) => t.startsWith("*Input*")) ?? "";
    expect(input).toContain('"card_number": "[masked]"');
    expect(input).toContain("masked by the policy: body.card_number");
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
        ...around(79).map((n) =>
          pendingView({ preview: `POST /${"p".repeat(n - 6)}${marker}x\n{}` }),
        ),
        ...[...around(1451), ...around(1500)].map((n) =>
          pendingView({ preview: `${"a".repeat(n)}${marker}${"b".repeat(2000)}` }),
        ),
        ...[...around(299), ...around(1000)].map((n) =>
          pendingView({
            facts: { http: { path: `${"c".repeat(n - 11)}${marker}${"d".repeat(2000)}` } },
          }),
        ),
        ...around(2460).map((n) =>
          pendingView({ justification: `${"e".repeat(n)}${marker}${"f".repeat(3000)}` }),
        ),
        ...around(2551).map((n) =>
          pendingView({ input: { body: `${"g".repeat(n - 13)}${marker}${"h".repeat(3000)}` } }),
        ),
      ];
      for (const view of views) {
        const { text, blocks } = requestMessage(view);
        for (const shown of [text, ...texts(blocks)]) {
          for (const piece of pieces) expect(shown, piece).not.toContain(piece);
        }
      }
    }
  });

  it("shows only a short prefix of the hash", () => {
    const view = pendingView();
    const json = JSON.stringify(requestMessage(view).blocks);
    expect(json).not.toContain(view.hash);
    expect(json).toContain(view.hash.slice(0, 12));
  });

  it("asks for a second look before approving a high-risk action", () => {
    const high = elements(requestMessage(pendingView()).blocks).find(
      (b) => b.action_id === actionIds.approve,
    );
    expect(high).toHaveProperty("confirm");
    const low = elements(
      requestMessage(
        pendingView({ risk: { level: "low", reason: "r", hint: { level: "low", reason: "r" } } }),
      ).blocks,
    ).find((b) => b.action_id === actionIds.approve);
    expect(low).not.toHaveProperty("confirm");
  });
});

describe("reviewModal and its metadata", () => {
  const args = { requestId: id, channel: "C0123", ts: "1700000000.000100", summary: id };

  it("round-trips its metadata", () => {
    const modal = reviewModal({ ...args, decision: "deny" });
    expect(modal.callback_id).toBe(modalCallbackId);
    expect(parseModalMetadata(modal.private_metadata ?? "")).toEqual({
      requestId: id,
      decision: "deny",
      channel: "C0123",
      ts: "1700000000.000100",
    });
    expect(modal.title.text.length).toBeLessThanOrEqual(24);
    expect(reviewModal({ ...args, decision: "approve" }).title.text.length).toBeLessThanOrEqual(24);
  });

  it("shows what will run and, before approving a risky action, that it is risky", () => {
    const risky = texts(
      reviewModal({ ...args, decision: "approve", view: pendingView() }).blocks as KnownBlock[],
    );
    expect(risky.join("\n")).toContain(" on billing-api, risk high");
    expect(risky.some((t) => t.startsWith(":warning: Risk high"))).toBe(true);
    const low = pendingView({
      risk: { level: "low", reason: "r", hint: { level: "low", reason: "r" } },
    });
    const calm = texts(
      reviewModal({ ...args, decision: "approve", view: low }).blocks as KnownBlock[],
    );
    expect(calm.join("\n")).toContain("risk low");
    expect(calm.some((t) => t.includes(":warning:"))).toBe(false);
    const deny = texts(
      reviewModal({ ...args, decision: "deny", view: pendingView() }).blocks as KnownBlock[],
    );
    expect(deny.some((t) => t.includes(":warning:"))).toBe(false);
  });

  it("refuses malformed metadata", () => {
    const good = { requestId: id, decision: "approve", channel: "C0123", ts: "1700000000.000100" };
    for (const bad of [
      "",
      "not json",
      "null",
      "[]",
      JSON.stringify({ ...good, decision: "maybe" }),
      JSON.stringify({ ...good, extra: 1 }),
      JSON.stringify({ ...good, requestId: 5 }),
      JSON.stringify({ ...good, requestId: "" }),
      JSON.stringify({ ...good, channel: "C0123<!here>" }),
      JSON.stringify({ ...good, ts: "yesterday" }),
      JSON.stringify({ requestId: id, decision: "approve", channel: "C0123" }),
    ]) {
      expect(parseModalMetadata(bad), bad).toBeUndefined();
    }
    expect(parseModalMetadata(JSON.stringify(good))).toEqual(good);
  });

  it("requires a reason to deny, and leaves the comment optional to approve", () => {
    const input = (decision: "approve" | "deny") => {
      const block = reviewModal({ ...args, decision }).blocks.find((b) => b.type === "input");
      if (block?.type !== "input") throw new Error("no input block");
      return block;
    };
    expect(input("deny")).toMatchObject({
      block_id: "comment",
      optional: false,
      element: { type: "plain_text_input", action_id: "comment", multiline: true },
    });
    expect(input("approve")).toMatchObject({
      block_id: "comment",
      optional: true,
      element: { type: "plain_text_input", action_id: "comment", multiline: true },
    });
  });
});

describe("thread and ephemeral texts", () => {
  it("says how a request ended", () => {
    expect(
      outcomeReply(
        pendingView({
          status: "succeeded",
          reviews: [approval("bob@example.com"), approval("carol@example.com")],
          outcome: { summary: "HTTP 200, 512 bytes", result: null },
        }),
      ),
    ).toBe("Approved by bob@example.com and carol@example.com; executed: HTTP 200, 512 bytes");
    expect(
      outcomeReply(
        pendingView({
          status: "denied",
          reviews: [{ ...approval("bob@example.com"), decision: "deny", comment: "<dup>" }],
        }),
      ),
    ).toBe("Denied by bob@example.com: &lt;dup&gt;");
    expect(
      outcomeReply(
        pendingView({
          status: "expired",
          review: { approvers: ["finance"], quorum: 2, approvals: 1, stepUp: false },
          reviews: [approval("bob@example.com")],
        }),
      ),
    ).toBe("Expired with 1 of 2 approvals");
  });

  it("has a refusal for each code, and a fallback that carries the message", () => {
    expect(refusalText("not_mapped", "")).toMatch(/e-mail/i);
    expect(refusalText("self_approval", "m")).toMatch(/own/i);
    expect(refusalText("not_an_approver", "bob is not in finance")).toMatch(
      /approver.*bob is not in finance/i,
    );
    expect(refusalText("already_reviewed", "")).toMatch(/already reviewed/i);
    expect(refusalText("not_pending", "")).toMatch(/no longer/i);
    expect(refusalText("step_up_required", "")).toMatch(/sign-in.*identity provider/i);
    expect(refusalText("expired", "")).toMatch(/expired/i);
    const other = refusalText("store_unavailable", "the store <is> down");
    expect(other).toContain("the store &lt;is&gt; down");
    expect(other).toContain("store_unavailable");
    expect(refusalText("toString", "x")).toContain("could not record");
  });

  it("reminds with the time left and the approvals still needed", () => {
    const view = pendingView({
      review: { approvers: ["finance"], quorum: 2, approvals: 1, stepUp: false },
    });
    const text = reminderText(view, Date.parse("2030-01-02T15:09:05.000Z"));
    expect(text).toContain("in 10 minutes");
    expect(text).toContain("1 more approval (1 of 2 approvals) from finance");
    expect(text).toContain(id);
  });

  it("escalates with the configured mention", () => {
    expect(escalationText(pendingView(), "S0123ABC")).toMatch(/^<!subteam\^S0123ABC> /);
    expect(escalationText(pendingView(), "here")).toMatch(/^<!here> /);
    expect(escalationText(pendingView(), "@channel")).toMatch(/^<!channel> /);
    expect(escalationText(pendingView(), "@oncall")).toMatch(/^@oncall /);
  });

  it("escapes the three control characters and shows bidirectional controls, nothing else", () => {
    expect(escapeMrkdwn("a & b < c > d *e*")).toBe("a &amp; b &lt; c &gt; d *e*");
    // A right-to-left override would show "refund 100" for "refund 001" and the like.
    expect(escapeMrkdwn("refund \u202e001\u202c")).toBe("refund [U+202E]001[U+202C]");
    const { blocks } = requestMessage(
      pendingView({
        justification: "refund \u202e0001\u202c",
        preview: "POST /refunds/\u2067x\u2069",
      }),
    );
    const all = texts(blocks).join("\n");
    expect(all).not.toMatch(/[\u202a-\u202e\u2066-\u2069]/);
    expect(all).toContain("refund [U+202E]0001[U+202C]");
    expect(all).toContain("/refunds/[U+2067]x[U+2069]");
  });

  it("cuts an agent's long action line and path at whole characters", () => {
    // The emoji's two halves straddle where each is cut (the action line, the fact line).
    const path = `/${"a".repeat(72)}😀${"b".repeat(212)}😀/rest`;
    const view = pendingView({
      preview: `POST ${path}\n{}`,
      facts: { http: { method: "POST", path } },
    });
    const { text, blocks } = requestMessage(view);
    for (const shown of [
      text,
      ...texts(blocks),
      reminderText(view, Date.parse("2030-01-02T15:05:00Z")),
    ]) {
      expect(wellFormed(shown), shown).toBe(true);
    }
  });
});
