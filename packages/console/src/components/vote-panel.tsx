/**
 * The reviewer's decision: a comment and the buttons this reviewer may use. The Approve
 * button exists only when the gateway says this reviewer can approve; the vote carries the
 * request hash shown on the page, so it binds to exactly what was read.
 */
import { useState } from "react";
import { ApiError, api, currentPath, loginUrl, sameOriginPath } from "../api.js";
import type { ReviewerView, Session } from "../api-types.js";
import { duration, fromGroups, voted } from "../format.js";
import { useNow } from "../hooks.js";
import { errorMessage } from "./states.js";
import { When } from "./when.js";

/** A draft is the reviewer's own: on a shared browser, the next one to sign in starts clean. */
const DRAFT_PREFIX = "airlock:comment:";
const draftKey = (reviewer: string, id: string) => `${DRAFT_PREFIX}${reviewer}:${id}`;

/**
 * Keeps the comment as it is typed, until the vote is recorded: whatever leaves the page (a
 * step-up sign-in, the sign-in of a session that ended, a reload) brings it back.
 */
function keepDraft(reviewer: string, id: string, comment: string): void {
  try {
    if (comment) sessionStorage.setItem(draftKey(reviewer, id), comment);
    else sessionStorage.removeItem(draftKey(reviewer, id));
  } catch {
    // Storage may be unavailable (private mode); the comment is then typed again.
  }
}

function draft(reviewer: string, id: string): string {
  try {
    return sessionStorage.getItem(draftKey(reviewer, id)) ?? "";
  } catch {
    return "";
  }
}

/** At sign-out: what a reviewer wrote and did not send stays with nobody. */
export function forgetDrafts(): void {
  try {
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith(DRAFT_PREFIX)) sessionStorage.removeItem(key);
    }
  } catch {
    // Unavailable storage holds no drafts.
  }
}

const refusals: Record<string, string> = {
  self_approval: "You cannot approve a request from an agent you own",
  not_an_approver: "You are not one of this request's approvers",
  already_reviewed: "You have already reviewed this request",
  not_pending: "This request is no longer pending",
  expired: "This request has expired",
  forbidden: "The gateway refused the vote",
  unauthenticated: "You are signed out",
};

/** Refusals that mean the request moved on (or the page was stale): refetch it. */
const stale = new Set([
  "self_approval",
  "not_an_approver",
  "already_reviewed",
  "not_pending",
  "expired",
]);

interface Notice {
  kind: "ok" | "error";
  title: string;
  text?: string;
  /** The way out offered with an error. */
  action?: { stepUp: string } | "sign-in" | "reload";
}

