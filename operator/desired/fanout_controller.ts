/**
 * The operator service's level-triggered loop: watches only mark the fleet
 * dirty; one pass at a time recomputes every wanted desired-state key from
 * the manifests and the device registry's labels (never the labels devices
 * report), and writes just the difference.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { abortableSleep, Backoff, type BackoffOptions } from "@drover/common";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import {
  canonicalJson,
  decodeJson,
  parseDesiredStateKey,
  type SealedSecret,
  SecretRecord,
} from "@drover/contracts";
import { type DesiredWrite, diff, type FanoutDiff, sealingOf, targets } from "./fanout.ts";
import { Sealer } from "./sealing.ts";
import { knownDevices } from "./targeting.ts";
import { FleetState } from "../fleet/state.ts";
import { BucketMirror, type Buckets, forEachBounded } from "../nats/kv.ts";
import { RolloutDriver } from "../rollout/driver.ts";
import type { RolloutBuckets } from "../rollout/store.ts";
import { DeviceGate, FloodReport } from "../fleet/device_gate.ts";
import { StatusIntake } from "../fleet/status_intake.ts";

const log = getLogger(["drover", "operator", "reconcile"]);

/** Desired-state writes in flight at once: enough to hide round trips, few enough to not flood. */
export const DEFAULT_WRITE_CONCURRENCY = 64;
/** A full pass runs at least this often even when nothing was seen to change. */
export const DEFAULT_RESYNC_MS = 30_000;
/** Waits before retrying a pass whose writes failed: 500 ms doubling up to 30 s. */
const RETRY_BACKOFF: Readonly<BackoffOptions> = { baseMs: 500, capMs: 30_000, jitter: 0 };

/** Options of {@linkcode FanoutController}. */
export interface FanoutControllerOptions {
  writeConcurrency?: number;
  resyncMs?: number;
  /**
   * The rollout buckets: with them, manifests with a `rollout` section go out
   * batch by batch and every revision is recorded in the history. Without
   * them every manifest goes to every device at once.
   */
  rollouts?: RolloutBuckets;
  /**
   * Whether this process may write (it holds the operator lease). A pass
   * while it may not only keeps the picture current. Default: always.
   */
  isActive?: () => boolean;
  /**
   * The secret store and the operator's key to open it: values that
   * reference secrets get them sealed to each device. Without them such
   * values carry the reason instead, and their devices refuse them.
   */
  secrets?: { kv: KV; key: KeyPair | undefined };
  /** Where refusals of devices putting statuses beyond their rate are reported. */
  floods?: FloodReport;
}

/** While a rollout waits on devices, status changes trigger a pass at most this often. */
const ROLLOUT_STATUS_PASS_MS = 250;

/** Outcome of one pass. */
export interface PassResult {
  put: number;
  deleted: number;
  failed: number;
}

/**
 * Follows the buckets and keeps `desired-state` equal to the fan-out of
 * `deployments` over the devices in the `devices` registry.
 */
export class FanoutController implements AsyncDisposable {
  /** The decoded bucket contents; read it for the fleet view. */
  readonly state: FleetState = new FleetState();
  #buckets: Buckets;
  #mirrors: BucketMirror[] = [];
  #writeConcurrency: number;
  #resyncMs: number;
  #dirty = true;
  #wake: (() => void) | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #ready = false;
  #passes = 0;
  /** Staged rollouts and revision history; absent without rollout buckets. */
  readonly rollouts: RolloutDriver | undefined;
  #isActive: () => boolean;
  /** When a rollout next needs a look (a batch timeout), ms since the epoch. */
  #rolloutWakeAt: number | undefined;
  #statusPass: ReturnType<typeof setTimeout> | undefined;
  #secretsKv: KV | undefined;
  /** The secret store as mirrored (sealed to the operator's key). */
  readonly #secretRecords = new Map<string, SecretRecord>();
  #sealer: Sealer;
  readonly #statusIntake: StatusIntake;

