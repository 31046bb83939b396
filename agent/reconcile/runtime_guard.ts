/**
 * The one place that decides whether the container runtime is available: a
 * {@linkcode ContainerRuntime} wrapper that bounds every call but pulls by a
 * timeout (a podman that accepts connections but never answers must not hold
 * a deployment, or the first pass, forever) and reports each call's outcome —
 * any answer means reachable, a {@linkcode RuntimeUnavailableError} (the
 * runtime's own, or a timeout) means not.
 *
 * @module
 */

import {
  type ContainerRuntime,
  type ContainerSpec,
  type HealthReport,
  type ObservedContainer,
  type ObservedNetwork,
  type ObservedVolume,
  type RegistryAuth,
  type RuntimeEvent,
  RuntimeUnavailableError,
} from "../runtime/runtime.ts";

/** Default longest wait for one runtime call (pulls excepted), in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 120_000;

/** Options of {@linkcode GuardedRuntime}. */
export interface GuardedRuntimeOptions {
  /** Longest wait for one call other than a pull, in ms (default {@linkcode DEFAULT_CALL_TIMEOUT_MS}). */
  callTimeoutMs?: number;
  /** Told after every call whether the runtime answered; `error` says why it did not. */
  onAvailability: (available: boolean, error?: RuntimeUnavailableError) => void;
}

/** A runtime whose calls time out and report availability. See the module documentation. */
export class GuardedRuntime implements ContainerRuntime {
  readonly #inner: ContainerRuntime;
  readonly #timeoutMs: number;
  readonly #report: GuardedRuntimeOptions["onAvailability"];

  constructor(inner: ContainerRuntime, options: GuardedRuntimeOptions) {
    this.#inner = inner;
    this.#timeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#report = options.onAvailability;
  }

  listManaged(signal?: AbortSignal): Promise<ObservedContainer[]> {
    return this.#call("list containers", signal, (s) => this.#inner.listManaged(s));
  }

  hasImage(image: string, signal?: AbortSignal): Promise<boolean> {
    return this.#call(`look up image ${image}`, signal, (s) => this.#inner.hasImage(image, s));
  }

  /** Not timed: a registry may take minutes. */
  pullImage(image: string, auth: RegistryAuth | undefined, signal?: AbortSignal): Promise<void> {
    return this.#observe(() => this.#inner.pullImage(image, auth, signal));
  }

  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    return this.#call(
      `create container ${spec.name}`,
      signal,
      (s) => this.#inner.createContainer(spec, s),
    );
  }

  startContainer(id: string, signal?: AbortSignal): Promise<void> {
    return this.#call(`start container ${id}`, signal, (s) => this.#inner.startContainer(id, s));
  }

  startStopped(id: string, signal?: AbortSignal): Promise<boolean> {
    return this.#call(`start container ${id}`, signal, (s) => this.#inner.startStopped(id, s));
  }

  removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    return this.#call(`remove container ${id}`, signal, (s) => this.#inner.removeContainer(id, s));
  }

  runHealthcheck(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    return this.#call(
      `run the health check of container ${id}`,
      signal,
      (s) => this.#inner.runHealthcheck(id, s),
    );
  }

  inspectHealth(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    return this.#call(
      `inspect the health of container ${id}`,
      signal,
      (s) => this.#inner.inspectHealth(id, s),
    );
  }

  ensureSecret(name: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.#call(
      `create secret ${name}`,
      signal,
      (s) => this.#inner.ensureSecret(name, data, s),
    );
  }

  listSecrets(prefix: string, signal?: AbortSignal): Promise<string[]> {
    return this.#call("list secrets", signal, (s) => this.#inner.listSecrets(prefix, s));
  }

  removeSecret(name: string, signal?: AbortSignal): Promise<void> {
    return this.#call(`remove secret ${name}`, signal, (s) => this.#inner.removeSecret(name, s));
  }

  ensureNetwork(name: string, labels: Record<string, string>, signal?: AbortSignal) {
    return this.#call(
      `create network ${name}`,
      signal,
      (s) => this.#inner.ensureNetwork(name, labels, s),
    );
  }

  removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    return this.#call(`remove network ${name}`, signal, (s) => this.#inner.removeNetwork(name, s));
  }

  listManagedNetworks(signal?: AbortSignal): Promise<ObservedNetwork[]> {
    return this.#call("list networks", signal, (s) => this.#inner.listManagedNetworks(s));
  }

  ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal) {
    return this.#call(
      `create volume ${name}`,
      signal,
      (s) => this.#inner.ensureVolume(name, labels, s),
    );
  }

  listManagedVolumes(signal?: AbortSignal): Promise<ObservedVolume[]> {
    return this.#call("list volumes", signal, (s) => this.#inner.listManagedVolumes(s));
  }

  removeVolume(name: string, signal?: AbortSignal): Promise<"removed" | "in-use" | "gone"> {
    return this.#call(`remove volume ${name}`, signal, (s) => this.#inner.removeVolume(name, s));
  }

  logTail(id: string, lines: number, signal?: AbortSignal): Promise<string[]> {
    return this.#call(
      `read the logs of container ${id}`,
      signal,
      (s) => this.#inner.logTail(id, lines, s),
    );
  }

  /** Passed through: the stream reports its own outages as `resync` events. */
  watchEvents(signal: AbortSignal): AsyncIterable<RuntimeEvent> {
    return this.#inner.watchEvents(signal);
  }

  async #call<T>(
    what: string,
    signal: AbortSignal | undefined,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    return await this.#observe(async () => {
      try {
        return await call(signal ? AbortSignal.any([signal, timeout]) : timeout);
      } catch (err) {
        if (timeout.aborted && !signal?.aborted) {
          throw new RuntimeUnavailableError(
            `Cannot ${what}: the runtime did not answer within ${this.#timeoutMs} ms`,
            { cause: err },
          );
        }
        throw err;
      }
    });
  }

  async #observe<T>(call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.#report(true);
      return result;
    } catch (err) {
      if (err instanceof RuntimeUnavailableError) this.#report(false, err);
      // Any other error is an answer: the runtime is there.
      else if (!isAbort(err)) this.#report(true);
      throw err;
    }
  }
}

function isAbort(err: unknown): boolean {
  return err instanceof DOMException && (err.name === "AbortError" || err.name === "TimeoutError");
}
