/**
 * The I/O side of staged rollouts inside `operator serve`: follows the
 * `rollouts` and `deployment-history` buckets, records every manifest
 * revision in the history, runs {@linkcode nextRolloutStep} for each
 * deployment and stores the result (compare-and-set), and gives the
 * reconciler the keys it may write ({@linkcode fleetWanted}). Only the
 * active operator (the lease holder) calls {@linkcode RolloutDriver.advance}.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type DeploymentManifest, desiredStateKey } from "@drover/contracts";
import { deviceInDeployment } from "../fleet/aggregate.ts";
import { knownDevices } from "../desired/targeting.ts";
import { desiredContent, desiredStateOf } from "../desired/fanout.ts";
import type { FleetState } from "../fleet/state.ts";
import { historyEntry, recordRevision } from "./history.ts";
import { BucketMirror } from "../nats/kv.ts";
import { type DeviceProgress, type FleetWanted, fleetWanted, nextRolloutStep } from "./plan.ts";
import { RolloutBook, type RolloutBuckets, saveRolloutState } from "./store.ts";
import { isWriteConflict } from "../nats/kv.ts";

const log = getLogger(["drover", "operator", "rollout"]);

/** Drives every deployment's rollout from the buckets. */
export class RolloutDriver {
  /** Decoded rollout states and history. */
  readonly book: RolloutBook = new RolloutBook();
  #buckets: RolloutBuckets;
  #watchesStatuses = false;

  constructor(buckets: RolloutBuckets) {
    this.#buckets = buckets;
  }

  /** Mirrors of the two buckets; `onChange` is called when something new arrives. */
  mirrors(onChange: () => void): BucketMirror[] {
    return [
      new BucketMirror(this.#buckets.rollouts, (e) => {
        if (this.book.applyRollout(e)) onChange();
      }),
      new BucketMirror(this.#buckets.history, (e) => {
        if (this.book.applyHistory(e)) onChange();
      }),
    ];
  }

  /** True while a rollout waits on devices: their statuses then decide its next step. */
  get watchesStatuses(): boolean {
    return this.#watchesStatuses;
  }

  /**
   * One round: records new revisions in the history and moves every rollout
   * one step. Returns when it next needs a look (a batch timeout), if ever.
   * Stops early when `isActive` turns false.
   */
  async advance(
    state: FleetState,
    now: number,
    isActive: () => boolean,
  ): Promise<number | undefined> {
    let wakeAt: number | undefined;
    let watching = false;
    const devices = knownDevices(state.registry);
    for (const [name, record] of state.manifests) {
      const manifest = record.manifest;
      if (manifest === undefined) continue;
      if (!isActive()) return undefined;
      if (!this.book.history.get(name)?.has(record.revision)) {
        const previous = this.book.previousEntry(name, record.revision);
        const entry = historyEntry(manifest, record.revision, previous?.manifest, new Date(now));
        // Already there (apply wrote it): the mirror brings that one.
        if (await recordRevision(this.#buckets.history, entry)) this.book.recordHistory(entry);
      }
      const stored = this.book.rollouts.get(name);
      const current = stored?.state;
      // The common case, every pass: this revision's rollout is over or waits for a person.
      if (current?.revision === record.revision && current.state !== "progressing") continue;
      const progress = current?.revision === record.revision
        ? progressOf(state, manifest, record.revision, current.batch_devices, now)
        : new Map<string, DeviceProgress>();
      const step = nextRolloutStep({
        manifest,
        revision: record.revision,
        current,
        previousRevision: this.book.previousEntry(name, record.revision)?.revision,
        devices,
        progress,
        canRestore: (r) => this.book.manifestAt(name, r) !== undefined,
        now,
      });
      if (step.kind === "wait") {
        watching = true;
        if (step.wakeAt !== undefined) wakeAt = Math.min(wakeAt ?? Infinity, step.wakeAt);
        continue;
      }
      if (!isActive()) return undefined;
      try {
        const kvRevision = await saveRolloutState(
          this.#buckets.rollouts,
          step.state,
          stored?.kvRevision,
        );
        this.book.recordRollout(step.state, kvRevision);
      } catch (e) {
        // `rollout pause|resume` (or another operator) wrote first: its value arrives on the watch.
        if (isWriteConflict(e)) continue;
        throw e;
      }
      log.info("Rollout of {deployment} revision {revision}: {event}", {
        deployment: name,
        revision: record.revision,
        event: step.event,
      });
      if (step.state.state === "progressing") {
        watching = true;
        // Its next step may be due at once (an empty batch, devices already ready).
        wakeAt = now;
      }
    }
    this.#watchesStatuses = watching;
    return wakeAt;
  }

  /** The desired-state keys to write and to hold, from the manifests and the rollout states. */
  wanted(state: FleetState): FleetWanted {
    return fleetWanted({
      manifests: state.validManifests(),
      revisions: state.manifestRevisions(),
      devices: knownDevices(state.registry),
      rollouts: this.book.states(),
      manifestAt: (name, revision) => this.book.manifestAt(name, revision),
      storedKeys: state.desired.keys(),
    });
  }
}

/** How each of `batch` is doing with `revision` of `manifest`, judged as `status` does. */
export function progressOf(
  state: FleetState,
  manifest: DeploymentManifest,
  revision: number,
  batch: readonly string[],
  now: number,
): Map<string, DeviceProgress> {
  const wantedCanonical = desiredContent(desiredStateOf(manifest));
  const out = new Map<string, DeviceProgress>();
  for (const device of batch) {
    const view = deviceInDeployment(
      manifest.name,
      device,
      state.desired.get(desiredStateKey(device, manifest.name)),
      wantedCanonical,
      state.statuses.get(device),
      now,
      revision,
    );
    out.set(device, { phase: view.phase, message: view.message });
  }
  return out;
}
