/**
 * What applying a set of manifests would do (`diff`, `apply --dry-run`,
 * `apply`): per deployment created, changed, unchanged, retried (the same
 * manifest as a revision whose rollout was rolled back or failed: stored
 * again as a new attempt) or — with `--prune` — deleted, each with a one-line
 * summary and how many devices it targets.
 * Pure: the command reads the buckets and hands their decoded contents in.
 *
 * Ownership: `--source NAME` stamps every manifest of the set with its
 * source; `--prune` deletes only stored deployments of that same source that
 * the set no longer holds. Deployments applied by hand (no source) or by
 * another source are never deleted, and a set may not take over another
 * source's deployment.
 *
 * Secrets: every manifest is stored with the current version of each secret
 * it uses pinned (`secret_versions`, whatever the file said); one naming a
 * secret the store does not hold cannot be applied.
 *
 * @module
 */

import { canonicalJson, type DeploymentManifest, secretNamesOf } from "@drover/contracts";
import { type KnownDevice, targetedDevices } from "../desired/targeting.ts";
import { changeSummary } from "../rollout/history.ts";
import { pinSecretVersions } from "../rollout/secret_versions.ts";
import type { DocumentProblem, FileManifest } from "./file.ts";

/** What happens to one deployment. */
export type PlanAction = "created" | "changed" | "unchanged" | "retried" | "deleted";

/** A deployment as stored in `deployments`: its revision, and its manifest when valid. */
export interface StoredDeployment {
  revision: number;
  /** Absent when the stored value is not a valid manifest. */
  manifest?: DeploymentManifest;
  /** How the rollout of `revision` ended, when it stopped short: applied again, it is retried. */
  stopped?: "rolled_back" | "failed";
}

/** One deployment's line of the plan. */
export interface PlanEntry {
  name: string;
  action: PlanAction;
  /** What changes, in one line, as `history` shows it ("" when unchanged). */
  summary: string;
  /** Devices the deployment targets once applied (deleted: the devices that lose it). */
  devices: number;
  /** Where the manifest comes from; absent for a deletion. */
  file?: string;
  /** 1-based document in a multi-document file. */
  document?: number;
  /** The source the deployment belongs to once applied (deleted: belonged to). */
  source?: string;
  /** The manifest to store; absent for a deletion. */
  manifest?: DeploymentManifest;
  /** Its revision in `deployments` now, when stored. */
  revision?: number;
}

/** What applying a set would do. */
export interface ApplyPlan {
  /** By deployment name. */
  entries: PlanEntry[];
  /** Why the set cannot be applied; when any, nothing may be changed. */
  conflicts: DocumentProblem[];
  /** What the person applying should know, one line each. */
  warnings: string[];
}

/** Most bytes of sealed secrets one deployment's desired state may carry (a KV value is 1 MiB). */
export const MAX_SEALED_SECRETS_BYTES = 512 * 1024;

/** The current version of a stored secret, and the size of its sealed value. */
export interface CurrentSecret {
  version: number;
  sealedBytes: number;
}

/** Options of {@linkcode planApply}. */
export interface PlanOptions {
  /** `--source NAME`: the set every manifest is stamped with. */
  source?: string;
  /** `--prune`: delete this source's stored deployments the set does not hold (needs `source`). */
  prune?: boolean;
  /** The secret store's current versions by name: what manifests get pinned (default: none). */
  secrets?: ReadonlyMap<string, CurrentSecret>;
}

/** How many of each action a plan holds. */
export type PlanCounts = Record<PlanAction, number>;

/**
 * The manifest as stored against what it would replace: `created` (nothing
 * stored), `unchanged` (the same canonical content), `retried` (the same, but
 * its rollout was rolled back or failed), else `changed` (also when the
 * stored value is not a valid manifest). Pure.
 */
export function storedChange(
  stored: StoredDeployment | undefined,
  manifest: DeploymentManifest,
): Exclude<PlanAction, "deleted"> {
  if (stored === undefined) return "created";
  if (stored.manifest === undefined) return "changed";
  if (canonicalJson(stored.manifest) !== canonicalJson(manifest)) return "changed";
  return stored.stopped !== undefined ? "retried" : "unchanged";
}

/**
 * Plans applying `set` over the `stored` deployments, counting targets among
 * the registered `devices`. Pure.
 *
 * @throws {Error} for `prune` without `source` (the command refuses it first).
 */
