/**
 * When the first reconcile pass is over: once every deployment known at the
 * start (desired, or found running) has had one attempt — successful or not,
 * so a missing podman does not hold readiness forever; a pull under way counts
 * as attempted, as a registry may take minutes.
 *
 * @module
 */

/** Tracks the first pass; {@linkcode done} resolves once it is over. */
export class FirstPass {
  /** Resolves when the first pass is over (or {@linkcode finish} was called). */
  readonly done: Promise<void>;
  #pending: Set<string> | undefined;
  #finished = false;
  #resolve!: () => void;
  readonly #onDone: () => void;

  constructor(onDone: () => void = () => {}) {
    this.#onDone = onDone;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** True once the first pass is over. */
  get finished(): boolean {
    return this.#finished;
  }

  /** The keys the first pass covers. */
  begin(keys: Iterable<string>): void {
    if (this.#finished) return;
    this.#pending = new Set(keys);
    if (this.#pending.size === 0) this.finish();
  }

  /** `key` had its attempt. */
  attempted(key: string): void {
    if (this.#pending === undefined) return;
    this.#pending.delete(key);
    if (this.#pending.size === 0) this.finish();
  }

  /** Ends the first pass now (e.g. the loop stops). */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#pending = undefined;
    this.#resolve();
    this.#onDone();
  }
}
