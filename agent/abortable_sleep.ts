/**
 * A sleep that ends early when its signal aborts, so retry loops stop
 * promptly on shutdown instead of finishing their backoff first.
 *
 * @module
 */

/** Resolves after `ms` or as soon as `signal` aborts; never rejects. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
