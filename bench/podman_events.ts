/**
 * Observing podman from the outside: one event stream opened before anything
 * is changed, and promises for "the next event matching X". Times come from
 * podman's own `timeNano` (when podman recorded the event), so the file event
 * logger's polling lag (~120 ms, docs/podman-api.md) is not counted.
 *
 * @module
 */

import { PodmanClient, type PodmanEvent } from "../agent/runtime/podman/mod.ts";

/** An event as the benchmarks use it. */
export interface ObservedEvent {
  action: string;
  name: string;
  id: string;
  /** When podman recorded it, ms since the epoch. */
  atMs: number;
  /** When this process received it, ms since the epoch. */
  receivedMs: number;
}

interface Waiter {
  match: (e: ObservedEvent) => boolean;
  resolve: (e: ObservedEvent) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Follows container events of one podman service. */
export class EventWatch implements AsyncDisposable {
  readonly #client: PodmanClient;
  readonly #abort = new AbortController();
  readonly #waiters = new Set<Waiter>();
  readonly #done: Promise<void>;

  private constructor(client: PodmanClient, stream: AsyncIterable<PodmanEvent>) {
    this.#client = client;
    this.#done = (async () => {
      try {
        for await (const raw of stream) this.#dispatch(raw);
      } catch (e) {
        for (const w of this.#waiters) w.reject(e);
      }
    })();
  }

  /** Opens the stream and resolves once podman accepted it. */
  static async open(socketPath: string): Promise<EventWatch> {
    const client = new PodmanClient({ socketPath });
    const abort = new AbortController();
    const stream = client.events({ filters: { type: ["container"] }, signal: abort.signal });
    await stream.opened;
    const watch = new EventWatch(client, stream);
    watch.#abort.signal.addEventListener("abort", () => abort.abort(), { once: true });
    return watch;
  }

  /**
   * The next event (after this call) for which `match` holds. Register it
   * before making the change it should observe.
   */
  next(match: (e: ObservedEvent) => boolean, timeoutMs = 60_000): Promise<ObservedEvent> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new Error(`Timed out after ${timeoutMs} ms waiting for a podman event`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  #dispatch(raw: PodmanEvent): void {
    const event: ObservedEvent = {
      action: raw.Action,
      name: raw.Actor?.Attributes?.name ?? "",
      id: raw.Actor?.ID ?? raw.id ?? "",
      atMs: raw.timeNano / 1e6,
      receivedMs: performance.timeOrigin + performance.now(),
    };
    for (const w of this.#waiters) {
      if (!w.match(event)) continue;
      clearTimeout(w.timer);
      this.#waiters.delete(w);
      w.resolve(event);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#abort.abort();
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new Error("event watch closed"));
    }
    await this.#done.catch(() => {});
    this.#client.close();
  }
}
