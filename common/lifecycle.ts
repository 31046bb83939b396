/**
 * The parts of a long-running process, started in dependency order and stopped in reverse,
 * each stop within its own deadline; one place declares shutdown. Controller-runtime's
 * Manager and Runnables in spirit: a composition root builds its objects in the order they
 * depend on each other, registers each one's start and stop here, and waits.
 *
 * @example
 * ```ts
 * import { Lifecycle } from "@drover/common";
 *
 * const life = new Lifecycle();
 * life.add({ name: "ticker", run: (signal) => new Promise((r) => signal.onabort = r) });
 * await life.start();
 * life.shutdown("done");
 * await life.stop();
 * ```
 *
 * @module
 */

import { untilAborted } from "./sleep.ts";
import { TIMED_OUT, withinMs } from "./within.ts";

/** One part of a process. Every member is optional but the name. */
export interface Runnable {
  /** Names the part in the messages about it. */
  readonly name: string;
  /** Starts the part; awaited before the next part starts. A throw stops what already started. */
  start?(): void | Promise<void>;
  /**
   * Runs the part until `signal` aborts (when this part is stopped). Not awaited at start;
   * awaited at stop, within the deadline.
   */
  run?(signal: AbortSignal): Promise<unknown>;
  /** Releases what the part holds, after its run ended (or its deadline passed). */
  stop?(): unknown;
  /** How long the part's run may take to end, and then its stop, in ms each (default 2 000). */
  readonly stopWithinMs?: number;
}

/** What {@linkcode Lifecycle} reports while stopping. */
export interface LifecycleOptions {
  /** A part did not stop within its deadline; the next one is stopped anyway. */
  onStopTimeout?(name: string, ms: number): void;
  /** A part's run or stop failed while stopping; the next one is stopped anyway. */
  onStopError?(name: string, error: unknown): void;
}

/** The default of {@linkcode Runnable.stopWithinMs}. */
export const DEFAULT_STOP_WITHIN_MS = 2_000;

interface Started {
  readonly part: Runnable;
  readonly abort: AbortController;
  readonly running: Promise<unknown> | undefined;
}

/** Starts parts in the order added, stops them in reverse. See the module documentation. */
export class Lifecycle {
  readonly #options: LifecycleOptions;
  readonly #parts: Runnable[] = [];
  readonly #started: Started[] = [];
  /** Index in #parts of the next part to start. */
  #next = 0;
  readonly #shutdown = new AbortController();
  #stopping: Promise<void> | undefined;

  constructor(options: LifecycleOptions = {}) {
    this.#options = options;
  }

  /**
   * Aborts once shutdown is declared ({@linkcode shutdown}); its reason says why. Parts that
   * want to end the process (a restart after a self-update) declare shutdown; none stops
   * another part directly.
   */
  get signal(): AbortSignal {
    return this.#shutdown.signal;
  }

  /** Declares shutdown (once; later calls keep the first reason). */
  shutdown(reason?: unknown): void {
    if (!this.#shutdown.signal.aborted) this.#shutdown.abort(reason);
  }

  /** Declares shutdown when `signal` aborts, with its reason. */
  follow(signal: AbortSignal): void {
    if (signal.aborted) return this.shutdown(signal.reason);
    const onAbort = () => this.shutdown(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    this.#shutdown.signal.addEventListener(
      "abort",
      () => signal.removeEventListener("abort", onAbort),
      { once: true },
    );
  }

  /** Adds a part; it starts after the ones added before it and stops before them. */
  add(part: Runnable): void {
    this.#parts.push(part);
  }

  /**
   * Starts, in order, every part added since the last call (a root may start what it has built
   * so far, e.g. a connection, before it builds what needs it). If one fails to start, every
   * started part is stopped in reverse and the error is rethrown. After a declared shutdown
   * nothing more is started.
   */
  async start(): Promise<void> {
    while (this.#next < this.#parts.length) {
      const part = this.#parts[this.#next++]!;
      if (this.signal.aborted) return;
      try {
        await part.start?.();
      } catch (error) {
        this.shutdown(error);
        await this.stop();
        throw error;
      }
      const abort = new AbortController();
      this.#started.push({ part, abort, running: part.run?.(abort.signal) });
    }
  }

  /** Resolves once shutdown is declared. */
  stopped(): Promise<void> {
    return untilAborted(this.signal);
  }

  /**
   * Stops the started parts, last first: aborts the part's run, waits for it and then for its
   * stop, together at most its `stopWithinMs`. Declares shutdown if nobody had. Never
   * rejects; idempotent.
   */
  stop(): Promise<void> {
    this.shutdown();
    this.#stopping ??= this.#stopAll();
    return this.#stopping;
  }

  async #stopAll(): Promise<void> {
    for (const { part, abort, running } of this.#started.splice(0).reverse()) {
      const ms = part.stopWithinMs ?? DEFAULT_STOP_WITHIN_MS;
      abort.abort(this.signal.reason);
      // A run that does not end in time still gets its stop: that is what releases it.
      if (running !== undefined) await this.#within(part.name, running, ms);
      if (part.stop !== undefined) {
        await this.#within(part.name, Promise.resolve().then(() => part.stop?.()), ms);
      }
    }
  }

  async #within(name: string, work: Promise<unknown>, ms: number): Promise<void> {
    try {
      if (await withinMs(work, ms) === TIMED_OUT) this.#options.onStopTimeout?.(name, ms);
    } catch (error) {
      this.#options.onStopError?.(name, error);
    }
  }
}

/**
 * Listeners of one kind of news, added after the object that has the news was built: the
 * way a composition root connects an object to one built later (the status publisher to the
 * reconciler that feeds it) without either referring to a variable not yet initialised.
 * Emitting before any listener was added does nothing.
 */
export class Listeners<T = void> {
  readonly #listeners: Array<(value: T) => void> = [];

  /** Adds `listener`; returns a function that removes it. */
  add(listener: (value: T) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Calls every listener, in the order added, synchronously. */
  emit(value: T): void {
    for (const listener of [...this.#listeners]) listener(value);
  }
}
