/**
 * One-shot read of the buckets into a {@linkcode FleetState}, for the
 * CLI's `get` and `status` (which do not need `serve` to be running).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENT_HISTORY,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
  BUCKET_ROLLOUTS,
} from "@drover/contracts";
import { FleetState } from "./state.ts";
import { openBucket, readBucket } from "../nats/kv.ts";
import { RolloutBook } from "../rollout/store.ts";
import { readRevision } from "../rollout/history.ts";

/**
 * Reads every bucket; a bucket that does not exist yet reads as empty. The
 * rollout states come along, with the manifests of their stable revisions,
 * so the view shows a rolled back or paused deployment as it is.
 */
export async function readFleet(nc: NatsConnection): Promise<FleetState> {
  const state = new FleetState();
  const read = async (name: string) => {
    const kv = await openBucket(nc, name);
    return kv === undefined ? new Map() : await readBucket(kv);
  };
  const [deployments, statuses, desired, registry, rollouts] = await Promise.all([
    read(BUCKET_DEPLOYMENTS),
    read(BUCKET_AGENT_STATUS),
    read(BUCKET_DESIRED_STATE),
    read(BUCKET_DEVICES),
    read(BUCKET_ROLLOUTS),
  ]);
  for (const entry of deployments.values()) state.applyDeployment(entry);
  for (const entry of statuses.values()) state.applyStatus(entry);
  for (const entry of registry.values()) state.applyRegistration(entry);
  for (const entry of desired.values()) state.applyDesired(entry);
  const book = new RolloutBook();
  for (const entry of rollouts.values()) book.applyRollout(entry);
  const history = book.rollouts.size === 0
    ? undefined
    : await openBucket(nc, BUCKET_DEPLOYMENT_HISTORY);
  if (history !== undefined) {
    // Only the stable revisions: the whole history is not needed to judge the fleet.
    const stable = [...book.states().values()].filter((s) => s.stable_revision !== null);
    const entries = await Promise.all(
      stable.map((s) => readRevision(history, s.deployment, s.stable_revision!)),
    );
    for (const entry of entries) if (entry !== undefined) book.recordHistory(entry);
  }
  state.rollouts = book;
  return state;
}
