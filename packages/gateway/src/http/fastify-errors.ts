/**
 * What fastify's own failures (a body too large, of the wrong type, or malformed) are in
 * Airlock's terms, for the error handlers to answer.
 */
import type { FastifyError } from "fastify";
import { AirlockError } from "../errors.js";

export function toAirlockError(
  error: FastifyError | Error,
  maxBodyBytes: number,
): AirlockError | undefined {
  if (error instanceof AirlockError) return error;
  const code = (error as FastifyError).code;
  switch (code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new AirlockError(
        "payload_too_large",
        `the body is larger than the limit of ${maxBodyBytes} bytes`,
        {
          field: "body",
        },
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new AirlockError(
        "invalid_request",
        "content-type: send the body as application/json",
        {
          field: "content-type",
          status: 415,
        },
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new AirlockError("invalid_request", "body: is empty; send a JSON object", {
        field: "body",
      });
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new AirlockError("invalid_request", "content-length: does not match the body", {
        field: "content-length",
      });
  }
  if (
    (error as FastifyError).statusCode === 400 &&
    (error instanceof SyntaxError || code === "FST_ERR_CTP_INVALID_JSON_BODY")
  ) {
    return new AirlockError("invalid_request", `body: is not valid JSON (${error.message})`, {
      field: "body",
    });
  }
  if ((error as FastifyError).statusCode === 400) {
    return new AirlockError("invalid_request", error.message, { field: "body" });
  }
  return undefined;
}
