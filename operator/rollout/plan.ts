/**
 * Staged rollouts, decided. Pure: no I/O, no clock (the caller passes `now`).
 *
 * `nextRolloutStep` looks at one deployment's stored rollout state and how
 * the devices of its current batch are doing, and says what the state should
 * become (start, next batch, complete, roll back, pause) or that it waits.
 * `fleetWanted` turns the states into the desired-state keys the fan-out
 * writes: devices given the new revision get it, every other device keeps
 * whatever it has (its key is held: neither rewritten nor deleted).
 *
 * Batch order: devices the deployment targets, sorted by device id; a
 * batch's own selector first narrows them to the devices it also matches.
 * A batch's percentage is of every targeted device, rounded up (at least 1).
 * Whatever no batch took forms an implicit last batch.
 *
 * @module
 */

import {
  type DeploymentManifest,
  type DesiredState,
  desiredStateKey,
  labelsMatch,
  parseComposeDuration,
  parseDesiredStateKey,
  percentOf,
  type Rollout,
  type Selector,
} from "@drover/contracts";
import { desiredStateOf, targets } from "../desired/fanout.ts";
import { type KnownDevice, targetedDevices } from "../desired/targeting.ts";
import type { RolloutFailure, RolloutState } from "./state.ts";

/** How one device is doing with the revision being rolled out. */
export interface DeviceProgress {
  phase: "ready" | "failed" | "pending";
  message: string;
}

/** True when `device` matches `selector` (listed, or all its labels match). */
export function selectorMatches(selector: Selector, device: KnownDevice): boolean {
  if (selector.devices?.includes(device.id)) return true;
  return selector.labels !== undefined && labelsMatch(selector.labels, device.labels);
}

/**
 * The batches of a rollout over `targeted` devices: device ids per batch, in
 * order, the implicit last batch included when devices are left. A batch
 * whose selector matches no remaining device is empty.
 */
export function planBatches(rollout: Rollout, targeted: readonly KnownDevice[]): string[][] {
  const total = targeted.length;
  let remaining = [...targeted].sort((a, b) => compare(a.id, b.id));
  const out: string[][] = [];
  for (const batch of rollout.batches) {
    const limit = typeof batch.limit === "number"
      ? batch.limit
      : Math.max(1, Math.ceil(percentOf(batch.limit) * total / 100));
    const candidates = batch.selector === undefined
      ? remaining
      : remaining.filter((d) => selectorMatches(batch.selector!, d));
    const taken = new Set(candidates.slice(0, limit).map((d) => d.id));
    out.push([...taken]);
    remaining = remaining.filter((d) => !taken.has(d.id));
  }
  if (remaining.length > 0) out.push(remaining.map((d) => d.id));
  return out;
}

/** What {@linkcode nextRolloutStep} looks at. */
export interface RolloutInput {
  manifest: DeploymentManifest;
  /** The manifest's revision in `deployments`. */
  revision: number;
  /** The stored rollout state of this deployment, if any (possibly of an earlier revision). */
  current: RolloutState | undefined;
  /** The latest earlier revision in the history: the stable one when no state says otherwise. */
  previousRevision: number | undefined;
  /** Every registered device with its registry labels. */
  devices: readonly KnownDevice[];
  /** How the current batch's devices are doing with `revision` (others may be absent). */
  progress: ReadonlyMap<string, DeviceProgress>;
  /** Whether the history holds `revision`'s manifest (a rollback needs it). */
  canRestore: (revision: number) => boolean;
  /** ms since the epoch. */
  now: number;
}

/** What to do next. */
export type RolloutStep =
  | { kind: "wait"; wakeAt?: number }
  | { kind: "save"; state: RolloutState; event: string };

/** Decides the next step of one deployment's rollout. */
export function nextRolloutStep(input: RolloutInput): RolloutStep {
  const { current, revision } = input;
  if (current === undefined || current.revision !== revision) {
    return { kind: "save", ...startRollout(input) };
  }
  if (current.state !== "progressing") return { kind: "wait" };
  const rollout = input.manifest.rollout;
  if (rollout === undefined) return { kind: "wait" }; // cannot happen: plain ones start complete
  return progressStep(input, current, rollout);
}

function startRollout(input: RolloutInput): { state: RolloutState; event: string } {
  const { current, manifest, revision, now } = input;
  const stable = current === undefined || current.revision > revision
    ? input.previousRevision ?? null
    : current.state === "complete"
    ? current.revision
    : current.stable_revision;
  const time = iso(now);
  const base: RolloutState = {
    deployment: manifest.name,
    revision,
    stable_revision: stable,
    state: "progressing",
    batch: 0,
    batches: 1,
    batch_devices: [],
    batch_started_at: time,
    batch_ready_at: null,
    updated: [],
    failures: [],
    message: "",
    paused_by: null,
    started_at: time,
    updated_at: time,
  };
  if (manifest.rollout === undefined) {
    return {
      state: { ...base, state: "complete", message: "every device at once (no rollout section)" },
      event: "applied at once",
    };
  }
  const batches = planBatches(manifest.rollout, targetedOf(manifest, input.devices));
  return enterBatch(base, 0, batches, now, "started");
}

