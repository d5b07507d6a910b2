/**
 * A session's refresh token, sealed with a key only its cookie gives. The store keeps the
 * session id's hash, never the id: someone who reads the database alone cannot use the
 * identity provider's token, as they cannot use the session.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

const INFO = "airlock session refresh token v1";

const keyOf = (sessionId: string): Buffer =>
  Buffer.from(hkdfSync("sha256", sessionId, Buffer.alloc(0), INFO, 32));

/** AES-256-GCM under a key derived from the session id: nonce, ciphertext and tag, base64url. */
export function sealForSession(sessionId: string, secret: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keyOf(sessionId), nonce);
  const sealed = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
  return Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64url");
}

/** The secret, or undefined when `sealed` was not sealed for this session (or was changed). */
export function openForSession(sessionId: string, sealed: string): string | undefined {
  const bytes = Buffer.from(sealed, "base64url");
  if (bytes.length < 12 + 16) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", keyOf(sessionId), bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([
      decipher.update(bytes.subarray(12, bytes.length - 16)),
      decipher.final(),
    ]).toString("utf8");
  } catch {
    return undefined;
  }
}
