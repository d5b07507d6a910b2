import type { ReviewerView } from "../api-types.js";
import { firstLine } from "../format.js";
import { useNow } from "../hooks.js";
import { RiskBadge, StatusBadge } from "./badges.js";
import { Link, requestPath } from "./link.js";
import { When } from "./when.js";

/** When a pending request runs out: "expires in 12 minutes", or "expired". */
export function Expiry({ iso }: { iso: string }) {
  const now = useNow();
  if (Date.parse(iso) <= now) return <span className="warn">expired</span>;
  return <When iso={iso} prefix="expires " />;
}

function ability(request: ReviewerView): string {
  const { you } = request;
  if (you.canApprove) {
    return request.review?.stepUp ? "You can approve (fresh sign-in needed)" : "You can approve";
  }
  if (you.canDeny) return "You can deny, not approve";
  return "You cannot decide this";
}

/** One request in a list: what, who, how risky, and how much time is left. */
export function RequestRow({
  request,
  history = false,
}: {
  request: ReviewerView;
  history?: boolean;
}) {
  const reviewers = request.reviews.map((r) => `${r.reviewer} (${r.decision})`).join(", ");
  return (
    <li className="row">
      <div className="row-badges">
        <RiskBadge level={request.risk.level} />
        {history ? <StatusBadge status={request.status} /> : null}
      </div>
      <h2 className="row-title">
        <Link to={requestPath(request.id)}>
          {request.agent.name}: {request.connection} / {request.operation}
        </Link>
      </h2>
      <p className="row-preview">{firstLine(request.preview)}</p>
      <p className="row-meta">
        {request.createdAt ? (
          <span>
            requested <When iso={request.createdAt} />
          </span>
        ) : null}
        {request.status === "pending" && request.expiresAt ? (
          <span>
            <Expiry iso={request.expiresAt} />
          </span>
        ) : null}
        {history ? (
          reviewers ? (
            <span>reviewed by {reviewers}</span>
          ) : null
        ) : (
          <span className={request.you.canApprove ? "can" : "cannot"}>{ability(request)}</span>
        )}
      </p>
    </li>
  );
}
