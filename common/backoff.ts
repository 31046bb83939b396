/**
 * Capped exponential backoff with jitter: a pure delay function and a small counter that
 * remembers the attempt number.
 *
 * Retries wait `base · factor^attempt`, never more than `cap`, scaled down by a random
 * fraction so that many clients failing together (devices after a NATS restart, deployments
 * after podman came back) do not retry in lock-step.
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
  options: BackoffOptions,
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

/**
 * Counts failed attempts of one retry loop: {@linkcode Backoff.next} gives the delay before
 * the next attempt and grows it, {@linkcode Backoff.reset} starts small again after a success.
 */
export class Backoff {
  readonly #options: Readonly<BackoffOptions>;
  readonly #random: () => number;
  #attempt = 0;

  /** A counter on the curve `options`; `random` as for {@linkcode backoffDelay}. */
  constructor(options: Readonly<BackoffOptions>, random: () => number = Math.random) {
    this.#options = options;
    this.#random = random;
  }

  /** Failed attempts since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** Delay before the next attempt, in milliseconds; each call counts one more failure. */
  next(): number {
    return backoffDelay(this.#attempt++, this.#options, this.#random);
  }

  /** Call after a success: the next failure waits the base delay again. */
  reset(): void {
    this.#attempt = 0;
  }
}
