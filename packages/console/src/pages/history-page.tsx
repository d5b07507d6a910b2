/**
 * `/history`: requests in any state. Agent, connection and state filter on the gateway;
 * reviewer and time filter here, over the pages loaded so far. Filters live in the URL,
 * so a filtered view can be bookmarked and shared.
 */
import { useCallback, useMemo, useState } from "react";
import { api } from "../api.js";
import { type ReviewerView, requestStatuses } from "../api-types.js";
import { Link } from "../components/link.js";
import { RequestRow } from "../components/request-row.js";
import { Empty, ErrorState, Loading } from "../components/states.js";
import { applyFilters, localTime, readFilters } from "../filters.js";
import { usePaged, usePageTitle } from "../hooks.js";
import { useLiveRefresh } from "../live.js";

const PAGE = 50;
const fields = ["agent", "reviewer", "connection", "state", "from", "to"] as const;

function created(request: ReviewerView): number {
  return request.createdAt ? Date.parse(request.createdAt) : 0;
}

const any = () => true;

export function HistoryPage({ search }: { search: string }) {
  usePageTitle("History");
  const filters = useMemo(() => readFilters(search, fields), [search]);
  const { agent, connection, state } = filters;

  const loadPage = useCallback(
    async (cursor: string | undefined, signal: AbortSignal) => {
      const page = await api.requests(
        { status: state || "all", agent, connection, before: cursor, limit: PAGE },
        signal,
      );
      return { items: page.requests, next: page.next };
    },
    [agent, connection, state],
  );
  const list = usePaged(loadPage);

  // A list being read should not reshuffle by itself: say that something changed instead.
  const [stale, setStale] = useState(false);
  useLiveRefresh(any, () => setStale(true), 500);
  const refresh = () => {
    setStale(false);
    list.reload();
  };

  const from = localTime(filters.from);
  const to = localTime(filters.to);
  const reviewer = filters.reviewer.toLowerCase();
  const shown = list.items.filter(
    (request) =>
      (!reviewer || request.reviews.some((r) => r.reviewer.toLowerCase().includes(reviewer))) &&
      (from === undefined || created(request) >= from) &&
      (to === undefined || created(request) <= to),
  );
  const oldest = list.items[list.items.length - 1];
  // Pages come newest first: once they reach before `from`, older pages cannot match.
  const canLoadOlder =
    list.next !== undefined && !(from !== undefined && oldest && created(oldest) < from);
  const clientFiltered = Boolean(reviewer || from !== undefined || to !== undefined);

  const apply = applyFilters("/history");

  return (
    <>
      <h1>History</h1>
      <form className="filters" onSubmit={apply} key={search} aria-label="Filter requests">
        <div className="field">
          <label htmlFor="history-agent">Agent</label>
          <input id="history-agent" name="agent" defaultValue={filters.agent} />
        </div>
        <div className="field">
          <label htmlFor="history-reviewer">Reviewer</label>
          <input
            id="history-reviewer"
            name="reviewer"
            defaultValue={filters.reviewer}
            placeholder="e-mail or part of it"
          />
        </div>
        <div className="field">
          <label htmlFor="history-connection">Connection</label>
          <input id="history-connection" name="connection" defaultValue={filters.connection} />
        </div>
        <div className="field">
          <label htmlFor="history-state">State</label>
          <select id="history-state" name="state" defaultValue={filters.state}>
            <option value="">any state</option>
            {requestStatuses.map((status) => (
              <option key={status} value={status}>
                {status === "pending" ? "pending (yours to decide)" : status}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="history-from">From</label>
          <input id="history-from" name="from" type="datetime-local" defaultValue={filters.from} />
        </div>
        <div className="field">
          <label htmlFor="history-to">To</label>
          <input id="history-to" name="to" type="datetime-local" defaultValue={filters.to} />
        </div>
        <div className="filter-actions">
          <button type="submit">Filter</button>
          {search ? <Link to="/history">Clear filters</Link> : null}
        </div>
      </form>

      <div aria-live="polite">
        {stale ? (
          <p className="alert alert-info">
            Requests changed since this list loaded.{" "}
            <button type="button" className="secondary" onClick={refresh}>
              Refresh
            </button>
          </p>
        ) : null}
        {list.loaded ? (
          <p className="lead">
            {shown.length} {shown.length === 1 ? "request" : "requests"}
            {clientFiltered ? ` match among the ${list.items.length} loaded` : ""}.
          </p>
        ) : null}
      </div>
      {list.loaded && shown.length === 0 ? (
        <Empty title="No requests match">
          <p>
            {canLoadOlder ? "Load older requests, or change the filters." : "Try other filters."}
          </p>
        </Empty>
      ) : null}
      {shown.length > 0 ? (
        <ul className="rows" aria-label="Requests">
          {shown.map((request) => (
            <RequestRow key={request.id} request={request} history />
          ))}
        </ul>
      ) : null}
      {list.error ? <ErrorState error={list.error} onRetry={list.reload} /> : null}
      {list.loading ? <Loading /> : null}
      {list.loaded && canLoadOlder && !list.loading ? (
        <p className="more">
          <button type="button" className="secondary" onClick={list.more}>
            Load older
          </button>
        </p>
      ) : null}
    </>
  );
}
