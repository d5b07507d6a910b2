/**
 * Finds personal data and credentials (emails, phones, cards, SSNs, IBANs, API keys) inside
 * what an action returns and masks them before the agent receives the result or it is stored.
 */
import type { Json } from "../common/canonical-json.js";
import { defineOwn } from "../common/own-key.js";
import type { DetectorName } from "./detector-names.js";
import { defineApart, type TakenKeys } from "./distinct-keys.js";

type Counts = Partial<Record<DetectorName, number>>;

export interface MaskedResult {
  value: Json;
  counts: Partial<Record<DetectorName, number>>;
}

/**
 * Masks every string (and every integer number that is a card) inside a JSON value; object
 * keys untouched. The input is never mutated; subtrees with nothing to mask are shared with it.
 */
export function maskResult(value: Json, detectors: readonly DetectorName[]): MaskedResult {
  const counts: Counts = {};
  if (detectors.length === 0) return { value, counts };
  return { value: walk(value, compiledSet(detectors), counts), counts };
}

/** A stretch of text the detectors replace, and what replaces it. */
export interface Stretch {
  start: number;
  end: number;
  hint: string;
}

/**
 * How far into text, in bytes from where a value starts, the detectors need to read to find
 * it: the longest value of bounded length (an e-mail's local part, first domain label and top
 * level; a GitHub token) with room to spare, and enough of those that run on (a bearer token,
 * a private key, a JWT, found by its start at the end of text). Text read this far past a cut
 * has every value starting before the cut found, whole or by its start; only a JWT whose
 * header alone runs longer is not, and its header holds no secret.
 */
export const DETECTOR_REACH = 512;

/**
 * Where in `text` the detectors find values, in order and apart, with their hints: what
 * `maskText` replaces, for whoever must cut text without cutting a value or a hint in two.
 */
export function detectedStretches(text: string, detectors: readonly DetectorName[]): Stretch[] {
  if (detectors.length === 0) return [];
  const hits = findHits(text, compiledSet(detectors));
  return hits === undefined
    ? []
    : clusters(hits).map(({ start, end, winner }) => ({
        start,
        end,
        hint: winner.hint,
      }));
}

/** Same for one text. */
export function maskText(
  text: string,
  detectors: readonly DetectorName[],
): { text: string; counts: Partial<Record<DetectorName, number>> } {
  const counts: Counts = {};
  if (detectors.length === 0) return { text, counts };
  return { text: maskString(text, compiledSet(detectors), counts), counts };
}

interface Found {
  /** How much of the regex match is the value: validation may drop trailing groups. */
  length: number;
  hint: string;
}

interface DetectorSpec {
  /** A pattern every match contains; the union of a set's triggers gates the full scan. */
  trigger: RegExp;
  /**
   * Every repetition is bounded or unambiguous and every start is anchored by a lookbehind
   * or a literal, so no input makes the scan worse than linear.
   */
  pattern: RegExp;
  /** Validates a candidate (checksums, ranges); undefined rejects it. */
  check(match: RegExpExecArray): Found | undefined;
}

// --- email ------------------------------------------------------------------------------
// Not matched: local parts over 64 characters, dotless domains (user@localhost), IP-literal
// domains, quoted local parts.
const email: DetectorSpec = {
  trigger: /@/,
  pattern:
    /(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-]|\.[A-Za-z0-9])/g,
  check(match) {
    const value = match[0];
    // Keeps the first character and the domain: enough to tell addresses apart in a review.
    return {
      length: value.length,
      hint: `${value[0]}***@${value.slice(value.indexOf("@") + 1)}`,
    };
  },
};

