/**
 * For store tests that make a request's change beforehand, at a time of their choosing:
 * `insertRequest` takes how to make it at the store's time, and these ignore that time.
 */
import type { Change } from "../../src/requests/request-types.js";
import type { OutboxEntry, OutboxPlanner } from "../../src/store/store.js";

/** The change as made, whatever time the store would stamp it by. */
export const fixed = (change: Change) => () => change;

/** These outbox entries, whatever the change. */
export const entries =
  (outbox: OutboxEntry[]): OutboxPlanner =>
  () =>
    outbox;

/** No outbox entry. */
export const none: OutboxPlanner = () => [];
