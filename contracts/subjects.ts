/**
 * NATS subjects that agents and the operator exchange outside plain KV calls,
 * and the value of the desired-state snapshot reply. Devices live in their own
 * NATS account and reach the `DROVER` account only through these subjects
 * (see docs/security.md), so each one is part of the wire contract.
 *
 * @module
 */

import { z } from "zod";
import { BUCKET_AGENT_STATUS, BUCKET_DESIRED_STATE } from "./kv.ts";
import { assertName } from "./names.ts";
import { Name } from "./score.ts";

/** Stream behind a KV bucket: `KV_<bucket>`. */
export function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}

/** Subject a KV put or delete of `key` is published on: `$KV.<bucket>.<key>`. */
export function kvSubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/**
 * Subject of a JetStream direct get of the last message on `subject` in
 * `stream` (the request body stays empty): `$JS.API.DIRECT.GET.<stream>.<subject>`.
 */
export function directGetSubject(stream: string, subject: string): string {
  return `$JS.API.DIRECT.GET.${stream}.${subject}`;
}

/** Subject on which a device's agent publishes its status (a KV put into `agent-status`). */
export function statusSubject(device: string): string {
  return kvSubject(BUCKET_AGENT_STATUS, assertName("device id", device));
}

/** Subjects of every desired-state change of one device: `$KV.desired-state.<device>.*`. */
export function desiredStateChangesSubject(device: string): string {
  return kvSubject(BUCKET_DESIRED_STATE, `${assertName("device id", device)}.*`);
}

/** Direct get of one desired-state key of a device. */
export function desiredStateGetSubject(device: string, deployment: string): string {
  return directGetSubject(
    kvStream(BUCKET_DESIRED_STATE),
    kvSubject(
      BUCKET_DESIRED_STATE,
      `${assertName("device id", device)}.${assertName("deployment name", deployment)}`,
    ),
  );
}

/** Prefix of the desired-state snapshot service answered by `operator serve`. */
export const DESIRED_SNAPSHOT_PREFIX = "drover.desired.snapshot";
/** Queue group the operator's snapshot responders join (several operators answer once). */
export const DESIRED_SNAPSHOT_QUEUE = "drover-operator";

/** Subject a device asks for its desired-state snapshot on: `drover.desired.snapshot.<device>`. */
export function desiredSnapshotSubject(device: string): string {
  return `${DESIRED_SNAPSHOT_PREFIX}.${assertName("device id", device)}`;
}

/** Most deployments one snapshot lists (a device runs far fewer). */
export const MAX_SNAPSHOT_DEPLOYMENTS = 1000;

/**
 * The operator's answer to a snapshot request: every desired-state key of the
 * device, as deployment name → KV revision, as of `as_of_revision` (the
 * highest revision of the bucket the operator had read). A key the device
 * holds at a revision up to `as_of_revision` that is not listed was deleted;
 * a newer one may simply not have reached the operator yet.
 */
export const DesiredSnapshot = z.object({
  device: Name,
  as_of_revision: z.number().int().nonnegative(),
  deployments: z.record(Name, z.number().int().positive()).refine(
    (d) => Object.keys(d).length <= MAX_SNAPSHOT_DEPLOYMENTS,
    { message: `at most ${MAX_SNAPSHOT_DEPLOYMENTS} deployments` },
  ),
});
/** The operator's answer to a snapshot request. */
export type DesiredSnapshot = z.infer<typeof DesiredSnapshot>;

/** The operator cannot answer yet (e.g. it is still reading the buckets). */
export const DesiredSnapshotError = z.object({ error: z.string().max(500) });
/** The operator cannot answer yet. */
export type DesiredSnapshotError = z.infer<typeof DesiredSnapshotError>;

/** Either reply to a snapshot request. */
export const DesiredSnapshotReply = z.union([DesiredSnapshot, DesiredSnapshotError]);
/** Either reply to a snapshot request. */
export type DesiredSnapshotReply = z.infer<typeof DesiredSnapshotReply>;
