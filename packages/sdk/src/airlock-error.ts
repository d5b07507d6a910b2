/** Codes the gateway answers with (its public contract), and the client's own. */
export type AirlockErrorCode =
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
  | "internal"
  /** The gateway could not be reached, or the connection broke before it answered. */
  | "network_error"
  /** The gateway did not answer within the client's `timeout`. */
  | "timeout"
  /** Something answered that is not Airlock: a proxy's error page or redirect, another service. */
  | "unexpected_response";

/**
 * The one error the client throws on purpose. A policy's denial, an expiry or a failed
 * execution is not an error: it is the action's `status`.
 */
export class AirlockError extends Error {
  override readonly name = "AirlockError";
  /** Stable: branch on this, not on the message. Gateways newer than this client may add codes. */
  readonly code: AirlockErrorCode | (string & {});
  /** The input field at fault, for `invalid_request` and the like. */
  readonly field: string | undefined;
  /** The HTTP status, when the gateway answered. */
  readonly status: number | undefined;
  /**
   * For `internal`: the id under which the gateway's log has the details. With `executed`: the
   * action's id, which `get` and `wait` read once the gateway can record its outcome.
   */
  readonly requestId: string | undefined;
  /**
   * True when the action ran even so (a `store_unavailable` after it ran, before its outcome
   * was recorded): do not submit it again.
   */
  readonly executed: boolean;
  /**
   * For a submission the client gave up on (`network_error`, `timeout`, …): the idempotency
   * key it was sent with, the client's own when you gave none. It may have reached the
   * gateway: submit again with it as `idempotencyKey` to find that request rather than make a
   * second.
   */
  readonly idempotencyKey: string | undefined;

  constructor(
    code: AirlockErrorCode | (string & {}),
    message: string,
    options: {
      field?: string;
      status?: number;
      requestId?: string;
      executed?: boolean;
      idempotencyKey?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.field = options.field;
    this.status = options.status;
    this.requestId = options.requestId;
    this.executed = options.executed ?? false;
    this.idempotencyKey = options.idempotencyKey;
  }
}
