/** What Airlock says in Slack, as Block Kit: pure builders, no I/O, everything from agents escaped. */
import type {
  ActionsBlockElement,
  Button,
  ContextBlock,
  KnownBlock,
  ModalView,
  SectionBlock,
} from "@slack/types";
import { z } from "zod";
import type { Json } from "../../common/canonical-json.js";
import { BIDI_CONTROLS, codePointText } from "../../common/storable-text.js";
import { names } from "../../common/word-list.js";
import { cutText } from "../../masking/text-cut.js";
import type { ChannelView } from "../channel.js";
import {
  approvalsLeft,
  approvalsLine,
  factLines,
  neededFrom,
  plural,
  refusal,
  statusTitle,
  timeUntil,
  utcMinute,
} from "../review-text.js";

export const actionIds = {
  approve: "airlock_approve",
  deny: "airlock_deny",
  approveWithComment: "airlock_approve_comment",
  denyWithReason: "airlock_deny_reason",
  openConsole: "airlock_open_console",
} as const;

export const modalCallbackId = "airlock_review_modal";

// Slack's limits (Block Kit reference). Texts are cut below them, never rejected by Slack.
const limits = {
  section: 3000,
  field: 2000,
  header: 150,
  metadata: 3000,
  fallback: 3000,
  confirmText: 300,
} as const;

// Budgets for the agent's text inside one section, so the labels around it always fit.
const budget = {
  preview: 1500,
  facts: 1000,
  justification: 2500,
  input: 2600,
  context: 1200,
  comment: 300,
  summary: 500,
  short: 200,
} as const;

/** What mrkdwn must not see as it is: `&`, `<`, `>` and bidirectional controls. */
const escapable = `[&<>${BIDI_CONTROLS}]`;
const escaped = new RegExp(escapable, "g");
const escapedChar = new RegExp(`^${escapable}$`);

/** How one such character is written instead. */
function entity(char: string): string {
  if (char === "&") return "&amp;";
  if (char === "<") return "&lt;";
  if (char === ">") return "&gt;";
  return codePointText(char);
}

/**
 * Escapes `&`, `<` and `>` (unescaped, an agent's text could mention `<!channel>` or fake a
 * link) and shows bidirectional controls as what they are.
 */
export function escapeMrkdwn(text: string): string {
  return text.replace(escaped, entity);
}

/** How long a character is once escaped. */
const escapedLength = (char: string): number =>
  escapedChar.test(char) ? entity(char).length : char.length;

/**
 * Escapes and cuts to at most `max` characters of escaped text, ending with "…" when cut.
 * Cutting after escaping would split an entity (`&am`); counting per character cannot.
 */
function clip(text: string, max: number): string {
  return cut(text, max).text;
}

/**
 * `clip`, also saying how many characters of the original were left out. The cut falls
 * between code points (a surrogate pair is never split), and before a `[masked]` or
 * `[redacted]` it would split: a piece of one would read as text the agent wrote.
 */
function cut(text: string, max: number): { text: string; omitted: number } {
  // Escaping never shortens a character: longer text cannot fit whole.
  if (text.length <= max) {
    const whole = escapeMrkdwn(text);
    if (whole.length <= max) return { text: whole, omitted: 0 };
  }
  // One character is kept for the ellipsis.
  const kept = cutText(text, max - 1, [], escapedLength);
  return { text: `${escapeMrkdwn(kept)}…`, omitted: text.length - kept.length };
}

/**
 * A preformatted block whose content cannot close it early (a ``` inside would end it: every
 * run of backticks is broken up, however long), with a note after it when the content had
 * to be cut. Says whether it was: then not all of the action can be judged from Slack.
 */
function codeBlock(text: string, max: number): { block: string; cut: boolean } {
  const note = "\n_… 0000000000 more characters not shown_";
  const body = cut(text.replace(/`(?=`)/g, "`\u200b"), max - "```\n\n```".length - note.length);
  const block = `\`\`\`\n${body.text}\n\`\`\``;
  return body.omitted > 0
    ? { block: `${block}\n_… ${body.omitted} more characters not shown_`, cut: true }
    : { block, cut: false };
}

/** Every line of the agent's text as a quote, so its formatting cannot pass for Airlock's own. */
function quote(text: string, max: number): string {
  const lines = text.split("\n");
  const shown = lines.slice(0, 40).join("\n");
  // Each line gains a ">", so the text's own budget leaves room for 40 of them.
  const body = clip(shown, max - 40)
    .split("\n")
    .map((line) => `>${line}`)
    .join("\n");
  return lines.length > 40 ? `${body}\n_… ${lines.length - 40} more lines not shown_` : body;
}

