/**
 * A timeout race that cleans up its timer: "wait for this, but at most that long".
 *
 * @module
 */

/** What {@linkcode withinMs} resolves with when the time ran out first. */
export const TIMED_OUT: unique symbol = Symbol("TIMED_OUT");

/**
 * Resolves with what `work` resolves with if it settles within `ms` milliseconds, else with
 * {@linkcode TIMED_OUT} (`work` keeps running; the caller decides what to do about it).
 * Rejects when `work` rejects in time. The timer is cleared either way, so nothing keeps the
 * process alive or trips a test's timer sanitizer.
 *
 * @example
 * ```ts
 * import { TIMED_OUT, withinMs } from "@drover/common";
 *
 * const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
 * child.kill("SIGTERM");
 * if (await withinMs(child.status, 2_000) === TIMED_OUT) child.kill("SIGKILL");
 * ```
 */
export async function withinMs<T>(work: PromiseLike<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
