import { z } from "zod";
import {
  connectionMaskSchema,
  duration,
  httpUrl,
  resultByteCap,
} from "../../config/config-types.js";
import { headerValuePattern } from "./http-input.js";

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "not a valid HTTP header name")
  .max(256);

/** Headers a connection sends with every call (http, mcp): agents can neither set nor read them. */
export const connectionHeadersSchema = z
  .record(
    headerName,
    z
      .string()
      .max(8192)
      .regex(
        headerValuePattern,
        "a header value holds tabs, printable ASCII and Latin-1 letters only; a line break often ends a ${file:} secret (remove it from the file)",
      ),
  )
  .default({});

export const httpConnectionSchema = z.strictObject({
  type: z.literal("http"),
  baseUrl: httpUrl()
    .refine(
      (url) => !new URL(url).search && !new URL(url).hash,
      "must not have a query or fragment",
    )
    .refine(
      (url) => !new URL(url).username && !new URL(url).password,
      "must not hold credentials; put them in headers, e.g. authorization: Basic ${env:API_BASIC_AUTH}",
    ),
  headers: connectionHeadersSchema,
  timeout: duration({ min: 100, max: 3_600_000 }).default(30_000),
  maxResponseBytes: resultByteCap,
  mask: connectionMaskSchema.optional(),
});

export type HttpConnectionConfig = z.output<typeof httpConnectionSchema>;