function jsonText(value: Json): string {
  return JSON.stringify(value, null, 2) ?? "null";
}

/** Shown in each reader's own time zone, with the UTC time where Slack cannot format it. */
function slackDate(iso: string): string {
  const seconds = Math.floor(Date.parse(iso) / 1000);
  if (!Number.isFinite(seconds)) return clip(iso, 40);
  return `<!date^${seconds}^{date_short_pretty} {time}|${utcMinute(iso)}>`;
}

/**
 * Text objects are verbatim: Slack then links only what is written as a link (`<…>`, which
 * the agent's text cannot hold, escaped), never a bare URL or name the agent slipped in.
 */
function section(text: string): SectionBlock {
  return {
    type: "section",
    text: { type: "mrkdwn", text: clip0(text, limits.section), verbatim: true },
  };
}

/** Cuts text that is already escaped (built from escaped parts) without splitting an entity. */
function clip0(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, max - 1);
  const amp = cut.lastIndexOf("&");
  if (amp > cut.length - 5 && !cut.slice(amp).includes(";")) cut = cut.slice(0, amp);
  return `${cut}…`;
}

function context(text: string): ContextBlock {
  return {
    type: "context",
    elements: [{ type: "mrkdwn", text: clip0(text, limits.section), verbatim: true }],
  };
}

const riskEmoji: Record<string, string> = {
  low: ":large_green_circle:",
  medium: ":large_yellow_circle:",
  high: ":large_orange_circle:",
  critical: ":red_circle:",
};

/**
 * The action in a few words: the preview's first line says more than the operation's name
 * ("POST /refunds" rather than "request"). Unescaped: callers clip it.
 */
function what(view: ChannelView): string {
  const line = view.preview.split("\n", 1)[0]?.trim() ?? "";
  const action = line ? (line.length > 80 ? `${cutText(line, 79, [])}…` : line) : view.operation;
  return `${action} on ${view.connection}`;
}

function approvedBy(view: ChannelView): string[] {
  return view.reviews.filter((r) => r.decision === "approve").map((r) => clip(r.reviewer, 120));
}

