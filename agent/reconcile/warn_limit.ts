/**
 * At most one warning per key per interval: a crash-looping container fails every few
 * seconds, and one WARNING per restart buries everything else in the journal.
 *
 * @module
 */

/** How often one deployment's failure may be logged as a warning. */
export const FAILURE_WARNING_INTERVAL_MS = 60_000;

/** What to do with one warning. */
export type WarnDecision =
  /** Log it; `suppressed` were held back since the last one logged. */
  | { log: true; suppressed: number }
  | { log: false };

/** Counts warnings per key and lets one through per interval. */
export class WarnLimiter {
  readonly #intervalMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(intervalMs = FAILURE_WARNING_INTERVAL_MS) {
    this.#intervalMs = intervalMs;
  }

  /** Whether the warning for `key` at `now` (ms) is logged. */
  take(key: string, now: number): WarnDecision {
    const last = this.#last.get(key);
    if (last !== undefined && now - last.at < this.#intervalMs) {
      last.suppressed++;
      return { log: false };
    }
    this.#last.set(key, { at: now, suppressed: 0 });
    return { log: true, suppressed: last?.suppressed ?? 0 };
  }

  /** Forgets `key` (its deployment was removed). */
  forget(key: string): void {
    this.#last.delete(key);
  }
}
