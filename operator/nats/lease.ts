/**
 * One active `operator serve` at a time: a lease in `operator-leases/serve`,
 * taken and renewed with compare-and-set on the key's KV revision.
 *
 * The holder renews every `renewMs`. A standby takes the lease over when it
 * has seen the same KV revision for the lease's `ttl_ms` by its own clock
 * (no clock comparison between hosts). The holder counts itself active only
 * until `ttl - ttl/4` after it last sent a renewal that succeeded, so it stops
 * writing before any standby can take over; a renewal that loses the
 * compare-and-set means someone else holds it. A holder that stops cleanly
 * deletes the key, and a standby takes over at its next look.
 *
 * The decision is pure ({@linkcode decideLease}); {@linkcode Lease} runs it.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { getLogger } from "@logtape/logtape";
import { abortableSleep } from "@drover/common";
import { canonicalJson, decodeJson, SERVE_LEASE_KEY } from "@drover/contracts";
import { isWriteConflict } from "./kv.ts";

const log = getLogger(["drover", "operator", "lease"]);

/** A lease not renewed this long may be taken over. */
export const DEFAULT_LEASE_TTL_MS = 8_000;
/** The holder renews (and a standby looks) this often. */
export const DEFAULT_LEASE_RENEW_MS = 2_000;

/** The value of the lease key. */
export const LeaseValue = z.object({
  /** Who holds it: host, process id and a random suffix. */
  holder: z.string().min(1).max(256),
  /** How long a standby waits for a renewal before taking over. */
  ttl_ms: z.int().positive(),
  /** When it was last renewed, by the holder's clock (for people; never compared). */
  renewed_at: z.iso.datetime(),
});
/** The value of the lease key. */
export type LeaseValue = z.infer<typeof LeaseValue>;

/** The lease key as last read. */
export type LeaseObservation =
  | { kind: "absent" }
  | {
    kind: "held";
    holder: string;
    ttlMs: number;
    kvRevision: number;
    /** Local monotonic ms when this KV revision was first seen. */
    seenSince: number;
  };

/** What to do about the lease. */
export type LeaseDecision =
  | { kind: "acquire" }
  | { kind: "renew"; kvRevision: number }
  | { kind: "takeover"; kvRevision: number; from: string }
  | { kind: "wait"; holder: string; expiresInMs: number };

/** Decides what `me` does about the lease at local monotonic time `now`. Pure. */
export function decideLease(me: string, observed: LeaseObservation, now: number): LeaseDecision {
  if (observed.kind === "absent") return { kind: "acquire" };
  if (observed.holder === me) return { kind: "renew", kvRevision: observed.kvRevision };
  const expiresInMs = observed.seenSince + observed.ttlMs - now;
  if (expiresInMs <= 0) {
    return { kind: "takeover", kvRevision: observed.kvRevision, from: observed.holder };
  }
  return { kind: "wait", holder: observed.holder, expiresInMs };
}

/** Until when a holder whose last successful renewal was sent at `sentAt` may act. Pure. */
export function activeUntil(sentAt: number, ttlMs: number): number {
  return sentAt + ttlMs - ttlMs / 4;
}

/** Options of {@linkcode Lease}. */
export interface LeaseOptions {
  ttlMs?: number;
  renewMs?: number;
  /** Called when this process gains or loses the lease. */
  onChange?: (active: boolean) => void;
  /** Local monotonic clock in ms (tests). */
  clock?: () => number;
}

/** Holds, or waits for, the `serve` lease. */
export class Lease implements AsyncDisposable {
  readonly holder: string;
  #kv: KV;
  #ttlMs: number;
  #renewMs: number;
  #onChange: (active: boolean) => void;
  #clock: () => number;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  /** KV revision of our own last successful write, while we hold it. */
  #ownRevision: number | undefined;
  #activeUntil = 0;
  #wasActive = false;
  #seen: { kvRevision: number; since: number } | undefined;
  /** Who held the lease at our last look, while we wait for it. */
  #heldBy: string | undefined;
  /** The holder last named in the standby log line (said once per holder). */
  #announced: string | undefined;

  constructor(kv: KV, holder: string, options: LeaseOptions = {}) {
    this.#kv = kv;
    this.holder = holder;
    this.#ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.#renewMs = options.renewMs ?? DEFAULT_LEASE_RENEW_MS;
    this.#onChange = options.onChange ?? (() => {});
    this.#clock = options.clock ?? (() => performance.now());
  }

