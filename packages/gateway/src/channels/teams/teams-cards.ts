/**
 * What Airlock says in Teams, as Adaptive Cards: pure builders, no I/O. Everything from an
 * agent goes in TextRuns, which Teams shows as written (a TextBlock would read it as
 * markdown, so an agent could write links or fake Airlock's own bold labels), with
 * bidirectional controls shown as what they are.
 */
import type { Json } from "../../common/canonical-json.js";
import { BIDI_CONTROLS, codePointText } from "../../common/storable-text.js";
import { names } from "../../common/word-list.js";
import { cutText } from "../../masking/text-cut.js";
import type { ChannelView } from "../channel.js";
import {
  approvalsLine,
  factLines,
  plural,
  refusal,
  statusTitle,
  timeUntil,
  utcMinute,
} from "../review-text.js";

export const verbs = { approve: "airlock.approve", deny: "airlock.deny" } as const;

/** Risks at which an approval must be confirmed by ticking a box; the gateway checks it too. */
export const confirmedRisks: ReadonlySet<string> = new Set(["high", "critical"]);

// Budgets for the agent's text, in UTF-16 units, so that a card stays under Teams' 28 KB per
// message even when every character takes three bytes (a card of CJK text at every limit).
const budget = {
  preview: 1500,
  input: 1500,
  context: 700,
  justification: 1000,
  facts: 500,
  comment: 120,
  short: 120,
} as const;

/** Reviews listed one by one; earlier ones are counted (the console lists them all). */
const REVIEWS_SHOWN = 6;

/**
 * Shown as their code point instead of as themselves: bidirectional controls (they reorder
 * the text after them); other control characters but tab and newline, and invisible format
 * characters (zero-width spaces, soft hyphens, tag characters: text a reviewer cannot see;
 * controls also take six bytes each once JSON escapes them, which the size budget could not
 * foresee); and lone surrogates (no character at all). The zero-width joiner stays: emoji
 * are built with it.
 */
const unshown = new RegExp(
  `[${BIDI_CONTROLS}\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\uD800-\\uDFFF]|(?!\\u200d)\\p{Cf}`,
  "gu",
);

/**
 * The text with the characters above shown as code points, cut to `max` characters (never
 * inside a surrogate pair, a code point's text, or a `[masked]` or `[redacted]`, a piece of
 * which would read as text the agent wrote), with how much was left out.
 */
function shown(text: string, max: number): { text: string; omitted: number } {
  const visible = text.replace(unshown, codePointText);
  if (visible.length <= max) return { text: visible, omitted: 0 };
  let cut = cutText(visible, max - 1, []);
  const open = cut.lastIndexOf("[U+");
  if (open > cut.length - 8 && !cut.slice(open).includes("]")) cut = cut.slice(0, open);
  return { text: `${cut}…`, omitted: visible.length - cut.length };
}

function clip(text: string, max: number): string {
  return shown(text, max).text;
}

type Inline = { type: "TextRun"; text: string; [style: string]: Json };
type Element = { type: string; [field: string]: Json };

function run(text: string, style: Record<string, Json> = {}): Inline {
  return { type: "TextRun", text, ...style };
}

function label(text: string): Inline {
  return run(`${text}: `, { weight: "Bolder" });
}

function rich(...inlines: Inline[]): Element {
  return { type: "RichTextBlock", inlines };
}

/** A labelled block of the agent's text, monospace when it is code; says whether it was cut. */
function block(
  title: string,
  note: string,
  text: string,
  max: number,
  monospace: boolean,
): { elements: Element[]; cut: boolean } {
  const body = shown(text, max);
  const elements: Element[] = [
    rich(run(title, { weight: "Bolder" }), ...(note ? [run(` ${note}`, { isSubtle: true })] : [])),
    {
      type: "Container",
      style: "emphasis",
      items: [rich(run(body.text, monospace ? { fontType: "Monospace" } : { italic: true }))],
    },
  ];
  if (body.omitted > 0) {
    elements.push(
      rich(run(`… ${body.omitted} more characters not shown here`, { isSubtle: true })),
    );
  }
  return { elements, cut: body.omitted > 0 };
}

function json(value: Json): string {
  return JSON.stringify(value, null, 2) ?? "null";
}

/** The action in a few words, from the preview's first line ("POST /refunds on billing-api"). */
function what(view: ChannelView): string {
  const line = view.preview.split("\n", 1)[0]?.trim() ?? "";
  return `${line ? clip(line, 80) : clip(view.operation, 80)} on ${clip(view.connection, 80)}`;
}

