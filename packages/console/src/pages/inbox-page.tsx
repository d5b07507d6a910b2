/** `/`: the pending requests this reviewer may decide, most urgent first, updated live. */
import { useCallback, useMemo } from "react";
import { api } from "../api.js";
import type { ReviewerView } from "../api-types.js";
import { RequestRow } from "../components/request-row.js";
import { Empty, ErrorState, Loading } from "../components/states.js";
import { byUrgency } from "../format.js";
import { usePageTitle, useResource } from "../hooks.js";
import { useLiveRefresh } from "../live.js";

const any = () => true;

/** As many as the inbox lists at once. */
const SHOWN = 100;

export function InboxPage() {
  usePageTitle("Inbox");
  // A page holds those of the pending requests it scanned (newest first) that this reviewer
  // may decide: behind a page of others' requests, theirs come on the pages after it.
  const load = useCallback(async (signal: AbortSignal) => {
    const requests: ReviewerView[] = [];
    let next: string | undefined;
    do {
      const page = await api.requests({ status: "pending", before: next, limit: SHOWN }, signal);
      requests.push(...page.requests);
      next = page.next;
    } while (next !== undefined && requests.length < SHOWN);
    return { requests, next };
  }, []);
  const inbox = useResource(load);
  // Any change can add a request to the inbox or take one out of it.
  useLiveRefresh(any, inbox.reload, 300);

  const requests = useMemo(() => [...(inbox.data?.requests ?? [])].sort(byUrgency), [inbox.data]);
  const count = requests.length;

  return (
    <>
      <h1>Inbox</h1>
      {inbox.data ? (
        <p className="lead" role="status" aria-live="polite">
          {count === 0
            ? "Nothing waits for you."
            : `${count} ${count === 1 ? "request waits" : "requests wait"} for your decision.`}
        </p>
      ) : null}
      {inbox.error ? <ErrorState error={inbox.error} onRetry={inbox.reload} /> : null}
      {!inbox.data && inbox.loading ? <Loading what="Loading your inbox…" /> : null}
      {inbox.data && count === 0 ? (
        <Empty title="Nothing waits for you">
          <p>New requests appear here as agents ask; this page updates by itself.</p>
        </Empty>
      ) : null}
      {count > 0 ? (
        <ul className="rows" aria-label="Pending requests">
          {requests.map((request) => (
            <RequestRow key={request.id} request={request} />
          ))}
        </ul>
      ) : null}
      {inbox.data?.next ? (
        <p className="note">
          Showing the first {count} pending requests; decide some to see the rest.
        </p>
      ) : null}
    </>
  );
}
