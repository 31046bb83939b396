/**
 * One-shot read of the buckets into a {@linkcode FleetState}, for the
 * CLI's `get` and `status` (which do not need `serve` to be running).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
} from "@drover/contracts";
import { FleetState } from "./state.ts";
import { openBucket, readBucket } from "../nats/kv.ts";

/** Reads every bucket; a bucket that does not exist yet reads as empty. */
export async function readFleet(nc: NatsConnection): Promise<FleetState> {
  const state = new FleetState();
  const read = async (name: string) => {
    const kv = await openBucket(nc, name);
    return kv === undefined ? new Map() : await readBucket(kv);
  };
  const [deployments, statuses, desired, registry] = await Promise.all([
    read(BUCKET_DEPLOYMENTS),
    read(BUCKET_AGENT_STATUS),
    read(BUCKET_DESIRED_STATE),
    read(BUCKET_DEVICES),
  ]);
  for (const entry of deployments.values()) state.applyDeployment(entry);
  for (const entry of statuses.values()) state.applyStatus(entry);
  for (const entry of registry.values()) state.applyRegistration(entry);
  for (const entry of desired.values()) state.applyDesired(entry);
  return state;
}
