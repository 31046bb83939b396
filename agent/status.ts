/**
 * Publishing this device's `AgentStatus` to `agent-status/<device>`: on every
 * change (coalesced: at most one put in flight, the newest state wins, after
 * a short debounce) and every `heartbeat_seconds` so readers can tell a
 * quiet device from a dead one.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import {
  type AgentStatus,
  type DeploymentStatus,
  DEVICE_MESSAGE_MAX_LENGTH,
  type DeviceLabels,
  type DeviceStatus,
  statusKey,
} from "@drover/contracts";
import { Coalescer } from "./coalesce.ts";
import { errorText } from "./log.ts";
import { AGENT_VERSION } from "./version.ts";

/** Pause after a change before publishing, so a burst of changes is one put. */
export const DEFAULT_STATUS_DEBOUNCE_MS = 50;

/** Where statuses come from (the reconciler). */
export interface StatusSource {
  deviceStatus(): DeviceStatus;
  deploymentStatuses(): Record<string, DeploymentStatus>;
  /** Why the device is not ready, in one short line (AgentStatus `message`). */
  deviceMessage?(): string | undefined;
}

/** The device message of the last status an agent publishes as it stops. */
export const STOPPED_MESSAGE = "agent stopped; containers keep running";

/** The part of a KV bucket the publisher needs. */
export interface StatusStore {
  put(key: string, value: Uint8Array): Promise<number>;
}

/** Inputs of {@linkcode buildAgentStatus}. */
export interface AgentStatusInput {
  deviceId: string;
  status: DeviceStatus;
  labels: DeviceLabels;
  heartbeatSeconds: number;
  deployments: Record<string, DeploymentStatus>;
  now: Date;
  /** Why the device is not ready; dropped when it is. */
  message?: string;
}

/** Builds the wire value. Pure. */
export function buildAgentStatus(input: AgentStatusInput): AgentStatus {
  return {
    device_id: input.deviceId,
    status: input.status,
    ...(input.status !== "ready" && input.message
      ? { message: input.message.slice(0, DEVICE_MESSAGE_MAX_LENGTH) }
      : {}),
    timestamp: input.now.toISOString(),
    agent_version: AGENT_VERSION,
    labels: input.labels,
    heartbeat_seconds: input.heartbeatSeconds,
    deployments: input.deployments,
  };
}

/** Options of {@linkcode StatusPublisher}. */
export interface StatusPublisherOptions {
  deviceId: string;
  labels: DeviceLabels;
  heartbeatSeconds: number;
  source: StatusSource;
  log: Logger;
  debounceMs?: number;
  now?: () => Date;
}

/** Publishes statuses whenever told to and on a heartbeat; quiet while offline. */
export class StatusPublisher {
  readonly #options: StatusPublisherOptions;
  readonly #coalescer: Coalescer;
  #store: StatusStore | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #failing = false;
  #published = 0;
  #override: DeviceStatus | undefined;

  constructor(options: StatusPublisherOptions) {
    this.#options = options;
    this.#coalescer = new Coalescer(() => this.#publish(), {
      debounceMs: options.debounceMs ?? DEFAULT_STATUS_DEBOUNCE_MS,
      onError: (e) => this.#failed(e),
    });
  }

  /** Number of successful puts (for tests and logs). */
  get published(): number {
    return this.#published;
  }

  /** Where to publish; `undefined` while NATS is unreachable. Publishes at once when set. */
  setStore(store: StatusStore | undefined): void {
    this.#store = store;
    if (store !== undefined) this.changed();
  }

  /** Something changed: publish soon. */
  changed(): void {
    this.#coalescer.trigger();
  }

  /** Starts the heartbeat. */
  start(): void {
    if (this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => this.changed(), this.#options.heartbeatSeconds * 1000);
  }

  /** The status as it would be published now. */
  current(): AgentStatus {
    const { source } = this.#options;
    const message = this.#override === "stopped" ? STOPPED_MESSAGE : source.deviceMessage?.();
    return buildAgentStatus({
      deviceId: this.#options.deviceId,
      status: this.#override ?? source.deviceStatus(),
      ...(message !== undefined ? { message } : {}),
      labels: this.#options.labels,
      heartbeatSeconds: this.#options.heartbeatSeconds,
      deployments: source.deploymentStatuses(),
      now: (this.#options.now ?? (() => new Date()))(),
    });
  }

  async #publish(): Promise<void> {
    const store = this.#store;
    if (store === undefined) return;
    const value = new TextEncoder().encode(JSON.stringify(this.current()));
    await store.put(statusKey(this.#options.deviceId), value);
    this.#published++;
    if (this.#failing) {
      this.#failing = false;
      this.#options.log.info("Publishing status works again");
    }
  }

  #failed(error: unknown): void {
    // One line when publishing starts failing, then quiet until it works again.
    if (!this.#failing) {
      this.#failing = true;
      this.#options.log.warn("Cannot publish status (will retry): {error}", {
        error: errorText(error),
      });
    } else {
      this.#options.log.debug("Still cannot publish status: {error}", { error: errorText(error) });
    }
  }

  /**
   * Stops the heartbeat and publishes one last status with `status` (e.g.
   * `stopped`), waiting at most `timeoutMs`. Resolves true if it was stored.
   */
  async publishFinal(status: DeviceStatus, timeoutMs: number): Promise<boolean> {
    this.stopHeartbeat();
    this.#override = status;
    await this.#coalescer.close();
    const store = this.#store;
    if (store === undefined) return false;
    const value = new TextEncoder().encode(JSON.stringify(this.current()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        store.put(statusKey(this.#options.deviceId), value).then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
    } catch (e) {
      this.#options.log.warn("Cannot publish the final status: {error}", { error: errorText(e) });
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the heartbeat timer. */
  stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  /** Stops everything; waits for a put in flight. */
  async close(): Promise<void> {
    this.stopHeartbeat();
    await this.#coalescer.close();
  }
}
