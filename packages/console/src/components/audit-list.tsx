import type { AuditEvent } from "../api-types.js";
import { isEmptyJson } from "../format.js";
import { JsonBlock } from "./code-block.js";
import { Link, requestPath } from "./link.js";
import { When } from "./when.js";

/** Audit events in chain order, each with who did what and, folded away, its data and hashes. */
export function AuditList({
  events,
  showRequest = true,
}: {
  events: AuditEvent[];
  showRequest?: boolean;
}) {
  return (
    <ol className="events">
      {events.map((event) => (
        <li key={event.seq} className="event">
          <p className="event-head">
            <span className="seq">#{event.seq}</span> <strong>{event.type}</strong>{" "}
            <When iso={event.ts} />
          </p>
          <p className="event-meta">
            by {event.actor.type} <span className="mono">{event.actor.id}</span>
            {showRequest && event.requestId ? (
              <>
                {" "}
                on <Link to={requestPath(event.requestId)}>{event.requestId}</Link>
              </>
            ) : null}
          </p>
          <details>
            <summary>Details</summary>
            {isEmptyJson(event.data) ? null : <JsonBlock value={event.data} />}
            <dl className="hashes">
              <dt>Hash</dt>
              <dd className="mono">{event.hash}</dd>
              <dt>Previous</dt>
              <dd className="mono">{event.prevHash}</dd>
            </dl>
          </details>
        </li>
      ))}
    </ol>
  );
}
