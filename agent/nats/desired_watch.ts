/**
 * Watching this device's keys in the `desired-state` bucket.
 *
 * Every watch starts with the last value of each key (including delete
 * markers), then follows live changes. Once the initial values have all
 * arrived the agent holds an authoritative picture — anything it runs that is
 * not in it was deleted (perhaps while the agent was offline) — and hands it
 * over as one snapshot. "All arrived" is decided from the consumer's own
 * pending counts (the count at creation, then each message's `pending`), not
 * from the client's `isUpdate` flag, which is off by one and never fires for
 * an empty bucket.
 *
 * After a reconnect, or when the consumer or the bucket goes away, the watch
 * is rebuilt from scratch and a fresh authoritative snapshot is delivered,
 * so nothing that changed meanwhile is missed.
 *
 * The consumer is an ordered push consumer created with this device's key
 * filter, which is all a device's NATS permissions allow (see FIELD-NOTES).
 * A device holds exactly one: the consumers of a watch are named
 * `<prefix>_<serial>` with a prefix of our choosing, so every one this watch
 * may have left on the server (a finished watch, a create that timed out on
 * our side but happened on the server's, a reset by the client library) is
 * deleted by name instead of lingering for the server's five-minute
 * inactivity threshold — under load those leftovers once reached 14 090
 * consumers for 5 000 devices, and every consumer costs the server on every put.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  type ConsumerNotification,
  DeliverPolicy,
  jetstream,
  type JetStreamManager,
  jetstreamManager,
  type JsMsg,
  type PushConsumer,
} from "@nats-io/jetstream";
import {
  BUCKET_DESIRED_STATE,
  decodeJson,
  DesiredState,
  desiredStateFilter,
  parseDesiredStateKey,
} from "@drover/contracts";
import type { DesiredEntry } from "../reconcile/desired.ts";
import { abortableSleep } from "../abortable_sleep.ts";
import { CONNECT_BACKOFF } from "./connect.ts";
import { backoffDelay } from "../reconcile/backoff.ts";

/** Where decoded desired state goes (the reconciler and the cache). */
export interface DesiredSink {
  /** The complete, authoritative set of this device's deployments. */
  snapshot(entries: Map<string, DesiredEntry>): void;
  /** One deployment changed after the snapshot; `null` means deleted. */
  update(deployment: string, entry: DesiredEntry | null): void;
}

/** What the watch reports for logging. */
export interface DesiredWatchHooks {
  /** The watch could not be (re)started; it retries after `retryInMs`. */
  onWatchFailed?: (error: unknown, retryInMs: number) => void;
  /** A key under this device's prefix that is not `<device>.<deployment>`. */
  onBadKey?: (key: string, problem: string) => void;
  /** The watch ended on its own (consumer or bucket gone) and will be rebuilt. */
  onWatchEnded?: (reason: string) => void;
  /** A snapshot was delivered. */
  onSnapshot?: (count: number, lastRevision: number) => void;
  /**
   * The client library replaced the watch's consumer (missed heartbeats or a
   * gap in delivery); the predecessor is deleted.
   */
  onConsumerRecreated?: (name: string, reason: string) => void;
}

/**
 * JetStream API timeout for the watch's requests. Longer than the client's
 * 5 s default: a consumer create that times out on our side may still happen
 * on a busy server's, and every retry would add one more consumer.
 */
export const WATCH_API_TIMEOUT_MS = 20_000;

/** KV stores its values in the stream `KV_<bucket>` under subjects `$KV.<bucket>.<key>`. */
const STREAM = `KV_${BUCKET_DESIRED_STATE}`;
const SUBJECT_PREFIX = `$KV.${BUCKET_DESIRED_STATE}.`;
const OPERATION_HEADER = "KV-Operation";

/** One KV record as the watch sees it. */
export interface KvRecord {
  key: string;
  revision: number;
  operation: "PUT" | "DEL" | "PURGE";
  value: Uint8Array;
}