/** Where the request stands, or how it ended. */
export function statusLine(view: ChannelView): string {
  const approved = view.reviews
    .filter((r) => r.decision === "approve")
    .map((r) => clip(r.reviewer, 120));
  const by = approved.length
    ? `by ${names(approved)}`
    : `by rule ${clip(view.decision.rule ?? "(none)", 120)}`;
  const summary = view.outcome ? `: ${clip(view.outcome.summary, 300)}` : "";
  switch (view.status) {
    case "pending":
      return `Waiting for review: ${approvalsLine(view, clip)}`;
    case "approved":
      return `Approved ${by}; about to run`;
    case "executing":
      return `Approved ${by}; running now`;
    case "succeeded":
      return `Approved ${by}; succeeded ${utcMinute(view.finishedAt)}${summary}`;
    case "failed": {
      const reason = view.outcome?.reason ? ` (${clip(view.outcome.reason, 300)})` : "";
      return `Approved ${by}; failed ${utcMinute(view.finishedAt)}${summary}${reason}`;
    }
    case "denied": {
      const deny = view.reviews.find((r) => r.decision === "deny");
      if (!deny) return `Denied by the policy: ${clip(view.decision.reason, 300)}`;
      const comment = deny.comment ? `: “${clip(deny.comment, budget.comment)}”` : "";
      return `Denied by ${clip(deny.reviewer, 120)} ${utcMinute(deny.at)}${comment}`;
    }
    case "expired":
      return `Expired ${utcMinute(view.finishedAt)} with ${approvalsLine(view, clip)}`;
    case "cancelled":
      return `Cancelled by the agent ${utcMinute(view.finishedAt)}`;
  }
}

/**
 * The actions while a vote can count. No one-click Approve when approving needs a fresh
 * sign-in (a Teams click is not one) or when the action was cut to fit: what matters could
 * be past the cut. Risky actions ask for a ticked box first, which the gateway checks again.
 */
function actions(
  view: ChannelView,
  shownWhole: boolean,
): { inputs: Element[]; actions: Element[] } {
  const data = { requestId: view.id };
  const open = { type: "Action.OpenUrl", title: "Open in Airlock", url: view.approvalUrl };
  const deny = {
    type: "Action.Execute",
    title: "Deny",
    verb: verbs.deny,
    data,
    style: "destructive",
    associatedInputs: "auto",
  };
  const comment = {
    type: "Input.Text",
    id: "comment",
    placeholder: "Comment (recorded with your review; the agent sees it too)",
    isMultiline: true,
    maxLength: 2000,
  };
  if (view.review?.stepUp || !shownWhole) {
    const why = view.review?.stepUp
      ? "Approving needs a fresh sign-in with your identity provider, so it cannot be done from Teams"
      : "This action is too long to show whole here, so it cannot be approved from Teams";
    return {
      inputs: [
        rich(
          run(
            `${why}: approve in Airlock, or from a terminal: airlock requests approve ${view.id}`,
            { isSubtle: true },
          ),
        ),
        comment,
      ],
      actions: [{ ...open, style: "positive" }, deny],
    };
  }
  const confirm = confirmedRisks.has(view.risk.level)
    ? [
        {
          type: "Input.Toggle",
          id: "confirm",
          title: `Risk ${view.risk.level}: I have read what will run, with Airlock's credentials`,
          valueOn: "yes",
          valueOff: "no",
          // Not required: Teams would then refuse Deny too until it is ticked. The gateway
          // refuses an approval without it.
        },
      ]
    : [];
  return {
    inputs: [comment, ...confirm],
    actions: [
      {
        type: "Action.Execute",
        title: "Approve",
        verb: verbs.approve,
        data,
        style: "positive",
        associatedInputs: "auto",
      },
      deny,
      open,
    ],
  };
}

/**
 * The approval card for a request as it stands; once it is out of review, a record.
 * `approvable` says whether it offers Approve (not when cut to fit, nor for step-up).
 */
