/**
 * Where the devices' status puts enter the fleet picture. Decoding a status
 * (up to the devices' 256 KiB payload limit) is the operator's cost of each
 * put, so each device gets a rate ({@linkcode DEVICE_LIMITS}.status): a put
 * beyond it is not decoded now; the newest one held back per device is
 * applied once the device's rate allows (so the picture never keeps an older
 * status than the device's last). Memory: one held entry per device.
 *
 * @module
 */

import type { MirrorEntry } from "../nats/kv.ts";
import type { DeviceGate } from "./device_gate.ts";

/** How often held-back statuses are offered again. */
export const HELD_STATUS_RETRY_MS = 1_000;

/** Rate-limits status puts per device, keeping the newest held back. */
export class StatusIntake {
  readonly #apply: (entry: MirrorEntry) => void;
  readonly #gate: DeviceGate;
  readonly #retryMs: number;
  readonly #held = new Map<string, MirrorEntry>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    apply: (entry: MirrorEntry) => void,
    gate: DeviceGate,
    retryMs = HELD_STATUS_RETRY_MS,
  ) {
    this.#apply = apply;
    this.#gate = gate;
    this.#retryMs = retryMs;
  }

  /** Statuses held back now (at most one per device). */
  get held(): number {
    return this.#held.size;
  }

  /** One entry of the `agent-status` watch. */
  offer(entry: MirrorEntry): void {
    const ticket = this.#gate.admit(entry.key);
    if (ticket.ok) {
      ticket.release();
      this.#held.delete(entry.key);
      this.#apply(entry);
      return;
    }
    this.#held.set(entry.key, entry);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const held = [...this.#held.values()];
      this.#held.clear();
      for (const entry of held) this.offer(entry);
    }, this.#retryMs);
  }

  /** Applies nothing more. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