/** What one record means for the device. Pure. */
export type RecordMeaning =
  | { kind: "entry"; deployment: string; entry: DesiredEntry }
  | { kind: "deleted"; deployment: string }
  | { kind: "ignored"; reason: string };

/**
 * Decodes one record of this device's keys: a valid desired state, an
 * invalid one (with the reason — this fails that deployment only), or a
 * deletion. Keys that do not name one of this device's deployments are
 * ignored with a reason. Pure.
 */
export function interpretRecord(deviceId: string, record: KvRecord): RecordMeaning {
  let deployment: string;
  try {
    const key = parseDesiredStateKey(record.key);
    if (key.device !== deviceId) {
      return { kind: "ignored", reason: `key belongs to device ${JSON.stringify(key.device)}` };
    }
    deployment = key.deployment;
  } catch (e) {
    return { kind: "ignored", reason: (e as Error).message };
  }
  if (record.operation !== "PUT") return { kind: "deleted", deployment };
  const decoded = decodeJson(DesiredState, record.value);
  if (!decoded.ok) {
    return {
      kind: "entry",
      deployment,
      entry: { kind: "invalid", deployment, revision: record.revision, error: decoded.error },
    };
  }
  if (decoded.value.deployment !== deployment) {
    return {
      kind: "entry",
      deployment,
      entry: {
        kind: "invalid",
        deployment,
        revision: record.revision,
        error: `deployment: value names ${JSON.stringify(decoded.value.deployment)} but the key ${
          JSON.stringify(record.key)
        } is for ${JSON.stringify(deployment)}`,
      },
    };
  }
  return {
    kind: "entry",
    deployment,
    entry: { kind: "valid", deployment, revision: record.revision, state: decoded.value },
  };
}

function recordFromMessage(m: JsMsg): KvRecord {
  const op = m.headers?.get(OPERATION_HEADER);
  return {
    key: m.subject.startsWith(SUBJECT_PREFIX) ? m.subject.slice(SUBJECT_PREFIX.length) : m.subject,
    revision: m.seq,
    operation: op === "DEL" || op === "PURGE" ? op : "PUT",
    value: m.data,
  };
}

/**
 * Names of the consumers one watch creates: the client library's ordered
 * consumer calls them `<prefix>_<serial>`, serial 1 first and one more on
 * every reset. Tracks which serials may still exist on the server so they
 * can be deleted. Pure.
 */
export class ConsumerNames {
  /** The prefix given to the client library. */
  readonly prefix: string;
  /** Serials up to this one were deleted (or asked to be). */
  #deletedThrough = 0;

  constructor(deviceId: string, unique: string) {
    this.prefix = `drover_${deviceId}_${unique}`;
  }

  /** The name of serial `n`. */
  name(serial: number): string {
    return `${this.prefix}_${serial}`;
  }

  /** The serial of one of this watch's names, or undefined for another name. */
  serialOf(name: string): number | undefined {
    if (!name.startsWith(`${this.prefix}_`)) return undefined;
    const n = Number(name.slice(this.prefix.length + 1));
    return Number.isInteger(n) && n > 0 ? n : undefined;
  }

  /**
   * Names to delete so that no serial before `keep` survives (pass
   * `Infinity`-like `current + 1` at the end of the watch). Each name is
   * handed out once.
   */
  takeBefore(keep: number): string[] {
    const out: string[] = [];
    for (let n = this.#deletedThrough + 1; n < keep; n++) out.push(this.name(n));
    this.#deletedThrough = Math.max(this.#deletedThrough, keep - 1);
    return out;
  }
}

/**
 * Gathers the initial values of a watch and says when they are complete.
 * Pure state machine, fed one record at a time.
 */
export class InitialSnapshot {
  readonly #deviceId: string;
  readonly #entries = new Map<string, DesiredEntry>();
  #complete: boolean;
  #lastRevision = 0;

  /** @param pendingAtStart messages the consumer had pending when it was created */
  constructor(deviceId: string, pendingAtStart: number) {
    this.#deviceId = deviceId;
    this.#complete = pendingAtStart === 0;
  }

