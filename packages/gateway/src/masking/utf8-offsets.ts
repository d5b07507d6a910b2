/**
 * Positions in text decoded from UTF-8 (`bytes.toString("utf8")`) as positions in its bytes,
 * so that what is found in the text (a detector's match) can be cut out of the bytes.
 */

/**
 * How many bytes the sequence at `at` takes, and how many UTF-16 units it decodes to. Read as
 * Node's decoder reads (WHATWG Encoding): a sequence that is not well-formed decodes to one
 * replacement character for its longest well-formed start, or for its first byte alone.
 */
function step(bytes: Uint8Array, at: number): { size: number; units: number } {
  const lead = bytes[at]!;
  if (lead < 0x80) return { size: 1, units: 1 };
  let need: number;
  let low = 0x80;
  let high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) need = 1;
  else if (lead >= 0xe0 && lead <= 0xef) {
    need = 2;
    if (lead === 0xe0) low = 0xa0;
    if (lead === 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    need = 3;
    if (lead === 0xf0) low = 0x90;
    if (lead === 0xf4) high = 0x8f;
  } else return { size: 1, units: 1 };
  let seen = 1;
  while (seen <= need) {
    const next = bytes[at + seen];
    if (next === undefined || next < low || next > high) return { size: seen, units: 1 };
    low = 0x80;
    high = 0xbf;
    seen++;
  }
  return { size: seen, units: need === 3 ? 2 : 1 };
}

/**
 * The byte offsets of `indexes` (ascending positions in the decoded text). An index inside a
 * character's two UTF-16 units stands for the character's start, or its end with `after`.
 */
export function byteOffsets(
  bytes: Uint8Array,
  indexes: readonly number[],
  after = false,
): number[] {
  const out: number[] = [];
  let at = 0;
  let unit = 0;
  for (const index of indexes) {
    while (at < bytes.length) {
      const { size, units } = step(bytes, at);
      if (after ? unit >= index : unit + units > index) break;
      at += size;
      unit += units;
    }
    out.push(at);
  }
  return out;
}