// --- phone ------------------------------------------------------------------------------
// International: "+", a country code not starting with 0, 8 to 15 digits in all (E.164),
// single spaces, dots or dashes and parentheses between digits. North American: (415) 555-2671,
// 415-555-2671, 415.555.2671 (one separator throughout), optionally led by "1-"; area code and
// exchange start with 2-9.
// Not matched, to keep dates, times, versions, ids and amounts intact: bare digit runs
// (4155552671), space-separated national numbers (415 555 2671), 7-digit local numbers
// (555-2671), anything glued to letters, digits, dots or dashes (v415.555.2671,
// 415-555-2671-9), signed decimals (+3.14159265), dates (2026-11-22), times and UTC offsets
// (+01:00). The hint keeps the last two digits: +***-***-**71 or ***-***-**71.
const phone: DetectorSpec = {
  trigger: /\+[1-9]|\d{3}[-.)]/,
  pattern:
    /(?<![\w+/=])\+[1-9](?:[ .-]?\(?\d\)?){7,14}(?![\w/=])|(?<![\w.+/-])(?:1[ .-])?(?:\(\d{3}\) ?\d{3}[-.]|\d{3}([-.])\d{3}\1)\d{4}(?!\w|[-.]\d)/g,
  check(match) {
    const value = match[0];
    const digits = value.replace(/\D/g, "");
    const international = value.startsWith("+");
    if (international) {
      if (/^\+\d+\.\d+$/.test(value)) return undefined;
    } else {
      const national = digits.length === 11 ? digits.slice(1) : digits;
      if (national[0]! < "2" || national[3]! < "2") return undefined;
    }
    return {
      length: value.length,
      hint: `${international ? "+" : ""}***-***-**${digits.slice(-2)}`,
    };
  },
};

// --- card -------------------------------------------------------------------------------
// 13 to 19 digits passing the Luhn check, either one run or grouped by single spaces or
// dashes with a first group of four (4-4-4-4, 4-6-5, ...).
// Not matched: numbers starting 0, 1, 7, 8 or 9 (no payment network issues those; it spares
// epoch-millisecond timestamps), decimals (0.4242424242424242), digits glued to letters,
// runs longer than 19 digits, other groupings (12 4242 ...). The hint keeps the last four.
const card: DetectorSpec = {
  trigger: /\d{4}/,
  pattern: /(?<![\w.])\d(?:[ -]?\d){12,18}(?!\w|[.,]\d)/g,
  check(match) {
    // A card followed by an expiry ("4242 4242 4242 4242 12/27") is matched with the expiry's
    // first group; trying shorter prefixes finds the card.
    const groups = match[0].split(/[ -]/);
    for (let taken = groups.length; taken >= 1; taken--) {
      const prefix = groups.slice(0, taken);
      if (!cardGrouping(prefix)) continue;
      const digits = prefix.join("");
      if (digits.length < 13 || digits[0]! < "2" || digits[0]! > "6" || !luhn(digits)) continue;
      return { length: digits.length + taken - 1, hint: `**** ${digits.slice(-4)}` };
    }
    return undefined;
  },
};

function cardGrouping(groups: readonly string[]): boolean {
  if (groups.length === 1) return true;
  if (groups[0]!.length !== 4) return false;
  for (let i = 1; i < groups.length; i++) {
    const size = groups[i]!.length;
    const last = i === groups.length - 1;
    if (size > 6 || (!last && size < 4)) return false;
  }
  return true;
}