function labels(value: Record<string, string>): string {
  return Object.entries(value)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** The line that says how a request ended (or where it stands once out of review). */
function statusLine(view: ChannelView): string {
  const finished = view.finishedAt ? ` ${slackDate(view.finishedAt)}` : "";
  const approved = approvedBy(view);
  const by =
    approved.length > 0
      ? `by ${names(approved)}`
      : `by rule ${clip(view.decision.rule ?? "(none)", 120)}`;
  const summary = view.outcome ? clip(view.outcome.summary, budget.summary) : "";
  switch (view.status) {
    case "pending":
      return `:hourglass_flowing_sand: *Waiting for review*: ${approvalsLine(view, clip)}`;
    case "approved":
      return `:white_check_mark: *Approved* ${by}; about to run`;
    case "executing":
      return `:gear: *Approved* ${by}; running now`;
    case "succeeded":
      return `:white_check_mark: *Approved* ${by}; *succeeded*${finished}${summary ? `: ${summary}` : ""}`;
    case "failed": {
      const reason = view.outcome?.reason ? ` (${clip(view.outcome.reason, budget.summary)})` : "";
      return `:x: *Approved* ${by}; *failed*${finished}${summary ? `: ${summary}` : ""}${reason}`;
    }
    case "denied": {
      const deny = view.reviews.find((r) => r.decision === "deny");
      if (!deny) {
        return `:no_entry: *Denied* by the policy (rule ${clip(view.decision.rule ?? "(none)", 120)}): ${clip(view.decision.reason, budget.summary)}`;
      }
      const at = deny.at ? ` ${slackDate(deny.at)}` : "";
      const comment = deny.comment ? `: “${clip(deny.comment, budget.comment)}”` : "";
      return `:no_entry: *Denied* by ${clip(deny.reviewer, 120)}${at}${comment}`;
    }
    case "expired":
      return `:alarm_clock: *Expired*${finished} with ${approvalsCount(view)}`;
    case "cancelled":
      return `:heavy_minus_sign: *Cancelled* by the agent${finished}`;
  }
}

function approvalsCount(view: ChannelView): string {
  return view.review
    ? `${view.review.approvals} of ${view.review.quorum} approvals`
    : plural(approvedBy(view).length, "approval");
}

function reviewLines(view: ChannelView): string {
  return view.reviews
    .map((r) => {
      const mark = r.decision === "approve" ? ":white_check_mark: approved" : ":no_entry: denied";
      const at = r.at ? ` ${slackDate(r.at)}` : "";
      const comment = r.comment
        ? `\n>${clip(r.comment, budget.comment).replace(/\n/g, "\n>")}`
        : "";
      return `${mark} by ${clip(r.reviewer, 120)}${at} (verified by ${clip(r.verifiedBy, 40)})${comment}`;
    })
    .join("\n");
}

function button(
  text: string,
  actionId: string,
  value: string,
  style?: "primary" | "danger",
): Button {
  return {
    type: "button",
    text: { type: "plain_text", text },
    action_id: actionId,
    value,
    ...(style ? { style } : {}),
  };
}

function buttons(view: ChannelView, shownWhole: boolean): KnownBlock[] {
  const id = view.id;
  const deny = [
    button("Deny", actionIds.deny, id, "danger"),
    button("Deny with reason", actionIds.denyWithReason, id),
  ];
  // No approve button at all when the approval cannot be judged or given here: a chat click
  // is not a fresh sign-in (the gateway would refuse it anyway), and an action cut to fit
  // may hide what matters past the cut. The link goes where all of it is shown.
  if (view.review?.stepUp || !shownWhole) {
    const open: Button = {
      ...button("Approve in Airlock", actionIds.openConsole, id, "primary"),
      url: view.approvalUrl,
    };
    const why = view.review?.stepUp
      ? ":lock: Approving needs a fresh sign-in with your identity provider, so it cannot be done from Slack"
      : ":scissors: This action is too long to show whole here, so it cannot be approved from Slack";
    return [
      { type: "actions", elements: [open, ...deny] },
      context(
        `${why}: approve in Airlock, or approve from a terminal: \`airlock requests approve ${clip(id, 100)}\``,
      ),
    ];
  }
  const approve = button("Approve", actionIds.approve, id, "primary");
  const level = view.risk.level;
  if (level === "high" || level === "critical") {
    // One click would run a risky action with Airlock's credentials: ask once more.
    approve.confirm = {
      title: { type: "plain_text", text: "Approve this action?" },
      text: {
        type: "plain_text",
        text: clip(
          `Risk ${level}. ${what(view)} runs with Airlock's credentials once the quorum is reached.`,
          limits.confirmText,
        ),
      },
      confirm: { type: "plain_text", text: "Approve" },
      deny: { type: "plain_text", text: "Back" },
    };
  }
  const elements: ActionsBlockElement[] = [
    approve,
    button("Approve with comment", actionIds.approveWithComment, id),
    ...deny,
  ];
  return [{ type: "actions", elements }];
}

/**
 * The approval message for a request as it stands. The block count is fixed by this layout
 * (at most 13), never by the agent's data, so it stays far under Slack's 50. `approvable`
 * says whether it offers Approve (not when cut to fit, nor for step-up).
 */
export function requestMessage(view: ChannelView): {
  text: string;
  blocks: KnownBlock[];
  approvable: boolean;
} {
  const pending = view.status === "pending";
  const agent = clip(view.agent.name, budget.short);
  const owner = clip(view.agent.owner, budget.short);
  const hint = view.risk.hint;
  const preview = codeBlock(view.preview, budget.preview);
  const blocks: KnownBlock[] = [
    {
      type: "header",
      text: {
        type: "plain_text",
        text: clip(`${statusTitle[view.status]}: ${what(view)}`, limits.header),
      },
    },
    {
      type: "section",
      fields: [
        `*Agent*\n${agent} (owner ${owner})${Object.keys(view.agent.labels).length ? `\n${clip(labels(view.agent.labels), budget.short)}` : ""}`,
        `*Action*\n${clip(view.operation, budget.short)} on ${clip(view.connection, budget.short)} (${clip(view.connectionType, 40)})`,
        `*Risk*\n${riskEmoji[view.risk.level] ?? ""} ${clip(view.risk.level, 20)}: ${clip(view.risk.reason, budget.short)}\nConnector's hint: ${clip(hint.level, 20)}, ${clip(hint.reason, budget.short)}`,
        `*Rule*\n${clip(view.decision.rule ?? "(none)", budget.short)}: ${clip(view.decision.reason, budget.short)}${view.decision.error ? `\n:warning: ${clip(view.decision.error, budget.short)}` : ""}`,
        `*Approvals*\n${approvalsLine(view, clip)}${view.review?.stepUp ? "\nStep-up sign-in required to approve" : ""}`,
        `*Expires*\n${view.expiresAt ? `${slackDate(view.expiresAt)} (${utcMinute(view.expiresAt)})` : "never"}`,
      ].map((text) => ({
        type: "mrkdwn" as const,
        text: clip0(text, limits.field),
        verbatim: true,
      })),
    },
    section(`*What will run*\n${preview.block}`),
  ];
  const factText = factLines(view.facts);
  if (factText) blocks.push(context(`*Facts*\n${clip(factText, budget.facts)}`));
  // The claim sits right under the action it claims to explain, so a mismatch shows.
  blocks.push(
    section(
      view.justification.trim()
        ? `*Justification* _(the agent's own claim, not verified: check it against what will run)_\n${quote(view.justification, budget.justification)}`
        : "*Justification*: _the agent gave none._",
    ),
  );
  const masked = view.maskedFields.length
    ? ` (masked by the policy: ${clip(view.maskedFields.join(", "), budget.short)})`
    : "";
  const input = codeBlock(jsonText(view.input), budget.input);
  blocks.push(section(`*Input*${masked}\n${input.block}`));
  const hasContext = Object.keys(view.context).length > 0;
  const contextBlock = hasContext ? codeBlock(jsonText(view.context), budget.context) : undefined;
  if (contextBlock) blocks.push(section(`*Context* _(from the agent)_\n${contextBlock.block}`));
  const shownWhole = !preview.cut && !input.cut && !(contextBlock?.cut ?? false);
  blocks.push({ type: "divider" });
  const reviews = reviewLines(view);
  if (reviews) blocks.push(section(`*Reviews*\n${reviews}`));
  // Buttons only while a vote can still count; afterwards the message is a record.
  blocks.push(section(statusLine(view)), ...(pending ? buttons(view, shownWhole) : []));
  blocks.push(
    context(
      `Request \`${clip(view.id, 100)}\` · hash \`${clip(view.hash.slice(0, 12), 12)}…\` · asked ${view.createdAt ? slackDate(view.createdAt) : "?"}`,
    ),
  );
  const text = pending
    ? `Approval needed: ${agent} asks to run ${clip(what(view), budget.short * 2)} (risk ${clip(view.risk.level, 20)}), request ${clip(view.id, 100)}`
    : `${statusTitle[view.status]}: ${clip(what(view), budget.short * 2)}, request ${clip(view.id, 100)}`;
  return {
    text: clip0(text, limits.fallback),
    blocks,
    approvable: !view.review?.stepUp && shownWhole,
  };
}

/** The modal behind "Approve with comment" and "Deny with reason". */
export function reviewModal(args: {
  requestId: string;
  decision: "approve" | "deny";
  channel: string;
  ts: string;
  summary: string;
  /** The request as the message showed it: what will run, and how risky it is. */
  view?: ChannelView | undefined;
}): ModalView {
  const approve = args.decision === "approve";
  const level = args.view?.risk.level;
  const action = args.view ? `\n${clip(what(args.view), 300)}, risk ${level}` : "";
  // The message's Approve asks once more for a risky action; the modal says as much.
  const warning =
    approve && (level === "high" || level === "critical")
      ? [
          section(
            `:warning: Risk ${level}: this runs with Airlock's credentials once the quorum is reached. Read the whole action in the message before you approve.`,
          ),
        ]
      : [];
  const metadata = JSON.stringify({
    requestId: args.requestId,
    decision: args.decision,
    channel: args.channel,
    ts: args.ts,
  });
  // Cut JSON would not parse back, and the submission would be dropped without a word.
  if (metadata.length > limits.metadata)
    throw new RangeError("modal metadata over 3000 characters");
  return {
    type: "modal",
    callback_id: modalCallbackId,
    private_metadata: metadata,
    title: { type: "plain_text", text: approve ? "Approve with comment" : "Deny with reason" },
    submit: { type: "plain_text", text: approve ? "Approve" : "Deny" },
    close: { type: "plain_text", text: "Cancel" },
    blocks: [
      section(
        `${approve ? "Approve" : "Deny"} request ${clip(args.summary, budget.summary)}${action}${approve ? "" : "\nA deny is final: the request will not run."}`,
      ),
      ...warning,
      {
        type: "input",
        block_id: "comment",
        optional: approve,
        label: { type: "plain_text", text: approve ? "Comment" : "Reason" },
        hint: {
          type: "plain_text",
          text: "Recorded with your review in the audit trail; the agent sees it too.",
        },
        element: {
          type: "plain_text_input",
          action_id: "comment",
          multiline: true,
          max_length: 2000,
          ...(approve ? {} : { min_length: 1 }),
        },
      },
    ],
  };
}

const metadataSchema = z.strictObject({
  requestId: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/),
  decision: z.enum(["approve", "deny"]),
  channel: z.string().regex(/^[A-Za-z0-9]{1,40}$/),
  ts: z.string().regex(/^\d{1,20}\.\d{1,10}$/),
});

