/**
 * Latest-wins, one-at-a-time execution of an async job (status publishing,
 * cache writes): a burst of triggers becomes at most one run in flight plus
 * one queued run that sees the newest state.
 *
 * @module
 */

/** Options of {@linkcode Coalescer}. */
export interface CoalescerOptions {
  /** Wait this long after the first trigger before running, to gather a burst. Default 0. */
  debounceMs?: number;
  /** Called with any error the job throws; the coalescer keeps working. */
  onError?: (error: unknown) => void;
}

/** Runs `job` after {@linkcode Coalescer.trigger}, never twice at once, coalescing bursts. */
export class Coalescer {
  readonly #job: () => Promise<void>;
  readonly #debounceMs: number;
  readonly #onError: (error: unknown) => void;
  #dirty = false;
  #running: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(job: () => Promise<void>, options: CoalescerOptions = {}) {
    this.#job = job;
    this.#debounceMs = options.debounceMs ?? 0;
    this.#onError = options.onError ?? (() => {});
  }

  /** Asks for a run; cheap to call often. */
  trigger(): void {
    if (this.#closed) return;
    this.#dirty = true;
    if (this.#running !== undefined || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, this.#debounceMs);
  }

  #start(): void {
    if (this.#running !== undefined || !this.#dirty) return;
    this.#dirty = false;
    this.#running = (async () => {
      try {
        await this.#job();
      } catch (e) {
        this.#onError(e);
      }
    })().finally(() => {
      this.#running = undefined;
      if (this.#dirty && !this.#closed) this.#start();
    });
  }

  /** Runs the job now if a trigger is pending, and waits until nothing is in flight. */
  async flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#start();
    }
    while (this.#running !== undefined) await this.#running;
  }

  /** Stops accepting triggers, cancels a pending debounce and waits for the run in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#running !== undefined) await this.#running;
  }
}
