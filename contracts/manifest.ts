/**
 * The deployment manifest: what users write (YAML, TOML or JSON) and what the
 * operator stores in `deployments/<name>`.
 *
 * @module
 */

import { z } from "zod";
import { MountName, Name, Score } from "./score.ts";
import { DeviceLabels } from "./labels.ts";
import { ComposeDuration } from "./duration.ts";

/** Which devices a deployment targets: listed ids, plus every device whose labels match. */
export const Selector = z.strictObject({
  devices: z.array(Name).max(10000).optional(),
  /** Every pair must match; `{}` matches every device. */
  labels: DeviceLabels.optional(),
}).refine((s) => s.devices !== undefined || s.labels !== undefined, {
  message: 'selector needs at least one of "devices" or "labels"',
});
/** Which devices a deployment targets. */
export type Selector = z.infer<typeof Selector>;

/** A percentage of devices, `"1%"` to `"100%"`. */
export const Percentage = z.string().regex(
  /^(100|[1-9][0-9]?)%$/,
  'expected a percentage from "1%" to "100%", e.g. "25%"',
);

/** Whole percent of `"25%"`. */
export function percentOf(text: string): number {
  return Number(text.slice(0, -1));
}

/** One batch of a staged rollout. */
export const RolloutBatch = z.strictObject({
  /**
   * How many devices the batch takes: a count, or a percentage of every
   * device the deployment targets (rounded up, at least one).
   */
  limit: z.union([
    z.int().min(1, 'expected a count of at least 1 or a percentage such as "25%"'),
    Percentage,
  ]),
  /** Only devices that also match this selector are taken (e.g. the canary site). */
  selector: Selector.optional(),
});
/** One batch of a staged rollout. */
export type RolloutBatch = z.infer<typeof RolloutBatch>;

/** Default batch timeout: how long a batch may take to become ready. */
export const DEFAULT_BATCH_TIMEOUT = "5m";

/**
 * How a new revision reaches the fleet: batch after batch, each gated on
 * enough of its devices becoming ready. Devices are taken in device-id order
 * (a batch's selector first narrows them); an implicit last batch takes the
 * rest. Without it a new revision goes to every device at once.
 */
export const Rollout = z.strictObject({
  batches: z.array(RolloutBatch).min(1, "at least one batch is needed").max(100),
  /** Share of a batch's devices that must be ready (and failed none beyond it) to go on. */
  success_threshold: Percentage.default("100%"),
  /** A batch that is not successful this long after it started has failed. */
  batch_timeout: ComposeDuration.default(DEFAULT_BATCH_TIMEOUT),
  /**
   * How long a batch must stay successful before the next one starts, so a
   * service that starts and then dies is not counted as ready (default none).
   */
  min_ready: ComposeDuration.optional(),
  /** `rollback`: every updated device gets the last good revision back; `pause`: wait for a person. */
  on_failure: z.enum(["rollback", "pause"]).default("rollback"),
});
/** How a new revision reaches the fleet. */
export type Rollout = z.infer<typeof Rollout>;

/** A deployment manifest. */
export const DeploymentManifest = z.strictObject({
  name: Name,
  selector: Selector,
  score: Score,
  /** Staged rollout of new revisions; absent: every device at once. */
  rollout: Rollout.optional(),
  /**
   * The version of each secret the score references, as stored by `apply`
   * (the current ones) and `secret set` (a new version is a new revision of
   * the deployment). Written by the operator; a value in a file is replaced.
   */
  secret_versions: z.record(MountName, z.int().positive()).optional(),
  /**
   * The set of manifests this deployment belongs to (`apply --source NAME`,
   * e.g. a git repository's `fleet/` folder): `apply --prune` of that source
   * deletes it once its file is gone. Absent: applied by hand, never pruned.
   */
  source: Name.optional(),
});
/** A deployment manifest (after defaults are applied). */
export type DeploymentManifest = z.infer<typeof DeploymentManifest>;
/** A deployment manifest as written. */
export type DeploymentManifestInput = z.input<typeof DeploymentManifest>;
