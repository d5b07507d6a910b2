/**
 * Group commit for SQLite. Transactions commit with synchronous=NORMAL (no fsync of their
 * own); before anyone acts on a commit, one fdatasync of the WAL file, run off the event
 * loop, makes every transaction committed so far durable at once. Commits that land while
 * a sync is in flight wait for the next one, which starts as soon as it ends.
 */
import { closeSync, fdatasync, fstatSync, openSync, statSync } from "node:fs";

export class WalSync {
  private fd: number | undefined;
  private waiting: ((error: Error | null) => void)[] = [];
  private inFlight = false;

  constructor(private readonly walPath: string) {}

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push((error) => (error ? reject(error) : resolve()));
      if (!this.inFlight) this.flush();
    });
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    let fd: number;
    try {
      fd = this.open();
    } catch (error) {
      for (const done of batch) done(error as Error);
      return;
    }
    this.inFlight = true;
    fdatasync(fd, (error) => {
      this.inFlight = false;
      for (const done of batch) done(error);
      if (this.waiting.length > 0) this.flush();
    });
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
