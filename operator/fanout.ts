/**
 * Fan-out: which desired-state keys should exist, and which writes turn the
 * bucket's current content into that. Pure: no I/O, no clock.
 *
 * Cost is O(manifests × devices) for label matching plus O(keys) for the
 * diff; every device's copy of one deployment shares one `DesiredState`
 * object, so canonical JSON is computed once per deployment, not per key.
 *
 * @module
 */

import {
  canonicalJson,
  type DeploymentManifest,
  type DesiredState,
  desiredStateKey,
  labelsMatch,
  parseDesiredStateKey,
} from "@drover/contracts";

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

/** The desired state a manifest asks every targeted device to run. */
export function desiredStateOf(manifest: DeploymentManifest): DesiredState {
  return { deployment: manifest.name, score: manifest.score };
}

/**
 * Every desired-state key that should exist, with its value.
 *
 * @param manifests valid manifests, one per deployment name
 * @param devices every registered device with its registry labels
 */
export function targets(
  manifests: Iterable<DeploymentManifest>,
  devices: Iterable<KnownDevice>,
): Map<string, DesiredState> {
  const known = [...devices];
  const out = new Map<string, DesiredState>();
  for (const manifest of manifests) {
    const value = desiredStateOf(manifest);
    for (const device of targetedDevices(manifest, known)) {
      out.set(desiredStateKey(device, manifest.name), value);
    }
  }
  return out;
}

/** Writes that make the bucket match the wanted keys. */
export interface FanoutDiff {
  /** Keys to (over)write, with their canonical JSON value. */
  put: Map<string, string>;
  /** Keys to delete. */
  delete: string[];
}

/**
 * Compares wanted desired state with what the bucket holds.
 *
 * @param wanted result of {@linkcode targets}
 * @param current key → canonical JSON of the value stored now (deleted keys absent)
 * @param frozen deployment names whose keys must not be touched (e.g. their
 *   manifest is currently invalid: keep devices running what they have)
 */
export function diff(
  wanted: ReadonlyMap<string, DesiredState>,
  current: ReadonlyMap<string, { readonly canonical: string }>,
  frozen: ReadonlySet<string> = new Set(),
): FanoutDiff {
  const canonicalOf = new Map<DesiredState, string>();
  const put = new Map<string, string>();
  for (const [key, value] of wanted) {
    let canonical = canonicalOf.get(value);
    if (canonical === undefined) {
      canonical = canonicalJson(value);
      canonicalOf.set(value, canonical);
    }
    if (current.get(key)?.canonical !== canonical) put.set(key, canonical);
  }
  const toDelete: string[] = [];
  for (const key of current.keys()) {
    if (wanted.has(key)) continue;
    if (frozen.size > 0 && frozen.has(deploymentOfKey(key))) continue;
    toDelete.push(key);
  }
  return { put, delete: toDelete };
}

/** The deployment half of a desired-state key, or "" when the key is malformed. */
function deploymentOfKey(key: string): string {
  try {
    return parseDesiredStateKey(key).deployment;
  } catch {
    return "";
  }
}