export function VotePanel({
  request,
  session,
  onVoted,
  onRefused,
}: {
  request: ReviewerView;
  session: Session;
  onVoted: (updated: ReviewerView) => void;
  /** The gateway refused the vote because the request moved on: show it as it is now. */
  onRefused: () => void;
}) {
  const [comment, setComment] = useState(() => draft(session.email, request.id));
  const [busy, setBusy] = useState<"approve" | "deny" | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const now = useNow();
  const { you, review } = request;
  const pending = request.status === "pending";
  const stepUpLogin = loginUrl(currentPath(), true);

  const vote = async (decision: "approve" | "deny") => {
    setBusy(decision);
    setNotice(null);
    try {
      const text = comment.trim();
      const updated = await api.review(
        request.id,
        { decision, requestHash: request.hash, ...(text ? { comment: text } : {}) },
        session.csrfToken,
      );
      setComment("");
      keepDraft(session.email, request.id, "");
      onVoted(updated);
      setNotice({
        kind: "ok",
        title: `You ${voted(decision)} this request.`,
        text:
          updated.status === "pending" && updated.review
            ? `${updated.review.approvals} of ${updated.review.quorum} approvals so far.${
                updated.review.needed && Object.keys(updated.review.needed).length > 0
                  ? ` Still needed: ${fromGroups(updated.review.needed)}.`
                  : ""
              }`
            : `It is now ${updated.status}.`,
      });
    } catch (error) {
      const code = error instanceof ApiError ? error.code : undefined;
      if (code === "step_up_required") {
        const details = error instanceof ApiError ? error.details : undefined;
        setNotice({
          kind: "error",
          title: "Approving needs a fresh sign-in",
          text: "This rule asks approvers to have signed in recently. Sign in again, then approve; your comment is kept.",
          action: { stepUp: sameOriginPath(details?.login) ?? stepUpLogin },
        });
      } else {
        setNotice({
          kind: "error",
          title: (code && refusals[code]) || "The vote was not recorded",
          text: errorMessage(error),
          ...(code === "unauthenticated" ? { action: "sign-in" } : {}),
          ...(code === "forbidden" ? { action: "reload" } : {}),
        });
        if (code && stale.has(code)) onRefused();
      }
    } finally {
      setBusy(null);
    }
  };

  const maxAgeMs = session.stepUpMaxAgeSeconds * 1000;
  // The gateway's own judgement: it knows the acr asked for, and its clock.
  const freshUntil = session.stepUpUntil === null ? undefined : Date.parse(session.stepUpUntil);
  const fresh = freshUntil !== undefined && freshUntil > now;
  const stepUp = pending && review?.stepUp === true;
  const canVote = you.canApprove || you.canDeny;
  const stepUpTo =
    notice?.action && typeof notice.action === "object" ? notice.action.stepUp : stepUpLogin;

  return (
    <section className="panel decide" aria-labelledby="decide-heading">
      <h2 id="decide-heading">Your decision</h2>
      {stepUp ? (
        <div className="callout">
          <p>
            <strong>Approving needs a fresh sign-in.</strong> This rule accepts approvals only from
            reviewers who signed in within the last {duration(maxAgeMs)}.
          </p>
          {you.canApprove ? (
            fresh && freshUntil !== undefined ? (
              <p>
                Your sign-in is recent enough; it stops counting{" "}
                <When iso={new Date(freshUntil).toISOString()} />.
              </p>
            ) : (
              <>
                <p>
                  You last signed in <When iso={session.authTime} />.
                </p>
                <button
                  type="button"
                  className="secondary"
                  onClick={() => window.location.assign(stepUpLogin)}
                >
                  Sign in again to approve
                </button>
              </>
            )
          ) : null}
        </div>
      ) : null}
      {!pending ? (
        <p className="note">Nothing left to decide: this request is {request.status}.</p>
      ) : you.reason && !(stepUp && you.canApprove) ? (
        <p className="note">{you.reason}</p>
      ) : null}
      {canVote ? (
        <div className="vote">
          <label htmlFor="comment">Comment</label>
          <textarea
            id="comment"
            name="comment"
            rows={3}
            maxLength={2000}
            value={comment}
            onChange={(event) => {
              setComment(event.target.value);
              keepDraft(session.email, request.id, event.target.value);
            }}
            placeholder="Why you approve or deny (optional)"
          />
          <div className="actions">
            {you.canApprove ? (
              <button
                id="approve"
                type="button"
                className="approve"
                disabled={busy !== null}
                aria-busy={busy === "approve"}
                onClick={() => void vote("approve")}
              >
                Approve
              </button>
            ) : null}
            {you.canDeny ? (
              <button
                id="deny"
                type="button"
                className="deny"
                disabled={busy !== null}
                aria-busy={busy === "deny"}
                onClick={() => void vote("deny")}
              >
                Deny
              </button>
            ) : null}
          </div>
        </div>
      ) : null}
      <div className="notice-area" aria-live="polite">
        {busy ? <p className="muted">Recording your vote…</p> : null}
        {notice ? (
          <div
            className={notice.kind === "ok" ? "alert alert-ok" : "alert alert-error"}
            role={notice.kind === "ok" ? "status" : "alert"}
          >
            <p className="alert-title">{notice.title}</p>
            {notice.text ? <p>{notice.text}</p> : null}
            {notice.action === "sign-in" ? (
              <a className="button" href={loginUrl(currentPath())}>
                Sign in
              </a>
            ) : notice.action === "reload" ? (
              <button type="button" onClick={() => window.location.reload()}>
                Reload the page
              </button>
            ) : notice.action ? (
              <button type="button" onClick={() => window.location.assign(stepUpTo)}>
                Sign in again
              </button>
            ) : null}
          </div>
        ) : null}
      </div>
    </section>
  );
}
