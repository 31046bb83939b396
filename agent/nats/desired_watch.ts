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
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, type JsMsg } from "@nats-io/jetstream";
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
}

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
   * snapshot was delivered.
   */
  async #watchOnce(signal: AbortSignal): Promise<boolean> {
    const js = jetstream(this.#nc);
    const consumer = await js.consumers.getPushConsumer(STREAM, {
      filter_subjects: `${SUBJECT_PREFIX}${desiredStateFilter(this.#deviceId)}`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const info = await consumer.info(true);
    const messages = await consumer.consume({ abort_on_missing_resource: true });
    const stop = () => messages.stop();
    signal.addEventListener("abort", stop, { once: true });
    if (signal.aborted) messages.stop();
    let delivered = false;
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
    }
    return delivered;
  }
}
