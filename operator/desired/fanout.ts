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
  parseDesiredStateKey,
  type SealedSecret,
  secretNamesOf,
} from "@drover/contracts";
import { type KnownDevice, targetedDevices } from "./targeting.ts";

/**
 * The desired state a manifest asks every targeted device to run, named by
 * the manifest's revision in `deployments` when it is known.
 */
export function desiredStateOf(
  manifest: DeploymentManifest,
  deploymentRevision?: number,
): DesiredState {
  const secrets = secretNamesOf(manifest.score).map((name) => ({
    name,
    // A manifest whose references are not all pinned is invalid (FleetState), never fanned out.
    version: manifest.secret_versions?.[name] ?? 0,
  }));
  return {
    deployment: manifest.name,
    score: manifest.score,
    ...(deploymentRevision !== undefined ? { deployment_revision: deploymentRevision } : {}),
    ...(secrets.length > 0 ? { secrets } : {}),
  };
}

/**
 * A secrets list reduced to what a device is asked to run: each secret's
 * name and version. How it was sealed (to which key, the bytes) is the
 * device's copy's business, compared apart ({@linkcode sealingOf}).
 */
function secretRefs(secrets: readonly SealedSecret[]): { name: string; version: number }[] {
  return secrets.map(({ name, version }) => ({ name, version }));
}

/**
 * How a value's secrets were sealed — every entry without its sealed bytes
 * (recipient and sender keys, or the problem) — as canonical JSON;
 * `undefined` without secrets. A device re-provisioned with a new key, or a
 * problem fixed, differs here while its content stays the same.
 */
export function sealingOf(secrets: readonly SealedSecret[] | undefined): string | undefined {
  if (secrets === undefined) return undefined;
  return canonicalJson(secrets.map(({ sealed: _, ...rest }) => rest));
}

/**
 * Canonical JSON of what a device is asked to run: the desired state without
 * its `deployment_revision`, which only names it. Two values with the same
 * content are the same desired state.
 */
export function desiredContent(value: DesiredState): string {
  const { deployment_revision: _, secrets, ...content } = value;
  return canonicalJson(
    secrets === undefined ? content : { ...content, secrets: secretRefs(secrets) },
  );
}

/**
 * Every desired-state key that should exist, with its value.
 *
 * @param manifests valid manifests, one per deployment name
 * @param devices every registered device with its registry labels
 * @param revisions deployment name → its manifest's revision in `deployments`
 */
export function targets(
  manifests: Iterable<DeploymentManifest>,
  devices: Iterable<KnownDevice>,
  revisions: ReadonlyMap<string, number> = new Map(),
): Map<string, DesiredState> {
  const known = [...devices];
  const out = new Map<string, DesiredState>();
  for (const manifest of manifests) {
    const value = desiredStateOf(manifest, revisions.get(manifest.name));
    for (const device of targetedDevices(manifest, known)) {
      out.set(desiredStateKey(device, manifest.name), value);
    }
  }
  return out;
}

/** A desired-state key as stored (or to be stored), reduced to what the diff compares. */
export interface StoredDesired {
  /** {@linkcode desiredContent} of the value (its raw text when it is not JSON). */
  readonly canonical: string;
  /** The value's `deployment_revision`, if it has one. */
  readonly deploymentRevision?: number;
  /** {@linkcode sealingOf} the value's secrets, when it has any. */
  readonly sealing?: string;
}

/** One desired-state write. */
export interface DesiredWrite extends StoredDesired {
  /**
   * Canonical JSON of the whole value, `deployment_revision` included: what is
   * put — unless it has secrets, which are sealed per device when it is written.
   */
  readonly value: string;
  /** The value itself (its secrets not sealed yet). */
  readonly state: DesiredState;
}

/** Writes that make the bucket match the wanted keys. */
export interface FanoutDiff {
  /** Keys to (over)write, with their value. */
  put: Map<string, DesiredWrite>;
  /** Keys to delete. */
  delete: string[];
}

/**
 * Compares wanted desired state with what the bucket holds.
 *
 * A key is rewritten when its content differs, not when only the manifest's
 * revision moved on: a manifest change that leaves a device's score as it
 * was (a selector edit) must not rewrite, and wake, every device it targets.
 * Such a device keeps the deployment revision its score last changed in. A
 * stored value without a deployment revision (written before they existed),
 * or with a higher one than the manifest's (a re-created `deployments`
 * bucket), is rewritten once so every device names its revision truly.
 *
 * @param wanted result of {@linkcode targets}
 * @param current key → the value stored now (deleted keys absent)
 * @param frozen deployment names whose keys must not be touched (e.g. their
 *   manifest is currently invalid: keep devices running what they have)
 * @param held keys that must not be touched (a rollout has not reached their
 *   device yet: it keeps the previous revision's value, same KV revision)
 */
export function diff(
  wanted: ReadonlyMap<string, DesiredState>,
  current: ReadonlyMap<string, StoredDesired>,
  frozen: ReadonlySet<string> = new Set(),
  held: ReadonlySet<string> = new Set(),
  expectedSealing?: (key: string, secrets: readonly SealedSecret[]) => string,
): FanoutDiff {
  const writeOf = new Map<DesiredState, DesiredWrite>();
  const put = new Map<string, DesiredWrite>();
  for (const [key, value] of wanted) {
    let write = writeOf.get(value);
    if (write === undefined) {
      write = {
        value: canonicalJson(value),
        state: value,
        canonical: desiredContent(value),
        ...(value.deployment_revision !== undefined
          ? { deploymentRevision: value.deployment_revision }
          : {}),
      };
      writeOf.set(value, write);
    }
    const stored = current.get(key);
    const wantedRevision = write.deploymentRevision;
    const stale = stored === undefined || stored.canonical !== write.canonical ||
      (wantedRevision !== undefined &&
        (stored.deploymentRevision === undefined || stored.deploymentRevision > wantedRevision)) ||
      (value.secrets !== undefined && expectedSealing !== undefined &&
        stored.sealing !== expectedSealing(key, value.secrets));
    if (stale) put.set(key, write);
  }
  const toDelete: string[] = [];
  for (const key of current.keys()) {
    if (wanted.has(key) || held.has(key)) continue;
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
