/**
 * Which deployments use a secret, and the new revision a new secret version
 * makes of each: the manifest with that version pinned, stored with a
 * compare-and-set so a concurrent `apply` is never overwritten.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import {
  canonicalJson,
  decodeJson,
  deploymentKey,
  DeploymentManifest,
  secretNamesOf,
} from "@drover/contracts";
import { readBucket, retryWhileRecovering } from "../nats/kv.ts";
import { historyEntry, recordRevision } from "./history.ts";

/** Valid stored manifests by name, with their KV revision. */
export async function readManifests(
  deployments: KV,
): Promise<Map<string, { manifest: DeploymentManifest; revision: number }>> {
  const out = new Map<string, { manifest: DeploymentManifest; revision: number }>();
  for (const [key, entry] of await retryWhileRecovering(() => readBucket(deployments))) {
    if (entry.operation !== "PUT") continue;
    const decoded = decodeJson(DeploymentManifest, entry.value);
    if (decoded.ok) out.set(key, { manifest: decoded.value, revision: entry.revision });
  }
  return out;
}

/** Names of the manifests whose services reference secret `name`, sorted. Pure. */
export function deploymentsUsing(
  manifests: Iterable<DeploymentManifest>,
  name: string,
): string[] {
  return [...manifests].filter((m) => secretNamesOf(m.score).includes(name)).map((m) => m.name)
    .sort();
}

/** `manifest` with `versions` pinned for the secrets it references (others dropped). Pure. */
export function pinSecretVersions(
  manifest: DeploymentManifest,
  versions: ReadonlyMap<string, number>,
): DeploymentManifest {
  const { secret_versions: _, ...rest } = manifest;
  const names = secretNamesOf(manifest.score);
  if (names.length === 0) return rest;
  const pinned: Record<string, number> = {};
  for (const name of names) {
    const version = versions.get(name);
    if (version !== undefined) pinned[name] = version;
  }
  return { ...rest, secret_versions: pinned };
}

/** One deployment that a new secret version was rolled into. */
export interface Bumped {
  deployment: string;
  revision: number;
}

/**
 * Pins `version` of secret `name` in every deployment that uses it, each a
 * new revision (recorded in the history as "secret NAME vN") that goes out
 * through the deployment's rollout policy like any other change.
 */
export async function rollSecretVersion(
  deployments: KV,
  history: KV,
  name: string,
  version: number,
  now: () => Date = () => new Date(),
): Promise<Bumped[]> {
  const out: Bumped[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const stale = [...(await readManifests(deployments)).values()].filter(({ manifest }) =>
      secretNamesOf(manifest.score).includes(name) &&
      manifest.secret_versions?.[name] !== version
    );
    if (stale.length === 0) break;
    for (const { manifest, revision: stored } of stale) {
      const next: DeploymentManifest = {
        ...manifest,
        secret_versions: { ...manifest.secret_versions, [name]: version },
      };
      let revision: number;
      try {
        revision = await deployments.update(
          deploymentKey(manifest.name),
          canonicalJson(next),
          stored,
        );
      } catch (e) {
        // Changed meanwhile (an apply): read again and pin on top of it.
        if (/wrong last sequence/i.test((e as Error).message)) continue;
        throw e;
      }
      await retryWhileRecovering(() =>
        recordRevision(history, historyEntry(next, revision, manifest, now()))
      );
      out.push({ deployment: manifest.name, revision });
    }
  }
  return out.sort((a, b) => (a.deployment < b.deployment ? -1 : 1));
}