/**
 * Moves to batch `from` or the first later one that has devices not updated
 * yet (devices that joined an earlier batch's share since count there), or
 * completes the rollout when none has.
 */
function enterBatch(
  state: RolloutState,
  from: number,
  batches: string[][],
  now: number,
  event: string,
): { state: RolloutState; event: string } {
  const updated = new Set(state.updated);
  const due = new Set<string>();
  for (const [k, batch] of batches.entries()) {
    for (const id of batch) if (!updated.has(id)) due.add(id);
    if (k < from || due.size === 0) continue;
    const batchDevices = [...due].sort(compare);
    return {
      state: {
        ...state,
        state: "progressing",
        batch: k,
        batches: batches.length,
        batch_devices: batchDevices,
        batch_started_at: iso(now),
        batch_ready_at: null,
        updated: [...new Set([...state.updated, ...batchDevices])].sort(compare),
        failures: [],
        message: `batch ${k + 1} of ${batches.length}: ${batchDevices.length} device(s)`,
        paused_by: null,
        updated_at: iso(now),
      },
      event: `${event}: batch ${k + 1} of ${batches.length} (${batchDevices.join(", ")})`,
    };
  }
  return {
    state: {
      ...state,
      state: "complete",
      batches: batches.length,
      batch: Math.max(0, batches.length - 1),
      batch_devices: [],
      batch_ready_at: null,
      failures: [],
      message: `all ${state.updated.length} device(s) updated`,
      paused_by: null,
      updated_at: iso(now),
    },
    event: "complete",
  };
}

function progressStep(input: RolloutInput, state: RolloutState, rollout: Rollout): RolloutStep {
  const { now } = input;
  const targeted = targetedOf(input.manifest, input.devices);
  const targetedIds = new Set(targeted.map((d) => d.id));
  const members = state.batch_devices.filter((d) => targetedIds.has(d));
  const progress = members.map((device) => ({
    device,
    ...(input.progress.get(device) ??
      { phase: "pending" as const, message: "no report about this revision yet" }),
  }));
  const ready = progress.filter((p) => p.phase === "ready").length;
  const failed = progress.filter((p) => p.phase === "failed").length;
  const needed = Math.ceil(percentOf(rollout.success_threshold) * members.length / 100);
  const timeoutMs = parseComposeDuration(rollout.batch_timeout) ?? 0;
  const minReadyMs = rollout.min_ready === undefined
    ? 0
    : parseComposeDuration(rollout.min_ready) ?? 0;
  const deadline = Date.parse(state.batch_started_at) + timeoutMs;
  const counts = `${ready}/${members.length} ready, ${needed} needed`;

  if (ready >= needed) {
    if (minReadyMs > 0) {
      if (state.batch_ready_at === null) {
        return {
          kind: "save",
          state: { ...state, batch_ready_at: iso(now), updated_at: iso(now) },
          event: `batch ${state.batch + 1} ready (${counts}); waiting ${rollout.min_ready}`,
        };
      }
      const settled = Date.parse(state.batch_ready_at) + minReadyMs;
      if (now < settled) return { kind: "wait", wakeAt: settled };
    }
    const batches = planBatches(rollout, targeted);
    return { kind: "save", ...enterBatch(state, state.batch + 1, batches, now, "next") };
  }
  // Below the threshold: a batch that had met it starts its settling time again.
  if (state.batch_ready_at !== null) {
    return {
      kind: "save",
      state: { ...state, batch_ready_at: null, updated_at: iso(now) },
      event: `batch ${state.batch + 1} no longer ready (${counts})`,
    };
  }
  const hopeless = members.length - failed < needed;
  if (!hopeless && now < deadline) return { kind: "wait", wakeAt: deadline };

  const failures: RolloutFailure[] = progress
    .filter((p) => hopeless ? p.phase === "failed" : p.phase !== "ready")
    .map((p) => ({
      device: p.device,
      phase: p.phase === "failed" ? "failed" : "pending",
      message: p.message,
    }));
  const why = `batch ${state.batch + 1} of ${state.batches} missed its threshold ` +
    `(${counts}${hopeless ? "" : `, not within ${rollout.batch_timeout}`})`;
  const stopped = { ...state, failures, batch_ready_at: null, updated_at: iso(now) };
  if (rollout.on_failure === "pause") {
    return {
      kind: "save",
      state: { ...stopped, state: "paused", paused_by: "failure", message: `${why}; paused` },
      event: `paused: ${why}`,
    };
  }
  const stable = state.stable_revision;
  if (stable !== null && !input.canRestore(stable)) {
    const message = `${why}; cannot roll back: revision ${stable} is not in the history`;
    return { kind: "save", state: { ...stopped, state: "failed", message }, event: message };
  }
  const back = stable === null
    ? "removed from the updated devices (there is no earlier revision)"
    : `rolled back to revision ${stable}`;
  return {
    kind: "save",
    state: { ...stopped, state: "rolled_back", message: `${why}; ${back}` },
    event: `${why}; ${back}`,
  };
}

