/**
 * Controlled time for unit tests of code that takes its timers as a
 * parameter (the reconcile queue's retries, the health-check scheduler):
 * nothing fires until the test advances the clock.
 *
 * @module
 */

/** Lets pending promise callbacks run (a few turns of the microtask queue). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** A clock and timer table that only moves when told to. */
export class ManualTimers {
  #now = 0;
  #nextId = 1;
  #timers = new Map<number, { at: number; callback: () => void }>();

  /** The manual clock, in ms. */
  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + ms, callback });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }

  /** Delays of the scheduled timers, from now, in ms, shortest first. */
  pending(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  /**
   * The process does not run for `ms` (its CPU taken, a long pause): the
   * clock moves and nothing fires; the next {@linkcode advance} fires what
   * fell due meanwhile, late.
   */
  stall(ms: number): void {
    this.#now += ms;
  }

  /**
   * Moves the clock forward by `ms`, firing every timer that falls due in
   * order, and letting the promise callbacks of each one run before the next.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    while (true) {
      await settle();
      const next = [...this.#timers].filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (next === undefined) break;
      // After a stall, overdue timers fire late: at the current time.
      this.#now = Math.max(this.#now, next[1].at);
      this.#timers.delete(next[0]);
      next[1].callback();
    }
    this.#now = end;
    await settle();
  }
}
