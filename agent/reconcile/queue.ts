/**
 * A work queue of keys (deployment names), after controller-runtime's:
 * adding a key only marks it dirty; a dirty key is queued once however often
 * it is added; a key being processed is never handed out again until it is
 * `done`, and if it was added meanwhile it is queued again then. So a burst of
 * updates to one key costs at most one extra pass, which sees the latest value.
 *
 * Retries of a failing key are counted here, as client-go's rate-limited queue
 * does: `addRateLimited` adds the key after a delay that grows with its
 * requeues (capped exponential backoff with jitter), `forget` starts the count
 * over once the key succeeded, `numRequeues` tells how many there were.
 *
 * @module
 */

import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";

/** The timers delayed adds use; injectable so tests control time. */
export interface QueueTimers {
  now(): number;
  /** Returns an id for `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

const REAL_TIMERS: QueueTimers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Options of {@linkcode WorkQueue}. */
export interface WorkQueueOptions {
  /** Timers of delayed adds (default the real ones); tests inject a manual clock. */
  timers?: QueueTimers | undefined;
  /** The retry curve of {@linkcode WorkQueue.addRateLimited} (default `DEFAULT_BACKOFF`). */
  backoff?: Readonly<BackoffOptions> | undefined;
  /** Random source for the backoff's jitter, in [0, 1). */
  random?: (() => number) | undefined;
}

/** Dedup'ing, per-key exclusive work queue with delayed and rate-limited adds. */
export class WorkQueue {
  readonly #timersImpl: QueueTimers;
  readonly #backoff: Readonly<BackoffOptions>;
  readonly #random: () => number;
  /** Requeues per key since it last succeeded (`forget`). */
  #requeues = new Map<string, number>();
  #queue: string[] = [];
  #dirty = new Set<string>();
  #processing = new Set<string>();
  #timers = new Map<string, { at: number; id: unknown }>();
  #waiters: Array<(key: string | undefined) => void> = [];
  #shutDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.#timersImpl = options.timers ?? REAL_TIMERS;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#random = options.random ?? Math.random;
  }

  /** Marks `key` dirty; it is handed out once, after any pass already running for it. */
  add(key: string): void {
    if (this.#shutDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#enqueue(key);
  }

  /**
   * Adds `key` after `delayMs`. If a delayed add is already pending for it,
   * the earlier of the two wins.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.#shutDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = this.#timersImpl.now() + delayMs;
    const pending = this.#timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.#timersImpl.clearTimeout(pending.id);
    const id = this.#timersImpl.setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delayMs);
    this.#timers.set(key, { at, id });
  }

  /**
   * Adds `key` again after its backoff: the first requeue waits the base delay, each further
   * one longer, up to the cap. Returns the delay, in ms.
   */
  addRateLimited(key: string): number {
    const requeues = this.#requeues.get(key) ?? 0;
    this.#requeues.set(key, requeues + 1);
    const delayMs = backoffDelay(requeues, this.#backoff, this.#random);
    this.addAfter(key, delayMs);
    return delayMs;
  }

  /** Starts `key`'s backoff over: it succeeded, or its input changed. */
  forget(key: string): void {
    this.#requeues.delete(key);
  }

  /** Starts every key's backoff over (failures that said nothing about the keys, e.g. an outage). */
  forgetAll(): void {
    this.#requeues.clear();
  }

  /** How often `key` was added rate-limited since it was last forgotten. */
  numRequeues(key: string): number {
    return this.#requeues.get(key) ?? 0;
  }

  /** Drops a pending delayed add of `key` (it succeeded, or its input changed). */
  cancelDelayed(key: string): void {
    const pending = this.#timers.get(key);
    if (pending) this.#timersImpl.clearTimeout(pending.id);
    this.#timers.delete(key);
  }

  /** The next key to process, or `undefined` once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    if (this.#shutDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Ends processing of `key`; re-queues it if it was added meanwhile. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shutDown) this.#enqueue(key);
  }

  /** Number of keys waiting (not counting those being processed). */
  get length(): number {
    return this.#queue.length;
  }

  /** True while `key` is queued or being processed. */
  isBusy(key: string): boolean {
    return this.#dirty.has(key) || this.#processing.has(key);
  }

  /** Stops handing out keys; pending `get()` calls resolve to `undefined`. */
  shutDown(): void {
    this.#shutDown = true;
    for (const { id } of this.#timers.values()) this.#timersImpl.clearTimeout(id);
    this.#timers.clear();
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  #enqueue(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(this.#take(key));
    else this.#queue.push(key);
  }

  #take(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    return key;
  }
}
