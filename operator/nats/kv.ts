/**
 * NATS KV adapter: opening (or creating) Drover's four buckets, following a
 * bucket with a watch that survives reconnects, and reading a snapshot.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import { getLogger } from "@logtape/logtape";
import { abortableSleep, Backoff, backoffDelay, type BackoffOptions } from "@drover/common";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
} from "@drover/contracts";

const log = getLogger(["drover", "operator", "kv"]);

/** Default number of historic values kept per key. */
export const DEFAULT_HISTORY = 5;
/** Default number of JetStream replicas of each bucket. */
export const DEFAULT_REPLICAS = 1;

/** The buckets the operator reads and writes. */
export interface Buckets {
  desired: KV;
  status: KV;
  deployments: KV;
  /** The device registry: labels that decide targeting, written only by the operator. */
  devices: KV;
}

/** How buckets are created when they are missing. */
export interface BucketSettings {
  history: number;
  replicas: number;
}

/** Thrown when a bucket is needed but does not exist and may not be created. */
export class BucketMissingError extends Error {
  override name = "BucketMissingError";
  /** The missing bucket. */
  readonly bucket: string;
  constructor(bucket: string, options?: ErrorOptions) {
    super(
      `Cannot open bucket "${bucket}": it does not exist yet (run "serve" or "apply" once)`,
      options,
    );
    this.bucket = bucket;
  }
}

function isStreamNotFound(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound;
}

/**
 * Opens one bucket. With `create`, a missing bucket is created with those
 * settings; an existing bucket is used as is (its settings are not changed).
 * Without `create` a missing bucket yields `undefined`.
 */
export async function openBucket(
  nc: NatsConnection,
  name: string,
  create?: BucketSettings,
): Promise<KV | undefined> {
  const kvm = new Kvm(nc);
  const kv = await kvm.open(name);
  try {
    await kv.status();
    return kv;
  } catch (e) {
    if (!isStreamNotFound(e)) throw e;
  }
  if (create === undefined) return undefined;
  log.info("Creating bucket {bucket} (history {history}, replicas {replicas})", {
    bucket: name,
    ...create,
  });
  return await kvm.create(name, { history: create.history, replicas: create.replicas });
}

/** JetStream's "temporarily unavailable" while a cluster elects a leader. */
const CLUSTER_NOT_AVAILABLE = 10008;

/**
 * True for failures a NATS cluster produces while it recovers from a lost
 * node: a request that timed out (it went to the node that died, or no
 * leader answered yet), nobody answering during a leader election, or
 * JetStream saying it is temporarily unavailable. Walks the `cause` chain.
 */
export function isTransientNatsError(e: unknown): boolean {
  for (let cause = e, depth = 0; cause !== undefined && depth < 5; depth++) {
    if (cause instanceof TimeoutError || cause instanceof NoRespondersError) return true;
    if (cause instanceof RequestError && cause.isNoResponders()) return true;
    if (cause instanceof JetStreamApiError && cause.code === CLUSTER_NOT_AVAILABLE) return true;
    cause = (cause as { cause?: unknown })?.cause;
  }
  return false;
}

/** How long {@linkcode retryWhileRecovering} keeps trying: an election on a loaded machine took over 30 s. */
export const DEFAULT_RECOVERY_MS = 60_000;
/** Waits between its attempts: 250 ms doubling up to 2 s. */
const RECOVERY_BACKOFF: Readonly<BackoffOptions> = { baseMs: 250, capMs: 2_000, jitter: 0 };

/**
 * Runs an idempotent NATS operation, repeating it while the failure is one a
 * cluster produces when it loses a node ({@linkcode isTransientNatsError}):
 * the client reconnects to another node meanwhile and a new leader is
 * elected within seconds. Other errors, and the last transient one after
 * `deadlineMs`, are thrown.
 */
export async function retryWhileRecovering<T>(
  op: () => Promise<T>,
  deadlineMs = DEFAULT_RECOVERY_MS,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0;; attempt++) {
    try {
      return await op();
    } catch (e) {
      if (!isTransientNatsError(e) || Date.now() >= deadline) throw e;
      log.debug("NATS operation failed while the cluster recovers, retrying: {error}", {
        error: (e as Error).message,
      });
      await abortableSleep(backoffDelay(attempt, RECOVERY_BACKOFF));
    }
  }
}

/**
 * Makes the stream behind `bucket` refuse `Nats-Rollup` headers. A rollup on
 * a put to one's own key purges every other key of the stream, and devices
 * put into `agent-status` (docs/security.md). KV creates buckets with rollups
 * allowed, so this runs on every start and also fixes older buckets.
 */
