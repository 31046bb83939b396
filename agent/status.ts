/**
 * Publishing this device's `AgentStatus` to `agent-status/<device>` and its
 * liveness:
 * - a full status put when what it says changes (coalesced: at most one put
 *   in flight, the newest state wins, after a short debounce), after every
 *   (re)connect, and every `status_refresh_seconds` even when nothing changed;
 * - in between, every `heartbeat_seconds`, a heartbeat: a core-NATS publish
 *   of ~40 bytes on `drover.heartbeat.<device>` (no JetStream storage) with
 *   the status word and the KV revision of the last full status.
 *
 * At 20 000 devices a full put every 10 s would be 2 000 stored JSON values a
 * second; this way the stream sees one put per device per refresh period and
 * the heartbeats cost the server a subject match (docs/nats-kv.md).
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import {
  type AgentStatus,
  type AgentUpdateStatus,
  type DeploymentStatus,
  DEVICE_MESSAGE_MAX_LENGTH,
  type DeviceLabels,
  type DeviceStatus,
  type Heartbeat,
  statusKey,
} from "@drover/contracts";
import { backoffDelay } from "@drover/common";
import { Coalescer } from "./coalesce.ts";
import { errorText } from "./log.ts";
import { AGENT_VERSION } from "./version.ts";

/** Pause after a change before publishing, so a burst of changes is one put. */
export const DEFAULT_STATUS_DEBOUNCE_MS = 50;

/**
 * Heartbeats per full status refresh while nothing changes: 6 × 10 s = 60 s by
 * default. Rarer would save the stream more, but readers of KV alone (the
 * CLI's `get devices`) judge liveness from the refresh (`status_refresh_seconds`
 * + 3 heartbeats), so a dead device shows offline after 90 s there.
 */
export const STATUS_REFRESH_HEARTBEATS = 6;

/** Seconds between full status puts while nothing changes. Pure. */
export function statusRefreshSeconds(heartbeatSeconds: number): number {
  return heartbeatSeconds * STATUS_REFRESH_HEARTBEATS;
}

/** Where statuses come from (the reconciler). */
export interface StatusSource {
  deviceStatus(): DeviceStatus;
  deploymentStatuses(): Record<string, DeploymentStatus>;
  /** Why the device is not ready, in one short line (AgentStatus `message`). */
  deviceMessage?(): string | undefined;
}

/** The device message of the last status an agent publishes as it stops. */
export const STOPPED_MESSAGE = "agent stopped; containers keep running";

/** Where statuses go: a KV put, and (optionally) the core-NATS heartbeat. */
export interface StatusStore {
  put(key: string, value: Uint8Array): Promise<number>;
  /**
   * Publishes a heartbeat (fire and forget: core NATS, no ack). Without it
   * every heartbeat is a full put, as agents did before heartbeats existed.
   */
  heartbeat?(payload: Uint8Array): void;
}

/** What the publisher knows when a heartbeat is due. */
export interface BeatInput {
  /** KV revision of the last full status that was stored, or undefined (none since connecting). */
  lastRevision: number | undefined;
  /** The status as it would be put now, and as it was last put (without the timestamp). */
  fingerprint: string;
  lastFingerprint: string | undefined;
  /** Since the last stored full status, ms. */
  sinceFullMs: number;
  refreshMs: number;
  /** Whether the store can carry heartbeats. */
  canHeartbeat: boolean;
}

/**
 * What a heartbeat tick sends: the full status when readers lack it (nothing
 * stored since connecting, it changed, the refresh is due, or no heartbeat
 * channel), else the small heartbeat. Pure.
 */
export function beatAction(input: BeatInput): "full" | "heartbeat" {
  if (!input.canHeartbeat || input.lastRevision === undefined) return "full";
  if (input.fingerprint !== input.lastFingerprint) return "full";
  return input.sinceFullMs >= input.refreshMs ? "full" : "heartbeat";
}

/** The status without its timestamp: equal fingerprints say the same thing. Pure. */
export function statusFingerprint(status: AgentStatus): string {
  return JSON.stringify({ ...status, timestamp: "" });
}

/** Inputs of {@linkcode buildAgentStatus}. */
export interface AgentStatusInput {
  deviceId: string;
  status: DeviceStatus;
  labels: DeviceLabels;
  heartbeatSeconds: number;
  /** Seconds between full puts while nothing changes; absent for agents that put every heartbeat. */
  refreshSeconds?: number;
  deployments: Record<string, DeploymentStatus>;
  now: Date;
  /** Why the device is not ready; dropped when it is. */
  message?: string;
  /** Self-update state. */
  update?: AgentUpdateStatus;
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
    ...(input.refreshSeconds !== undefined ? { status_refresh_seconds: input.refreshSeconds } : {}),
    deployments: input.deployments,
    ...(input.update !== undefined ? { update: input.update } : {}),
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
  /** Seconds between full puts while nothing changes (default {@linkcode statusRefreshSeconds}). */
  refreshSeconds?: number;
  now?: () => Date;
  /** Self-update state, reported as `update` (agent/update/updater.ts). */
  update?: () => AgentUpdateStatus | undefined;
}

