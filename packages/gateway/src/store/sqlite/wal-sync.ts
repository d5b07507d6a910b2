/**
 * Makes committed WAL frames durable. SQLite runs with synchronous=NORMAL, so a commit does
 * not sync by itself; the store calls `sync()` once per group commit, right after COMMIT.
 * It runs on the event loop: on this class of machine a round trip through libuv's thread
 * pool costs more than the fdatasync itself, and requests arriving meanwhile simply join
 * the next group.
 */
import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from "node:fs";

export class WalSync {
  private fd: number | undefined;

  constructor(private readonly walPath: string) {}

  sync(): void {
    fdatasyncSync(this.open());
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
