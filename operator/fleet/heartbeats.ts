/**
 * Hears the devices' heartbeats (`drover.heartbeat.<device>`, core NATS, no
 * JetStream) and tells the fleet picture when each device was last alive.
 * A heartbeat names the KV revision of the device's last full status; when the
 * picture holds an older one (a status the watch has not delivered, or lost),
 * the key is read once more, so the operator never sits on a stale status.
 *
 * In the account layout the devices' account exports the heartbeats to
 * `DROVER` (operator/auth/permissions.ts DEVICE_EXPORTS).
 *
 * @module
 */

import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { getLogger } from "@logtape/logtape";
import { decodeJson, Heartbeat, HEARTBEAT_PREFIX, MAX_HEARTBEAT_BYTES } from "@drover/contracts";
import type { FleetState } from "./state.ts";
import { DeviceGate, FloodReport } from "./device_gate.ts";

const log = getLogger(["drover", "operator", "heartbeats"]);

/** Re-reads of `agent-status` keys running at once (a burst after a watch stall). */
export const MAX_STATUS_REREADS = 16;

/** Listens to heartbeats and keeps {@linkcode FleetState} informed. */
export class HeartbeatListener implements AsyncDisposable {
  readonly #nc: NatsConnection;
  readonly #state: FleetState;
  readonly #statusKv: KV;
  readonly #now: () => number;
  #sub: Subscription | undefined;
  #loop: Promise<void> | undefined;
  /** Devices whose status is being re-read, and those waiting for a slot. */
  readonly #rereading = new Set<string>();
  readonly #queued = new Set<string>();
  #heard = 0;
  #rereads = 0;
  #invalid = 0;
  readonly #gate: DeviceGate;

  constructor(
    nc: NatsConnection,
    state: FleetState,
    statusKv: KV,
    now: () => number = Date.now,
    floods: FloodReport = new FloodReport(now),
  ) {
    this.#nc = nc;
    this.#state = state;
    this.#statusKv = statusKv;
    this.#now = now;
    this.#gate = new DeviceGate("heartbeat", floods, undefined, now);
  }

  /** Heartbeats heard, statuses re-read because of one, undecodable ones (for tests and logs). */
  get counts(): { heard: number; rereads: number; invalid: number } {
    return { heard: this.#heard, rereads: this.#rereads, invalid: this.#invalid };
  }

  /** Subscribes; resolves once the server has the subscription. */
  async start(): Promise<void> {
    const prefix = `${HEARTBEAT_PREFIX}.`;
    const sub = this.#nc.subscribe(`${prefix}*`);
    this.#sub = sub;
    this.#loop = (async () => {
      for await (const m of sub) {
        const device = m.subject.slice(prefix.length);
        // Over its rate: dropped before decoding (a heartbeat only refreshes liveness).
        const ticket = this.#gate.admit(device);
        if (!ticket.ok) continue;
        ticket.release();
        const decoded = m.data.byteLength > MAX_HEARTBEAT_BYTES
          ? { ok: false as const, error: "too large" }
          : decodeJson(Heartbeat, m.data);
        if (!decoded.ok) {
          // Counted, not logged per message: a broken agent would flood the log.
          if (this.#invalid++ === 0) {
            log.warn("Ignoring an invalid heartbeat from {device}: {error}", {
              device,
              error: decoded.error,
            });
          }
          continue;
        }
        this.#heard++;
        if (this.#state.applyHeartbeat(device, decoded.value, this.#now()) === "missed-status") {
          this.#reread(device);
        }
      }
    })();
    await this.#nc.flush();
  }

  #reread(device: string): void {
    if (this.#rereading.has(device)) return;
    if (this.#rereading.size >= MAX_STATUS_REREADS) {
      this.#queued.add(device);
      return;
    }
    this.#rereading.add(device);
    this.#rereads++;
    void (async () => {
      try {
        const e = await this.#statusKv.get(device);
        if (e !== null) {
          this.#state.applyStatus({
            key: e.key,
            revision: e.revision,
            operation: e.operation,
            value: e.value,
            created: e.created,
          });
        }
      } catch (error) {
        log.debug("Cannot re-read the status of {device}: {error}", {
          device,
          error: (error as Error).message,
        });
      } finally {
        this.#rereading.delete(device);
        const next = this.#queued.values().next();
        if (!next.done) {
          this.#queued.delete(next.value);
          this.#reread(next.value);
        }
      }
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#sub?.unsubscribe();
    await this.#loop;
  }
}
