import type { RequestStatus, RiskLevel } from "../api-types.js";

/** Risk in words and colour, never colour alone. */
export function RiskBadge({ level, label = "risk" }: { level: RiskLevel; label?: string }) {
  return (
    <span className={`badge risk-${level}`}>
      {level} {label}
    </span>
  );
}

export function StatusBadge({ status }: { status: RequestStatus }) {
  return <span className={`badge status-${status}`}>{status}</span>;
}
