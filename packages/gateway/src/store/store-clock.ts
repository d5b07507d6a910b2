/**
 * The store's time without a round trip: where replicas share a database, its clock, as
 * learned from the readings of it that the store's transactions take anyway. Every replica
 * then judges by one clock (within a few milliseconds), whatever its own says.
 */

/**
 * How fast the database's clock and this process's monotonic clock may drift apart, at most:
 * both are disciplined by NTP, which slews a clock by at most 500 ppm. An estimate's bounds
 * widen by this much per millisecond since its last reading.
 */
const MAX_DRIFT = 500e-6;

/**
 * The database's clock, as an offset from this process's monotonic clock (performance.now):
 * a step of the wall clock here (an NTP correction, a VM resumed) moves nothing, and a
 * skewed wall clock is never read.
 *
 * Each reading says the database's clock showed `dbMs` at some moment between `sent` and
 * `received` (monotonic ms): the offset lies within those bounds. Readings agreeing with
 * the estimate (its bounds, widened for drift since) narrow it to where they overlap, so a
 * reading slowed by a busy event loop or a queued connection widens nothing; one that
 * disagrees means a clock was stepped, and replaces it. The estimate is the middle of its
 * bounds: off by at most half the quickest round trip since, on a quiet network well under a
 * millisecond.
 */
export class StoreClock {
  /** Bounds of (database ms − monotonic ms), as of `at` (monotonic ms); NaN before a reading. */
  private low = Number.NaN;
  private high = Number.NaN;
  private at = Number.NaN;

  constructor(
    /** Milliseconds on a clock no step of the wall clock moves. */
    private readonly monotonic: () => number = () => performance.now(),
    /** What `now` says before any reading: this process's wall clock. */
    private readonly fallback: () => number = Date.now,
  ) {}

  /** Whether a reading has been taken. */
  get known(): boolean {
    return !Number.isNaN(this.at);
  }

  /** When the last reading came back (monotonic ms), or -Infinity before any. */
  get lastReading(): number {
    return this.known ? this.at : Number.NEGATIVE_INFINITY;
  }

  /**
   * A reading of the database's clock: `dbMs`, taken between `sent` and `received` on the
   * monotonic clock. `dbMs` is whole milliseconds, cut down from the database's microseconds.
   */
  observe(dbMs: number, sent: number, received: number): void {
    if (!Number.isFinite(dbMs) || !(received >= sent)) return;
    const low = dbMs - received;
    const high = dbMs + 1 - sent;
    if (this.known) {
      const drift = Math.max(0, received - this.at) * MAX_DRIFT;
      const was = { low: this.low - drift, high: this.high + drift };
      if (low <= was.high && high >= was.low) {
        this.low = Math.max(low, was.low);
        this.high = Math.min(high, was.high);
        this.at = Math.max(this.at, received);
        return;
      }
    }
    this.low = low;
    this.high = high;
    this.at = received;
  }

  /** The database's time now, in ms since the epoch. */
  now(): number {
    if (!this.known) return this.fallback();
    return Math.floor(this.monotonic() + (this.low + this.high) / 2);
  }
}
