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
import { DeviceStatus } from "./agent_status.ts";

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

/**
 * Prefix of the commands the operator sends to a device's agent:
 * `drover.cmd.<device>.<command>`. The devices' account exports these
 * subjects to the `DROVER` account (the reverse of the other bridges), and
 * each device may only subscribe to its own (docs/security.md).
 */
export const DEVICE_COMMAND_PREFIX = "drover.cmd";

/**
 * The commands an agent answers. No shell or exec: see the README's security model.
 * `purge-volumes` removes the named volumes of a deployment the device no longer runs
 * (`operator delete --purge-volumes`).
 */
export const DEVICE_COMMANDS = ["ping", "logs", "events", "purge-volumes"] as const;
/** One command an agent answers. */
export type DeviceCommand = typeof DEVICE_COMMANDS[number];

/** Subject of one command to one device: `drover.cmd.<device>.<command>`. */
export function deviceCommandSubject(device: string, command: DeviceCommand): string {
  if (!(DEVICE_COMMANDS as readonly string[]).includes(command)) {
    throw new RangeError(
      `Cannot build a command subject as the command is unknown: current value is ${
        JSON.stringify(command)
      }`,
    );
  }
  return `${DEVICE_COMMAND_PREFIX}.${assertName("device id", device)}.${command}`;
}

/** Every command subject of one device (what its agent subscribes to): `drover.cmd.<device>.*`. */
export function deviceCommandsSubject(device: string): string {
  return `${DEVICE_COMMAND_PREFIX}.${assertName("device id", device)}.*`;
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

/** Prefix of the devices' liveness heartbeats (core NATS, never stored). */
export const HEARTBEAT_PREFIX = "drover.heartbeat";

/** Subject device `device` publishes its heartbeat on: `drover.heartbeat.<device>`. */
export function heartbeatSubject(device: string): string {
  return `${HEARTBEAT_PREFIX}.${assertName("device id", device)}`;
}

/**
 * A heartbeat: a core-NATS publish every `heartbeat_seconds` that says the
 * device is alive without writing to JetStream. `status_revision` is the
 * `agent-status` KV revision of the device's last full status, so a reader
 * that holds an older revision knows it missed a status and re-reads the key.
 * Stripping object: newer agents may add fields.
 */
export const Heartbeat = z.object({
  status: DeviceStatus,
  status_revision: z.number().int().nonnegative(),
});
/** A heartbeat. */
export type Heartbeat = z.infer<typeof Heartbeat>;

/**
 * Subject `operator serve` answers on with how long ago it heard each
 * device: readers of KV alone (the CLI's `get`, `status`, `ping`, `logs`)
 * then judge liveness by the same heartbeats as the API and the dashboard.
 * In the operator's account only; devices cannot reach it.
 */
export const LIVENESS_SUBJECT = "drover.operator.liveness";

/**
 * The answer on {@linkcode LIVENESS_SUBJECT}: device id → ms since its last
 * heartbeat was heard (an age, not a time: the asker's clock may differ).
 */
export const LivenessReply = z.object({
  heard_ms_ago: z.record(z.string(), z.number().int().nonnegative()),
});
/** The answer on {@linkcode LIVENESS_SUBJECT}. */
export type LivenessReply = z.infer<typeof LivenessReply>;

/** Largest heartbeat a reader decodes; a real one is about 40 bytes. */
export const MAX_HEARTBEAT_BYTES = 1024;

/**
 * Inbox prefix of `operator serve`'s connection guard: its system-account user may subscribe
 * below it and to the devices' connect events only ({@linkcode connectionGuardSubjects}).
 */
export const CONNECTION_GUARD_INBOX_PREFIX = "_INBOX_drover_guard";

/** nats-server's system requests the connection guard makes, per server id or to all (`PING`). */
export function serverRequestSubject(server: string, endpoint: "CONNZ" | "KICK"): string {
  return `$SYS.REQ.SERVER.${server}.${endpoint}`;
}

/**
 * What the connection guard of `operator serve` subscribes to and publishes, for the devices'
 * account `account` (public key): its connect and disconnect events, every server's CONNZ and
 * KICK (nats-server 2.10+), and its own inbox. Its system-account creds allow exactly these.
 */
export function connectionGuardSubjects(account: string): {
  connect: string;
  disconnect: string;
  pub: string[];
  sub: string[];
} {
  const connect = `$SYS.ACCOUNT.${account}.CONNECT`;
  const disconnect = `$SYS.ACCOUNT.${account}.DISCONNECT`;
  return {
    connect,
    disconnect,
    pub: [serverRequestSubject("*", "CONNZ"), serverRequestSubject("*", "KICK")],
    sub: [connect, disconnect, `${CONNECTION_GUARD_INBOX_PREFIX}.>`],
  };
}
