/**
 * Following this device's keys in the `desired-state` bucket without any
 * JetStream consumer (devices have no JetStream API: docs/security.md, and a
 * consumer per device is what made the server's cost grow with the fleet:
 * docs/nats-kv.md).
 *
 * - A core subscription on `$KV.desired-state.<device>.*` sees every put and
 *   delete as it is published. A message there is only a hint: it may arrive
 *   before the stream stored it, and another device can aim replies at the
 *   subject. So the agent re-reads the key with a direct get, the
 *   authoritative value and revision, and applies revisions in order only.
 * - A snapshot, asked of the operator (`drover.desired.snapshot.<device>`),
 *   lists the device's keys with their revisions as of a bucket revision. It
 *   runs after every (re)connect and then every few minutes as a safety net;
 *   only keys whose revision changed are fetched. A held key missing from the
 *   listing is removed only if the listing is at least as new as the key.
 *
 * Another device can aim replies at this device's change subjects at its own
 * rate, so what a hint may cost is bounded: a hint for a held key replaces
 * that key's pending confirmation (at most one per held key, confirmed
 * {@linkcode CONFIRM_CONCURRENCY} at a time); a hint for a key not held — a
 * new deployment, or a forgery naming any key — only asks for a snapshot,
 * taken at most once per {@linkcode HINT_SNAPSHOT_DEBOUNCE_MS}, whatever the
 * number of hints; up to {@linkcode HINTED_READS_PER_SNAPSHOT} of the names
 * hinted are read directly when that snapshot's listing lacks them (the
 * listing lags the bucket while the operator writes thousands of keys). Beyond {@linkcode HINT_FLOOD_PER_SECOND} such hints the
 * follower unsubscribes for {@linkcode HINT_FLOOD_PAUSE_MS} (the server then
 * drops them) and polls snapshots every {@linkcode HINT_FLOOD_POLL_MS}.
 *
 * The subscription is made before the first snapshot, so a change stored
 * after the server took the subscription is seen live; one stored just before
 * may be missing from a listing that lags the bucket, so a second snapshot
 * follows {@linkcode SETTLE_SNAPSHOT_MS} after the first. The sink gets one
 * authoritative snapshot per (re)connect, then one update per change.
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { desiredStateChangesSubject, isValidName } from "@drover/contracts";
import type { DesiredEntry } from "../reconcile/desired.ts";
import { abortableSleep, Backoff, backoffDelay, type BackoffOptions } from "@drover/common";
import { CONNECT_BACKOFF } from "./connect.ts";
import { type DesiredSink, interpretRecord, type KvRecord } from "./desired_record.ts";
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  getDesiredRecord,
  keyOfSubject,
  recordOf,
  requestSnapshot,
} from "./requests.ts";

/** How often the snapshot is repeated while connected (± {@linkcode RESYNC_JITTER}). */
export const DEFAULT_RESYNC_MS = 5 * 60_000;
/** Fraction by which each resync interval is randomly shortened, so a fleet spreads out. */
export const RESYNC_JITTER = 0.25;
/**
 * After the first snapshot of each (re)connect, the next one comes this soon
 * rather than at the resync interval. A key stored just before this device's
 * subscription took effect announces itself to nobody, and the operator's
 * listing follows the bucket a moment behind (its index is fed by a watch):
 * without this, such a key waited for the resync. Seen on hollow devices
 * connecting while their deployment was written: 26 of 300 waited minutes.
 */
export const SETTLE_SNAPSHOT_MS = 2_000;
/** Direct gets in flight at once while applying a snapshot. */
const FETCH_CONCURRENCY = 8;
/** Held keys being confirmed at once after live hints. */
export const CONFIRM_CONCURRENCY = 8;
/**
 * After a hint for a key not held, the snapshot waits this long, so that a
 * burst of hints (a deployment to many keys, or a flood of forged ones) costs
 * one snapshot.
 */
export const HINT_SNAPSHOT_DEBOUNCE_MS = 500;
/**
 * Keys not held that hints named since the last snapshot, read directly when
 * the listing lacks them (at most this many per snapshot): the operator's
 * listing follows the bucket through a watch, and while it writes thousands
 * of keys it can lag by seconds — a new deployment must not then wait for the
 * next resync. Beyond this many names, the rest wait for the listing.
 */
