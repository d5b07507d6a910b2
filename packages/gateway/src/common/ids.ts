import { randomFillSync } from "node:crypto";

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

// One call to the CSPRNG per 409 ids rather than one per id: it is on every request's path.
const pool = Buffer.alloc(4096);
let offset = pool.length;

function take(n: number): Buffer {
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = pool.subarray(offset, offset + n);
  offset += n;
  return out;
}

/** Random bytes as hex, from the same pool. */
export function randomHex(bytes: number): string {
  return take(bytes).toString("hex");
}

/**
 * A time-ordered identifier: `prefix_` + 10 characters of milliseconds + 16 random characters
 * (80 bits), so ids sort by creation and cannot be guessed.
 */
export function newId(prefix: string, now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = alphabet[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = take(10);
  let random = "";
  for (let i = 0; i < 16; i++) {
    // 16 characters of 5 bits each from 80 random bits
    const bit = i * 5;
    const byte = bit >> 3;
    const offset = bit & 7;
    const word = ((bytes[byte] ?? 0) << 8) | (bytes[byte + 1] ?? 0);
    random += alphabet[(word >> (11 - offset)) & 31];
  }
  return `${prefix}_${time}${random}`;
}
