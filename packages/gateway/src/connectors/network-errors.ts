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
