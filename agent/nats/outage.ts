/**
 * What to log about a NATS outage, decided from events and the time alone:
 * one line when it starts, one every {@linkcode OUTAGE_REPORT_EVERY_MS} while
 * it lasts (how long, how many attempts failed, the last error), one when it
 * ends (how long it lasted, how many attempts failed). Pure: the caller
 * passes monotonic time in ms and logs what comes back.
 *
 * Two sources feed it. Before the first connection the agent's own
 * `connectWithRetry` loop reports each failed attempt with its error. After
 * it, nats.js reconnects by itself and only says `disconnect`, `reconnecting`
 * (before each dial) and `reconnect`; it does not say why a dial failed, so
 * the last error there is the last `error` status seen, or the loss itself.
 *
 * @module
 */

/** While an outage lasts, a line this often (ms). */
export const OUTAGE_REPORT_EVERY_MS = 60_000;

/** One line to log. */
export type OutageReport =
  | { kind: "start"; error: string }
  | { kind: "ongoing"; durationMs: number; failedAttempts: number; lastError: string }
  | { kind: "end"; durationMs: number; failedAttempts: number };

interface Outage {
  startedAt: number;
  lastReportAt: number;
  failedAttempts: number;
  lastError: string;
  /** A nats.js dial has begun and not ended yet (the next one, or a reconnect, ends it). */
  dialing: boolean;
}

/** Follows one connection's outages; see the module doc. */
export class OutageTracker {
  readonly #reportEveryMs: number;
  #outage: Outage | undefined;

  constructor(reportEveryMs: number = OUTAGE_REPORT_EVERY_MS) {
    this.#reportEveryMs = reportEveryMs;
  }

  /** True between a start and an end report. */
  get inOutage(): boolean {
    return this.#outage !== undefined;
  }

  /** When the next {@linkcode due} report is, or undefined outside an outage. */
  get nextReportAt(): number | undefined {
    return this.#outage === undefined ? undefined : this.#outage.lastReportAt + this.#reportEveryMs;
  }

  /** The connection was lost (`disconnect`): starts an outage unless one runs. */
  lost(now: number, error: string): OutageReport | undefined {
    if (this.#outage !== undefined) {
      this.#outage.lastError = error;
      return undefined;
    }
    this.#outage = {
      startedAt: now,
      lastReportAt: now,
      failedAttempts: 0,
      lastError: error,
      dialing: false,
    };
    return { kind: "start", error };
  }

  /** An attempt of the agent's own connect loop failed: starts an outage or counts in it. */
  attemptFailed(now: number, error: string): OutageReport | undefined {
    const report = this.lost(now, error);
    this.#outage!.failedAttempts++;
    return report;
  }

  /** nats.js begins a dial (`reconnecting`); a dial still under way when another begins failed. */
  dialing(now: number): void {
    const outage = this.#outage;
    if (outage === undefined) {
      // A dial without a `disconnect` first: the loss is news all the same.
      this.lost(now, "connection lost");
      this.#outage!.dialing = true;
      return;
    }
    if (outage.dialing) outage.failedAttempts++;
    outage.dialing = true;
  }

  /** An error reported while cut off (nats.js `error` status): the last error from now on. */
  error(error: string): void {
    if (this.#outage !== undefined) this.#outage.lastError = error;
  }

  /** The periodic line, when one is due at `now`. */
  due(now: number): OutageReport | undefined {
    const outage = this.#outage;
    if (outage === undefined || now - outage.lastReportAt < this.#reportEveryMs) return undefined;
    outage.lastReportAt = now;
    return {
      kind: "ongoing",
      durationMs: now - outage.startedAt,
      failedAttempts: outage.failedAttempts,
      lastError: outage.lastError,
    };
  }

  /** Connected (first connect or `reconnect`): ends the outage, if one ran. */
  connected(now: number): OutageReport | undefined {
    const outage = this.#outage;
    if (outage === undefined) return undefined;
    this.#outage = undefined;
    return {
      kind: "end",
      durationMs: now - outage.startedAt,
      failedAttempts: outage.failedAttempts,
    };
  }
}

/** `850 ms`, `42 s`, `3 min 5 s`, `2 h 7 min`: a duration for a log line. Pure. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return s % 60 === 0 ? `${min} min` : `${min} min ${s % 60} s`;
  const h = Math.floor(min / 60);
  return min % 60 === 0 ? `${h} h` : `${h} h ${min % 60} min`;
}
