/**
 * Images for the executor: a cache of images known to be present (saves a
 * round trip per create), one presence check and one pull at a time per image
 * however many deployments need it, and the registry credentials of the
 * agent's config. A failed pull is retried with the deployment's backoff (the
 * loop's), not here.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { parseImageReference, type RegistryConfig } from "@drover/contracts";
import { type ContainerRuntime, ImagePullError, type RegistryAuth } from "../runtime/runtime.ts";
import type { PullAction } from "./plan.ts";

/** Told when a pull starts and ends for a deployment's service (status "pulling"). */
export interface PullObserver {
  (action: PullAction, active: boolean): void;
}

/** Presence cache, pull de-duplication and registry credentials. */
export class ImageManager {
  readonly #runtime: ContainerRuntime;
  readonly #registries: Record<string, RegistryConfig>;
  /** Images known to be present. */
  #known = new Set<string>();
  #checks = new Map<string, Promise<boolean>>();
  #pulls = new Map<string, Promise<void>>();

  constructor(runtime: ContainerRuntime, registries: Record<string, RegistryConfig>) {
    this.#runtime = runtime;
    this.#registries = registries;
  }

  /** Forgets that `image` is present (a create found it missing). */
  forget(image: string): void {
    this.#known.delete(image);
  }

  /**
   * Makes sure the image of `action` is present: `if-missing` pulls only when
   * it is not; `always` pulls, but falls back on a local copy when the pull
   * fails (offline devices still run what they have).
   */
  async ensure(
    action: PullAction,
    signal: AbortSignal,
    log: Logger,
    onPull: PullObserver,
  ): Promise<void> {
    const { image } = action;
    if (action.policy === "if-missing") {
      if (this.#known.has(image)) return;
      if (await this.#present(image, signal)) {
        this.#known.add(image);
        return;
      }
    }
    let pull = this.#pulls.get(image);
    if (pull === undefined) {
      pull = this.#pull(image, signal, log).finally(() => this.#pulls.delete(image));
      this.#pulls.set(image, pull);
    }
    onPull(action, true);
    try {
      await pull;
    } catch (err) {
      if (
        action.policy === "always" && err instanceof ImagePullError &&
        await this.#runtime.hasImage(image, signal)
      ) {
        log.warn("Using the local copy of {image}: pulling it failed: {error}", {
          image,
          error: err.registryMessage,
        });
        return;
      }
      throw err;
    } finally {
      onPull(action, false);
    }
  }

  /** One presence check at a time per image. */
  #present(image: string, signal: AbortSignal): Promise<boolean> {
    let check = this.#checks.get(image);
    if (check === undefined) {
      check = this.#runtime.hasImage(image, signal).finally(() => this.#checks.delete(image));
      this.#checks.set(image, check);
    }
    return check;
  }

  async #pull(image: string, signal: AbortSignal, log: Logger): Promise<void> {
    const started = Date.now();
    log.debug("Pulling image {image}", { image });
    await this.#runtime.pullImage(image, this.registryAuth(image), signal);
    this.#known.add(image);
    log.info("Pulled image {image} in {ms} ms", { image, ms: Date.now() - started });
  }

  /** Credentials for the registry of `image` (host[:port], case-insensitive), if configured. */
  registryAuth(image: string): RegistryAuth | undefined {
    const ref = parseImageReference(image);
    if (typeof ref === "string") return undefined;
    const config = this.#registries[ref.registry] ??
      Object.entries(this.#registries).find(([host]) =>
        host.toLowerCase() === ref.registry.toLowerCase()
      )?.[1];
    if (!config) return undefined;
    return {
      ...(config.username !== undefined ? { username: config.username } : {}),
      ...(config.password !== undefined ? { password: config.password } : {}),
      tlsVerify: config.tls_verify,
    };
  }
}
