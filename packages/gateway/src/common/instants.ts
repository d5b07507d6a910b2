/**
 * Points in time that people write (`--since`, `?since=`): a date (midnight UTC) or a date
 * and time with its offset. A time without an offset would be read in the server's own zone,
 * and instants past the year 9999 sort wrongly against stored timestamps: both are refused.
 */
const form = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

export const INSTANT_HINT =
  "must be a date like 2026-11-01, or a date and time with its offset like 2026-11-01T09:30:00Z or 2026-11-01T09:30:00+01:00";

/** 9999-12-31T23:59:59.999Z: the last instant stored timestamps sort as times. */
const LAST_INSTANT = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** Milliseconds since the epoch, or undefined when `text` is not such a point in time. */
export function parseInstant(text: string): number | undefined {
  if (!form.test(text)) return undefined;
  // Date.parse rolls an impossible day over (2026-02-30 is 2 March) and takes 24:00 as the
  // next day's midnight: a date that does not exist is refused instead.
  const year = Number(text.slice(0, 4));
  const month = Number(text.slice(5, 7));
  const day = Number(text.slice(8, 10));
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (days === undefined || day < 1 || day > days) return undefined;
  if (text.length > 10 && Number(text.slice(11, 13)) > 23) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return undefined;
  // Date.parse drops digits past the millisecond; stored times are whole milliseconds, so an
  // instant inside one is read as the next: `since` then leaves out, and `until` keeps, an
  // event at the millisecond it falls in, which is before it.
  const finer = /\.\d{3}(\d+)/.exec(text)?.[1];
  const instant = finer !== undefined && /[1-9]/.test(finer) ? ms + 1 : ms;
  // An offset can carry a 9999 date past the year (9999-12-31T20:00-05:00), which is then
  // written +010000-… and sorts before every stored timestamp.
  return instant > LAST_INSTANT ? undefined : instant;
}
