/**
 * Makes committed WAL frames durable. SQLite runs with synchronous=NORMAL, so a commit does
 * not sync by itself; the store syncs once per group commit, right after COMMIT. A lone
 * commit syncs on the event loop (a hop to another thread would cost it more than the
 * fdatasync itself); a group syncs on a thread of its own, so the event loop serves other
 * requests meanwhile, and those arriving join the next group. Not libuv's thread pool: DNS
 * lookups and compression share its four threads, and the store must not wait behind them.
 */
import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from "node:fs";
import { Worker } from "node:worker_threads";

const syncer = `
const { parentPort } = require("node:worker_threads");
const { fdatasyncSync } = require("node:fs");
parentPort.on("message", (fd) => {
  let failure = null;
  try { fdatasyncSync(fd); } catch (error) { failure = String((error && error.message) || error); }
  parentPort.postMessage(failure);
});
`;

export class WalSync {
  private fd: number | undefined;
  private thread: Worker | undefined;

  constructor(private readonly walPath: string) {}

  sync(): void {
    fdatasyncSync(this.open());
  }

  /** The same on the sync thread; one at a time (the store never asks for two at once). */
  syncOffLoop(): Promise<void> {
    return new Promise((resolve, reject) => {
      const fd = this.open();
      const thread = this.startThread();
      const settle = (error: Error | undefined) => {
        thread.off("message", onMessage);
        thread.off("error", onError);
        thread.off("exit", onExit);
        thread.unref();
        if (error) reject(error);
        else resolve();
      };
      const onMessage = (failure: string | null) =>
        settle(failure === null ? undefined : new Error(failure));
      const onError = (error: Error) => {
        this.thread = undefined;
        settle(error);
      };
      const onExit = () => {
        this.thread = undefined;
        settle(new Error("the WAL sync thread stopped"));
      };
      thread.on("message", onMessage);
      thread.on("error", onError);
      thread.on("exit", onExit);
      // Kept alive while a sync is under way, so a process has no reason to exit before it.
      thread.ref();
      thread.postMessage(fd);
    });
  }

  private startThread(): Worker {
    if (!this.thread) {
      this.thread = new Worker(syncer, { eval: true });
      this.thread.unref();
    }
    return this.thread;
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

  async close(): Promise<void> {
    const thread = this.thread;
    this.thread = undefined;
    await thread?.terminate();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
