/** `/rules`: the loaded policy, read-only, in the order it is evaluated. */
import { useCallback } from "react";
import { api } from "../api.js";
import type { Rule } from "../api-types.js";
import { RiskBadge } from "../components/badges.js";
import { CodeBlock } from "../components/code-block.js";
import { Empty, ErrorState, Loading } from "../components/states.js";
import { duration, fromGroups } from "../format.js";
import { usePageTitle, useResource } from "../hooks.js";

function RuleItem({ rule, index }: { rule: Rule; index: number }) {
  const headingId = `rule-${index}`;
  return (
    <li className="rule" aria-labelledby={headingId}>
      <h2 id={headingId}>
        <span className="seq">{index + 1}.</span> {rule.name}{" "}
        <span className={`badge decision-${rule.decision}`}>{rule.decision}</span>
        {rule.risk ? (
          <>
            {" "}
            <RiskBadge level={rule.risk} />
          </>
        ) : null}
      </h2>
      {rule.when ? <CodeBlock text={rule.when} /> : <p className="muted">Matches every request.</p>}
      <dl className="facts">
        {rule.reason ? (
          <>
            <dt>Reason</dt>
            <dd>{rule.reason}</dd>
          </>
        ) : null}
        {rule.review ? (
          <>
            <dt>Approvers</dt>
            <dd>
              {rule.review.approvers.length > 0 ? rule.review.approvers.join(", ") : "any reviewer"}
            </dd>
            <dt>Quorum</dt>
            <dd>
              {rule.review.quorum}
              {rule.review.require ? `, at least ${fromGroups(rule.review.require)}` : ""}
            </dd>
            <dt>Expires after</dt>
            <dd>{duration(rule.review.expiresIn)}</dd>
            <dt>Step-up</dt>
            <dd>{rule.review.stepUp ? "approvers must have signed in recently" : "no"}</dd>
            {rule.review.channels?.length ? (
              <>
                <dt>Channels</dt>
                <dd>{rule.review.channels.join(", ")}</dd>
              </>
            ) : null}
          </>
        ) : null}
        {rule.mask?.input.length ? (
          <>
            <dt>Masked input</dt>
            <dd className="mono">{rule.mask.input.join(", ")}</dd>
          </>
        ) : null}
        {rule.mask?.result?.length ? (
          <>
            <dt>Masked result</dt>
            <dd className="mono">{rule.mask.result.join(", ")}</dd>
          </>
        ) : null}
      </dl>
    </li>
  );
}

export function RulesPage() {
  usePageTitle("Rules");
  const load = useCallback((signal: AbortSignal) => api.rules(signal), []);
  const rules = useResource(load);
  const data = rules.data;
  return (
    <>
      <h1>Rules</h1>
      <p className="lead">
        The first rule that matches decides; when none matches, the request is denied.
      </p>
      {data ? (
        <p>
          Policy digest: <span className="mono">{data.policyDigest}</span>
        </p>
      ) : null}
      {rules.error ? <ErrorState error={rules.error} onRetry={rules.reload} /> : null}
      {!data && rules.loading ? <Loading what="Loading the rules…" /> : null}
      {data && data.rules.length === 0 ? (
        <Empty title="No rules are loaded">
          <p>Every request is denied.</p>
        </Empty>
      ) : null}
      {data && data.rules.length > 0 ? (
        <ol className="rules">
          {data.rules.map((rule, index) => (
            // The config refuses duplicate rule names, so a name identifies its rule.
            <RuleItem key={rule.name} rule={rule} index={index} />
          ))}
        </ol>
      ) : null}
    </>
  );
}
