/**
 * The one error type Airlock raises on purpose. Its `code` is part of the public contract
 * (DESIGN.md lists the codes callers may rely on); the HTTP layer maps codes to statuses.
 */
export type ErrorCode =
  | "invalid_request"
  | "unauthenticated"
  | "forbidden"
  | "unknown_connection"
  | "unknown_operation"
  | "denied"
  | "not_an_approver"
  | "self_approval"
  | "step_up_required"
  | "already_reviewed"
  | "not_pending"
  | "not_found"
  | "expired"
  | "store_unavailable"
  | "rate_limited"
  | "payload_too_large"
  | "identity_provider_unavailable"
  | "internal";

const statusByCode: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  unknown_connection: 400,
  unknown_operation: 400,
  denied: 403,
  not_an_approver: 403,
  self_approval: 403,
  step_up_required: 403,
  already_reviewed: 409,
  not_pending: 409,
  not_found: 404,
  expired: 410,
  store_unavailable: 503,
  rate_limited: 429,
  payload_too_large: 413,
  identity_provider_unavailable: 503,
  internal: 500,
};

export class AirlockError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  private readonly statusOverride: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      field?: string;
      details?: Record<string, unknown>;
      cause?: unknown;
      status?: number;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AirlockError";
    this.code = code;
    this.field = options.field;
    this.details = options.details;
    this.statusOverride = options.status;
  }

  /** The HTTP status; a few `invalid_request`s are more precise as 415 and the like. */
  get status(): number {
    return this.statusOverride ?? statusByCode[this.code];
  }

  toJSON(): { code: ErrorCode; message: string; field?: string } & Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...this.details,
    };
  }
}

/**
 * What a caller is told of an error. A `store_unavailable` carries what the database said
 * (its host and port, its user, its file, its words): the operator's, which the log has with
 * the error, not the caller's, who can only try again. One that says an action ran
 * (`executed`) is Airlock's own words, and must reach the caller: it says not to submit the
 * action again.
 */
export function callerMessage(error: AirlockError): string {
  if (error.code !== "store_unavailable" || error.details?.executed === true) return error.message;
  return "the store cannot be reached or used for now; try again shortly";
}

export function isAirlockError(error: unknown): error is AirlockError {
  return error instanceof AirlockError;
}

/** What a caught value says, whether it is an Error or anything else thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
