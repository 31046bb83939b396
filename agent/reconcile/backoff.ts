/**
 * Capped exponential backoff with jitter, as a pure function.
 *
 * Failing deployments (a pull the registry refuses, podman gone) are retried
 * after `base · factor^attempt`, never more than `cap`, scaled down by a random
 * fraction so that many keys failing together do not retry in lock-step.
 *
 * @module
 */

/** Shape of the backoff curve. */
export interface BackoffOptions {
  /** Delay before the first retry, in milliseconds. */
  baseMs: number;
  /** Largest delay, in milliseconds. */
  capMs: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /**
   * Fraction of the delay that is randomised (0 = none, 1 = "full jitter");
   * default 0.2, i.e. the delay lies in [0.8·d, d].
   */
  jitter?: number;
}

/** Default backoff for failing deployments: 1 s doubling up to 2 minutes. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = {
  baseMs: 1_000,
  capMs: 120_000,
  factor: 2,
  jitter: 0.2,
};

/**
 * Delay before retry number `attempt` (0 for the first retry).
 *
 * @param random returns a number in [0, 1); injectable so tests are deterministic.
 *
 * @example
 * ```ts
 * backoffDelay(0, { baseMs: 100, capMs: 1000, jitter: 0 }); // 100
 * backoffDelay(3, { baseMs: 100, capMs: 1000, jitter: 0 }); // 800
 * backoffDelay(9, { baseMs: 100, capMs: 1000, jitter: 0 }); // 1000
 * ```
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const factor = options.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
  const n = Math.max(0, Math.floor(attempt));
  // Math.pow overflows to Infinity for large n; min() with the cap keeps it finite.
  const raw = Math.min(options.capMs, options.baseMs * Math.pow(factor, n));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(raw * (1 - jitter * r));
}