  constructor(buckets: Buckets, options: FanoutControllerOptions = {}) {
    this.#statusIntake = new StatusIntake((e) => {
      this.state.applyStatus(e);
      if (this.rollouts?.watchesStatuses) this.#markDirtySoon();
    }, new DeviceGate("status", options.floods ?? new FloodReport()));
    this.#buckets = buckets;
    this.#writeConcurrency = options.writeConcurrency ?? DEFAULT_WRITE_CONCURRENCY;
    this.#resyncMs = options.resyncMs ?? DEFAULT_RESYNC_MS;
    this.rollouts = options.rollouts ? new RolloutDriver(options.rollouts) : undefined;
    // The fleet view judges deployments by their rollouts (a rolled back one at its stable revision).
    this.state.rollouts = this.rollouts?.book;
    this.#isActive = options.isActive ?? (() => true);
    this.#secretsKv = options.secrets?.kv;
    this.#sealer = new Sealer(options.secrets?.key, this.#secretRecords);
  }

  /** True once every bucket was read and the first pass ran. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Number of passes run so far. */
  get passes(): number {
    return this.#passes;
  }

  /** Starts the watches and the loop; resolves after the first pass. */
  async start(): Promise<void> {
    const state = this.state;
    this.#mirrors = [
      new BucketMirror(this.#buckets.deployments, (e) => {
        if (state.applyDeployment(e)) this.markDirty();
        const error = state.manifests.get(e.key)?.error;
        if (error !== undefined) {
          log.warn("Ignoring invalid manifest {deployment} (revision {revision}): {error}", {
            deployment: e.key,
            revision: e.revision,
            error,
          });
        }
      }),
      // Statuses never change targeting; they only decide when a rollout's batch is done.
      // Each device's puts at its rate (operator/fleet/status_intake.ts).
      new BucketMirror(this.#buckets.status, (e) => this.#statusIntake.offer(e)),
      new BucketMirror(this.#buckets.devices, (e) => {
        if (state.applyRegistration(e)) this.markDirty();
        const error = state.registry.get(e.key)?.error;
        if (error !== undefined) {
          log.warn("Invalid registry entry for device {device} (revision {revision}): {error}", {
            device: e.key,
            revision: e.revision,
            error,
          });
        }
      }),
      new BucketMirror(this.#buckets.desired, (e) => {
        if (state.applyDesired(e)) this.markDirty();
      }),
      ...(this.rollouts?.mirrors(() => this.markDirty()) ?? []),
      ...(this.#secretsKv === undefined ? [] : [
        new BucketMirror(this.#secretsKv, (e) => {
          const decoded = e.operation === "PUT" ? decodeJson(SecretRecord, e.value) : undefined;
          if (decoded?.ok) this.#secretRecords.set(e.key, decoded.value);
          else this.#secretRecords.delete(e.key);
          if (decoded !== undefined && !decoded.ok) {
            log.warn("Ignoring invalid secret {name}: {error}", {
              name: e.key,
              error: decoded.error,
            });
          }
          this.markDirty();
        }),
      ]),
    ];
    // Never reconcile from a partial picture: a pass before every snapshot is
    // in would delete the keys of devices or deployments not read yet.
    await Promise.all(this.#mirrors.map((m) => m.ready));
    const first = Promise.withResolvers<void>();
    this.#loop = this.#run(first.resolve);
    await first.promise;
    this.#ready = true;
  }

  /** Re-creates every watch from its last revision (after a NATS reconnect), then a pass. */
  rewatch(): void {
    for (const mirror of this.#mirrors) mirror.rewatch();
    this.markDirty();
  }

  /** Asks for a pass soon. */
  markDirty(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /** A pass soon, but at most every {@linkcode ROLLOUT_STATUS_PASS_MS}: heartbeats come in bursts. */
  #markDirtySoon(): void {
    if (this.#statusPass !== undefined || this.#stopped) return;
    this.#statusPass = setTimeout(() => {
      this.#statusPass = undefined;
      this.markDirty();
    }, ROLLOUT_STATUS_PASS_MS);
  }

  async #run(firstDone: () => void): Promise<void> {
    const retry = new Backoff(RETRY_BACKOFF);
    while (!this.#stopped) {
      if (!this.#dirty) {
        const untilRollout = (this.#rolloutWakeAt ?? Infinity) - Date.now();
        await this.#sleep(Math.max(0, Math.min(this.#resyncMs, untilRollout)));
      }
      if (this.#stopped) break;
      this.#dirty = false;
      let result: PassResult;
      try {
        result = await this.pass();
      } catch (e) {
        result = { put: 0, deleted: 0, failed: 1 };
        log.error("Reconcile pass failed: {error}", { error: (e as Error).message });
      }
      firstDone();
      if (result.failed > 0) {
        // Some writes failed (NATS away?): retry the whole pass, with backoff.
        await this.#sleep(retry.next());
        this.#dirty = true;
      } else {
        retry.reset();
      }
    }
    firstDone();
  }

  /** Sleeps `ms`, or until {@linkcode markDirty} or {@linkcode stop} wakes it. */
  async #sleep(ms: number): Promise<void> {
    const wake = new AbortController();
    this.#wake = () => wake.abort();
    await abortableSleep(ms, wake.signal);
    this.#wake = undefined;
  }

  /** Plans the writes for the current picture (exposed for tests and logging). */
  plan(): FanoutDiff {
    if (this.rollouts !== undefined) {
      const { wanted, held } = this.rollouts.wanted(this.state);
      return diff(wanted, this.state.desired, this.state.frozenDeployments(), held, this.#sealing);
    }
    const wanted = targets(
      this.state.validManifests(),
      knownDevices(this.state.registry),
      this.state.manifestRevisions(),
    );
    return diff(
      wanted,
      this.state.desired,
      this.state.frozenDeployments(),
      new Set(),
      this.#sealing,
    );
  }

  /** How a key's secrets should be sealed now: to its device's current key, or the problem. */
  #sealing = (key: string, secrets: readonly SealedSecret[]): string => {
    const device = parseDesiredStateKey(key).device;
    return sealingOf(
      this.#sealer.expected(device, this.state.registry.get(device)?.sealingKey, secrets),
    )!;
  };

  /** What is put for `key`: the shared value, or, with secrets, a copy sealed to its device. */
  #valueFor(key: string, write: DesiredWrite): { value: string; write: DesiredWrite } {
    const secrets = write.state.secrets;
    if (secrets === undefined) return { value: write.value, write };
    const device = parseDesiredStateKey(key).device;
    const sealed = this.#sealer.seal(device, this.state.registry.get(device)?.sealingKey, secrets);
    return {
      value: canonicalJson({ ...write.state, secrets: sealed }),
      write: { ...write, sealing: sealingOf(sealed)! },
    };
  }

  /** Runs one pass: plan, then write puts and deletes with bounded concurrency. */
  async pass(): Promise<PassResult> {
    this.#passes++;
    // A standby keeps its picture current and writes nothing.
    if (!this.#isActive()) return { put: 0, deleted: 0, failed: 0 };
    if (this.rollouts !== undefined) {
      this.#rolloutWakeAt = await this.rollouts.advance(this.state, Date.now(), this.#isActive);
      if (!this.#isActive()) return { put: 0, deleted: 0, failed: 0 };
    }
    const planned = this.plan();
    if (planned.put.size === 0 && planned.delete.length === 0) {
      return { put: 0, deleted: 0, failed: 0 };
    }
    const started = performance.now();
    const kv = this.#buckets.desired;
    // Each secret version is opened once for the whole pass, however many devices get it.
    const putFailures = await this.#sealer.batch(() =>
      forEachBounded(
        planned.put,
        this.#writeConcurrency,
        async ([key, shared]) => {
          const { value, write } = this.#valueFor(key, shared);
          const revision = await kv.put(key, value);
          this.state.recordPut(key, write, revision);
        },
      )
    );
    const deleteFailures = await forEachBounded(
      planned.delete,
      this.#writeConcurrency,
      async (key) => {
        await kv.delete(key);
        this.state.recordDelete(key);
      },
    );
    const failed = putFailures.length + deleteFailures.length;
    for (const { item, error } of [...putFailures, ...deleteFailures].slice(0, 5)) {
      const key = typeof item === "string" ? item : item[0];
      log.warn("Cannot write desired state {key}: {error}", {
        key,
        error: (error as Error).message,
      });
    }
    log.info(
      "Reconciled desired state: {put} written, {deleted} deleted, {failed} failed in {ms} ms",
      {
        put: planned.put.size - putFailures.length,
        deleted: planned.delete.length - deleteFailures.length,
        failed,
        ms: Math.round(performance.now() - started),
      },
    );
    return {
      put: planned.put.size - putFailures.length,
      deleted: planned.delete.length - deleteFailures.length,
      failed,
    };
  }

  /** Stops the loop and the watches. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#statusPass);
    this.#statusIntake.stop();
    this.#wake?.();
    await this.#loop;
    await Promise.all(this.#mirrors.map((m) => m.stop()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
