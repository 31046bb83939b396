/**
 * What every device-facing handler of the operator does first: admit the
 * message or refuse it from memory, before any parsing, KV read or log line.
 * Each handler has its own per-device rate and its own cap on work in
 * progress ({@linkcode DEVICE_LIMITS}); refusals are counted by handler and
 * reason for /metrics, logged at most once per device and handler every
 * {@linkcode REFUSAL_LOG_INTERVAL_MS} with the number held back, and a device
 * refused more than {@linkcode FLOODING_REFUSALS} times within
 * {@linkcode FLOODING_WINDOW_MS} is reported as flooding (a gauge, a warning
 * naming `operator device revoke`). docs/security.md states the limits.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  Admission,
  type AdmissionLimits,
  LogThrottle,
  type Refusal,
  type Ticket,
} from "@drover/common";

const log = getLogger(["drover", "operator", "devices"]);

/** The device-facing handlers. */
export type DeviceHandler = "artifact" | "snapshot" | "heartbeat" | "status" | "command";

/**
 * Per device: requests per second and burst; over all devices: messages being
 * worked on at once. Sized for what an agent does (a snapshot per reconnect
 * and every few minutes, a heartbeat every 15 s, a status per change, sequential
 * 128 KiB chunks during an update) with room for bursts after a reconnect.
 */
export const DEVICE_LIMITS: Readonly<Record<DeviceHandler, Readonly<AdmissionLimits>>> = {
  // 50 chunks/s is 6.4 MiB/s for one device's download.
  artifact: { ratePerSecond: 50, burst: 100, maxInFlight: 64 },
  snapshot: { ratePerSecond: 5, burst: 20, maxInFlight: 64 },
  heartbeat: { ratePerSecond: 2, burst: 10, maxInFlight: 256 },
  status: { ratePerSecond: 5, burst: 20, maxInFlight: 256 },
  // Answers to the operator's own questions (`logs --follow` asks several times a second).
  command: { ratePerSecond: 20, burst: 40, maxInFlight: 32 },
};

/** At most one refusal line per device and handler this often. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;
/** Refusal lines over all devices and handlers, per second. */
const REFUSAL_LINES_PER_SECOND = 2;
/** Refusals within {@linkcode FLOODING_WINDOW_MS} that make a device "flooding". */
export const FLOODING_REFUSALS = 100;
/** The window of {@linkcode FLOODING_REFUSALS}; a device quiet for one is no longer flooding. */
export const FLOODING_WINDOW_MS = 10_000;
/** Devices tracked as flooding at once (the report stays bounded under a fleet-wide attack). */
const MAX_FLOODING_TRACKED = 1_000;

/** Refusals counted since start, for /metrics. */
export type RefusalCounts = Record<DeviceHandler, Record<Refusal, number>>;

/** One device seen flooding. */
export interface FloodingDevice {
  device: string;
  /** Refusals in its current window, over all handlers. */
  refused: number;
  /** Handler with the most refusals. */
  handler: DeviceHandler;
}

/**
 * Counts refusals of all gates, decides which devices are flooding, and
 * writes the (throttled) log lines. One per operator process.
 */
export class FloodReport {
  readonly #now: () => number;
  readonly #counts: RefusalCounts = emptyCounts();
  readonly #lines = new LogThrottle(REFUSAL_LOG_INTERVAL_MS, {
    linesPerSecond: REFUSAL_LINES_PER_SECOND,
  });
  readonly #windows = new Map<
    string,
    { start: number; refused: number; by: Partial<Record<DeviceHandler, number>>; flagged: boolean }
  >();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Records one refusal. O(1). */
  refused(handler: DeviceHandler, device: string, reason: Refusal): void {
    const now = this.#now();
    this.#counts[handler][reason]++;
    let w = this.#windows.get(device);
    if (w === undefined || now - w.start >= FLOODING_WINDOW_MS) {
      if (w === undefined && this.#windows.size >= MAX_FLOODING_TRACKED) this.#forgetQuiet(now);
      w = { start: now, refused: 0, by: {}, flagged: w?.flagged ?? false };
      this.#windows.delete(device);
      this.#windows.set(device, w);
    }
    w.refused++;
    w.by[handler] = (w.by[handler] ?? 0) + 1;
    if (!w.flagged && w.refused >= FLOODING_REFUSALS) {
      w.flagged = true;
      log.warn(
        "Device {device} is flooding the operator ({refused} requests refused within {seconds} s, " +
          "mostly {handler}); its requests are refused beyond its rate. To cut it off: " +
          "operator device revoke {device}",
        { device, refused: w.refused, seconds: FLOODING_WINDOW_MS / 1000, handler },
      );
      return;
    }
    const line = this.#lines.allow(`${handler}\u0000${device}`, now);
    if (line === undefined) return;
    log.info(
      "Refused a {handler} request of device {device} ({reason}); {suppressed} more refusals " +
        "of it were suppressed since the last such line",
      { handler, device, reason: reasonText(reason), suppressed: line.suppressed },
    );
  }

  /** Refusals since start, by handler and reason. */
  get counts(): RefusalCounts {
    return this.#counts;
  }

  /** Devices flooding now (refused beyond the threshold in their current or last window). */
  flooding(): FloodingDevice[] {
    const now = this.#now();
    const out: FloodingDevice[] = [];
    for (const [device, w] of this.#windows) {
      // Flagged stays until a whole window passes without a refusal.
      if (!w.flagged || now - w.start >= 2 * FLOODING_WINDOW_MS) continue;
      const handler = (Object.entries(w.by) as [DeviceHandler, number][])
        .sort((a, b) => b[1] - a[1])[0]?.[0] ?? "artifact";
      out.push({ device, refused: w.refused, handler });
    }
    return out;
  }

  #forgetQuiet(now: number): void {
    for (const [device, w] of this.#windows) {
      if (now - w.start >= 2 * FLOODING_WINDOW_MS) this.#windows.delete(device);
    }
    if (this.#windows.size >= MAX_FLOODING_TRACKED) {
      this.#windows.delete(this.#windows.keys().next().value!);
    }
  }
}

function emptyCounts(): RefusalCounts {
  const zero = () => ({ rate: 0, busy: 0 });
  return {
    artifact: zero(),
    snapshot: zero(),
    heartbeat: zero(),
    status: zero(),
    command: zero(),
  };
}

function reasonText(reason: Refusal): string {
  return reason === "rate" ? "over its rate" : "the operator is at its limit of work in progress";
}

/** Admission for one handler, reporting refusals to the shared {@linkcode FloodReport}. */
export class DeviceGate {
  readonly handler: DeviceHandler;
  readonly #admission: Admission;
  readonly #report: FloodReport;
  readonly #now: () => number;

  constructor(
    handler: DeviceHandler,
    report: FloodReport,
    limits: AdmissionLimits = DEVICE_LIMITS[handler],
    now: () => number = Date.now,
  ) {
    this.handler = handler;
    this.#admission = new Admission(limits);
    this.#report = report;
    this.#now = now;
  }

  /** Messages being worked on now. */
  get inFlight(): number {
    return this.#admission.inFlight;
  }

  /** Admits one message of `device` (release the ticket when done), or refuses and reports. */
  admit(device: string): Ticket {
    const ticket = this.#admission.admit(device, this.#now());
    if (!ticket.ok) this.#report.refused(this.handler, device, ticket.reason);
    return ticket;
  }
}
