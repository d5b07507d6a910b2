/** Agent and personal tokens: 256 random bits, shown once, stored only as a SHA-256 hash. */
import { randomBytes } from "node:crypto";
import { sha256Hex } from "../common/canonical-json.js";

const PREFIX = "alk_";

export function generateToken(): string {
  return PREFIX + randomBytes(32).toString("base64url");
}

export function hashToken(token: string): string {
  return sha256Hex(token);
}

/** Enough of a token to tell it apart in a list, far too little to use it. */
export function tokenHint(token: string): string {
  return `${token.slice(0, PREFIX.length + 6)}…`;
}

export function looksLikeToken(value: string): boolean {
  return value.startsWith(PREFIX) && value.length >= PREFIX.length + 40 && value.length <= 128;
}
