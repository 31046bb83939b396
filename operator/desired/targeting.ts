/**
 * Targeting: which devices a manifest selects. The one place that decides it, for the
 * fan-out (the write path), the rollout planner and the views alike. Pure.
 *
 * @module
 */

import { type DeploymentManifest, labelsMatch } from "@drover/contracts";

/**
 * A device in the operator's registry (`devices` bucket), with the labels the
 * operator gave it. Never built from the labels a device reports about itself:
 * a device must not be able to pick the deployments (and secrets) it receives.
 */
export interface KnownDevice {
  id: string;
  labels: Record<string, string>;
}

/**
 * Device ids a manifest targets: its explicit `selector.devices`, plus every
 * registered device whose registry labels match `selector.labels` (`{}`
 * matches every registered device).
 */
export function targetedDevices(
  manifest: DeploymentManifest,
  devices: Iterable<KnownDevice>,
): Set<string> {
  const out = new Set<string>(manifest.selector.devices ?? []);
  const selector = manifest.selector.labels;
  if (selector !== undefined) {
    for (const device of devices) {
      if (labelsMatch(selector, device.labels)) out.add(device.id);
    }
  }
  return out;
}

/**
 * Devices eligible for label selection: every device in the operator's
 * registry with valid labels. What devices report never counts here.
 */
export function knownDevices(
  registry: ReadonlyMap<string, { labels?: Record<string, string> | undefined }>,
): KnownDevice[] {
  const out: KnownDevice[] = [];
  for (const [id, record] of registry) {
    if (record.labels !== undefined) out.push({ id, labels: record.labels });
  }
  return out;
}
