import { z } from "zod";
import { duration, httpUrl } from "../config/config-types.js";

/** localhost, 127.0.0.0/8 or ::1. */
export function loopback(hostname: string): boolean {
  return (
    hostname === "localhost" ||
    hostname === "[::1]" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

export const oidcSchema = z.strictObject({
  /** The identity provider's issuer URL; its discovery document is read from it. */
  issuer: httpUrl().refine(
    (url) => url.startsWith("https:") || loopback(new URL(url).hostname),
    "must be https:// (plain http is accepted only on loopback, for development): over http anyone on the way could hand Airlock forged sign-ins",
  ),
  clientId: z.string().min(1).max(512),
  clientSecret: z.string().min(1).max(4096),
  /** The ID token claim that lists the person's groups (Okta, Keycloak: groups; Entra ID: groups or roles). */
  groupsClaim: z.string().min(1).max(128).default("groups"),
  /** An authentication context step-up approvals must carry (e.g. an MFA acr). */
  acr: z.string().min(1).max(512).optional(),
  scopes: z
    .array(z.string().regex(/^[\x21-\x7e]+$/))
    .max(20)
    .default(["openid", "email", "profile"]),
  /** How long a console session lasts. */
  sessionTtl: duration({ min: 60_000, max: 30 * 86_400_000 }).default(12 * 3_600_000),
  /**
   * How often a session is checked again with the identity provider, with the refresh token
   * it gave at sign-in: someone it disables, or takes out of a group, loses the session or the
   * group within this time. Without a refresh token, groups are as of the sign-in.
   */
  recheckEvery: duration({ min: 1000, max: 86_400_000 }).default(5 * 60_000),
  /** How recent the identity provider's authentication must be to approve a step-up rule. */
  stepUpMaxAge: duration({ min: 1000, max: 3_600_000 }).default(300_000),
});

export type OidcConfig = z.output<typeof oidcSchema>;
