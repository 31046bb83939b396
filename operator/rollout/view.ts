/**
 * What `rollout status`, `history` and `apply --wait` show about a rollout.
 * Pure: the caller passes the decoded buckets and the time.
 *
 * @module
 */

import type { DeploymentManifest } from "@drover/contracts";
import { knownDevices, targetedDevices } from "../desired/targeting.ts";
import type { FleetState } from "../fleet/state.ts";
import type { HistoryEntry } from "./history.ts";
import type { RolloutBook } from "./store.ts";
import { progressOf } from "./driver.ts";
import type { RolloutFailure, RolloutPhase, RolloutState } from "./state.ts";
import { escapeControl, table } from "../views/render.ts";

/** One device in a rollout. */
export interface RolloutDeviceView {
  device_id: string;
  /** Whether the device was given the rollout's revision. */
  updated: boolean;
  /**
   * For an updated device, how it does with the revision it should run now
   * (the new one, or the stable one after a rollback); `waiting` otherwise.
   */
  phase: "ready" | "failed" | "pending" | "waiting";
  message: string;
}

/** `rollout status -o json`. */
export interface RolloutStatusView {
  deployment: string;
  revision: number;
  stable_revision: number | null;
  state: RolloutPhase;
  /** 1-based number of the current batch. */
  batch: number;
  batches: number;
  batch_devices: string[];
  paused_by: "user" | "failure" | null;
  message: string;
  targeted: number;
  updated: number;
  ready: number;
  failed: number;
  pending: number;
  failures: RolloutFailure[];
  devices: RolloutDeviceView[];
  started_at: string;
  updated_at: string;
}

/**
 * The status of `rollout` over the fleet. After a rollback, updated devices
 * are judged against the stable revision they were given back.
 */
export function rolloutStatus(
  rollout: RolloutState,
  manifest: DeploymentManifest,
  stable: DeploymentManifest | undefined,
  fleet: FleetState,
  now: number,
): RolloutStatusView {
  const back = rollout.state === "rolled_back" && stable !== undefined &&
    rollout.stable_revision !== null;
  const judged = back ? stable : manifest;
  const judgedRevision = back ? rollout.stable_revision! : rollout.revision;
  const targeted = [...targetedDevices(manifest, knownDevices(fleet.registry))].sort();
  const updated = new Set(
    rollout.state === "complete" && rollout.updated.length === 0
      ? targeted // a revision without a rollout section went everywhere at once
      : rollout.updated,
  );
  const progress = progressOf(fleet, judged, judgedRevision, [...updated], now);
  const devices: RolloutDeviceView[] = [...new Set([...targeted, ...updated])].sort().map(
    (id) => {
      const p = progress.get(id);
      return updated.has(id) && p !== undefined
        ? { device_id: id, updated: true, phase: p.phase, message: p.message }
        : {
          device_id: id,
          updated: false,
          phase: "waiting",
          message: rollout.stable_revision === null
            ? "not updated yet"
            : `keeps revision ${rollout.stable_revision} until its batch`,
        };
    },
  );
  const count = (phase: RolloutDeviceView["phase"]) =>
    devices.filter((d) => d.updated && d.phase === phase).length;
  return {
    deployment: rollout.deployment,
    revision: rollout.revision,
    stable_revision: rollout.stable_revision,
    state: rollout.state,
    batch: rollout.batch + 1,
    batches: rollout.batches,
    batch_devices: rollout.batch_devices,
    paused_by: rollout.paused_by,
    message: rollout.message,
    targeted: targeted.length,
    updated: updated.size,
    ready: count("ready"),
    failed: count("failed"),
    pending: count("pending"),
    failures: rollout.failures,
    devices,
    started_at: rollout.started_at,
    updated_at: rollout.updated_at,
  };
}

/** The line of where a rollout stands: `web revision 5: progressing, batch 2 of 3, …`. */
export function rolloutLine(v: RolloutStatusView): string {
  const where = v.state === "progressing" || v.state === "paused"
    ? `, batch ${v.batch} of ${v.batches}`
    : "";
  const counts = `${v.updated}/${v.targeted} updated, ${v.ready} ready` +
    (v.failed > 0 ? `, ${v.failed} failed` : "") + (v.pending > 0 ? `, ${v.pending} pending` : "");
  const state = v.state === "rolled_back" ? "rolled back" : v.state;
  return escapeControl(`${v.deployment} revision ${v.revision}: ${state}${where}; ${counts}`);
}

