/**
 * Group commit for SQLite. Transactions commit with synchronous=NORMAL (no fsync of their
 * own). Before anyone acts on a commit, one fdatasync of the WAL file makes every
 * transaction committed so far durable at once. The sync runs on the event loop right after
 * the current batch of I/O callbacks (setImmediate): on this class of machine a round trip
 * through libuv's thread pool costs more than the fdatasync itself, and while the loop is
 * blocked, arriving requests queue up and land in the next batch, which is the point.
 */
import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from "node:fs";

export class WalSync {
  private fd: number | undefined;
  private waiting: ((error: Error | null) => void)[] = [];
  private scheduled = false;
  /** How many fdatasyncs ran, and how many commits they covered (for the benchmark). */
  readonly stats = { syncs: 0, commits: 0 };

  constructor(private readonly walPath: string) {}

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push((error) => (error ? reject(error) : resolve()));
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.waiting;
    this.waiting = [];
    let failure: Error | null = null;
    try {
      fdatasyncSync(this.open());
      this.stats.syncs++;
      this.stats.commits += batch.length;
    } catch (error) {
      failure = error as Error;
    }
    for (const done of batch) done(failure);
  }

  /** The WAL file's descriptor, reopened if SQLite replaced the file. */
  private open(): number {
    if (this.fd !== undefined) {
      const current = statSync(this.walPath, { throwIfNoEntry: false });
      if (current && current.ino === fstatSync(this.fd).ino) return this.fd;
      closeSync(this.fd);
      this.fd = undefined;
    }
    this.fd = openSync(this.walPath, "r");
    return this.fd;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