/** Publishes statuses whenever told to and on a heartbeat; quiet while offline. */
export class StatusPublisher {
  readonly #options: StatusPublisherOptions;
  readonly #coalescer: Coalescer;
  #store: StatusStore | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #failing = false;
  #published = 0;
  #heartbeats = 0;
  #override: DeviceStatus | undefined;
  readonly #refreshSeconds: number;
  /** KV revision and fingerprint of the last stored full status (since the store was set). */
  #lastRevision: number | undefined;
  #lastFingerprint: string | undefined;
  #lastFullAt = 0;
  /** The next full put happens even if nothing changed (reconnect, refresh). */
  #force = true;
  /** Failed full puts in a row, and the timer of the retry. */
  #failures = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(options: StatusPublisherOptions) {
    this.#options = options;
    this.#refreshSeconds = options.refreshSeconds ?? statusRefreshSeconds(options.heartbeatSeconds);
    this.#coalescer = new Coalescer(() => this.#publish(), {
      debounceMs: options.debounceMs ?? DEFAULT_STATUS_DEBOUNCE_MS,
      onError: (e) => this.#failed(e),
    });
  }

  /** Number of successful full puts (for tests and logs). */
  get published(): number {
    return this.#published;
  }

  /** Number of heartbeats sent (for tests and the bench). */
  get heartbeats(): number {
    return this.#heartbeats;
  }

  /**
   * Where to publish; `undefined` while NATS is unreachable. Puts the full
   * status at once when set: what changed while away, and a fresh revision.
   */
  setStore(store: StatusStore | undefined): void {
    this.#store = store;
    this.#lastRevision = undefined;
    if (store !== undefined) {
      this.#force = true;
      this.changed();
    }
  }

  /** Something may have changed: publish soon if the status says something new. */
  changed(): void {
    this.#coalescer.trigger();
  }

  /** Starts the heartbeat. */
  start(): void {
    if (this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => this.beat(), this.#options.heartbeatSeconds * 1000);
  }

  /** One heartbeat tick: the small heartbeat, or the full status when readers need it. */
  beat(): void {
    const store = this.#store;
    if (store === undefined) return;
    const status = this.current();
    const action = beatAction({
      lastRevision: this.#lastRevision,
      fingerprint: statusFingerprint(status),
      lastFingerprint: this.#lastFingerprint,
      sinceFullMs: performance.now() - this.#lastFullAt,
      refreshMs: this.#refreshSeconds * 1000,
      canHeartbeat: store.heartbeat !== undefined,
    });
    if (action === "full" || this.#lastRevision === undefined) {
      this.#force = true;
      this.changed();
      return;
    }
    const heartbeat: Heartbeat = { status: status.status, status_revision: this.#lastRevision };
    try {
      store.heartbeat!(new TextEncoder().encode(JSON.stringify(heartbeat)));
      this.#heartbeats++;
    } catch (e) {
      // The connection is going away; the reconnect puts the full status.
      this.#options.log.debug("Cannot send a heartbeat: {error}", { error: errorText(e) });
    }
  }

  /** The status as it would be published now. */
  current(): AgentStatus {
    const { source } = this.#options;
    const message = this.#override === "stopped" ? STOPPED_MESSAGE : source.deviceMessage?.();
    const update = this.#options.update?.();
    return buildAgentStatus({
      ...(update !== undefined ? { update } : {}),
      deviceId: this.#options.deviceId,
      status: this.#override ?? source.deviceStatus(),
      ...(message !== undefined ? { message } : {}),
      labels: this.#options.labels,
      heartbeatSeconds: this.#options.heartbeatSeconds,
      refreshSeconds: this.#refreshSeconds,
      deployments: source.deploymentStatuses(),
      now: (this.#options.now ?? (() => new Date()))(),
    });
  }

  async #publish(): Promise<void> {
    const store = this.#store;
    if (store === undefined) return;
    const status = this.current();
    const fingerprint = statusFingerprint(status);
    // Only news is put; the heartbeat tells readers the rest.
    if (!this.#force && this.#lastRevision !== undefined && fingerprint === this.#lastFingerprint) {
      return;
    }
    this.#force = false;
    const value = new TextEncoder().encode(JSON.stringify(status));
    let revision: number;
    try {
      revision = await store.put(statusKey(this.#options.deviceId), value);
    } catch (e) {
      // The next tick puts it again rather than sending a heartbeat.
      this.#lastRevision = undefined;
      throw e;
    }
    this.#failures = 0;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (this.#store === store) {
      this.#lastRevision = revision;
      this.#lastFingerprint = fingerprint;
      this.#lastFullAt = performance.now();
    }
    this.#published++;
    if (this.#failing) {
      this.#failing = false;
      this.#options.log.info("Publishing status works again");
    }
  }

  #failed(error: unknown): void {
    // Retry soon rather than at the next heartbeat: right after a server restart
    // JetStream may refuse puts for a moment while the connection is already up.
    if (this.#retry === undefined && this.#store !== undefined) {
      const delay = backoffDelay(this.#failures++, {
        baseMs: 500,
        capMs: this.#options.heartbeatSeconds * 1000,
        jitter: 0.5,
      });
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#force = true;
        this.changed();
      }, delay);
    }
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

  /** Runs a pending publish now and waits until none is in flight. */
  async flush(): Promise<void> {
    await this.#coalescer.flush();
  }

  /** Stops the heartbeat timer. */
  stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  /** Stops everything; waits for a put in flight. */
  async close(): Promise<void> {
    this.stopHeartbeat();
    await this.#coalescer.close();
  }
}
