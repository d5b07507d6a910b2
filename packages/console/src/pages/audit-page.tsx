/**
 * `/audit`: the audit trail in chain order, filtered on the gateway, with whether the hash
 * chain verifies from end to end.
 */
import { useCallback, useMemo } from "react";
import { api } from "../api.js";
import type { AuditPage as AuditPageBody, AuditVerification } from "../api-types.js";
import { AuditList } from "../components/audit-list.js";
import { Link } from "../components/link.js";
import { Empty, ErrorState, Loading } from "../components/states.js";
import { applyFilters, localTime, readFilters } from "../filters.js";
import { absoluteTime } from "../format.js";
import { usePaged, usePageTitle, useResource } from "../hooks.js";

const PAGE = 200;

/** Suggestions for the type filter; any other type can be typed. */
const knownTypes = [
  "request.submitted",
  "request.decided",
  "request.reviewed",
  "request.approved",
  "request.denied",
  "request.expired",
  "request.cancelled",
  "execution.started",
  "execution.succeeded",
  "execution.failed",
  "execution.late_outcome",
  "requests.pruned",
  "reviewer.signed_in",
  "reviewer.signed_out",
  "reviewer.groups_changed",
  "token.created",
  "token.revoked",
  "config.reloaded",
  "audit.checkpoint",
];
const fields = ["requestId", "type", "actor", "from", "to"] as const;
/** A datetime-local value as an ISO instant in UTC, which is what the gateway parses. */
function iso(value: string): string | undefined {
  const ms = localTime(value);
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function nextCursor(page: AuditPageBody): string | undefined {
  const next = page.nextAfterSeq ?? page.next;
  return next === undefined ? undefined : String(next);
}

function ChainBanner() {
  const load = useCallback((signal: AbortSignal) => api.verifyAudit(signal), []);
  const check = useResource(load);
  const result = check.data;
  return (
    <div aria-live="polite">
      {result?.ok ? (
        <p className="alert alert-ok">
          <strong>Chain verified: {result.events} events.</strong>{" "}
          {result.head ? (
            <span className="muted">
              Head #{result.head.seq} <span className="mono">{result.head.hash.slice(0, 16)}…</span>
            </span>
          ) : null}
          {result.signed && result.signed.through > 0 ? (
            <>
              <br />
              <span className="signed-reach">
                Signed checkpoints vouch for events up to #{result.signed.through}
                {result.signed.signedAt ? `, signed ${absoluteTime(result.signed.signedAt)}` : ""}
                {result.signed.unsigned > 0
                  ? `; ${result.signed.unsigned} later ${result.signed.unsigned === 1 ? "event is" : "events are"} not signed yet.`
                  : "."}
              </span>
            </>
          ) : null}
        </p>
      ) : result ? (
        <div className="alert alert-error" role="alert">
          <p className="alert-title">The audit chain does not verify</p>
          <ChainProblems result={result} />
        </div>
      ) : check.error ? (
        <ErrorState error={check.error} onRetry={check.reload} title="Could not verify the chain" />
      ) : (
        <Loading what="Verifying the audit chain…" />
      )}
      {result ? (
        <button type="button" className="secondary" onClick={check.reload} disabled={check.loading}>
          Verify again
        </button>
      ) : null}
    </div>
  );
}

/**
 * Every problem, not only the first: an auditor who knows of one bad event (an edit
 * investigated last quarter) still sees whether anything else is wrong.
 */
function ChainProblems({ result }: { result: AuditVerification }) {
  const problems = result.problems ?? (result.problem ? [result.problem] : []);
  if (problems.length === 0) return <p>{result.events} events checked.</p>;
  const total = result.problemCount ?? problems.length;
  return (
    <>
      <p>
        {total === 1 ? "1 problem" : `${total} problems`} in {result.events} events:
      </p>
      <ul className="chain-problems">
        {problems.map((problem) => (
          <li key={`${problem.seq}-${problem.kind}-${problem.message}`}>
            At event #{problem.seq} ({problem.kind}): {problem.message}
          </li>
        ))}
      </ul>
      {total > problems.length ? (
        <p>
          and {total - problems.length} more; <code>airlock audit verify --all</code> lists them
          all.
        </p>
      ) : null}
    </>
  );
}

export function AuditPage({ search }: { search: string }) {
  usePageTitle("Audit");
  const filters = useMemo(() => readFilters(search, fields), [search]);
  const { requestId, type, actor, from, to } = filters;

  const loadPage = useCallback(
    async (cursor: string | undefined, signal: AbortSignal) => {
      const page = await api.audit(
        {
          requestId,
          type,
          actor,
          since: iso(from),
          until: iso(to),
          afterSeq: cursor === undefined ? undefined : Number(cursor),
          limit: PAGE,
        },
        signal,
      );
      return { items: page.events, next: nextCursor(page) };
    },
    [requestId, type, actor, from, to],
  );
  const list = usePaged(loadPage);

  const apply = applyFilters("/audit");

  return (
    <>
      <h1>Audit</h1>
      <ChainBanner />
      <form className="filters" onSubmit={apply} key={search} aria-label="Filter events">
        <div className="field">
          <label htmlFor="audit-request">Request id</label>
          <input
            id="audit-request"
            name="requestId"
            defaultValue={filters.requestId}
            placeholder="req_…"
          />
        </div>
        <div className="field">
          <label htmlFor="audit-type">Type</label>
          <input
            id="audit-type"
            name="type"
            defaultValue={filters.type}
            placeholder="request.reviewed"
            list="audit-types"
          />
          <datalist id="audit-types">
            {knownTypes.map((known) => (
              <option key={known} value={known} />
            ))}
          </datalist>
        </div>
        <div className="field">
          <label htmlFor="audit-actor">Actor</label>
          <input
            id="audit-actor"
            name="actor"
            defaultValue={filters.actor}
            placeholder="e-mail or agent name"
          />
        </div>
        <div className="field">
          <label htmlFor="audit-from">From</label>
          <input id="audit-from" name="from" type="datetime-local" defaultValue={filters.from} />
        </div>
        <div className="field">
          <label htmlFor="audit-to">To</label>
          <input id="audit-to" name="to" type="datetime-local" defaultValue={filters.to} />
        </div>
        <div className="filter-actions">
          <button type="submit">Filter</button>
          {search ? <Link to="/audit">Clear filters</Link> : null}
        </div>
      </form>

      {list.loaded ? (
        <p className="lead" aria-live="polite">
          {list.items.length} {list.items.length === 1 ? "event" : "events"}
          {list.next !== undefined ? " so far" : ""}, oldest first.
        </p>
      ) : null}
      {list.loaded && list.items.length === 0 ? (
        <Empty title="No events match">
          <p>Try other filters.</p>
        </Empty>
      ) : null}
      {list.items.length > 0 ? <AuditList events={list.items} /> : null}
      {list.error ? <ErrorState error={list.error} onRetry={list.reload} /> : null}
      {list.loading ? <Loading /> : null}
      {list.loaded && list.next !== undefined && !list.loading ? (
        <p className="more">
          <button type="button" className="secondary" onClick={list.more}>
            Load more
          </button>
        </p>
      ) : null}
    </>
  );
}
