/**
 * A sleep that ends early when its signal aborts, so retry loops stop promptly on shutdown
 * instead of finishing their backoff first.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or as soon as `signal` aborts (at once if it already
 * has). Never rejects: the caller checks `signal.aborted` afterwards if it cares why.
 */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves once `signal` aborts (at once if it already has). Never rejects: the wait of a
 * part that runs until it is told to stop.
 */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** A signal that aborts when its parent does or when its time runs out; see {@linkcode deadline}. */
export interface Deadline extends Disposable {
  readonly signal: AbortSignal;
  /** True once the time ran out (rather than the parent aborting). */
  readonly timedOut: boolean;
}

/**
 * A signal that aborts when `parent` aborts (with its reason) or after `ms`
 * milliseconds (with a `TimeoutError` DOMException, as `AbortSignal.timeout`).
 * Disposing of it clears the timer and the listener on `parent`: unlike
 * `AbortSignal.any([parent, AbortSignal.timeout(ms)])`, a call that finished
 * leaves no timer running until the deadline, no weak references for the
 * garbage collector and no abort event to fire later.
 *
 * @example
 * ```ts
 * import { deadline } from "@drover/common";
 *
 * using bound = deadline(5_000);
 * await fetch("http://127.0.0.1:1/", { signal: bound.signal }).catch(() => {});
 * ```
 */
export function deadline(ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const onAbort = () => controller.abort(parent?.reason);
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException("Signal timed out.", "TimeoutError"));
  }, ms);
  if (parent?.aborted) onAbort();
  else parent?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    [Symbol.dispose]() {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
  };
}