/** The modal's metadata back, or undefined when it is not exactly what `reviewModal` wrote. */
export function parseModalMetadata(
  text: string,
): { requestId: string; decision: "approve" | "deny"; channel: string; ts: string } | undefined {
  if (text.length > limits.metadata) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = metadataSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** The thread reply when a request ends. */
export function outcomeReply(view: ChannelView): string {
  const approved = approvedBy(view);
  const by = approved.length > 0 ? `Approved by ${names(approved)}` : "Allowed by the policy";
  const summary = view.outcome ? clip(view.outcome.summary, budget.summary) : "";
  switch (view.status) {
    case "pending":
      return `Waiting for review: ${approvalsLine(view, clip)}`;
    case "approved":
      return `${by}; about to run`;
    case "executing":
      return `${by}; running now`;
    case "succeeded":
      return `${by}; executed${summary ? `: ${summary}` : ""}`;
    case "failed": {
      const reason = view.outcome?.reason ? ` (${clip(view.outcome.reason, budget.summary)})` : "";
      return `${by}; execution failed${summary ? `: ${summary}` : ""}${reason}`;
    }
    case "denied": {
      const deny = view.reviews.find((r) => r.decision === "deny");
      if (!deny) return `Denied by the policy: ${clip(view.decision.reason, budget.summary)}`;
      return `Denied by ${clip(deny.reviewer, 120)}${deny.comment ? `: ${clip(deny.comment, budget.comment)}` : ""}`;
    }
    case "expired":
      return `Expired with ${approvalsCount(view)}`;
    case "cancelled":
      return `Cancelled by the agent with ${approvalsCount(view)}`;
  }
}

/** Refusals in Slack's own words; the rest are every chat's (review-text.ts). */
const slackRefusals: Record<string, string> = {
  not_mapped:
    "Airlock cannot tell who you are: your Slack account has no verified e-mail that Airlock knows as a reviewer. Ask an operator to add your e-mail to the reviewers.",
  lookup_failed:
    "Airlock could not ask Slack who you are just now, so nothing was recorded. Try again in a moment.",
  not_shown_whole:
    "This action is too long to show whole in Slack, so it cannot be approved from here: use Approve in Airlock, where all of it is shown. Nothing was recorded.",
  not_here: "There is no such request to review. Nothing was recorded.",
  not_posted_here:
    "This request's message was not posted in this channel, so it cannot be decided from here: use the message Airlock posted for it, or Airlock itself. Nothing was recorded.",
  step_up_required:
    "Approving this request needs a fresh sign-in with your identity provider, which a Slack click is not: use the Approve in Airlock button.",
};

/** What a refused click is told, privately. */
export function refusalText(code: string, message: string): string {
  return refusal(code, message, slackRefusals, clip);
}

/** A reminder in the thread: time left and approvals still needed. */
export function reminderText(view: ChannelView, now: number): string {
  const left = approvalsLeft(view);
  const needs =
    left > 0
      ? `still needs ${plural(left, "more approval")} (${approvalsCount(view)}) ${neededFrom(view, clip)}`
      : "is still waiting";
  const expires = view.expiresAt
    ? `expires ${timeUntil(Date.parse(view.expiresAt) - now)} (${slackDate(view.expiresAt)})`
    : "does not expire";
  return `:bell: Reminder: request ${clip(view.id, 100)} (${clip(what(view), budget.short * 2)}) ${needs} and ${expires}.`;
}

/** The mention for a group: a user group id, @here or @channel, else the text as configured. */
function mentionOf(mention: string): string {
  const bare = mention.replace(/^@/, "");
  if (/^S[A-Z0-9]+$/.test(bare)) return `<!subteam^${bare}>`;
  if (bare === "here" || bare === "channel") return `<!${bare}>`;
  return mention;
}

/** A call for attention in the thread when nobody has answered. */
export function escalationText(view: ChannelView, mention: string): string {
  const expires = view.expiresAt ? `; it expires ${slackDate(view.expiresAt)}` : "";
  return `${mentionOf(mention)} nobody has reviewed request ${clip(view.id, 100)} yet: ${clip(view.agent.name, budget.short)} asks to run ${clip(what(view), budget.short * 2)} (risk ${clip(view.risk.level, 20)}), ${plural(approvalsLeft(view), "approval")} needed ${neededFrom(view, clip)}${expires}.`;
}