/** `deviceA: failed: message` lines of the devices that stopped a rollout, escaped. */
export function failureLines(failures: readonly RolloutFailure[]): string[] {
  return failures.slice(0, 20).map((f) =>
    escapeControl(`${f.device}: ${f.phase}: ${f.message || "(no message)"}`)
  );
}

/** The `rollout status NAME` report. */
export function rolloutReport(v: RolloutStatusView): string {
  const lines = [rolloutLine(v)];
  const from = v.stable_revision === null ? "no earlier revision" : `revision ${v.stable_revision}`;
  lines.push(escapeControl(`Stable: ${from}. ${v.message}`));
  if (v.paused_by === "user") {
    lines.push(`Paused by a person: "rollout resume ${v.deployment}" continues.`);
  }
  if (v.failures.length > 0) {
    lines.push("", "Stopped by:", ...failureLines(v.failures).map((l) => `  ${l}`));
  }
  lines.push(
    "",
    table(
      ["DEVICE", "UPDATED", "PHASE", "MESSAGE"],
      v.devices.map((d) => [d.device_id, d.updated ? "yes" : "no", d.phase, d.message || "-"]),
    ).trimEnd(),
  );
  return lines.join("\n") + "\n";
}

/** One revision in `history -o json`. */
export interface HistoryRow {
  revision: number;
  created_at: string;
  summary: string;
  /** `current` (in `deployments` now), `stable` (what a rollback restores) or null. */
  marker: "current" | "stable" | null;
  /** How this revision's rollout ended, when it is the latest rollout. */
  rollout: RolloutPhase | null;
  manifest: DeploymentManifest;
}

/** The history of one deployment, oldest first, marked against its current state. */
export function historyRows(
  entries: readonly HistoryEntry[],
  currentRevision: number | undefined,
  rollout: RolloutState | undefined,
): HistoryRow[] {
  return entries.map((e) => ({
    revision: e.revision,
    created_at: e.created_at,
    summary: e.summary,
    marker: e.revision === currentRevision
      ? "current"
      : e.revision === rollout?.stable_revision
      ? "stable"
      : null,
    rollout: rollout?.revision === e.revision ? rollout.state : null,
    manifest: e.manifest,
  }));
}

/** The `history NAME` table. */
export function historyTable(rows: readonly HistoryRow[]): string {
  if (rows.length === 0) return "No revisions recorded.\n";
  return table(
    ["REVISION", "CREATED", "ROLLOUT", "SUMMARY"],
    rows.map((r) => [
      `${r.revision}${r.marker === null ? "" : ` (${r.marker})`}`,
      r.created_at.replace(/\.[0-9]+Z$/, "Z"),
      r.rollout === null ? "-" : r.rollout.replace("_", " "),
      r.summary,
    ]),
  );
}

/** One revision as the API and the dashboard show it (the manifest stays in `history NAME -o json`). */
export type HistoryItem = Omit<HistoryRow, "manifest">;

/** A deployment's rollout status and revision history, for the API and the dashboard. */
export interface DeploymentRolloutInfo {
  rollout?: RolloutStatusView;
  history?: HistoryItem[];
}

/**
 * The rollout status and history of `name` from what the operator mirrors
 * (the rollout book and the fleet state). Pure; empty when there is none.
 */
export function deploymentRolloutInfo(
  name: string,
  book: RolloutBook,
  fleet: FleetState,
  now: number,
): DeploymentRolloutInfo {
  const out: DeploymentRolloutInfo = {};
  const rollout = book.rollouts.get(name)?.state;
  const current = fleet.manifests.get(name);
  const entries = [...(book.history.get(name)?.values() ?? [])].sort((a, b) =>
    a.revision - b.revision
  );
  if (entries.length > 0) {
    out.history = historyRows(entries, current?.revision, rollout)
      .map(({ manifest: _manifest, ...row }) => row);
  }
  if (rollout !== undefined) {
    const manifest = current?.revision === rollout.revision && current.manifest !== undefined
      ? current.manifest
      : book.manifestAt(name, rollout.revision);
    const stable = rollout.stable_revision === null
      ? undefined
      : book.manifestAt(name, rollout.stable_revision);
    if (manifest !== undefined) out.rollout = rolloutStatus(rollout, manifest, stable, fleet, now);
  }
  return out;
}