function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// --- ssn --------------------------------------------------------------------------------
// 123-45-6789, or after a label (SSN, social security number) also 123 45 6789 and
// 123456789; the label stays in the output.
// Not matched: unlabelled 9-digit runs (ids), area 000, 666 or 900-999, group 00, serial
// 0000, digits glued to letters, dots or dashes. The hint keeps the serial: ***-**-6789.
const ssn: DetectorSpec = {
  trigger: /\d{3}[ -]?\d{2}[ -]?\d{4}/,
  pattern:
    /(?<![A-Za-z0-9.-])(?<label>(?:ssn|social security(?: n(?:umber|o\.?))?)(?:\s{0,3}[:#])?\s{0,3})?(?<area>\d{3})(?<sep>[ -]?)(?<group>\d{2})\k<sep>(?<serial>\d{4})(?!\w|[-.]\d)/gi,
  check(match) {
    const { label = "", area = "", sep, group, serial = "" } = match.groups ?? {};
    if (label === "" && sep !== "-") return undefined;
    if (area === "000" || area === "666" || area >= "900") return undefined;
    if (group === "00" || serial === "0000") return undefined;
    return { length: match[0].length, hint: `${label}***-**-${serial}` };
  },
};

// --- iban -------------------------------------------------------------------------------
// Country code, check digits and up to 30 capitals or digits, unbroken or in space-separated
// groups of four, passing the ISO 13616 mod-97 check at the country's length (any length
// from 15 to 34 for countries not listed below).
// Not matched: lower case, other separators or groupings, a wrong length for a listed
// country, check digits 00, 01 or 99. The hint keeps the country and the last four:
// DE** **** 3000.
// biome-ignore format: a table reads better packed
const ibanLengths: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, CH: 21, CR: 22,
  CY: 28, CZ: 24, DE: 22, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27, GB: 22,
  GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27,
  JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24, ME: 22,
  MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24,
  RS: 22, SA: 24, SC: 31, SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20,
};

const iban: DetectorSpec = {
  trigger: /[A-Z]{2}\d{2}/,
  pattern:
    /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}(?![A-Za-z0-9])|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?(?![A-Za-z0-9]))/g,
  check(match) {
    // A grouped IBAN followed by a word of four ("... 7034 EURO") is matched with it;
    // trying shorter prefixes finds the IBAN.
    const groups = match[0].split(" ");
    for (let taken = groups.length; taken >= 1; taken--) {
      const compact = groups.slice(0, taken).join("");
      if (!validIban(compact)) continue;
      return {
        length: compact.length + taken - 1,
        hint: `${compact.slice(0, 2)}** **** ${compact.slice(-4)}`,
      };
    }
    return undefined;
  },
};

function validIban(compact: string): boolean {
  const expected = ibanLengths[compact.slice(0, 2)];
  if (
    expected === undefined
      ? compact.length < 15 || compact.length > 34
      : compact.length !== expected
  ) {
    return false;
  }
  const checkDigits = compact.slice(2, 4);
  if (checkDigits === "00" || checkDigits === "01" || checkDigits === "99") return false;
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let rest = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    // Digits count as themselves, letters as 10 (A) to 35 (Z).
    rest = code <= 57 ? (rest * 10 + code - 48) % 97 : (rest * 100 + code - 55) % 97;
  }
  return rest === 1;
}

// --- secret -----------------------------------------------------------------------------
// Provider keys by their documented prefixes, JWTs, PEM private keys (also a block cut
// before its END line) and the token after "Bearer".
// Not matched: credentials without a recognisable shape (AWS secret access keys, passwords,
// Basic auth), publishable keys (Stripe pk_), "sk-" keys with no digit in their first 65
// characters, Bearer tokens under 8 characters or under 20 without a digit ("Bearer token").
// Hints keep only the provider prefix: ghp_***, AKIA***, sk-ant-***, eyJ***(jwt),
// Bearer ***, and the BEGIN / END lines of a private key around [masked].
const secretAlternatives: readonly RegExp[] = [
  /-----BEGIN (?<pemType>(?:[A-Z0-9]+ )*)PRIVATE KEY-----(?:[^-]|-(?!----))*(?<pemEnd>-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?/,
  /\b(?<bearer>Bearer|bearer|BEARER)[ \t]+(?:(?=[\w~+/.-]{0,19}\d)[\w~+/.-]{8,}|[\w~+/.-]{20,})=*/,
  // No start right after a token character: a long token then has one start, not thousands.
  // One that text ends in before its signature is a JWT cut short: its claims are masked too.
  /(?<![\w-])eyJ[\w-]{5,}\.[\w-]{5,}(?:\.[\w-]*|$)/,
  /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/,
  /(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])/,
  /(?<![A-Za-z0-9])github_pat_\w{22,255}(?!\w)/,
  /(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}/,
  /(?<![A-Za-z0-9])[rs]k_(?:live|test)_[A-Za-z0-9]{10,}/,
  // Before the generic "sk-" keys, so an Anthropic key keeps its own prefix.
  /(?<![A-Za-z0-9])sk-ant-[\w-]{20,}/,
  /(?<![A-Za-z0-9])sk-(?=[A-Za-z_-]{0,64}\d)[\w-]{20,}/,
  /(?<![A-Za-z0-9])AIza[\w-]{35}(?![\w-])/,
  /(?<![A-Za-z0-9])glpat-[\w-]{20,}/,
  /(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])/,
  /(?<![A-Za-z0-9])SG\.[\w-]{22}\.[\w-]{43}(?![\w-])/,
  /(?<![A-Za-z0-9])SK[0-9a-fA-F]{32}(?![A-Za-z0-9])/,
];

