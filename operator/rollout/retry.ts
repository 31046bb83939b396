/**
 * A new attempt at a revision whose rollout was rolled back or failed: the
 * same manifest stored again as a new revision (`rollout retry NAME`, and
 * `apply` of a manifest equal to such a revision).
 *
 * @module
 */

import {
  canonicalJson,
  decodeJson,
  deploymentKey,
  type DeploymentManifest,
  rolloutKey,
} from "@drover/contracts";
import { type Buckets, isWriteConflict } from "../nats/kv.ts";
import { historyEntry, recordRevision } from "./history.ts";
import { RolloutState } from "./state.ts";
import type { RolloutBuckets } from "./store.ts";

/** The deployment changed between the read and the write: nothing was stored. */
export class RetryConflictError extends Error {
  override name = "RetryConflictError";
}

/** A retried rollout: the revision that stopped and the new one that tries it again. */
export interface RetriedRollout {
  from: number;
  revision: number;
  /** How the rollout of `from` ended. */
  ended: "rolled_back" | "failed";
}

/**
 * Stores `manifest` (the deployment's current one, at `storedRevision`) again
 * as a new revision when the rollout of that revision was rolled back or
 * failed: the operator then starts a new attempt, from the same stable
 * revision. Undefined when that rollout did not stop (nothing to retry).
 * Compare-and-set on `storedRevision`: an apply in between is never replaced.
 */
export async function retryStoppedRollout(
  buckets: Buckets,
  rollouts: RolloutBuckets,
  name: string,
  storedRevision: number,
  manifest: DeploymentManifest,
): Promise<RetriedRollout | undefined> {
  const entry = await rollouts.rollouts.get(rolloutKey(name));
  const decoded = entry?.operation === "PUT" ? decodeJson(RolloutState, entry.value) : undefined;
  const state = decoded?.ok ? decoded.value : undefined;
  if (state?.revision !== storedRevision) return undefined;
  if (state.state !== "rolled_back" && state.state !== "failed") return undefined;
  let revision: number;
  try {
    revision = await buckets.deployments.update(
      deploymentKey(name),
      canonicalJson(manifest),
      storedRevision,
    );
  } catch (e) {
    if (!isWriteConflict(e)) throw e;
    throw new RetryConflictError(`Deployment "${name}" changed meanwhile; nothing was stored`);
  }
  await recordRevision(
    rollouts.history,
    historyEntry(manifest, revision, manifest, new Date(), `retry of revision ${storedRevision}: `),
    { replace: true },
  );
  return { from: storedRevision, revision, ended: state.state };
}

/** `deployment "web" revision 4 was rolled back: retrying it as revision 5`. */
export function retryLine(name: string, r: RetriedRollout): string {
  const ended = r.ended === "rolled_back" ? "was rolled back" : "failed";
  return `deployment "${name}" revision ${r.from} ${ended}: retrying it as revision ${r.revision}\n`;
}