export function requestCard(view: ChannelView): {
  card: Element;
  summary: string;
  approvable: boolean;
} {
  const pending = view.status === "pending";
  const agent = view.agent;
  const labels = Object.entries(agent.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  const preview = block("What will run", "", view.preview, budget.preview, true);
  const masked = view.maskedFields.length
    ? `(masked by the policy: ${clip(view.maskedFields.join(", "), budget.short)})`
    : "";
  const input = block("Input", masked, json(view.input), budget.input, true);
  const context =
    Object.keys(view.context).length > 0
      ? block("Context", "(from the agent)", json(view.context), budget.context, true)
      : undefined;
  const justification = view.justification.trim()
    ? block(
        "Justification",
        "(the agent's own claim, not verified: check it against what will run)",
        view.justification,
        budget.justification,
        false,
      ).elements
    : [rich(label("Justification"), run("the agent gave none", { italic: true }))];
  const facts = factLines(view.facts);
  const hint = view.risk.hint;
  const body: Element[] = [
    rich(run(`${statusTitle[view.status]}: ${what(view)}`, { weight: "Bolder", size: "Medium" })),
    rich(
      label("Agent"),
      run(
        `${clip(agent.name, budget.short)} (owner ${clip(agent.owner, budget.short)})${labels ? `, ${clip(labels, budget.short)}` : ""}`,
      ),
    ),
    rich(
      label("Action"),
      run(
        `${clip(view.operation, budget.short)} on ${clip(view.connection, budget.short)} (${clip(view.connectionType, 40)})`,
      ),
    ),
    rich(
      label("Risk"),
      run(`${clip(view.risk.level, 20)}: ${clip(view.risk.reason, budget.short)}`, {
        color: confirmedRisks.has(view.risk.level) ? "Attention" : "Default",
        weight: "Bolder",
      }),
      run(` (connector's hint: ${clip(hint.level, 20)}, ${clip(hint.reason, budget.short)})`),
    ),
    rich(
      label("Rule"),
      run(
        `${clip(view.decision.rule ?? "(none)", budget.short)}: ${clip(view.decision.reason, budget.short)}`,
      ),
      ...(view.decision.error
        ? [run(` (${clip(view.decision.error, budget.short)})`, { color: "Warning" })]
        : []),
    ),
    rich(
      label("Approvals"),
      run(
        `${approvalsLine(view, clip)}${view.review?.stepUp ? "; step-up sign-in required to approve" : ""}`,
      ),
    ),
    rich(label("Expires"), run(utcMinute(view.expiresAt))),
    ...preview.elements,
    ...(facts ? [rich(label("Facts"), run(clip(facts, budget.facts), { isSubtle: true }))] : []),
    // The claim sits right under the action it claims to explain, so a mismatch shows.
    ...justification,
    ...input.elements,
    ...(context?.elements ?? []),
  ];
  const hidden = view.reviews.length - REVIEWS_SHOWN;
  if (hidden > 0)
    body.push(rich(run(`${plural(hidden, "earlier review")} not shown here`, { isSubtle: true })));
  for (const r of view.reviews.slice(-REVIEWS_SHOWN)) {
    body.push(
      rich(
        run(r.decision === "approve" ? "Approved" : "Denied", { weight: "Bolder" }),
        run(
          ` by ${clip(r.reviewer, budget.short)} ${utcMinute(r.at)} (verified by ${clip(r.verifiedBy, 40)})`,
        ),
        ...(r.comment ? [run(`: “${clip(r.comment, budget.comment)}”`, { italic: true })] : []),
      ),
    );
  }
  body.push(rich(run(statusLine(view), { weight: "Bolder" })));
  const shownWhole = !preview.cut && !input.cut && !(context?.cut ?? false);
  const controls = pending ? actions(view, shownWhole) : { inputs: [], actions: [] };
  body.push(...controls.inputs);
  body.push(
    rich(
      run(
        `Request ${clip(view.id, 100)} · hash ${view.hash.slice(0, 12)}… · asked ${utcMinute(view.createdAt)}`,
        {
          isSubtle: true,
          size: "Small",
        },
      ),
    ),
  );
  const card: Element = {
    type: "AdaptiveCard",
    $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
    // Action.Execute (Universal Actions) needs 1.4.
    version: "1.4",
    msteams: { width: "Full" },
    body,
    ...(controls.actions.length ? { actions: controls.actions } : {}),
  };
  const summary = pending
    ? `Approval needed: ${clip(agent.name, budget.short)} asks to run ${what(view)} (risk ${clip(view.risk.level, 20)})`
    : `${statusTitle[view.status]}: ${what(view)}`;
  return { card, summary, approvable: !view.review?.stepUp && shownWhole };
}

/** A reminder in the card's thread (plain text): time left and approvals still needed. */
export function reminderText(view: ChannelView, now: number): string {
  const expires = view.expiresAt
    ? `expires ${timeUntil(Date.parse(view.expiresAt) - now)} (${utcMinute(view.expiresAt)})`
    : "does not expire";
  return `Reminder: request ${clip(view.id, 100)} (${what(view)}) is waiting for review, ${approvalsLine(view, clip)}, and ${expires}.`;
}

/** Refusals in Teams' own words; the rest are every chat's (review-text.ts). */
const teamsRefusals: Record<string, string> = {
  already_received:
    "Airlock already received this click, and it counts once: the card shows where the request stands.",
  not_mapped:
    "Airlock cannot tell who you are: your Teams account has no e-mail that Airlock knows as a reviewer, or it is a guest account or from another organisation. Ask an operator to add your e-mail to the reviewers.",
  lookup_failed:
    "Airlock could not ask Teams who you are just now, so nothing was recorded. Try again in a moment.",
  not_shown_whole:
    "This action is too long to show whole in Teams, so it cannot be approved from here: use Open in Airlock, where all of it is shown. Nothing was recorded.",
  not_posted_here:
    "This request's card was not posted in this conversation, so it cannot be decided from here: use the card Airlock posted for it, or Open in Airlock. Nothing was recorded.",
  unconfirmed:
    "This is a risky action: tick the box that says you have read what will run, then approve again. Nothing was recorded.",
  step_up_required:
    "Approving this request needs a fresh sign-in with your identity provider, which a Teams click is not: use Open in Airlock.",
};

/** What a refused click is told (only the person who clicked sees it). */
export function refusalText(code: string, message: string): string {
  return refusal(code, message, teamsRefusals, clip);
}
