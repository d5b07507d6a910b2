/**
 * Copies WAL pages back into the database file from a worker thread, with a connection of
 * its own, so that most of that work (and its fsyncs) happens off the gateway's event loop.
 * The gateway keeps SQLite's own autocheckpoint: only a checkpoint by the writer lets the WAL
 * start over (without it the WAL grows for as long as writes never pause), and by the time
 * it runs the worker has left it little to copy.
 */
import { Worker } from "node:worker_threads";

const worker = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 1000");
db.pragma("synchronous = NORMAL");
const tick = () => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch (error) { parentPort.postMessage(String(error)); }
};
const timer = setInterval(tick, workerData.interval);
parentPort.on("message", () => { clearInterval(timer); tick(); db.close(); process.exit(0); });
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(
  path: string,
  driver: string,
  onError: (message: string) => void,
): Checkpointer {
  const thread = new Worker(worker, { eval: true, workerData: { path, driver, interval: 200 } });
  thread.on("message", (message: string) => onError(message));
  thread.on("error", (error) => onError(String(error)));
  thread.unref();
  return {
    stop: () =>
      new Promise((resolve) => {
        // Kept alive until it has run a last checkpoint and closed its connection.
        thread.ref();
        thread.once("exit", () => resolve());
        thread.postMessage("stop");
      }),
  };
}