/** A deployment's stable revision, as far as the history holds it. */
export interface StableManifest {
  manifest: DeploymentManifest;
  revision: number;
}

/** What {@linkcode fleetWanted} looks at. */
export interface FleetWantedInput {
  manifests: readonly DeploymentManifest[];
  /** Deployment name → its manifest's revision in `deployments`. */
  revisions: ReadonlyMap<string, number>;
  devices: readonly KnownDevice[];
  /** Deployment name → its stored rollout state. */
  rollouts: ReadonlyMap<string, RolloutState>;
  /** The stored manifest of `revision`, if the history holds it. */
  manifestAt: (deployment: string, revision: number) => DeploymentManifest | undefined;
  /** Every desired-state key stored now. */
  storedKeys: Iterable<string>;
}

/** Desired-state keys to write, and keys to leave exactly as they are. */
export interface FleetWanted {
  wanted: Map<string, DesiredState>;
  held: Set<string>;
}

/**
 * Every desired-state key that should exist, with its value, and the keys a
 * rollout holds: a deployment without `rollout` goes everywhere at once (the
 * plain fan-out); one with `rollout` goes where its state says.
 */
export function fleetWanted(input: FleetWantedInput): FleetWanted {
  const plain: DeploymentManifest[] = [];
  const managed: DeploymentManifest[] = [];
  for (const m of input.manifests) (m.rollout === undefined ? plain : managed).push(m);
  const wanted = targets(plain, input.devices, input.revisions);
  const held = new Set<string>();
  if (managed.length === 0) return { wanted, held };

  const names = new Set(managed.map((m) => m.name));
  const storedOf = new Map<string, string[]>();
  for (const key of input.storedKeys) {
    const deployment = deploymentOf(key);
    if (deployment === undefined || !names.has(deployment)) continue;
    let list = storedOf.get(deployment);
    if (list === undefined) storedOf.set(deployment, list = []);
    list.push(key);
  }
  for (const manifest of managed) {
    const stored = storedOf.get(manifest.name) ?? [];
    const revision = input.revisions.get(manifest.name);
    const state = input.rollouts.get(manifest.name);
    const holdAll = () => stored.forEach((k) => held.add(k));
    if (revision === undefined || state === undefined || state.revision !== revision) {
      holdAll(); // not started yet: nothing moves before the state says so
      continue;
    }
    switch (state.state) {
      case "complete":
        for (const [k, v] of targets([manifest], input.devices, input.revisions)) wanted.set(k, v);
        break;
      case "progressing":
      case "paused": {
        const value = desiredStateOf(manifest, revision);
        const targeted = targetedDevices(manifest, input.devices);
        for (const device of state.updated) {
          if (targeted.has(device)) wanted.set(desiredStateKey(device, manifest.name), value);
        }
        for (const k of stored) if (!wanted.has(k)) held.add(k);
        break;
      }
      case "rolled_back": {
        if (state.stable_revision === null) break; // nothing to go back to: keys go
        const stable = input.manifestAt(manifest.name, state.stable_revision);
        if (stable === undefined) {
          holdAll();
          break;
        }
        const revisions = new Map([[manifest.name, state.stable_revision]]);
        for (const [k, v] of targets([stable], input.devices, revisions)) wanted.set(k, v);
        break;
      }
      case "failed":
        holdAll();
        break;
    }
  }
  return { wanted, held };
}

function targetedOf(manifest: DeploymentManifest, devices: readonly KnownDevice[]): KnownDevice[] {
  const ids = targetedDevices(manifest, devices);
  const byId = new Map(devices.map((d) => [d.id, d]));
  // A device listed by id but not registered has no labels: it still takes part.
  return [...ids].map((id) => byId.get(id) ?? { id, labels: {} });
}

function deploymentOf(key: string): string | undefined {
  try {
    return parseDesiredStateKey(key).deployment;
  } catch {
    return undefined;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