export async function denyRollups(nc: NatsConnection, bucket: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const stream = `KV_${bucket}`;
  const { config } = await jsm.streams.info(stream);
  if (!config.allow_rollup_hdrs) return;
  log.info("Bucket {bucket}: refusing rollup headers from now on", { bucket });
  await jsm.streams.update(stream, { ...config, allow_rollup_hdrs: false });
}

/**
 * Settings for buckets a command has to create before `operator serve` did:
 * the replicas of a Drover bucket that exists (a cluster's
 * `serve --replicas 3`), else the defaults. A CLI run must not leave a
 * one-replica bucket in a cluster: losing the one node that holds it would
 * stop every command that touches it until that node returns.
 */
export async function inheritedSettings(nc: NatsConnection): Promise<BucketSettings> {
  const jsm = await retryWhileRecovering(() => jetstreamManager(nc));
  for (const bucket of [BUCKET_DESIRED_STATE, BUCKET_DEPLOYMENTS]) {
    try {
      const info = await retryWhileRecovering(() => jsm.streams.info(`KV_${bucket}`));
      return { history: DEFAULT_HISTORY, replicas: info.config.num_replicas };
    } catch (e) {
      if (!isStreamNotFound(e)) throw e;
    }
  }
  return { history: DEFAULT_HISTORY, replicas: DEFAULT_REPLICAS };
}

/**
 * Opens every bucket, creating the missing ones with `given` settings, or
 * (a CLI command) with {@linkcode inheritedSettings}.
 */
export async function ensureBuckets(
  nc: NatsConnection,
  given?: BucketSettings,
): Promise<Buckets> {
  const settings = given ?? await inheritedSettings(nc);
  // Desired state keeps only a short history: agents act on the latest value.
  const [desired, status, deployments, devices] = await Promise.all([
    retryWhileRecovering(() => openBucket(nc, BUCKET_DESIRED_STATE, settings)),
    retryWhileRecovering(() => openBucket(nc, BUCKET_AGENT_STATUS, { ...settings, history: 1 })),
    retryWhileRecovering(() => openBucket(nc, BUCKET_DEPLOYMENTS, settings)),
    retryWhileRecovering(() => openBucket(nc, BUCKET_DEVICES, settings)),
  ]);
  await retryWhileRecovering(() => denyRollups(nc, BUCKET_AGENT_STATUS));
  return { desired: desired!, status: status!, deployments: deployments!, devices: devices! };
}

/** One change seen by a {@linkcode BucketMirror}. */
export interface MirrorEntry {
  key: string;
  revision: number;
  operation: "PUT" | "DEL" | "PURGE";
  value: Uint8Array;
  /** Server time the value was stored. */
  created: Date;
}

function toMirrorEntry(e: KvEntry): MirrorEntry {
  return {
    key: e.key,
    revision: e.revision,
    operation: e.operation,
    value: e.value,
    created: e.created,
  };
}

/** Waits before re-creating a failed watch: 250 ms doubling up to 5 s. */
const REWATCH_BACKOFF: Readonly<BackoffOptions> = { baseMs: 250, capMs: 5_000, jitter: 0 };

/**
 * How often a mirror compares its position with the stream's. A watch's
 * consumer lives on one server; when that server dies in a cluster the watch
 * only notices after its heartbeats are missed (more than a minute), while
 * the stream, replicated, goes on. A watch that stays behind the stream for
 * two checks in a row is re-created from its last revision.
 */
export const DEFAULT_LIVENESS_CHECK_MS = 2_000;

/**
 * Follows a bucket: delivers the latest value of every key (including delete
 * markers), then every change, in revision order, to `onEntry`. When the
 * watch ends (consumer lost after a long disconnection) it is re-created from
 * the last revision seen, so nothing is missed.
 */
export class BucketMirror implements AsyncDisposable {
  /** Resolves once the initial snapshot has been delivered. */
  readonly ready: Promise<void>;
  #kv: KV;
  #onEntry: (entry: MirrorEntry) => void;
  #lastRevision = 0;
  #stopped = false;
  #stop = new AbortController();
  #markReady!: () => void;
  #iterator?: { stop(): void };
  #loop: Promise<void>;
  #liveness: ReturnType<typeof setInterval>;
  /** The mirror's position at the last liveness check that found it behind. */
  #behindAt: number | undefined;

