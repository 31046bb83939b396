/**
 * Polling until a condition holds, for convergence in tests against real services. It bounds how
 * long a test may wait; it is not a timing assertion.
 *
 * @module
 */

import { abortableSleep, TIMED_OUT, withinMs } from "@drover/common";
import { WaitTimeoutError } from "./errors.ts";

/** How often {@linkcode waitFor} polls when `intervalMs` is not given. */
export const DEFAULT_WAIT_INTERVAL_MS = 100;

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. */
  timeoutMs: number;
  /** Pause between attempts in milliseconds (default {@linkcode DEFAULT_WAIT_INTERVAL_MS}). */
  intervalMs?: number;
  /** What was being waited for; starts the timeout error's message. */
  message: string;
  /** Stops waiting early: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A condition polled by {@linkcode waitFor}: `undefined`, `null` or `false` mean "not yet". */
export type WaitCondition<T> = () =>
  | Promise<T | undefined | null | false>
  | T
  | undefined
  | null
  | false;

/**
 * Calls `condition` until it returns a value other than `undefined`, `null` or `false`, and
 * returns that value. A throwing condition counts as "not yet"; its error is kept and reported
 * (as text and as `cause`) if the time runs out.
 *
 * @example
 * ```ts
 * const page = await waitFor(async () => {
 *   const res = await fetch(`http://127.0.0.1:${port}/`);
 *   return res.ok ? await res.text() : (await res.body?.cancel(), undefined);
 * }, { timeoutMs: 20_000, message: "web container serves its page" });
 * ```
 *
 * @throws {WaitTimeoutError} when `timeoutMs` passes without success.
 * @throws the `signal`'s reason when it is aborted.
 */
export async function waitFor<T>(condition: WaitCondition<T>, options: WaitForOptions): Promise<T> {
  const intervalMs = options.intervalMs ?? DEFAULT_WAIT_INTERVAL_MS;
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown = undefined;
  let attempts = 0;
  while (true) {
    options.signal?.throwIfAborted();
    attempts++;
    try {
      // One attempt that never settles (a flush on a client that keeps reconnecting) must not
      // hold the wait past its deadline: it counts as a failed attempt when time is up.
      const result = await withinMs(
        Promise.resolve().then(condition),
        Math.max(0, deadline - Date.now()),
      );
      if (result === TIMED_OUT) {
        lastError = new Error("the last attempt had not settled when the time was up");
        break;
      }
      if (result !== undefined && result !== null && result !== false) return result;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await abortableSleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())), options.signal);
  }
  options.signal?.throwIfAborted();
  const last = lastError === undefined ? "" : `; last error: ${describe(lastError)}`;
  throw new WaitTimeoutError(
    `Timed out: ${options.message} (waited ${options.timeoutMs} ms, ${attempts} attempts${last})`,
    { cause: lastError },
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
