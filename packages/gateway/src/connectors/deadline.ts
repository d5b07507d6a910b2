/**
 * One execution's signal: aborted when the caller's is, or when `ms` pass. One timer and one
 * listener rather than AbortSignal.timeout + any: this runs per action, and once `end()` is
 * called nothing stays attached to the caller's signal, which every execution shares.
 */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Whether it was the time that ran out (not the caller that aborted). */
  readonly timedOut: boolean;
  end(): void;
}

export function deadline(caller: AbortSignal, ms: number): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, ms);
  const onAbort = () => controller.abort(caller.reason);
  if (caller.aborted) controller.abort(caller.reason);
  else caller.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    end() {
      clearTimeout(timer);
      caller.removeEventListener("abort", onAbort);
    },
  };
}
