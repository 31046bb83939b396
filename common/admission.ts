/**
 * Admission control for work that untrusted peers ask for: a token bucket per
 * peer (its rate), a cap on work in progress across all peers (the whole
 * service's cost), and logging that cannot itself become the flood. All three
 * decide in O(1) from memory, so a refusal costs nothing before any I/O.
 * Pure: time comes from the caller's clock.
 *
 * @example
 * ```ts
 * import { Admission } from "@drover/common";
 *
 * const admission = new Admission({ ratePerSecond: 5, burst: 10, maxInFlight: 32 });
 * const ticket = admission.admit("dev-a", Date.now());
 * if (ticket.ok) {
 *   try {
 *     // …answer the request…
 *   } finally {
 *     ticket.release();
 *   }
 * }
 * ```
 *
 * @module
 */

/** Settings of one {@linkcode TokenBuckets}. */
export interface RateLimit {
  /** Tokens added per second (the sustained rate). */
  ratePerSecond: number;
  /** Bucket size: how many may come at once after a quiet spell. */
  burst: number;
}

/**
 * One token bucket per key. Keys that have refilled completely are forgotten
 * (a full bucket is the same as no bucket), so memory is bounded by the keys
 * active within `burst / ratePerSecond` seconds, and by `maxKeys` on top.
 */
export class TokenBuckets {
  readonly #limit: RateLimit;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(limit: RateLimit, maxKeys = 100_000) {
    if (!(limit.ratePerSecond > 0) || !(limit.burst >= 1)) {
      throw new RangeError(`Invalid rate limit ${JSON.stringify(limit)}`);
    }
    this.#limit = limit;
    this.#maxKeys = maxKeys;
  }

  /** Takes one token of `key` at time `nowMs`; false when it has none left. */
  take(key: string, nowMs: number): boolean {
    const { ratePerSecond, burst } = this.#limit;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#sweep(nowMs);
      bucket = { tokens: burst, at: nowMs };
      this.#buckets.set(key, bucket);
    } else {
      const elapsed = Math.max(0, nowMs - bucket.at) / 1000;
      bucket.tokens = Math.min(burst, bucket.tokens + elapsed * ratePerSecond);
      bucket.at = nowMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Keys tracked now (for tests: memory stays bounded). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Forgets buckets that have refilled; if none has, the oldest. */
  #sweep(nowMs: number): void {
    const { ratePerSecond, burst } = this.#limit;
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (Math.max(0, nowMs - b.at) / 1000) * ratePerSecond >= burst) {
        this.#buckets.delete(key);
      }
    }
    if (this.#buckets.size >= this.#maxKeys) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
  }
}

/** Why {@linkcode Admission.admit} refused. */
export type Refusal = "rate" | "busy";

/** The answer of {@linkcode Admission.admit}. */
export type Ticket =
  | { ok: true; release: () => void }
  | { ok: false; reason: Refusal };

/** Settings of {@linkcode Admission}. */
export interface AdmissionLimits extends RateLimit {
  /** Requests being worked on at once, over all keys. */
  maxInFlight: number;
}

/** A per-key rate limit and a global cap on work in progress. */
export class Admission {
  readonly limits: Readonly<AdmissionLimits>;
  readonly #buckets: TokenBuckets;
  #inFlight = 0;

  constructor(limits: AdmissionLimits) {
    if (!(limits.maxInFlight >= 1)) {
      throw new RangeError(`Invalid maxInFlight ${limits.maxInFlight}`);
    }
    this.limits = limits;
    this.#buckets = new TokenBuckets(limits);
  }

  /** Work in progress now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Admits one request of `key`, or says why not. An admitted request must
   * call `release` exactly once when done (later calls do nothing).
   */
  admit(key: string, nowMs: number): Ticket {
    // The rate first: a flooding key must not take the slots of the others.
    if (!this.#buckets.take(key, nowMs)) return { ok: false, reason: "rate" };
    if (this.#inFlight >= this.limits.maxInFlight) return { ok: false, reason: "busy" };
    this.#inFlight++;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.#inFlight--;
      },
    };
  }
}

/** A line {@linkcode LogThrottle} lets through, with what it held back since the last one. */
export interface ThrottledLine {
  /** Lines of the same kind held back since the last one let through. */
  suppressed: number;
}

/** Options of {@linkcode LogThrottle}. */
export interface LogThrottleOptions {
  /** Kinds remembered at most (the oldest is forgotten first); default 1 000. */
  maxKinds?: number;
  /** Lines over all kinds per second (burst: twice that); default unlimited. */
  linesPerSecond?: number;
}

/**
 * At most one log line per kind (e.g. "refused requests of dev-a") per
 * interval, and optionally at most `linesPerSecond` over all kinds; the next
 * line let through says how many of its kind were held back. Kinds are
 * bounded by `maxKinds` (the oldest is forgotten first).
 */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #maxKinds: number;
  readonly #rate: TokenBuckets | undefined;
  readonly #kinds = new Map<string, { lastMs: number; suppressed: number }>();

  constructor(intervalMs: number, options: LogThrottleOptions = {}) {
    this.#intervalMs = intervalMs;
    this.#maxKinds = options.maxKinds ?? 1_000;
    this.#rate = options.linesPerSecond === undefined ? undefined : new TokenBuckets({
      ratePerSecond: options.linesPerSecond,
      burst: options.linesPerSecond * 2,
    });
  }

  /** Whether to log a line of `kind` now; if so, how many were held back before it. */
  allow(kind: string, nowMs: number): ThrottledLine | undefined {
    const seen = this.#kinds.get(kind);
    if (seen !== undefined && nowMs - seen.lastMs < this.#intervalMs) {
      seen.suppressed++;
      return undefined;
    }
    if (this.#rate !== undefined && !this.#rate.take("", nowMs)) {
      // Held back by the global rate: counted with its kind, which may log again at once.
      if (seen !== undefined) seen.suppressed++;
      else this.#remember(kind, { lastMs: -Infinity, suppressed: 1 });
      return undefined;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.#remember(kind, { lastMs: nowMs, suppressed: 0 });
    return { suppressed };
  }

  #remember(kind: string, entry: { lastMs: number; suppressed: number }): void {
    // Re-inserted so that the map's order is oldest first.
    if (!this.#kinds.delete(kind) && this.#kinds.size >= this.#maxKinds) {
      this.#kinds.delete(this.#kinds.keys().next().value!);
    }
    this.#kinds.set(kind, entry);
  }
}
