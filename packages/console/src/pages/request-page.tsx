/**
 * `/requests/:id`: everything a reviewer needs to decide one request, and the decision
 * itself. Approval links in Slack and Teams messages open this page.
 */
import { type ReactNode, useCallback } from "react";
import { ApiError, api } from "../api.js";
import type { ReviewerView } from "../api-types.js";
import { AuditList } from "../components/audit-list.js";
import { RiskBadge } from "../components/badges.js";
import { CodeBlock, JsonBlock } from "../components/code-block.js";
import { Link } from "../components/link.js";
import { Expiry } from "../components/request-row.js";
import { Reviews } from "../components/reviews.js";
import { Empty, ErrorState, Loading } from "../components/states.js";
import { VotePanel } from "../components/vote-panel.js";
import { DateTime } from "../components/when.js";
import { absoluteTime, isEmptyJson } from "../format.js";
import { usePageTitle, useResource } from "../hooks.js";
import { useLiveRefresh } from "../live.js";
import { useSession } from "../session.js";

function Section({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section className="section">
      <h2>{title}</h2>
      {children}
    </section>
  );
}

function Summary({ request }: { request: ReviewerView }) {
  const labels = Object.entries(request.agent.labels);
  return (
    <dl className="facts">
      <dt>Agent</dt>
      <dd>{request.agent.name}</dd>
      <dt>Owner</dt>
      <dd>{request.agent.owner}</dd>
      {labels.length > 0 ? (
        <>
          <dt>Labels</dt>
          <dd>{labels.map(([key, value]) => `${key}=${value}`).join(", ")}</dd>
        </>
      ) : null}
      <dt>Connection</dt>
      <dd>
        {request.connection} <span className="muted">({request.connectionType})</span>
      </dd>
      <dt>Operation</dt>
      <dd>{request.operation}</dd>
      {request.createdAt ? (
        <>
          <dt>Requested</dt>
          <dd>
            <DateTime iso={request.createdAt} />
          </dd>
        </>
      ) : null}
      {request.status === "pending" && request.expiresAt ? (
        <>
          <dt>Expires</dt>
          <dd>
            <Expiry iso={request.expiresAt} />{" "}
            <span className="muted">({absoluteTime(request.expiresAt)})</span>
          </dd>
        </>
      ) : null}
      {request.finishedAt ? (
        <>
          <dt>Finished</dt>
          <dd>
            <DateTime iso={request.finishedAt} />
          </dd>
        </>
      ) : null}
      <dt>Request id</dt>
      <dd className="mono">{request.id}</dd>
      <dt>Hash</dt>
      <dd className="mono" title="What an approval binds to: SHA-256 of the request">
        {request.hash}
      </dd>
    </dl>
  );
}

function Why({ request }: { request: ReviewerView }) {
  const { decision, risk } = request;
  return (
    <Section title="Rule and risk">
      <dl className="facts">
        <dt>Rule</dt>
        <dd>{decision.rule ? <strong>{decision.rule}</strong> : "No rule matched"}</dd>
        <dt>Policy decision</dt>
        <dd>{decision.decision}</dd>
        <dt>Why</dt>
        <dd>{decision.reason}</dd>
        {decision.error ? (
          <>
            <dt>Policy error</dt>
            <dd className="warn">{decision.error}</dd>
          </>
        ) : null}
        <dt>Risk</dt>
        <dd>
          <RiskBadge level={risk.level} /> {risk.reason}
        </dd>
        <dt>Connector's hint</dt>
        <dd>
          <RiskBadge level={risk.hint.level} /> {risk.hint.reason}
        </dd>
      </dl>
    </Section>
  );
}

function Outcome({ request }: { request: ReviewerView }) {
  const { outcome } = request;
  if (!outcome) return null;
  return (
    <Section title="Outcome">
      <p>
        <strong>{outcome.summary}</strong>
      </p>
      {outcome.reason ? <p className="warn">{outcome.reason}</p> : null}
      {isEmptyJson(outcome.result) ? (
        <p className="muted">No result.</p>
      ) : (
        <JsonBlock value={outcome.result} />
      )}
    </Section>
  );
}