  /** True while this process holds the lease and may write desired state. */
  get active(): boolean {
    return this.#ownRevision !== undefined && this.#clock() < this.#activeUntil;
  }

  /** Who holds the lease while this process stands by; `undefined` while it holds it. */
  get heldBy(): string | undefined {
    return this.active ? undefined : this.#heldBy;
  }

  /** Starts taking and renewing the lease; resolves after the first attempt. */
  async start(): Promise<void> {
    await this.#tick();
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      await abortableSleep(this.#renewMs, this.#stop.signal);
      if (this.#stop.signal.aborted) break;
      await this.#tick();
    }
  }

  async #tick(): Promise<void> {
    try {
      await this.#attempt();
    } catch (e) {
      log.warn("Cannot renew or read the operator lease: {error}", { error: (e as Error).message });
    }
    const active = this.active;
    if (active !== this.#wasActive) {
      this.#wasActive = active;
      log.info(
        active ? "Holding the operator lease: acting" : "Lost the operator lease: standing by",
        {},
      );
      this.#onChange(active);
    }
    const heldBy = this.heldBy;
    if (heldBy !== undefined && heldBy !== this.#announced) {
      log.info(
        "Standby: the operator lease is held by {holder}; this process acts once it is released " +
          "or not renewed for {ttl} ms",
        { holder: heldBy || "(unreadable lease value)", ttl: this.#ttlMs },
      );
    }
    this.#announced = heldBy;
  }

  async #attempt(): Promise<void> {
    const now = this.#clock();
    let decision: LeaseDecision;
    if (this.#ownRevision !== undefined && now < this.#activeUntil) {
      decision = { kind: "renew", kvRevision: this.#ownRevision };
    } else {
      decision = decideLease(this.holder, await this.#observe(now), now);
    }
    if (decision.kind === "wait") {
      this.#ownRevision = undefined;
      this.#heldBy = decision.holder;
      return;
    }
    const value = canonicalJson(
      {
        holder: this.holder,
        ttl_ms: this.#ttlMs,
        renewed_at: new Date().toISOString(),
      } satisfies LeaseValue,
    );
    const sentAt = this.#clock();
    try {
      const revision = decision.kind === "acquire"
        ? await this.#kv.create(SERVE_LEASE_KEY, value)
        : await this.#kv.update(SERVE_LEASE_KEY, value, decision.kvRevision);
      this.#ownRevision = revision;
      this.#activeUntil = activeUntil(sentAt, this.#ttlMs);
      if (decision.kind === "takeover") {
        log.info("Took the operator lease over from {holder} (not renewed for {ttl} ms)", {
          holder: decision.from,
          ttl: this.#ttlMs,
        });
      }
    } catch (e) {
      if (!isWriteConflict(e)) throw e;
      // Someone else wrote it first: they hold it.
      this.#ownRevision = undefined;
    }
  }

  async #observe(now: number): Promise<LeaseObservation> {
    const entry = await this.#kv.get(SERVE_LEASE_KEY);
    if (entry === null || entry.operation !== "PUT") return { kind: "absent" };
    if (this.#seen?.kvRevision !== entry.revision) {
      this.#seen = { kvRevision: entry.revision, since: now };
    }
    const decoded = decodeJson(LeaseValue, entry.value);
    return {
      kind: "held",
      // An unreadable value names nobody: it is taken over once it is as old as a default lease.
      holder: decoded.ok ? decoded.value.holder : "",
      ttlMs: decoded.ok ? decoded.value.ttl_ms : DEFAULT_LEASE_TTL_MS,
      kvRevision: entry.revision,
      seenSince: this.#seen.since,
    };
  }

  /** Stops renewing without giving the lease up (what a crash looks like; tests). */
  async abandon(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Stops renewing and gives the lease up so a standby takes over at once. */
  async stop(): Promise<void> {
    await this.abandon();
    const revision = this.#ownRevision;
    this.#ownRevision = undefined;
    if (revision === undefined) return;
    try {
      await this.#kv.delete(SERVE_LEASE_KEY, { previousSeq: revision });
      log.info("Released the operator lease", {});
    } catch (e) {
      log.debug("Could not release the operator lease: {error}", { error: (e as Error).message });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
