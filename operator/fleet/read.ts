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
  decodeJson,
  LIVENESS_SUBJECT,
  LivenessReply,
} from "@drover/contracts";
import { FleetState } from "./state.ts";
import { openBucket, readBucket } from "../nats/kv.ts";
import { RolloutBook } from "../rollout/store.ts";
import { readRevision } from "../rollout/history.ts";

/**
 * Reads every bucket; a bucket that does not exist yet reads as empty, and
 * hears from `operator serve` what heartbeats it heard. The
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
  await hearLiveness(nc, state);
  return state;
}

/** How long the CLI waits for `operator serve` to say what it heard. */
export const LIVENESS_TIMEOUT_MS = 1_000;

/**
 * Asks `operator serve` when it last heard each device and records it in
 * `state`, so the CLI judges online/offline by the same heartbeats as the API
 * and the dashboard. Without an answer (no `serve` running) liveness comes
 * from the stored statuses alone, as `isOnline` (aggregate.ts) describes. Returns
 * whether an answer came.
 */
export async function hearLiveness(nc: NatsConnection, state: FleetState): Promise<boolean> {
  let data: Uint8Array;
  try {
    data = (await nc.request(LIVENESS_SUBJECT, undefined, { timeout: LIVENESS_TIMEOUT_MS })).data;
  } catch {
    return false; // no operator serve (no responders), or a slow one: KV alone
  }
  const decoded = decodeJson(LivenessReply, data);
  if (!decoded.ok) return false;
  const now = Date.now();
  for (const [device, ago] of Object.entries(decoded.value.heard_ms_ago)) {
    state.heardAt(device, now - ago);
  }
  return true;
}
