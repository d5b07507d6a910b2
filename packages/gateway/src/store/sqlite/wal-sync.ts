/**
 * Makes committed WAL frames durable. SQLite runs with synchronous=NORMAL, so a commit does
 * not sync by itself; the store syncs once per group commit, right after COMMIT. A lone
 * commit syncs on the event loop (a round trip through libuv's thread pool would cost it more
 * than the fdatasync itself); a group syncs in the pool, so the event loop serves other
 * requests meanwhile, and those arriving join the next group.
 */
import { closeSync, fdatasync, fdatasyncSync, fstatSync, openSync, statSync } from "node:fs";

export class WalSync {
  private fd: number | undefined;

  constructor(private readonly walPath: string) {}

  sync(): void {
    fdatasyncSync(this.open());
  }

  syncInPool(): Promise<void> {
    const fd = this.open();
    return new Promise((resolve, reject) =>
      fdatasync(fd, (error) => (error ? reject(error) : resolve())),
    );
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