const secretPrefix =
  /^(?:github_pat_|gh[pousr]_|xox[abposr]-|[rs]k_(?:live|test)_|sk-(?:ant-|proj-|svcacct-|admin-)?|glpat-|npm_|AKIA|ASIA|AIza|SG\.|SK)/;

const secret: DetectorSpec = {
  trigger:
    /-----BEGIN |[Bb]earer|BEARER|eyJ|AKIA|ASIA|gh[pousr]_|github_pat_|xox[abposr]-|[rs]k_(?:live|test)_|sk-|AIza|glpat-|npm_|SG\.|SK[0-9a-fA-F]/,
  pattern: new RegExp(secretAlternatives.map((re) => re.source).join("|"), "g"),
  check(match) {
    const value = match[0];
    const { pemType, pemEnd, bearer } = match.groups ?? {};
    let hint: string;
    if (pemType !== undefined) {
      const begin = `-----BEGIN ${pemType}PRIVATE KEY----- [masked]`;
      hint = pemEnd === undefined ? begin : `${begin} -----END ${pemType}PRIVATE KEY-----`;
    } else if (bearer !== undefined) {
      hint = `${bearer} ***`;
    } else if (value.startsWith("eyJ")) {
      hint = "eyJ***(jwt)";
    } else {
      hint = `${secretPrefix.exec(value)?.[0] ?? ""}***`;
    }
    return { length: value.length, hint };
  },
};

// --- applying a set ---------------------------------------------------------------------

/** Which detector wins when two find overlapping text of the same length. */
const precedence: readonly DetectorName[] = ["secret", "iban", "card", "ssn", "phone", "email"];
const specs: Readonly<Record<DetectorName, DetectorSpec>> = {
  email,
  phone,
  card,
  ssn,
  iban,
  secret,
};

/** Nothing shorter can hold a match (the shortest is an email like a@b.co). */
const MIN_MATCH_LENGTH = 6;
/**
 * A bare number has no separators, labels or "+", so only a card (13+ digits) can be
 * recognised in one; smaller numbers skip the scan.
 */
const MIN_CARD_NUMBER = 1e12;

interface CompiledDetector {
  name: DetectorName;
  rank: number;
  pattern: RegExp;
  check: DetectorSpec["check"];
}

interface CompiledSet {
  trigger: RegExp;
  detectors: readonly CompiledDetector[];
}

interface Hit {
  start: number;
  end: number;
  hint: string;
  name: DetectorName;
  rank: number;
}

// At most 63 sets exist, so the cache needs no eviction.
const compiledSets = new Map<string, CompiledSet>();

function compiledSet(detectors: readonly DetectorName[]): CompiledSet {
  const names = [...new Set(detectors)].sort();
  const key = names.join(",");
  let set = compiledSets.get(key);
  if (set === undefined) {
    set = {
      trigger: new RegExp(names.map((name) => `(?:${specs[name].trigger.source})`).join("|")),
      detectors: names.map((name) => ({
        name,
        rank: precedence.indexOf(name),
        // A copy per set: a global regex carries lastIndex.
        pattern: new RegExp(specs[name].pattern.source, specs[name].pattern.flags),
        check: specs[name].check,
      })),
    };
    compiledSets.set(key, set);
  }
  return set;
}

