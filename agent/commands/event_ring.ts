/**
 * The device's ring of recent events (image pulled, container died with its
 * exit code, policy refusal, …), answered to `operator events`. Bounded in
 * count and in bytes, so it never grows and a reply always fits a message;
 * events are fetched by command and never put into the status.
 *
 * @module
 */

import {
  type DeviceEvent,
  MAX_DEVICE_EVENTS,
  MAX_DEVICE_EVENTS_BYTES,
  MAX_EVENT_MESSAGE_LENGTH,
} from "@drover/contracts";

import type { DeviceEventInput } from "../reconcile/events.ts";

export type { DeviceEventInput };

/** Where the reconciler (and others) report events. */
export interface EventSink {
  record(event: DeviceEventInput): void;
}

/** Options of {@linkcode EventRing}. */
export interface EventRingOptions {
  maxEvents?: number;
  maxBytes?: number;
  now?: () => number;
}

/** A bounded ring of events, oldest first. */
export class EventRing implements EventSink {
  readonly #maxEvents: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #events: { event: DeviceEvent; bytes: number }[] = [];
  #bytes = 0;
  #seq = 0;
  #dropped = 0;

  constructor(options: EventRingOptions = {}) {
    this.#maxEvents = options.maxEvents ?? MAX_DEVICE_EVENTS;
    this.#maxBytes = options.maxBytes ?? MAX_DEVICE_EVENTS_BYTES;
    this.#now = options.now ?? Date.now;
  }

  /** Adds an event, pushing out the oldest ones beyond the caps. */
  record(input: DeviceEventInput): void {
    const message = input.message.length > MAX_EVENT_MESSAGE_LENGTH
      ? input.message.slice(0, MAX_EVENT_MESSAGE_LENGTH - 1) + "…"
      : input.message;
    const event: DeviceEvent = {
      seq: ++this.#seq,
      time: new Date(this.#now()).toISOString(),
      ...input,
      message,
    };
    const bytes = JSON.stringify(event).length;
    this.#events.push({ event, bytes });
    this.#bytes += bytes;
    while (
      this.#events.length > this.#maxEvents ||
      (this.#bytes > this.#maxBytes && this.#events.length > 1)
    ) {
      this.#bytes -= this.#events.shift()!.bytes;
      this.#dropped++;
    }
  }

  /** Events with `seq` above `afterSeq` (all by default), oldest first. */
  list(afterSeq = 0): DeviceEvent[] {
    return this.#events.filter((e) => e.event.seq > afterSeq).map((e) => e.event);
  }

  /** Events pushed out of the ring so far. */
  get dropped(): number {
    return this.#dropped;
  }
}