  /** True once every initial value has been seen. */
  get complete(): boolean {
    return this.#complete;
  }

  /** The gathered entries (meaningful once complete). */
  get entries(): Map<string, DesiredEntry> {
    return this.#entries;
  }

  /** Highest revision seen. */
  get lastRevision(): number {
    return this.#lastRevision;
  }

  /**
   * Adds a record delivered before completion; `pendingAfter` is how many
   * messages the server still had queued for this consumer after it.
   */
  add(record: KvRecord, pendingAfter: number, onIgnored?: (key: string, why: string) => void) {
    this.#lastRevision = Math.max(this.#lastRevision, record.revision);
    const meaning = interpretRecord(this.#deviceId, record);
    if (meaning.kind === "entry") this.#entries.set(meaning.deployment, meaning.entry);
    else if (meaning.kind === "deleted") this.#entries.delete(meaning.deployment);
    else onIgnored?.(record.key, meaning.reason);
    if (pendingAfter === 0) this.#complete = true;
  }
}

/**
 * Watches this device's desired state until `signal` aborts, rebuilding the
 * watch (with a new authoritative snapshot) whenever it breaks or
 * {@linkcode DesiredWatcher.restart} is called. Never throws.
 */
export class DesiredWatcher {
  readonly #nc: NatsConnection;
  readonly #deviceId: string;
  readonly #sink: DesiredSink;
  readonly #hooks: DesiredWatchHooks;
  #current: AbortController | undefined;
  #snapshots = 0;

  constructor(
    nc: NatsConnection,
    deviceId: string,
    sink: DesiredSink,
    hooks: DesiredWatchHooks = {},
  ) {
    this.#nc = nc;
    this.#deviceId = deviceId;
    this.#sink = sink;
    this.#hooks = hooks;
  }

  /** Number of authoritative snapshots delivered so far. */
  get snapshots(): number {
    return this.#snapshots;
  }

  /** Drops the current watch and starts over (after a reconnect). */
  restart(): void {
    this.#current?.abort(new Error("restart requested"));
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const session = new AbortController();
      this.#current = session;
      const stop = () => session.abort(signal.reason);
      signal.addEventListener("abort", stop, { once: true });
      try {
        const delivered = await this.#watchOnce(session.signal);
        if (delivered) failures = 0;
        if (!signal.aborted && !session.signal.aborted) {
          this.#hooks.onWatchEnded?.("the watch consumer stopped");
        }
      } catch (e) {
        if (signal.aborted) break;
        if (!session.signal.aborted) {
          const delay = backoffDelay(failures++, CONNECT_BACKOFF);
          this.#hooks.onWatchFailed?.(e, delay);
          await abortableSleep(delay, signal);
        }
      } finally {
        signal.removeEventListener("abort", stop);
      }
    }
  }

