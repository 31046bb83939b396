/**
 * The value of `rollouts/<deployment>`: where the latest rollout of a
 * deployment stands. Written only by the active `operator serve` (and by
 * `rollout pause|resume`, compare-and-set on its KV revision); everything a
 * restarted or standby operator needs to continue is in it.
 *
 * @module
 */

import { z } from "zod";
import { Name } from "@drover/contracts";

/** Where a rollout stands. */
export const RolloutPhase = z.enum(["progressing", "paused", "complete", "rolled_back", "failed"]);
/** Where a rollout stands. */
export type RolloutPhase = z.infer<typeof RolloutPhase>;

/** A device that made a batch miss its threshold, with the reason in the agent's words. */
export const RolloutFailure = z.object({
  device: Name,
  /** `failed` (the agent gave up) or `pending` (not ready when the batch timed out). */
  phase: z.enum(["failed", "pending"]),
  message: z.string(),
});
/** A device that made a batch miss its threshold. */
export type RolloutFailure = z.infer<typeof RolloutFailure>;

const Time = z.iso.datetime();

/** State of the latest rollout of one deployment. */
export const RolloutState = z.object({
  deployment: Name,
  /** The deployment revision being rolled out (the manifest's revision in `deployments`). */
  revision: z.int().positive(),
  /**
   * The last good revision: what devices ran before, and what a rollback
   * gives back to every updated device. Null when there was none (a rollback
   * then removes the deployment from the updated devices).
   */
  stable_revision: z.int().positive().nullable(),
  state: RolloutPhase,
  /** 0-based index of the current batch. */
  batch: z.int().min(0),
  /** Number of batches, the implicit last one included. */
  batches: z.int().min(0),
  /** Devices of the current batch, sorted. */
  batch_devices: z.array(Name),
  /** When the current batch started (its timeout counts from here). */
  batch_started_at: Time,
  /** When the current batch first met its threshold (for `min_ready`); null when it has not. */
  batch_ready_at: Time.nullable(),
  /** Every device given `revision` so far, sorted. */
  updated: z.array(Name),
  /** Devices that made the rollout stop, with their reasons. */
  failures: z.array(RolloutFailure),
  /** Why it is paused, rolled back or failed; what happened last otherwise. */
  message: z.string(),
  /** Who paused it: a person (`rollout pause`) or a failed batch (`on_failure: pause`). */
  paused_by: z.enum(["user", "failure"]).nullable(),
  started_at: Time,
  updated_at: Time,
});
/** State of the latest rollout of one deployment. */
export type RolloutState = z.infer<typeof RolloutState>;
