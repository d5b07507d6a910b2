import type { z } from "zod";
import { AirlockError } from "../errors.js";

/** The first schema problem as an `invalid_request` naming its field, `prefix` first. */
export function invalidRequest(
  error: z.ZodError,
  prefix: string[],
  fallback: string,
): AirlockError {
  const describe = (issue: z.core.$ZodIssue) => {
    const path = [...prefix, ...issue.path.map(String)];
    if (issue.code === "unrecognized_keys") {
      return {
        field: [...path, issue.keys[0]].join("."),
        message: `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`,
      };
    }
    return { field: path.join(".") || fallback, message: issue.message };
  };
  const issues = error.issues.map(describe);
  const first = issues[0] ?? { field: fallback, message: "is invalid" };
  return new AirlockError("invalid_request", `${first.field}: ${first.message}`, {
    field: first.field,
    ...(issues.length > 1 ? { details: { issues } } : {}),
  });
}