  /**
   * One watch: create the consumer, deliver the snapshot, follow updates
   * until the session aborts or the consumer ends. Resolves true if a
   * snapshot was delivered. Every consumer it created is deleted on the way out.
   */
  async #watchOnce(signal: AbortSignal): Promise<boolean> {
    const js = jetstream(this.#nc, { timeout: WATCH_API_TIMEOUT_MS });
    // checkAPI would ask for account info, which a device may not do.
    const jsm = await jetstreamManager(this.#nc, {
      checkAPI: false,
      timeout: WATCH_API_TIMEOUT_MS,
    });
    const names = new ConsumerNames(this.#deviceId, randomToken());
    // Highest serial the library may have asked the server for.
    let latestSerial = 1;
    let delivered = false;
    let consumer: PushConsumer | undefined;
    try {
      consumer = await js.consumers.getPushConsumer(STREAM, {
        name_prefix: names.prefix,
        filter_subjects: `${SUBJECT_PREFIX}${desiredStateFilter(this.#deviceId)}`,
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
      const info = await consumer.info(true);
      const messages = await consumer.consume({ abort_on_missing_resource: true });
      const stop = () => messages.stop();
      signal.addEventListener("abort", stop, { once: true });
      if (signal.aborted) messages.stop();
      const notifications = messages.status();
      void this.#followResets(notifications, names, jsm, (serial) => {
        latestSerial = Math.max(latestSerial, serial);
      });
      try {
        const initial = new InitialSnapshot(this.#deviceId, info.num_pending);
        const deliverSnapshot = () => {
          this.#snapshots++;
          delivered = true;
          this.#sink.snapshot(new Map(initial.entries));
          this.#hooks.onSnapshot?.(initial.entries.size, initial.lastRevision);
        };
        if (initial.complete) deliverSnapshot();
        for await (const m of messages) {
          if (signal.aborted) break;
          const record = recordFromMessage(m);
          if (!initial.complete) {
            initial.add(record, m.info.pending, this.#hooks.onBadKey);
            if (initial.complete) deliverSnapshot();
            continue;
          }
          const meaning = interpretRecord(this.#deviceId, record);
          if (meaning.kind === "entry") this.#sink.update(meaning.deployment, meaning.entry);
          else if (meaning.kind === "deleted") this.#sink.update(meaning.deployment, null);
          else this.#hooks.onBadKey?.(record.key, meaning.reason);
        }
      } finally {
        signal.removeEventListener("abort", stop);
        messages.stop();
        // The library ends its notifications only once the messages are
        // drained, which a broken-off loop never does: end them here.
        (notifications as { stop?: () => void }).stop?.();
      }
    } finally {
      latestSerial = Math.max(latestSerial, currentSerial(consumer, names) ?? 0);
      // Also after a failed create: it may have happened on the server anyway.
      // Bounded: while disconnected a request would wait for its full timeout,
      // and shutting down must stay quick (the server expires it meanwhile).
      await withinMs(
        deleteConsumers(jsm, names.takeBefore(latestSerial + 1)),
        DELETE_WAIT_MS,
      );
    }
    return delivered;
  }

  /**
   * Follows the library's notifications until the messages stop: on every
   * consumer reset, deletes the serials before the new one that may still
   * exist (the library deletes only its last successful predecessor, not
   * attempts whose create timed out) and reports the reset.
   */
  async #followResets(
    notifications: AsyncIterable<ConsumerNotification>,
    names: ConsumerNames,
    jsm: JetStreamManager,
    onSerial: (serial: number) => void,
  ): Promise<void> {
    let reason = GAP_REASON;
    for await (const n of notifications) {
      if (n.type === "heartbeats_missed") reason = `${n.count} heartbeats missed`;
      else if (n.type === "ordered_consumer_recreated") {
        const serial = names.serialOf(n.name);
        if (serial === undefined) continue;
        onSerial(serial);
        this.#hooks.onConsumerRecreated?.(n.name, reason);
        reason = GAP_REASON;
        void deleteConsumers(jsm, names.takeBefore(serial));
      }
    }
  }
}

/** Why the library recreates a consumer when no heartbeats were missed. */
const GAP_REASON = "a gap in delivery or a failed create";
/** How long the end of a watch waits for its consumers' deletion. */
const DELETE_WAIT_MS = 2_000;

/** Waits for `p`, but at most `ms`. */
async function withinMs(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/**
 * The serial the library is on: it names a reset's consumer before asking
 * the server for it, so this also covers a create still in flight. The name
 * is a field of the library's push consumer that its type does not declare.
 */
function currentSerial(consumer: PushConsumer | undefined, names: ConsumerNames) {
  const name = (consumer as { name?: unknown } | undefined)?.name;
  return typeof name === "string" ? names.serialOf(name) : undefined;
}

/** Deletes consumers by name, best effort: a missing one or a lost connection is fine. */
async function deleteConsumers(jsm: JetStreamManager, names: string[]): Promise<void> {
  await Promise.all(names.map((name) => jsm.consumers.delete(STREAM, name).catch(() => false)));
}

/** A short random token that makes a watch's consumer names unique. */
function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
