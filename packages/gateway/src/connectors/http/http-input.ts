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
  // An upstream that trusts Airlock as its proxy takes these as where the request came from
  // and which URL it was for: an agent could pass an IP allow-list or redirect its links.
  ...[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "client-ip",
    "true-client-ip",
  ].map((h) => [h, "a proxy header: the upstream may trust it as Airlock's word"] as const),
]);

const queryValue = z.union([z.string().max(4096), z.array(z.string().max(4096)).max(100)]);

/** What HTTP lets a header value hold (RFC 9110 field-value): the client refuses anything else. */
export const headerValuePattern = /^[\t\x20-\x7e\x80-\xff]*$/;

export const httpInputSchema = z.strictObject({
  method: z
    .string()
    .transform((m) => m.toUpperCase())
    .pipe(z.enum(httpMethods, { error: `must be one of ${httpMethods.join(", ")}` })),
  path: z
    .string()
    .min(1)
    .max(2048)
    .transform((path, ctx) => {
      const result = normalizePath(path);
      if ("problem" in result) {
        ctx.addIssue({ code: "custom", message: result.problem });
        return z.NEVER;
      }
      return result.path;
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
        .regex(
          headerValuePattern,
          "a header value holds tabs, printable ASCII and Latin-1 letters only (no line breaks or control characters)",
        ),
    )
    .optional(),
  body: z.unknown().optional(),
});

export type HttpInput = z.output<typeof httpInputSchema>;

const unreserved = /^[A-Za-z0-9\-._~]$/;

/** What RFC 3986 lets a path segment hold unencoded, besides unreserved characters: `;` is refused. */
const rawInPath = /^[!$&'()*+,=:@]$/;

/**
 * The one spelling of a path that rules see, reviewers see and the upstream receives, byte
 * for byte (the request line is the path as given, under the base path): percent-encoded
 * unreserved characters are decoded (`/%61dmin` is `/admin`), other escapes are upper-cased,
 * characters a URL cannot hold as they are (`/café`, `{`, `"`) are percent-encoded as UTF-8
 * (`/caf%C3%A9`, as the URL parser would send them), and escapes that servers disagree about
 * (`%2F`, `%5C`, `%25`) are refused, so that no spelling lets a request look like one path to
 * the policy and another upstream.
 */
export function normalizePath(path: string): { path: string } | { problem: string } {
  if (!path.startsWith("/")) return { problem: "must start with /" };
  if (path.startsWith("//")) return { problem: "must not start with // (that names another host)" };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\s\\#?\0-\x1f\x7f]/.test(path)) {
    return {
      problem:
        "must not contain spaces, backslashes, control characters, ? or # (put the query in input.query)",
    };
  }
  // Servlet containers read `/admin;x=1` as /admin: a rule on the path would not see it so.
  if (path.includes(";")) {
    return {
      problem:
        "must not contain ; (servers differ on whether it starts path parameters); write it as %3B",
    };
  }
  let out = "";
  for (let i = 0; i < path.length; i++) {
    const char = path[i]!;
    if (char !== "%") {
      if (char === "/" || unreserved.test(char) || rawInPath.test(char)) {
        out += char;
        continue;
      }
      const point = path.codePointAt(i)!;
      // A lone surrogate has no UTF-8 form: the URL parser would send U+FFFD in its place.
      if (point >= 0xd800 && point <= 0xdfff) return { problem: "is not valid Unicode" };
      const text = String.fromCodePoint(point);
      for (const byte of Buffer.from(text, "utf8")) {
        out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
      }
      i += text.length - 1;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { problem: "has an invalid percent-encoding" };
    const code = Number.parseInt(hex, 16);
    const decoded = String.fromCharCode(code);
    if (code < 0x20 || code === 0x7f) return { problem: "must not encode control characters" };
    if (decoded === "/" || decoded === "\\" || decoded === "%") {
      return {
        problem: `must not encode ${decoded === "%" ? "a percent sign" : decoded === "/" ? "a slash" : "a backslash"} (%${hex}); servers disagree on what it means`,
      };
    }
    out += unreserved.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
    i += 2;
  }
  try {
    decodeURIComponent(out);
  } catch {
    return { problem: "has an invalid percent-encoding (not UTF-8)" };
  }
  const segments = out.split("/");
  // A raw ; is refused above; an encoded one after dots (`..%3B`) is still no name.
  if (segments.some((s) => /^\.\.?(?:$|%3B)/i.test(s)))
    return { problem: "must not contain . or .. segments (with ;parameters or without)" };
  if (out.includes("//")) return { problem: "must not contain empty segments (//)" };
  return { path: out };
}

/** Why a path cannot be used, or undefined when it can (see normalizePath). */
export function pathProblem(path: string): string | undefined {
  const result = normalizePath(path);
  return "problem" in result ? result.problem : undefined;
}

const overrideParameter = /^_method$/i;

/**
 * Where the input holds a `_method` parameter, the override Rails, Laravel, Symfony, Spring,
 * ASP.NET and Express's method-override read from the query or a form (Laravel from a JSON
 * body too) to run a POST as a DELETE or a PUT: the policy and the reviewer would have decided
 * on the method the request line says. Undefined when there is none. The body is read as the
 * upstream reads it: as the text sent (a JSON body is sent as its text, so a key or a value can
 * hold `&_method=`), under the content type sent, which is `connectionType` when the
 * connection sets one, since the connection's headers win over the agent's.
 */
export function methodOverrideField(input: HttpInput, connectionType?: string): string | undefined {
  for (const key of Object.keys(input.query ?? {})) {
    if (overrideParameter.test(key)) return `input.query.${key}`;
  }
  const { body } = input;
  if (body === undefined) return undefined;
  if (body !== null && typeof body === "object" && !Array.isArray(body)) {
    for (const key of Object.keys(body)) {
      if (overrideParameter.test(key)) return `input.body.${key}`;
    }
  }
  const type = (
    connectionType ??
    Object.entries(input.headers ?? {}).find(([name]) => name.toLowerCase() === "content-type")?.[1]
  )
    ?.toLowerCase()
    .trim();
  // Written out only for the types read as text here: most bodies are JSON sent as JSON.
  const text = () => (typeof body === "string" ? body : JSON.stringify(body));
  if (type?.startsWith("application/x-www-form-urlencoded")) {
    for (const key of new URLSearchParams(text()).keys()) {
      if (overrideParameter.test(key)) return "input.body";
    }
  }
  // A part's name is in its own headers, which a loose reading could miss: any mention is one.
  if (type?.startsWith("multipart/") && /_method/i.test(text())) return "input.body";
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
