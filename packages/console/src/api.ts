/**
 * The gateway's HTTP API, same origin: the session cookie authenticates, every POST carries
 * the session's CSRF token, and failures arrive as `ApiError` with the gateway's stable code.
 */
import type {
  AuditPage,
  AuditVerification,
  RequestPage,
  ReviewerView,
  RulesView,
  Session,
} from "./api-types.js";
import { readable } from "./readable.js";

export class ApiError extends Error {
  override readonly name = "ApiError";

  constructor(
    /** The HTTP status; 0 when the gateway could not be reached. */
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function failure(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    // Error messages can quote the input they refuse.
    body = readable(await response.json());
  } catch {
    body = undefined;
  }
  const error = isRecord(body) && isRecord(body.error) ? body.error : undefined;
  if (error && typeof error.code === "string") {
    return new ApiError(
      response.status,
      error.code,
      typeof error.message === "string"
        ? error.message
        : `The gateway answered ${response.status}.`,
      typeof error.field === "string" ? error.field : undefined,
      // The gateway puts an error's details beside its code (`login` for a step-up).
      isRecord(error.details) ? error.details : error,
    );
  }
  const code = response.status === 401 ? "unauthenticated" : `http_${response.status}`;
  return new ApiError(response.status, code, `The gateway answered ${response.status}.`);
}

async function send<T>(
  method: "GET" | "POST",
  path: string,
  options: { signal?: AbortSignal; csrfToken?: string; body?: unknown } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.csrfToken !== undefined) headers["x-csrf-token"] = options.csrfToken;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? null : JSON.stringify(options.body),
      signal: options.signal ?? null,
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new ApiError(0, "network", "Could not reach the gateway. Check your connection.");
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return undefined as T;
  return readable((await response.json()) as T);
}

function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export interface RequestFilters {
  /** A status, a comma list of them, or "all". */
  status: string;
  agent?: string;
  connection?: string;
  before?: string;
  limit?: number;
}

export interface AuditFilters {
  requestId?: string;
  type?: string;
  actor?: string;
  since?: string;
  until?: string;
  afterSeq?: number;
  limit?: number;
}

export const api = {
  session: (signal?: AbortSignal) => send<Session>("GET", "/auth/session", { signal }),

  logout: (csrfToken: string) => send<undefined>("POST", "/auth/logout", { csrfToken }),

  requests: (filters: RequestFilters, signal?: AbortSignal) =>
    send<RequestPage>("GET", `/v1/requests${query({ limit: 100, ...filters })}`, {
      signal,
    }),

  request: (id: string, signal?: AbortSignal) =>
    send<ReviewerView>("GET", `/v1/requests/${encodeURIComponent(id)}`, { signal }),

  review: (
    id: string,
    vote: { decision: "approve" | "deny"; comment?: string; requestHash: string },
    csrfToken: string,
  ) =>
    send<ReviewerView>("POST", `/v1/requests/${encodeURIComponent(id)}/reviews`, {
      csrfToken,
      body: vote,
    }),

  audit: (filters: AuditFilters, signal?: AbortSignal) =>
    send<AuditPage>("GET", `/v1/audit${query({ limit: 200, ...filters })}`, {
      signal,
    }),

  verifyAudit: (signal?: AbortSignal) =>
    send<AuditVerification>("GET", "/v1/audit/verify?all=true", { signal }),

  rules: (signal?: AbortSignal) => send<RulesView>("GET", "/v1/rules", { signal }),
};

/** Where to sign in so that the gateway brings the reviewer back to `returnTo`. */
export function loginUrl(returnTo: string, stepUp = false): string {
  return `/auth/login${query({ stepUp: stepUp ? 1 : undefined, returnTo })}`;
}

export function currentPath(): string {
  return `${location.pathname}${location.search}`;
}

/** Only same-origin paths are followed, so a crafted error cannot send anyone elsewhere. */
export function sameOriginPath(value: unknown): string | undefined {
  if (typeof value !== "string" || !value.startsWith("/")) return undefined;
  if (value.startsWith("//") || value.startsWith("/\\")) return undefined;
  return value;
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}