export function RequestPage({ id }: { id: string }) {
  const session = useSession();
  const loadRequest = useCallback((signal: AbortSignal) => api.request(id, signal), [id]);
  const request = useResource(loadRequest);
  const loadTrail = useCallback(
    (signal: AbortSignal) => api.audit({ requestId: id, limit: 200 }, signal),
    [id],
  );
  const trail = useResource(loadTrail);
  const { reload: reloadRequest } = request;
  const { reload: reloadTrail } = trail;
  const refresh = useCallback(() => {
    reloadRequest();
    reloadTrail();
  }, [reloadRequest, reloadTrail]);
  useLiveRefresh((change) => change.id === id, refresh, 200);

  const view = request.data;
  usePageTitle(view ? `${view.operation} on ${view.connection}` : "Request");

  if (!view) {
    const missing = request.error instanceof ApiError && request.error.code === "not_found";
    return (
      <>
        <h1>Request</h1>
        <p className="mono muted">{id}</p>
        {missing ? (
          <Empty title="No such request">
            <p>
              Nothing has the id {id}. <Link to="/">Back to the inbox</Link>
            </p>
          </Empty>
        ) : request.error ? (
          <ErrorState error={request.error} onRetry={request.reload} />
        ) : (
          <Loading what="Loading the request…" />
        )}
      </>
    );
  }

  const onVoted = (updated: ReviewerView) => {
    request.set(updated);
    reloadTrail();
  };

  return (
    <>
      <div className="title">
        <h1>
          {view.agent.name}: {view.operation} on {view.connection}
        </h1>
        <p className="title-badges">
          <RiskBadge level={view.risk.level} />
        </p>
      </div>
      <p className="status-line">
        <span role="status" aria-live="polite">
          Status:{" "}
          <span data-testid="status" className={`badge status-${view.status}`}>
            {view.status}
          </span>
        </span>
        {view.you.canApprove || view.you.canDeny ? (
          <a className="jump" href="#decide-heading">
            Go to your decision
          </a>
        ) : null}
      </p>
      {request.error ? (
        <ErrorState error={request.error} onRetry={request.reload} title="Could not refresh" />
      ) : null}
      <div className="request-layout">
        <div className="request-main">
          <Summary request={view} />
          <Outcome request={view} />
          <Section title="What will happen">
            <CodeBlock text={view.preview} />
          </Section>
          <Section title="Justification: the agent's claim">
            <p className="muted">
              Written by the agent, not verified. Weigh it against the action itself.
            </p>
            {view.justification ? (
              <blockquote className="claim">{view.justification}</blockquote>
            ) : (
              <p>The agent gave no justification.</p>
            )}
          </Section>
          {isEmptyJson(view.context) ? null : (
            <Section title="Context (from the agent)">
              <JsonBlock value={view.context} />
            </Section>
          )}
          <Section title="Input">
            {view.maskedFields.length > 0 ? (
              <p className="muted">
                Hidden by policy, shown as “[masked]”:{" "}
                <span className="mono">{view.maskedFields.join(", ")}</span>
              </p>
            ) : null}
            <JsonBlock value={view.input} />
          </Section>
          <Section title="Facts">
            <JsonBlock value={view.facts} />
          </Section>
          <Why request={view} />
        </div>
        <div className="request-side">
          <VotePanel request={view} session={session} onVoted={onVoted} onRefused={refresh} />
          <Reviews request={view} />
        </div>
      </div>
      <section className="section" aria-labelledby="trail-heading">
        <h2 id="trail-heading">Audit trail</h2>
        {trail.error ? <ErrorState error={trail.error} onRetry={trail.reload} /> : null}
        {trail.data ? (
          trail.data.events.length === 0 ? (
            <p className="muted">No events recorded.</p>
          ) : (
            <>
              <AuditList events={trail.data.events} showRequest={false} />
              {(trail.data.nextAfterSeq ?? trail.data.next) !== undefined ? (
                <p className="muted">
                  These are its first {trail.data.events.length} events.{" "}
                  <Link to={`/audit?requestId=${encodeURIComponent(id)}`}>See them all</Link>
                </p>
              ) : null}
            </>
          )
        ) : trail.loading ? (
          <Loading what="Loading the audit trail…" />
        ) : null}
      </section>
    </>
  );
}
