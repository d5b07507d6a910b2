/** The `request` operation's input, and the path rules that keep it under the base URL. */
import { z } from "zod";

export const httpMethods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

/**
 * Headers an agent may not set, each with the reason: transport headers could smuggle a
 * second request; encodings and ranges would let an echoed credential slip past scrubbing in
 * pieces; override headers would make the upstream do something other than what the policy
 * (and the reviewer) saw.
 */
export const reservedHeaders = new Map<string, string>([
  ...[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "expect",
  ].map((h) => [h, "a transport header that an agent cannot set"] as const),
  ...["accept-encoding", "range", "if-range"].map(
    (h) => [h, "Airlock asks for whole, uncompressed answers so it can scrub them"] as const,
  ),
  ...[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
  ].map((h) => [h, "it would change the method or path the policy decided on"] as const),
]);

const queryValue = z.union([z.string().max(4096), z.array(z.string().max(4096)).max(100)]);

export const httpInputSchema = z.strictObject({
  method: z
    .string()
    .transform((m) => m.toUpperCase())
    .pipe(z.enum(httpMethods, { error: `must be one of ${httpMethods.join(", ")}` })),
  path: z
    .string()
    .min(1)
    .max(2048)
    .superRefine((path, ctx) => {
      const problem = pathProblem(path);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  query: z.record(z.string().max(256), queryValue).optional(),
  headers: z
    .record(
      z
        .string()
        .max(256)
        .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "not a valid HTTP header name"),
      z
        .string()
        .max(8192)
        .regex(/^[^\r\n\0]*$/, "header values cannot hold line breaks"),
    )
    .optional(),
  body: z.unknown().optional(),
});

export type HttpInput = z.output<typeof httpInputSchema>;

/**
 * Why a path could leave the connection's base URL, or undefined when it cannot. Checked on
 * the decoded form too, so `%2e%2e` is caught like `..`.
 */
export function pathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "must start with /";
  if (path.startsWith("//")) return "must not start with // (that names another host)";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\s\\#?\0-\x1f\x7f]/.test(path)) {
    return "must not contain spaces, backslashes, control characters, ? or # (put the query in input.query)";
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return "has an invalid percent-encoding";
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\\\0-\x1f\x7f]/.test(decoded)) return "must not encode backslashes or control characters";
  const segments = decoded.split("/");
  if (segments.some((s) => s === ".." || s === ".")) return "must not contain . or .. segments";
  if (decoded.includes("//")) return "must not contain empty segments (//)";
  return undefined;
}

/** Joins the base URL and an already-checked path; the result always stays under the base. */
export function resolveUrl(baseUrl: string, path: string, query: HttpInput["query"]): URL {
  const base = new URL(baseUrl);
  const prefix = base.pathname.endsWith("/") ? base.pathname.slice(0, -1) : base.pathname;
  const url = new URL(base.origin);
  url.pathname = prefix + path;
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(key, item);
  }
  if (url.origin !== base.origin || !url.pathname.startsWith(prefix)) {
    throw new Error(`path ${path} resolves outside ${baseUrl}`);
  }
  return url;
}
