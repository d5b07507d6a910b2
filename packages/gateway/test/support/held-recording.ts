/**
 * Holds a store's recording of where a chat's post went (setChannelRef) until released, so
 * that a test can click in the moment between the chat's answer and the recording.
 */
import { vi } from "vitest";
import type { Store } from "../../src/store/store.js";

export function holdChannelRefs(store: Store) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let recording = false;
  const record = store.setChannelRef.bind(store);
  const held = vi.spyOn(store, "setChannelRef").mockImplementation(async (...args) => {
    recording = true;
    await released;
    return record(...args);
  });
  const reads = vi.spyOn(store, "getChannelRef");
  return {
    /** Whether a recording is being held. */
    recording: () => recording,
    /** The store's reads of where posts went, so far. */
    reads: () => reads.mock.calls,
    release,
    restore() {
      release();
      held.mockRestore();
      reads.mockRestore();
    },
  };
}