  constructor(
    kv: KV,
    onEntry: (entry: MirrorEntry) => void,
    livenessCheckMs = DEFAULT_LIVENESS_CHECK_MS,
  ) {
    this.#kv = kv;
    this.#onEntry = onEntry;
    this.ready = new Promise((resolve) => (this.#markReady = resolve));
    this.#loop = this.#run();
    this.#liveness = setInterval(() => void this.#checkLiveness(), livenessCheckMs);
  }

  /** Re-creates the watch when it stayed behind the stream since the previous check. */
  async #checkLiveness(): Promise<void> {
    let lastSeq: number;
    try {
      lastSeq = (await this.#kv.status()).streamInfo.state.last_seq;
    } catch {
      return; // the server is away: the connection's own reconnect handles that
    }
    if (this.#stopped) return;
    if (lastSeq <= this.#lastRevision) {
      this.#behindAt = undefined;
    } else if (this.#behindAt === this.#lastRevision) {
      log.info(
        "Watch of bucket {bucket} stalled at revision {revision} (stream at {last}); re-watching",
        {
          bucket: bucketName(this.#kv),
          revision: this.#lastRevision,
          last: lastSeq,
        },
      );
      this.#behindAt = undefined;
      this.rewatch();
    } else {
      this.#behindAt = this.#lastRevision;
    }
  }

  /** Highest revision delivered so far. */
  get lastRevision(): number {
    return this.#lastRevision;
  }

  async #run(): Promise<void> {
    const backoff = new Backoff(REWATCH_BACKOFF);
    let isReady = false;
    const setReady = () => {
      if (!isReady) {
        isReady = true;
        this.#markReady();
      }
    };
    while (!this.#stopped) {
      try {
        let snapshotEnd = 0;
        if (!isReady) {
          const status = await this.#kv.status();
          snapshotEnd = status.streamInfo.state.last_seq;
          if (status.values === 0) setReady();
        }
        const iterator = await this.#kv.watch(
          this.#lastRevision > 0 ? { resumeFromRevision: this.#lastRevision + 1 } : {},
        );
        this.#iterator = iterator;
        if (this.#stopped) iterator.stop();
        backoff.reset();
        for await (const entry of iterator) {
          if (entry.revision > this.#lastRevision) {
            this.#lastRevision = entry.revision;
            this.#onEntry(toMirrorEntry(entry));
          }
          if (!isReady && (entry.delta === 0 || entry.revision >= snapshotEnd)) setReady();
        }
      } catch (e) {
        if (this.#stopped) break;
        log.warn("Watch of bucket {bucket} failed, retrying: {error}", {
          bucket: bucketName(this.#kv),
          error: (e as Error).message,
        });
      }
      if (this.#stopped) break;
      await abortableSleep(backoff.next(), this.#stop.signal);
    }
  }

  /**
   * Re-creates the watch from the last revision seen. Called after a
   * reconnect: a server-side consumer lost while disconnected would
   * otherwise only be noticed after a minute of missed heartbeats.
   */
  rewatch(): void {
    this.#iterator?.stop();
  }

  /** Stops following the bucket. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#liveness);
    this.#stop.abort();
    this.#iterator?.stop();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function bucketName(kv: KV): string {
  return (kv as unknown as { bucket?: string }).bucket ?? "?";
}

/** Reads the latest value of every live key (deleted keys are left out). */
export async function readBucket(kv: KV): Promise<Map<string, MirrorEntry>> {
  const out = new Map<string, MirrorEntry>();
  const mirror = new BucketMirror(kv, (entry) => {
    if (entry.operation === "PUT") out.set(entry.key, entry);
    else out.delete(entry.key);
  });
  await mirror.ready;
  await mirror.stop();
  return out;
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight; collects
 * failures instead of stopping at the first one.
 */
export async function forEachBounded<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<{ item: T; error: unknown }[]> {
  const failures: { item: T; error: unknown }[] = [];
  const iterator = items[Symbol.iterator]();
  const worker = async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) {
      try {
        await fn(next.value);
      } catch (error) {
        failures.push({ item: next.value, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  return failures;
}

/**
 * True when a compare-and-set write lost: someone else wrote the key since
 * the revision it expected (or created it first).
 */
export function isWriteConflict(e: unknown): boolean {
  for (let cause = e, depth = 0; cause !== undefined && depth < 5; depth++) {
    if (
      cause instanceof JetStreamApiError &&
      cause.code === JetStreamApiCodes.StreamWrongLastSequence
    ) return true;
    cause = (cause as { cause?: unknown })?.cause;
  }
  return false;
}