export function planApply(
  set: readonly FileManifest[],
  stored: ReadonlyMap<string, StoredDeployment>,
  devices: readonly KnownDevice[],
  options: PlanOptions = {},
): ApplyPlan {
  const pruned = options.prune ? options.source : undefined;
  if (options.prune && pruned === undefined) throw new Error("planApply: prune needs a source");
  const plan: ApplyPlan = { entries: [], conflicts: [], warnings: [] };
  const inSet = new Set<string>();
  for (const entry of set) {
    const { file } = entry;
    const where = entry.document === undefined ? { file } : { file, document: entry.document };
    const name = entry.manifest.name;
    inSet.add(name);
    const own = entry.manifest.source;
    if (options.source !== undefined && own !== undefined && own !== options.source) {
      plan.conflicts.push({
        ...where,
        summary: `source: "${own}" in the manifest, but --source is "${options.source}"`,
        details: [],
      });
      continue;
    }
    const source = options.source ?? own;
    const pinned = pinnedSecrets(entry.manifest, options.secrets ?? new Map());
    if (typeof pinned === "string") {
      plan.conflicts.push({
        ...where,
        summary: pinned,
        details: secretHints(entry.manifest, options),
      });
      continue;
    }
    const manifest: DeploymentManifest = source === undefined ? pinned : { ...pinned, source };
    const current = stored.get(name);
    const owner = current?.manifest?.source;
    if (owner !== undefined && source !== undefined && owner !== source) {
      plan.conflicts.push({
        ...where,
        summary: `deployment "${name}" belongs to source "${owner}", not "${source}"`,
        details: [
          `remove it from "${owner}" first, or apply it once without --source to release it`,
        ],
      });
      continue;
    }
    if (owner !== undefined && source === undefined) {
      plan.warnings.push(
        `deployment "${name}" was applied from source "${owner}"; applied without --source ` +
          "it no longer belongs to it (and is never pruned)",
      );
    }
    const action = storedChange(current, manifest);
    plan.entries.push({
      name,
      action,
      summary: action === "unchanged"
        ? ""
        : action === "retried" && current?.stopped !== undefined
        ? `retries revision ${current.revision} (${current.stopped.replace("_", " ")})`
        : current !== undefined && current.manifest === undefined
        ? "replaces an invalid stored value"
        : changeSummary(current?.manifest, manifest),
      devices: targetedDevices(manifest, devices).size,
      ...where,
      ...(source !== undefined ? { source } : {}),
      manifest,
      ...(current !== undefined ? { revision: current.revision } : {}),
    });
  }
  if (pruned !== undefined) {
    for (const [name, current] of stored) {
      const manifest = current.manifest;
      if (inSet.has(name) || manifest === undefined || manifest.source !== pruned) {
        continue;
      }
      plan.entries.push({
        name,
        action: "deleted",
        summary: `its manifest is not in source "${pruned}" any more`,
        devices: targetedDevices(manifest, devices).size,
        source: pruned,
        revision: current.revision,
      });
    }
  }
  plan.entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return plan;
}

/**
 * `manifest` with the current version of each secret it uses pinned, or why
 * it cannot be: a secret the store does not hold, or more sealed bytes than
 * one device's desired state can carry. Pure.
 */
function pinnedSecrets(
  manifest: DeploymentManifest,
  secrets: ReadonlyMap<string, CurrentSecret>,
): DeploymentManifest | string {
  const names = secretNamesOf(manifest.score);
  const missing = names.filter((name) => !secrets.has(name));
  if (missing.length > 0) {
    return `deployment "${manifest.name}" uses secret(s) the operator does not have: ` +
      missing.join(", ");
  }
  // Each device's copy carries them all sealed: it must fit one KV value with the score.
  const sealedBytes = names.reduce((n, name) => n + (secrets.get(name)?.sealedBytes ?? 0), 0);
  if (sealedBytes > MAX_SEALED_SECRETS_BYTES) {
    return `deployment "${manifest.name}" uses ${sealedBytes} bytes of sealed secrets; at ` +
      `most ${MAX_SEALED_SECRETS_BYTES} fit its desired state`;
  }
  return pinSecretVersions(
    manifest,
    new Map(names.map((name) => [name, secrets.get(name)?.version ?? 0])),
  );
}

/** What to do about a manifest whose secrets cannot be pinned. Pure. */
function secretHints(manifest: DeploymentManifest, options: PlanOptions): string[] {
  return secretNamesOf(manifest.score).filter((name) => !options.secrets?.has(name)).map((name) =>
    `store it first: operator secret set ${name} --from-file FILE`
  );
}

/** How many deployments each action touches. Pure. */
export function planCounts(plan: ApplyPlan): PlanCounts {
  const counts: PlanCounts = { created: 0, changed: 0, unchanged: 0, retried: 0, deleted: 0 };
  for (const entry of plan.entries) counts[entry.action]++;
  return counts;
}

/** True when applying the plan would change anything. Pure. */
export function planChangesSomething(plan: ApplyPlan): boolean {
  return plan.entries.some((e) => e.action !== "unchanged");
}