export const HINTED_READS_PER_SNAPSHOT = 8;
/** Hints for keys not held, per second, beyond which the follower stops listening for a while. */
export const HINT_FLOOD_PER_SECOND = 1_000;
/** How long it then does not listen. */
export const HINT_FLOOD_PAUSE_MS = 30_000;
/** How often it takes a snapshot meanwhile. */
export const HINT_FLOOD_POLL_MS = 1_000;
/**
 * How often a key is re-read when the stored value does not (yet) match the
 * live message that announced it: the subscription can be ahead of the stream.
 */
const CONFIRM_ATTEMPTS = 6;
/** Waits between those re-reads: 10, 20, 40, 80, 160 ms. */
const CONFIRM_BACKOFF: Readonly<BackoffOptions> = { baseMs: 10, capMs: 160, jitter: 0 };
/**
 * Waits before a held key whose read failed is read again: as a reconnect's
 * (250 ms doubling to 10 s, up to half off at random so a fleet spreads out).
 */
export const CONFIRM_RETRY_BACKOFF: Readonly<BackoffOptions> = CONNECT_BACKOFF;

/** What the follower reports for logging. */
export interface DesiredFollowHooks {
  /** A snapshot could not be taken; it is retried after `retryInMs`. */
  onSnapshotFailed?: (error: unknown, retryInMs: number) => void;
  /** A snapshot was applied; `count` deployments are desired. */
  onSnapshot?: (count: number, asOfRevision: number) => void;
  /** A key could not be read after a change; it is read again after `retryInMs`. */
  onFetchFailed?: (deployment: string, error: unknown, retryInMs: number) => void;
  /**
   * `count` hints for keys not held arrived within a second: live hints are
   * not listened to for `pauseMs`, snapshots are polled instead.
   */
  onHintFlood?: (count: number, pauseMs: number) => void;
  /** A subject or key under this device's prefix that names no deployment of it. */
  onBadKey?: (key: string, problem: string) => void;
}

/** Options of {@linkcode DesiredFollower}. */
export interface DesiredFollowOptions {
  resyncMs?: number;
  requestTimeoutMs?: number;
}

/** What a snapshot listing asks of the follower. Pure. */
export interface SnapshotPlan {
  /** Deployments to read: new, or at a newer revision than held. */
  fetch: string[];
  /** Held deployments the listing shows deleted. */
  removed: string[];
  /** Deletions remembered to order late messages that the listing now covers. */
  forget: string[];
}

/**
 * Compares what the follower holds with a snapshot listing. Pure.
 *
 * @param held revision per held deployment
 * @param deleted revision of each deletion still remembered
 * @param listing deployment → revision, as of `asOfRevision`
 */
export function planSnapshot(
  held: ReadonlyMap<string, number>,
  deleted: ReadonlyMap<string, number>,
  listing: ReadonlyMap<string, number>,
  asOfRevision: number,
): SnapshotPlan {
  const fetch: string[] = [];
  for (const [deployment, revision] of listing) {
    const known = Math.max(held.get(deployment) ?? 0, deleted.get(deployment) ?? 0);
    if (revision > known) fetch.push(deployment);
  }
  const removed: string[] = [];
  for (const [deployment, revision] of held) {
    if (!listing.has(deployment) && revision <= asOfRevision) removed.push(deployment);
  }
  const forget: string[] = [];
  for (const [deployment, revision] of deleted) {
    if (!listing.has(deployment) && revision <= asOfRevision) forget.push(deployment);
  }
  return { fetch, removed, forget };
}

