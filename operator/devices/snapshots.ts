/**
 * The desired-state snapshot service: answers `drover.desired.snapshot.<device>`
 * with every desired-state key of that device and its revision, from an
 * in-memory index fed by one watch of the bucket. Agents ask after each
 * (re)connect and now and then as a safety net (agent/nats/desired_follow.ts);
 * devices cannot list keys themselves because they have no JetStream API
 * (docs/security.md). Each answer costs O(that device's keys), so a fleet's
 * reconnect storm costs the server one message per device, not a consumer.
 *
 * Several operators may run it at once: they share a queue group and one of
 * them answers each request.
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { getLogger } from "@logtape/logtape";
import {
  DESIRED_SNAPSHOT_PREFIX,
  DESIRED_SNAPSHOT_QUEUE,
  type DesiredSnapshotReply,
  isValidName,
  parseDesiredStateKey,
} from "@drover/contracts";
import { BucketMirror, type MirrorEntry } from "../nats/kv.ts";
import { DeviceGate, FloodReport } from "../fleet/device_gate.ts";

const log = getLogger(["drover", "operator", "snapshots"]);

/** Desired-state keys by device, with revisions. Pure. */
export class DesiredIndex {
  readonly #byDevice = new Map<string, Map<string, number>>();
  #asOf = 0;

  /** Highest bucket revision applied: every change up to it is reflected. */
  get asOfRevision(): number {
    return this.#asOf;
  }

  /** Applies one change, in revision order. Keys that name no device are skipped. */
  apply(entry: Pick<MirrorEntry, "key" | "revision" | "operation">): void {
    this.#asOf = Math.max(this.#asOf, entry.revision);
    let device: string;
    let deployment: string;
    try {
      ({ device, deployment } = parseDesiredStateKey(entry.key));
    } catch {
      return;
    }
    let keys = this.#byDevice.get(device);
    if (entry.operation === "PUT") {
      if (keys === undefined) this.#byDevice.set(device, keys = new Map());
      keys.set(deployment, entry.revision);
    } else if (keys !== undefined) {
      keys.delete(deployment);
      if (keys.size === 0) this.#byDevice.delete(device);
    }
  }

  /** The answer for `device`. */
  snapshot(device: string): DesiredSnapshotReply {
    return {
      device,
      as_of_revision: this.#asOf,
      deployments: Object.fromEntries(this.#byDevice.get(device) ?? []),
    };
  }
}

/** Follows the desired-state bucket and answers snapshot requests until stopped. */
export class DesiredSnapshotService implements AsyncDisposable {
  readonly #nc: NatsConnection;
  readonly #index = new DesiredIndex();
  readonly #mirror: BucketMirror;
  #ready = false;
  #subscription: Subscription | undefined;
  #answered = 0;
  readonly #gate: DeviceGate;

  /**
   * Starts watching `desired` at once; call {@linkcode start} to answer
   * requests. Refusals of devices over their rate go to `floods`.
   */
  constructor(nc: NatsConnection, desired: KV, floods: FloodReport = new FloodReport()) {
    this.#nc = nc;
    this.#mirror = new BucketMirror(desired, (entry) => this.#index.apply(entry));
    this.#gate = new DeviceGate("snapshot", floods);
  }

  /** Requests answered so far. */
  get answered(): number {
    return this.#answered;
  }

  /**
   * Subscribes, then resolves once the bucket has been read. Requests that
   * arrive before that are told to retry, never given an incomplete listing.
   */
  async start(): Promise<void> {
    this.#subscription = this.#nc.subscribe(`${DESIRED_SNAPSHOT_PREFIX}.*`, {
      queue: DESIRED_SNAPSHOT_QUEUE,
      callback: (error, msg) => {
        if (error === null) this.#answer(msg);
      },
    });
    await this.#mirror.ready;
    this.#ready = true;
  }

  /** Re-creates the bucket watch from where it was (after a reconnect). */
  rewatch(): void {
    this.#mirror.rewatch();
  }

  #answer(msg: Msg): void {
    if (msg.reply === undefined || msg.reply === "") return;
    const device = msg.subject.slice(DESIRED_SNAPSHOT_PREFIX.length + 1);
    // Answered synchronously: the ticket only counts the device's rate.
    const ticket = this.#gate.admit(device);
    if (!ticket.ok) return;
    ticket.release();
    let reply: DesiredSnapshotReply;
    if (!isValidName(device)) reply = { error: "invalid device id" };
    else if (!this.#ready) reply = { error: "the operator is still reading desired state" };
    else reply = this.#index.snapshot(device);
    try {
      msg.respond(new TextEncoder().encode(JSON.stringify(reply)));
      this.#answered++;
    } catch (e) {
      log.debug("Cannot answer snapshot request of {device}: {error}", {
        device,
        error: (e as Error).message,
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#subscription?.unsubscribe();
    await this.#mirror.stop();
  }
}
