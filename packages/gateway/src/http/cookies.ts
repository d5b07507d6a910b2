/** The few cookie operations the session needs, without a cookie library. */
import type { FastifyRequest } from "fastify";

/** The first well-formed value of cookie `name`; malformed ones (planted, say) are skipped. */
export function readCookie(
  request: FastifyRequest,
  name: string,
  shape: RegExp = /^[0-9a-f]{16,128}$/,
): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at < 0 || part.slice(0, at).trim() !== name) continue;
    const value = part.slice(at + 1).trim();
    if (shape.test(value)) return value;
  }
  return undefined;
}

/** httpOnly so scripts cannot read it; SameSite=Lax so it rides top-level links (Slack's) but not cross-site posts. */
export function sessionCookie(
  name: string,
  value: string,
  options: { maxAgeSeconds: number; secure: boolean },
): string {
  return [
    `${name}=${value}`,
    "Path=/",
    "HttpOnly",
    "SameSite=Lax",
    `Max-Age=${options.maxAgeSeconds}`,
    ...(options.secure ? ["Secure"] : []),
  ].join("; ");
}