/** True when a stored record is what a live message announced. Pure. */
export function confirms(record: KvRecord | null, announced: KvRecord): boolean {
  if (record === null) return announced.operation !== "PUT";
  if (record.operation !== announced.operation) return false;
  const a = record.value;
  const b = announced.value;
  if (a.length !== b.length) return false;
  // A loop, not `every`: a callback per byte costs a call each in the agent's interpreter.
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Follows this device's desired state until stopped. Never throws. */
export class DesiredFollower {
  readonly #nc: NatsConnection;
  readonly #deviceId: string;
  readonly #sink: DesiredSink;
  readonly #hooks: DesiredFollowHooks;
  readonly #resyncMs: number;
  readonly #timeoutMs: number;
  /** Desired deployments with their revision. */
  readonly #held = new Map<string, { revision: number; entry: DesiredEntry }>();
  /** Revision of each deletion seen, so a late read of an older value is ignored. */
  readonly #deleted = new Map<string, number>();
  /** Live changes of held keys waiting to be confirmed, newest announcement per deployment. */
  readonly #pending = new Map<string, KvRecord>();
  /** Deployments being confirmed now (at most {@linkcode CONFIRM_CONCURRENCY}). */
  readonly #confirming = new Set<string>();
  /**
   * Held keys whose read failed, waiting to be read again: the failures so far (for the
   * backoff) and the timer. At most one per held key.
   */
  readonly #retrying = new Map<
    string,
    { failures: number; timer: ReturnType<typeof setTimeout> | undefined }
  >();
  /** A hint named a key not held: the next snapshot comes soon. */
  #hinted = false;
  /** When the last snapshot was asked for (`performance.now()`), for the hint-snapshot interval. */
  #lastSnapshotAt = -Infinity;
  /** Deployments not held that hints named since the last snapshot (a few, see HINTED_READS_PER_SNAPSHOT). */
  readonly #hintedNames = new Set<string>();
  #subscription: Subscription | undefined;
  /** Hints for keys not held in the current second. */
  #hintsInWindow = 0;
  #hintWindowStart = 0;
  /** Until when live hints are not listened to (a flood of them), ms since the epoch. */
  #pollingUntil: number | undefined;
  /** Ends the wait for the next resync early. */
  #wake: (() => void) | undefined;
  /** `<device>.`: what the keys of this device start with. */
  readonly #keyPrefix: string;
  /** The sink has this session's snapshot: changes go to it one by one. */
  #delivered = false;
  #session: AbortController | undefined;
  #snapshots = 0;
  /** The next snapshot settles a fresh session: it comes after {@linkcode SETTLE_SNAPSHOT_MS}. */
  #settling = false;

  constructor(
    nc: NatsConnection,
    deviceId: string,
    sink: DesiredSink,
    hooks: DesiredFollowHooks = {},
    options: DesiredFollowOptions = {},
  ) {
    this.#nc = nc;
    this.#deviceId = deviceId;
    this.#keyPrefix = `${deviceId}.`;
    this.#sink = sink;
    this.#hooks = hooks;
    this.#resyncMs = options.resyncMs ?? DEFAULT_RESYNC_MS;
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /** Number of authoritative snapshots delivered to the sink so far. */
  get snapshots(): number {
    return this.#snapshots;
  }

  /** Takes a fresh snapshot now (after a reconnect) and hands the sink a new one. */
  restart(): void {
    this.#session?.abort(new Error("restart requested"));
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      this.#subscribe();
    } catch (e) {
      this.#hooks.onSnapshotFailed?.(e, 0);
      return;
    }
    try {
      // The first snapshot, and the first after each restart, is handed to the
      // sink whole; a timer-driven resync only passes on what changed.
      let fresh = true;
      while (!signal.aborted) {
        const session = new AbortController();
        this.#session = session;
        const stop = () => session.abort(signal.reason);
        signal.addEventListener("abort", stop, { once: true });
        try {
          if (fresh) {
            this.#delivered = false;
            this.#settling = true;
          }
          await this.#syncUntilDone(session.signal);
          await this.#idle(session.signal);
        } finally {
          signal.removeEventListener("abort", stop);
        }
        fresh = session.signal.aborted;
      }
    } finally {
      this.#subscription?.unsubscribe();
      this.#subscription = undefined;
      for (const retry of this.#retrying.values()) clearTimeout(retry.timer);
      this.#retrying.clear();
    }
  }

  #subscribe(): void {
    this.#subscription = this.#nc.subscribe(desiredStateChangesSubject(this.#deviceId), {
      callback: (error, msg) => {
        if (error === null) this.#onChange(msg);
      },
    });
  }

  /**
   * Waits for the next resync: its interval, or — after a hint for a key not held — at once if no
   * snapshot was asked for within {@linkcode HINT_SNAPSHOT_DEBOUNCE_MS}, else for the rest of it
   * (a new deployment is fetched without delay; a flood of hints still costs one snapshot per
   * interval).
   */
  async #idle(signal: AbortSignal): Promise<void> {
    if (this.#pollingUntil !== undefined) {
      // Not listening (a flood of hints): the snapshot is the only way to see changes.
      await abortableSleep(HINT_FLOOD_POLL_MS, signal);
      if (signal.aborted || Date.now() < this.#pollingUntil) return;
      this.#pollingUntil = undefined;
      // Listening again before the snapshot that follows: no change falls in between.
      try {
        this.#subscribe();
      } catch {
        // The connection is closing; the session restarts.
      }
      return;
    }
    if (!this.#hinted) {
      const woken = new AbortController();
      this.#wake = () => woken.abort();
      try {
        const jitter = 1 - Math.random() * RESYNC_JITTER;
        const waitMs = this.#settling ? SETTLE_SNAPSHOT_MS : this.#resyncMs * jitter;
        this.#settling = false;
        await abortableSleep(waitMs, AbortSignal.any([signal, woken.signal]));
      } finally {
        this.#wake = undefined;
      }
    }
    if (this.#hinted) {
      const sinceLast = performance.now() - this.#lastSnapshotAt;
      if (sinceLast < HINT_SNAPSHOT_DEBOUNCE_MS) {
        await abortableSleep(HINT_SNAPSHOT_DEBOUNCE_MS - sinceLast, signal);
      }
    }
  }

  /** Takes one snapshot, retrying with backoff until it succeeds or `signal` aborts. */
  async #syncUntilDone(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(CONNECT_BACKOFF);
    while (!signal.aborted) {
      try {
        await this.#sync(signal);
        return;
      } catch (e) {
        if (signal.aborted) return;
        const delay = backoff.next();
        this.#hooks.onSnapshotFailed?.(e, delay);
        await abortableSleep(delay, signal);
      }
    }
  }

  async #sync(signal: AbortSignal): Promise<void> {
    // Hints from now on may be newer than this listing: they ask for another.
    this.#hinted = false;
    this.#lastSnapshotAt = performance.now();
    const hintedNames = [...this.#hintedNames];
    this.#hintedNames.clear();
    const { asOfRevision, deployments } = await requestSnapshot(
      this.#nc,
      this.#deviceId,
      this.#timeoutMs,
    );
    const held = new Map([...this.#held].map(([d, h]) => [d, h.revision]));
    const plan = planSnapshot(held, this.#deleted, deployments, asOfRevision);
    // A key a hint announced that the listing does not show yet (it lags the bucket): read it.
    const unlisted = hintedNames.filter((d) => !deployments.has(d) && !held.has(d));
    const queue = [...plan.fetch, ...unlisted];
    const worker = async () => {
      for (let d = queue.shift(); d !== undefined && !signal.aborted; d = queue.shift()) {
        this.#apply(d, await getDesiredRecord(this.#nc, this.#deviceId, d, this.#timeoutMs));
      }
    };
    await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, queue.length) }, worker));
    if (signal.aborted) return;
    for (const deployment of plan.removed) this.#remove(deployment);
    for (const deployment of plan.forget) this.#deleted.delete(deployment);
    if (!this.#delivered) {
      this.#delivered = true;
      this.#snapshots++;
      this.#sink.snapshot(new Map([...this.#held].map(([d, h]) => [d, h.entry])));
      this.#hooks.onSnapshot?.(this.#held.size, asOfRevision);
    }
  }

  /**
   * A live change: for a held key, remember the newest announcement and
   * confirm it; for any other, ask for a snapshot.
   */
  #onChange(msg: Msg): void {
    if (this.#subscription === undefined) return;
    // Only held keys are looked at closely: everything else, valid or not, is
    // for the snapshot to judge, so a flood of forged hints costs a prefix
    // check and a map lookup each, and no log line.
    const key = keyOfSubject(msg.subject);
    const deployment = key?.startsWith(this.#keyPrefix)
      ? key.slice(this.#keyPrefix.length)
      : undefined;
    if (deployment === undefined || !this.#held.has(deployment)) {
      if (
        deployment !== undefined && this.#hintedNames.size < HINTED_READS_PER_SNAPSHOT &&
        isValidName(deployment)
      ) this.#hintedNames.add(deployment);
      this.#hinted = true;
      this.#wake?.();
      this.#countUnknownHint();
      return;
    }
    // The live message carries no revision; the read that confirms it does.
    this.#pending.set(deployment, recordOf(`${this.#deviceId}.${deployment}`, 0, msg));
    this.#confirmPending();
  }

  /**
   * Hints for keys not held beyond {@linkcode HINT_FLOOD_PER_SECOND} are a
   * flood (no deployment adds keys that fast): stop listening for
   * {@linkcode HINT_FLOOD_PAUSE_MS}, so that the server drops them instead of
   * sending them here, and poll snapshots meanwhile.
   */
  #countUnknownHint(): void {
    const now = Date.now();
    if (now - this.#hintWindowStart >= 1_000) {
      this.#hintWindowStart = now;
      this.#hintsInWindow = 0;
    }
    if (++this.#hintsInWindow <= HINT_FLOOD_PER_SECOND) return;
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#pollingUntil = now + HINT_FLOOD_PAUSE_MS;
    this.#hooks.onHintFlood?.(this.#hintsInWindow, HINT_FLOOD_PAUSE_MS);
    this.#wake?.();
  }

  /** Starts confirming pending changes, up to {@linkcode CONFIRM_CONCURRENCY} keys at once. */
  #confirmPending(): void {
    for (const [deployment, announced] of this.#pending) {
      if (this.#confirming.size >= CONFIRM_CONCURRENCY) return;
      if (this.#confirming.has(deployment)) continue;
      this.#pending.delete(deployment);
      this.#confirming.add(deployment);
      void (async () => {
        try {
          this.#apply(deployment, await this.#confirm(deployment, announced));
          this.#retrying.delete(deployment);
        } catch (e) {
          this.#retryConfirm(deployment, announced, e);
        } finally {
          this.#confirming.delete(deployment);
          this.#confirmPending();
        }
      })();
    }
  }

  /**
   * A held key's read failed (a request that timed out): read it again after
   * a backoff ({@linkcode CONFIRM_RETRY_BACKOFF}) rather than waiting minutes
   * for the next snapshot. A newer announcement meanwhile takes its place.
   */
  #retryConfirm(deployment: string, announced: KvRecord, error: unknown): void {
    const retry = this.#retrying.get(deployment) ?? { failures: 0, timer: undefined };
    const delay = backoffDelay(retry.failures++, CONFIRM_RETRY_BACKOFF);
    this.#hooks.onFetchFailed?.(deployment, error, delay);
    clearTimeout(retry.timer);
    retry.timer = setTimeout(() => {
      retry.timer = undefined;
      if (this.#subscription === undefined || !this.#held.has(deployment)) {
        this.#retrying.delete(deployment);
        return;
      }
      if (!this.#pending.has(deployment)) this.#pending.set(deployment, announced);
      this.#confirmPending();
    }, delay);
    this.#retrying.set(deployment, retry);
  }

  /** Reads `deployment` until it shows what was announced (or a newer change is pending). */
  async #confirm(deployment: string, announced: KvRecord): Promise<KvRecord | null> {
    for (let attempt = 0;; attempt++) {
      const record = await getDesiredRecord(this.#nc, this.#deviceId, deployment, this.#timeoutMs);
      // A mismatch that stays is a newer write (its own message follows) or a
      // forged announcement: either way the stored record is the truth.
      if (
        confirms(record, announced) || attempt + 1 >= CONFIRM_ATTEMPTS ||
        this.#pending.has(deployment)
      ) {
        return record;
      }
      await abortableSleep(backoffDelay(attempt, CONFIRM_BACKOFF));
    }
  }

  /** Applies the stored record of `deployment` if it is newer than what is held. */
  #apply(deployment: string, record: KvRecord | null): void {
    if (record === null) {
      // No message at all: erased. Only a held value can be dropped.
      this.#remove(deployment);
      return;
    }
    const known = Math.max(
      this.#held.get(deployment)?.revision ?? 0,
      this.#deleted.get(deployment) ?? 0,
    );
    if (record.revision <= known) return;
    const meaning = interpretRecord(this.#deviceId, record);
    if (meaning.kind === "ignored") {
      this.#hooks.onBadKey?.(record.key, meaning.reason);
      return;
    }
    if (meaning.kind === "deleted") {
      this.#deleted.set(deployment, record.revision);
      this.#remove(deployment);
      return;
    }
    this.#deleted.delete(deployment);
    this.#held.set(deployment, { revision: record.revision, entry: meaning.entry });
    if (this.#delivered) this.#sink.update(deployment, meaning.entry);
  }

  #remove(deployment: string): void {
    if (this.#held.delete(deployment) && this.#delivered) this.#sink.update(deployment, null);
  }
}
