/**
 * Failures that come before a connection exists, so nothing was sent: the system cannot have
 * acted. Any other (a reset, a closed socket, a timeout) may come after it did.
 */
const BEFORE_SENDING = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Whether a failure certainly came before the request was sent. */
export function beforeSending(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } } | null;
  const code = e?.code ?? e?.cause?.code;
  return code !== undefined && BEFORE_SENDING.has(code);
}

/** Why a connector could not reach its system, in words for a request's outcome. */
export function describeNetworkError(error: unknown): string {
  if (error && typeof error === "object") {
    const e = error as { code?: string; message?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code;
    if (code === "ECONNREFUSED") return "connection refused";
    if (code === "ENOTFOUND") return "host not found";
    if (code === "ECONNRESET" || code === "UND_ERR_SOCKET") return "the connection was reset";
    return e.message ?? String(error);
  }
  return String(error);
}
