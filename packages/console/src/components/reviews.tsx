import type { ReviewerView } from "../api-types.js";
import { fromGroups } from "../format.js";
import { When } from "./when.js";

/** Who voted so far, against the quorum the rule asks for. */
export function Reviews({ request }: { request: ReviewerView }) {
  const { review, reviews } = request;
  return (
    <section className="panel" aria-labelledby="reviews-heading">
      <h2 id="reviews-heading">Reviews</h2>
      {review ? (
        <p>
          <strong>
            {review.approvals} of {review.quorum}
          </strong>{" "}
          {review.quorum === 1 ? "approval" : "approvals"}. Approvers:{" "}
          {review.approvers.length > 0 ? review.approvers.join(", ") : "any reviewer"}.
          {review.require ? ` At least ${fromGroups(review.require)}.` : null}
          {review.needed && Object.keys(review.needed).length > 0 ? (
            <strong> Still needed: {fromGroups(review.needed)}.</strong>
          ) : null}
        </p>
      ) : (
        <p>No review was needed: the policy decided “{request.decision.decision}”.</p>
      )}
      {reviews.length === 0 ? (
        <p className="muted">No reviews yet.</p>
      ) : (
        <ul className="reviews">
          {reviews.map((r) => (
            <li key={`${r.reviewer}-${r.at ?? ""}`}>
              <p>
                <strong>{r.reviewer}</strong>{" "}
                <span className={`badge vote-${r.decision}`}>
                  {r.decision === "approve" ? "approved" : "denied"}
                </span>{" "}
                {r.at ? <When iso={r.at} /> : null}
              </p>
              <p className="muted">verified by {r.verifiedBy.replace("_", " ")}</p>
              {r.comment ? <p className="comment">{r.comment}</p> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
