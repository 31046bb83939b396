/**
 * The deployment manifest: what users write (YAML, TOML or JSON) and what the
 * operator stores in `deployments/<name>`.
 *
 * @module
 */

import { z } from "zod";
import { Name, Score } from "./score.ts";
import { DeviceLabels } from "./labels.ts";

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

/** A deployment manifest. */
export const DeploymentManifest = z.strictObject({
  name: Name,
  selector: Selector,
  score: Score,
});
/** A deployment manifest (after defaults are applied). */
export type DeploymentManifest = z.infer<typeof DeploymentManifest>;
/** A deployment manifest as written. */
export type DeploymentManifestInput = z.input<typeof DeploymentManifest>;