function walk(value: Json, set: CompiledSet, counts: Counts): Json {
  if (typeof value === "string") return maskString(value, set, counts);
  if (typeof value === "number") {
    if (!Number.isInteger(value) || Math.abs(value) < MIN_CARD_NUMBER) return value;
    const text = String(value);
    const masked = maskString(text, set, counts);
    return masked === text ? value : masked;
  }
  if (value === null || typeof value === "boolean") return value;
  if (Array.isArray(value)) {
    // Copied only from the first changed item, so a result with nothing to mask costs no copy.
    let out: Json[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item = value[i]!;
      const masked = walk(item, set, counts);
      if (out === undefined && masked !== item) out = value.slice(0, i);
      out?.push(masked);
    }
    return out ?? value;
  }
  let out: Record<string, Json> | undefined;
  // How many times each key came out the same, for the next one's suffix.
  let taken: TakenKeys | undefined;
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const child = value[key]!;
    // Keys too: a result indexed by e-mail or card number holds them there.
    const maskedKey = maskString(key, set, counts);
    const masked = walk(child, set, counts);
    if (out === undefined && (masked !== child || maskedKey !== key)) {
      out = {};
      for (let j = 0; j < i; j++) defineOwn(out, keys[j]!, value[keys[j]!]!);
    }
    if (out === undefined) continue;
    taken = defineApart(out, maskedKey, masked, taken);
  }
  return out ?? value;
}

function maskString(text: string, set: CompiledSet, counts: Counts): string {
  const hits = findHits(text, set);
  return hits === undefined ? text : applyHits(text, hits, counts);
}

function findHits(text: string, set: CompiledSet): Hit[] | undefined {
  if (text.length < MIN_MATCH_LENGTH || !set.trigger.test(text)) return undefined;
  let hits: Hit[] | undefined;
  for (const detector of set.detectors) {
    const pattern = detector.pattern;
    // exec leaves lastIndex at 0 once it returns null, which is the only way the loop ends.
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const found = detector.check(match);
      if (found === undefined) {
        // A rejected candidate may hide a valid one starting inside it.
        pattern.lastIndex = match.index + 1;
        continue;
      }
      const start = match.index;
      pattern.lastIndex = start + found.length;
      hits ??= [];
      hits.push({
        start,
        end: start + found.length,
        hint: found.hint,
        name: detector.name,
        rank: detector.rank,
      });
    }
  }
  return hits;
}

/**
 * Overlapping hits form one cluster, replaced whole by the hint of its longest hit (then by
 * precedence), so no part of any detected value survives; the cluster counts once, for the
 * winner.
 */
function clusters(hits: Hit[]): { start: number; end: number; winner: Hit }[] {
  hits.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: { start: number; end: number; winner: Hit }[] = [];
  let i = 0;
  while (i < hits.length) {
    let winner = hits[i]!;
    const start = winner.start;
    let end = winner.end;
    for (i++; i < hits.length && hits[i]!.start < end; i++) {
      const hit = hits[i]!;
      end = Math.max(end, hit.end);
      const length = hit.end - hit.start;
      const winnerLength = winner.end - winner.start;
      if (length > winnerLength || (length === winnerLength && hit.rank < winner.rank)) {
        winner = hit;
      }
    }
    out.push({ start, end, winner });
  }
  return out;
}

function applyHits(text: string, hits: Hit[], counts: Counts): string {
  let out = "";
  let copied = 0;
  for (const { start, end, winner } of clusters(hits)) {
    out += text.slice(copied, start) + winner.hint;
    counts[winner.name] = (counts[winner.name] ?? 0) + 1;
    copied = end;
  }
  return out + text.slice(copied);
}
